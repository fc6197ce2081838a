/**
 * What the server's memory bounds count, and the server-wide budget for disconnected sessions.
 *
 * A session counts, for each message it holds (sent, not yet acknowledged by the client), the
 * UTF-8 bytes of its payload plus a fixed overhead for the bookkeeping around it (figures
 * measured with Node 20 on x64, see docs/SECURITY.md). `maxQueueBytes` bounds one session's
 * count, broadcasts included in full: it is what the session will write to its client.
 *
 * `maxDisconnectedBytes` bounds what the sessions without a connection hold, as it is in
 * memory: {@link SESSION_BYTES} each, plus their count, except that a broadcast's payload,
 * held once for all sessions, is counted once while any disconnected session holds it (each
 * session counts {@link SHARED_ENTRY_BYTES} for its reference). When it is reached, the
 * sessions disconnected longest are ended (`expire` with reason `'evicted'`).
 * @module
 */
import type { Session } from './sessions.js'

/** Counted per message queued by `session.send()`: its entry, its promise and the promise's resolve and reject. */
export const SENT_ENTRY_BYTES = 320

/** Counted per session per broadcast message: the payload is shared, the session holds a reference to it. */
export const SHARED_ENTRY_BYTES = 16

/** Counted per reply waiting for the client's ack: its entry (the payload is the whole `res` frame). */
export const REPLY_ENTRY_BYTES = 64

/** Counted per disconnected session against `maxDisconnectedBytes`: the session itself, its timers and closures. */
export const SESSION_BYTES = 2048

/**
 * Bytes a connection may have buffered (written, not yet handed to the network) before the
 * session stops writing to it; the rest waits in the session's outbox. The last frame written
 * may go past it by up to its own size (at most `maxPayload`, or one reply).
 */
export const WRITE_BUFFER_BYTES = 1024 * 1024

/**
 * The budget for what disconnected sessions hold, server-wide: each counts {@link SESSION_BYTES}
 * plus its `ownBytes`, and the payloads of broadcasts they hold count once. Sessions are kept in
 * the order they disconnected; over the limit, the first (disconnected longest) are evicted
 * until the rest fit.
 */
export class DisconnectedBudget {
  /** Disconnected sessions, in the order they disconnected, with what each counts now. */
  private readonly parked = new Map<Session, number>()
  private total = 0

  /** @param evict - ends the session; it must come back to {@link remove} (through the `expire` event) */
  constructor(
    private readonly limit: number,
    private readonly evict: (session: Session) => void,
  ) {}

  /** Bytes counted now over every disconnected session. */
  get bytes(): number {
    return this.total
  }

  /** Disconnected sessions counted now. */
  get sessions(): number {
    return this.parked.size
  }

  /**
   * Takes note of a session's state (see `SessionEvents.memory`): one no longer `parked` leaves
   * the budget; a parked one joins it at the end (disconnected last) or, if it is already in, is
   * counted anew in place. `sharedBytes` of broadcast payloads are counted, or let go. Over the
   * limit, evicts from the front.
   */
  update(session: Session, parked: boolean, sharedBytes: number): void {
    this.total += sharedBytes
    if (!parked) {
      this.remove(session)
      return
    }
    const counted = SESSION_BYTES + session.ownBytes
    this.total += counted - (this.parked.get(session) ?? 0)
    this.parked.set(session, counted)
    this.enforce()
  }

  /** Forgets a session (it connected again, or ended). */
  remove(session: Session): void {
    const counted = this.parked.get(session)
    if (counted === undefined) return
    this.total -= counted
    this.parked.delete(session)
  }

  private enforce(): void {
    // Re-entrant: an `expire` listener may send to another disconnected session, which comes back here.
    while (this.total > this.limit && this.parked.size > 0) {
      const oldest = this.parked.keys().next().value as Session
      this.remove(oldest)
      this.evict(oldest)
    }
  }
}
