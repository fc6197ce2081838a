/**
 * The server heartbeat's judgement of one connection: is the client answering? Frames the
 * client sends are no evidence (a client can send and never read); only answers are:
 *
 * - a pong to the server's previous protocol-level ping, or
 * - acks that progress: the client acknowledged more of what it was sent since the last beat
 *   (a client working through a large backlog may reach the ping late, but it is reading).
 *
 * A connection that gave neither since the previous beat is `silent` (the server terminates
 * it). A client that answers the ping but does not acknowledge is caught too: a pong to a ping
 * proves that everything written before that ping was received (the ping went out after it), so
 * messages written before the previous beat, still unacknowledged now, with no ack progress
 * since, are `unacknowledged` (the server closes with 1013; the client resumes and gets them
 * again). A client gets at least one heartbeat interval to acknowledge what it received.
 *
 * While the server does not read the connection (rate-limit backpressure, bounded at 10 s) its
 * answers cannot be read either: the connection is not judged, and not pinged, until it reads
 * again; what was outstanding before the pause (a ping, the acks) still counts then. The first
 * beat after a pause that finds no answer gives one grace (the answer may sit in what is read
 * next); a second such beat without an answer in between judges. So a client cannot dodge the
 * judgement by having its reading paused at every other beat.
 * @module
 */

/** How far a session's client has acknowledged what was written to it on this connection. */
export interface AckProgress {
  /** The client's last (cumulative) ack. */
  acked: number
  /** Sequence number of the last item written on this connection (`acked` when none is unacknowledged). */
  written: number
}

/** What the heartbeat sees of a connection at a beat. */
export interface Observation {
  /** The previous ping was answered with a pong (true when there was no previous ping). */
  answered: boolean
  /** The server is not reading the connection (its answers cannot be read). */
  paused: boolean
  /** The session's ack progress on this connection; undefined before `hello`. */
  progress: AckProgress | undefined
}

/**
 * The verdict of a beat. `ping`: alive, ping it again. `paused`: not judged, not pinged.
 * `silent`: no answer since the last beat. `unacknowledged`: it received messages and did not
 * acknowledge them within an interval.
 */
export type Verdict = 'ping' | 'paused' | 'silent' | 'unacknowledged'

/** One connection's heartbeat record: call `beat()` every heartbeat interval. */
export class Liveness {
  /** A ping is out since the previous beat. */
  private pinged = false
  /** The progress seen at the previous judged beat (when the connection had a session then). */
  private last: AckProgress | undefined
  /** The previous beat was paused. */
  private wasPaused = false
  /** A grace after a pause was given, and no answer came since. */
  private graced = false

  /** Judges the interval since the previous beat and records what the next beat compares with. */
  beat({ answered, paused, progress }: Observation): Verdict {
    if (paused) {
      // Not judged, and nothing recorded: what was outstanding is judged once it reads again.
      this.wasPaused = true
      return 'paused'
    }
    const afterPause = this.wasPaused
    this.wasPaused = false
    const last = this.last
    this.last = progress && { ...progress }
    const pinged = this.pinged
    this.pinged = true
    if (!pinged) return 'ping'
    const acksProgressed = progress !== undefined && last !== undefined && progress.acked > last.acked
    if (answered || acksProgressed) this.graced = false
    else if (afterPause && !this.graced) {
      this.graced = true
      return 'ping'
    } else return 'silent'
    // The pong proves that what was written before the previous ping arrived.
    if (answered && !acksProgressed && progress !== undefined && last !== undefined && progress.acked < last.written) {
      return 'unacknowledged'
    }
    return 'ping'
  }
}
