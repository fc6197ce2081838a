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

/** A token bucket; `take(n)` is false when `n` tokens are not available. */
export class TokenBucket {
  private tokens: number
  private updated = Date.now()

  constructor(private readonly limit: RateLimit) {
    this.tokens = limit.burst
  }

  take(count: number): boolean {
    const now = Date.now()
    this.tokens = Math.min(this.limit.burst, this.tokens + ((now - this.updated) * this.limit.rate) / 1000)
    this.updated = now
    if (this.tokens < count) return false
    this.tokens -= count
    return true
  }
}
