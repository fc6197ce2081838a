/**
 * The rate limit's parts: the `rateLimit` option (its defaults and validation), the token bucket
 * that counts what a client sends (one bucket of tokens, one of bytes for decoding), and the
 * bounds on holding work over it. admission.ts states the rule that uses them.
 * @module
 */
import { OptionError } from '../errors.js'
import { unknownKey } from '../suggest.js'
import { optionError } from './option-error.js'

/** Incoming rate limit of one session. */
export interface RateLimit {
  /** Sustained messages (and requests, pings, other frames) per second: a finite number above 0. */
  rate: number
  /** Messages allowed at once on top of the sustained rate (a reconnecting client's backlog): at least 1. */
  burst: number
  /**
   * Sustained bytes per second of frames decoded in their turn (those over 64 bytes): the
   * decoding budget, since parsing costs about what a frame weighs. A number above 0;
   * `Infinity` for no byte budget. Left out: 2 MiB (2097152) when the server
   * fills in the option, no byte budget for a session made without it.
   */
  bytesPerSecond?: number
  /**
   * Bytes of such frames decoded at once on top of the sustained rate: at least the largest
   * frame accepted (`maxPayload`), so every frame is decoded eventually. Left out:
   * `max(4 MiB, maxPayload)`.
   */
  burstBytes?: number
}

/**
 * Default `bytesPerSecond`: 2 MiB/s. Parsing JSON that is all structure (nested arrays, the
 * worst measured) costs 60–130 ms per MiB, so one session at this rate keeps a core busy a
 * quarter of the time at most, whatever it sends; yet 1,000 messages a second (the default
 * `rate`) of up to 2 KiB each fit in it.
 */
export const DEFAULT_BYTES_PER_SECOND = 2 * 1024 * 1024

/**
 * Default `burstBytes`: 4 MiB, four frames of the default `maxPayload`: a reconnecting client's
 * backlog of 10,000 messages (the default `burst`) of about 400 bytes each goes through at once.
 */
export const DEFAULT_BURST_BYTES = 4 * 1024 * 1024

/** The default `rateLimit` (the byte budget is filled in by {@link resolveRateLimit}). */
const DEFAULT_RATE: RateLimit = { rate: 1000, burst: 10000 }

/**
 * Validates the `rateLimit` option and fills in its defaults; throws OptionError naming the
 * field that is wrong and what it must be.
 */
export function resolveRateLimit(option: RateLimit | false | undefined, maxPayload: number): RateLimit | false {
  const given = option ?? DEFAULT_RATE
  if (
    given !== false &&
    (typeof given !== 'object' || given === null || !(Number.isFinite(given.rate) && given.rate > 0) || !(given.burst >= 1))
  ) {
    throw optionError('rateLimit', 'false or { rate: a finite number > 0, burst >= 1 }', given)
  }
  if (given === false) return false
  const unknown = unknownKey('options.rateLimit', given, ['rate', 'burst', 'bytesPerSecond', 'burstBytes'])
  if (unknown) throw new OptionError(`createTetherServer: ${unknown}`)
  const { bytesPerSecond = DEFAULT_BYTES_PER_SECOND, burstBytes = Math.max(DEFAULT_BURST_BYTES, maxPayload || 0) } = given
  if (typeof bytesPerSecond !== 'number' || !(bytesPerSecond > 0)) {
    throw optionError('rateLimit.bytesPerSecond', 'a number of bytes > 0 (Infinity for no byte budget)', bytesPerSecond)
  }
  if (typeof burstBytes !== 'number' || !Number.isFinite(burstBytes) || !(burstBytes >= 1) || burstBytes < maxPayload) {
    throw optionError(
      'rateLimit.burstBytes',
      `a finite number of bytes >= maxPayload (${maxPayload}), or every bigger frame would wait forever`,
      burstBytes,
    )
  }
  return { rate: given.rate, burst: given.burst, bytesPerSecond, burstBytes }
}

/**
 * Longest a session holds work over the rate limit, in ms; work beyond it is refused (1013).
 * 10 s is no less than the pause of the reconnect it replaces (the reference client waits
 * `busyDelay`, 5–10 s, after 1013), and keeps a delayed pong well within a client's default
 * heartbeat (25 s + 10 s).
 */
export const MAX_HOLD = 10_000

/**
 * Bytes of held frames at which a session stops reading from the connection (it reads again
 * below half of it). Frames that were already read (the rest of a TCP chunk `ws` is parsing)
 * still arrive and are held too: a chunk's worth, far below this.
 */
export const maxHeldBytes = (maxPayload: number): number => Math.max(4 * maxPayload, 1024 * 1024)

/** A monotonic clock in ms: setting the wall clock neither freezes nor floods the bucket. */
const monotonic = (): number => performance.now()

/**
 * A token bucket: one token per message, request or ping a client sends (per frame, at least). It holds at most
 * `burst` tokens and refills at `rate` per second.
 *
 * While work waits for tokens (`owed`), what accrues since the last take belongs to that work
 * and is not capped at `burst`: however the release timer is late, and however small `burst`
 * is, the work is delivered at `rate`. Only what is left over after such a take is capped.
 */
export class TokenBucket {
  private tokens: number
  private updated: number

  /** @param now - the clock, in ms: monotonic by default (injectable for tests) */
  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = monotonic,
  ) {
    this.tokens = limit.burst
    this.updated = now()
  }

  /**
   * Takes up to `count` tokens; returns how many it took.
   * @param owed - work has been waiting for these tokens since the last take: what accrued since is not capped at the burst
   */
  take(count: number, owed = false): number {
    const now = this.now()
    const available = this.available(now, owed)
    // A clock that goes back (an injected one) must not refill the time it repeats.
    this.updated = Math.max(this.updated, now)
    // The epsilon absorbs rounding in the refill, so a timer armed by msUntil() finds its tokens.
    const taken = Math.max(0, Math.min(count, Math.floor(available + 1e-9)))
    this.tokens = Math.min(this.limit.burst, Math.max(0, available - taken))
    return taken
  }

  /**
   * How long until `n` tokens will have been available, in ms (0 if they are now). Without
   * `owed`, for `n <= burst` that is when `take(n)` gets all of them at once, and for more, when
   * the last of them will have been taken if they are taken as they accrue. With `owed`, it is
   * when `take(n, true)` gets all of them at once. Does not change the bucket.
   */
  msUntil(n: number, owed = false): number {
    return (Math.max(0, n - this.available(this.now(), owed)) * 1000) / this.limit.rate
  }

  /**
   * How many whole tokens will have been available `ms` from now, if taken as they accrue (the
   * inverse of `msUntil()`). Does not change the bucket.
   * @param owed - as for `take()`: work is waiting, so what accrued since the last take is not capped
   */
  tokensWithin(ms: number, owed = false): number {
    return Math.floor(this.available(this.now(), owed) + refill(ms, this.limit.rate) + 1e-9)
  }

  private available(now: number, owed: boolean): number {
    const tokens = this.tokens + refill(now - this.updated, this.limit.rate)
    return owed ? tokens : Math.min(this.limit.burst, tokens)
  }
}

/** Tokens accrued in `ms` (none for a clock standing still or going back, even at an infinite rate). */
const refill = (ms: number, rate: number): number => (ms > 0 ? (ms * rate) / 1000 : 0)
