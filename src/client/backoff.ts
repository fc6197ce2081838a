/**
 * The reconnect delay policy, as pure functions of the attempt number.
 *
 * The delay before retry number `attempt` (1 for the first retry) is
 *
 * ```
 * cap   = min(maxDelay, minDelay * factor ^ (attempt - 1))
 * delay = cap * (1 - jitter * random())        random() in [0, 1)
 * ```
 *
 * With the default `jitter: 1` this is "full jitter": a uniform pick in `(0, cap]`,
 * which spreads a crowd of clients that lost the same server over the whole window
 * instead of sending them back in synchronized waves. `jitter: 0` gives plain
 * exponential backoff.
 *
 * When the server closed with 1012 (Service Restart) or 1013 (Try Again Later) it
 * asked clients to come back later, so the delay is at least
 * `busyDelay * (1 + random())`: somewhere in `[busyDelay, 2 * busyDelay)`.
 * @module
 */

/** The numbers that shape the reconnect delay. */
export interface BackoffPolicy {
  /** Upper bound of the first retry's delay, in ms. */
  minDelay: number
  /** Largest delay, in ms. */
  maxDelay: number
  /** Growth of the bound per failed attempt. */
  factor: number
  /** Share of the delay that is randomized, 0..1. */
  jitter: number
  /** Least delay after a close that asks clients to come back later (1012, 1013), in ms. */
  busyDelay: number
}

/** Close codes with which a server asks clients to back off: 1012 Service Restart, 1013 Try Again Later. */
export const isServerBusy = (code: number): boolean => code === 1012 || code === 1013

/**
 * The delay in milliseconds before retry number `attempt` (counted from 1).
 *
 * @example
 * ```ts
 * backoffDelay({ minDelay: 1000, maxDelay: 30000, factor: 2, jitter: 0, busyDelay: 5000 }, 3) // 4000
 * ```
 */
export function backoffDelay(policy: BackoffPolicy, attempt: number, closeCode?: number, random: () => number = Math.random): number {
  // `|| 0`: minDelay 0 times an overflowed factor^n (Infinity) is NaN.
  const cap = Math.min(policy.maxDelay, policy.minDelay * policy.factor ** Math.max(0, attempt - 1)) || 0
  const delay = cap * (1 - policy.jitter * random())
  return closeCode !== undefined && isServerBusy(closeCode) ? Math.max(delay, policy.busyDelay * (1 + random())) : delay
}
