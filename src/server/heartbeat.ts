/**
 * The server's connections, and the heartbeat that visits each of them once per interval
 * (liveness.ts judges a connection at each visit).
 *
 * One loop over every connection at each interval blocks the event loop for as long as pinging
 * them all takes (about 130 ms at 10,000 connections), and every message that arrives meanwhile
 * waits that long. So the connections are kept in slices, and a tick every `interval / slices`
 * visits one slice. A connection stays in its slice for its life: its visits are exactly one
 * tick period times the number of slices apart, never less than the interval (a connection is
 * judged on what it answered since its previous visit, so visits must never come closer).
 * @module
 */

/** At most this many slices: a tick per tenth of the interval. */
export const MAX_SLICES = 10
/** Ticks no closer than this (ms): a short interval (tests use 100 ms) gets fewer slices. */
export const MIN_TICK = 10

/** A set of members (the server's connections) that visits each member once per `interval`, a slice per tick. */
export class Heartbeat<T> implements Iterable<T> {
  private readonly slices: Set<T>[]
  private readonly timer: ReturnType<typeof setInterval> | undefined
  /** The slice the next tick visits. */
  private next = 0
  private count = 0

  /**
   * @param interval - ms between two visits of a member; 0: no heartbeat (the set only holds them)
   * @param visit - called once per interval for each member
   */
  constructor(interval: number, visit: (member: T) => void) {
    const slices = interval > 0 ? Math.max(1, Math.min(MAX_SLICES, Math.floor(interval / MIN_TICK))) : 1
    this.slices = Array.from({ length: slices }, () => new Set<T>())
    if (interval > 0) {
      this.timer = setInterval(() => this.tick(visit), Math.ceil(interval / slices))
      this.timer.unref()
    }
  }

  /** Adds a member to the smallest slice (so slices stay even as members come and go). */
  add(member: T): void {
    if (this.has(member)) return
    let smallest = this.slices[0]!
    for (const slice of this.slices) if (slice.size < smallest.size) smallest = slice
    smallest.add(member)
    this.count++
  }

  /** Removes a member; false if it was not there. */
  delete(member: T): boolean {
    for (const slice of this.slices) {
      if (slice.delete(member)) {
        this.count--
        return true
      }
    }
    return false
  }

  has(member: T): boolean {
    return this.slices.some((slice) => slice.has(member))
  }

  get size(): number {
    return this.count
  }

  *[Symbol.iterator](): Iterator<T> {
    for (const slice of this.slices) yield* slice
  }

  /** Stops the visits (the members stay). */
  stop(): void {
    clearInterval(this.timer)
  }

  private tick(visit: (member: T) => void): void {
    const slice = this.slices[this.next]!
    this.next = (this.next + 1) % this.slices.length
    // A visit may end its member (deleted from the slice meanwhile: a Set iterates on safely).
    for (const member of slice) visit(member)
  }
}
