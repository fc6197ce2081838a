/**
 * Per-session rate limiting: a token bucket over messages and requests received. A client
 * over the limit is asked to come back later (close 1013); what it sent beyond the limit was
 * not acknowledged, so it resends it on resume and nothing is lost.
 * @module
 */

/** Incoming rate limit of one session. */
export interface RateLimit {
  /** Sustained messages (and requests) per second. */
  rate: number
  /** Messages allowed at once on top of the sustained rate (a reconnecting client's backlog). */
  burst: number
}

/** A token bucket of messages. */
export class TokenBucket {
  private tokens: number
  private updated = Date.now()

  constructor(private readonly limit: RateLimit) {
    this.tokens = limit.burst
  }

  /** Takes up to `count` tokens; returns how many it took. */
  take(count: number): number {
    const now = Date.now()
    this.tokens = Math.min(this.limit.burst, this.tokens + ((now - this.updated) * this.limit.rate) / 1000)
    this.updated = now
    const taken = Math.min(count, Math.floor(this.tokens))
    this.tokens -= taken
    return taken
  }
}
