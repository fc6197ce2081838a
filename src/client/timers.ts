/**
 * setTimeout with the two edges of real timers handled: an infinite delay means "never"
 * (no timer at all), and delays past the platform's 32-bit limit (about 24.8 days) are
 * clamped, where setTimeout would otherwise fire at once.
 * @module
 */

/** The longest delay setTimeout honours. */
export const MAX_DELAY = 2 ** 31 - 1

/** Schedules `fn` after `delay` ms; returns undefined (and schedules nothing) for an infinite delay. */
export function timer(fn: () => void, delay: number): ReturnType<typeof setTimeout> | undefined {
  return delay === Number.POSITIVE_INFINITY ? undefined : setTimeout(fn, Math.min(MAX_DELAY, Math.max(0, delay)))
}
