/**
 * Per-session rate limiting: a token bucket over what a client sends (each message, request and
 * ping costs a token), with backpressure rather than disconnection.
 *
 * Over the limit, what the bucket allows is delivered at once; the rest of the frame, and every
 * later frame of the connection, is held in order, reading from the connection stops, and held
 * work is delivered as the bucket refills; then reading resumes. Held work is acknowledged only
 * once delivered, and discarded if the connection or the session ends (the client resends it
 * when it resumes).
 *
 * The rule for what may be held: as much work as the bucket will deliver within
 * {@link MAX_HOLD} (10 s), and at most {@link maxHeldBytes} of frames. Work beyond that is
 * refused: it is never acknowledged, later work on the connection is ignored, and once the held
 * work is delivered (at once if none is held) the connection is closed with 1013 (Try Again
 * Later); the client resends the rest when it resumes, after backing off, so nothing is lost.
 * So a frame carrying more than `rate × 10 s` messages beyond what the bucket holds is delivered
 * in part, at the rate, before the close; and below a `rate` of 0.1/s, where a drained bucket's
 * next token is more than 10 s away, work over a drained bucket is refused at once.
 * @module
 */

/** Incoming rate limit of one session. */
export interface RateLimit {
  /** Sustained messages (and requests, pings) per second. */
  rate: number
  /** Messages allowed at once on top of the sustained rate (a reconnecting client's backlog). */
  burst: number
}

/**
 * Longest a session holds work over the rate limit, in ms: at most this long without reading
 * from the connection; work beyond it is refused (1013). 10 s is no less than the pause of the
 * reconnect it replaces (the reference client waits `busyDelay`, 5–10 s, after 1013), and keeps
 * a delayed pong well within a client's default heartbeat (25 s + 10 s).
 */
export const MAX_HOLD = 10_000

/**
 * Most bytes of frames a session holds. Reading stops while anything is held, but frames that
 * were already read (the rest of a TCP chunk `ws` is parsing) still arrive: a few frames' worth.
 */
export const maxHeldBytes = (maxPayload: number): number => Math.max(4 * maxPayload, 1024 * 1024)

/** A token bucket of messages. */
export class TokenBucket {
  private tokens: number
  private updated: number

  /** @param now - the clock, in ms (injectable for tests) */
  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.tokens = limit.burst
    this.updated = now()
  }

  /** Takes up to `count` tokens; returns how many it took. */
  take(count: number): number {
    const now = this.now()
    this.tokens = this.available(now)
    // A clock set back must not refill the time it repeats.
    this.updated = Math.max(this.updated, now)
    // The epsilon absorbs rounding in the refill, so a timer armed by msUntil() finds its tokens.
    const taken = Math.max(0, Math.min(count, Math.floor(this.tokens + 1e-9)))
    this.tokens = Math.max(0, this.tokens - taken)
    return taken
  }

  /**
   * How long until `n` tokens will have been available, in ms (0 if they are now). For
   * `n <= burst` that is when `take(n)` gets all of them at once; for more, when the last of them
   * will have been taken if they are taken as they accrue. Does not change the bucket.
   */
  msUntil(n: number): number {
    return (Math.max(0, n - this.available(this.now())) * 1000) / this.limit.rate
  }

  /**
   * How many whole tokens will have been available `ms` from now, if taken as they accrue (the
   * inverse of `msUntil()`). Does not change the bucket.
   */
  tokensWithin(ms: number): number {
    return Math.floor(this.available(this.now()) + (ms * this.limit.rate) / 1000 + 1e-9)
  }

  private available(now: number): number {
    return Math.min(this.limit.burst, this.tokens + (Math.max(0, now - this.updated) * this.limit.rate) / 1000)
  }
}
