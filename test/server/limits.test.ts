// @vitest-environment node
/**
 * The token bucket of the server's rate limit, on an injected clock: what `take()` grants and
 * when `msUntil()` says tokens will be there; its default (monotonic) clock; and the rate limit
 * createTetherServer accepts.
 */
import { createServer } from 'node:http'
import fc from 'fast-check'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { OptionError } from '../../src/errors.js'
import { createTetherServer } from '../../src/server/index.js'
import { DEFAULT_BURST_BYTES, DEFAULT_BYTES_PER_SECOND, maxHeldBytes, resolveRateLimit, TokenBucket } from '../../src/server/limits.js'

/** A bucket on a clock the test moves. */
function bucket(rate: number, burst: number) {
  let now = 1_000_000
  const b = new TokenBucket({ rate, burst }, () => now)
  return {
    b,
    advance: (ms: number) => {
      now += ms
    },
  }
}

describe('TokenBucket', () => {
  it('starts full: the burst is there at once, more only as the rate refills', () => {
    const { b } = bucket(10, 5)
    expect(b.msUntil(0)).toBe(0)
    expect(b.msUntil(5)).toBe(0)
    expect(b.msUntil(6)).toBe(100)
    expect(b.take(7)).toBe(5)
  })

  it('says when n tokens will be there, and take() then grants them', () => {
    const { b, advance } = bucket(4, 10)
    expect(b.take(10)).toBe(10)
    expect(b.msUntil(1)).toBe(250)
    expect(b.msUntil(3)).toBe(750)
    advance(100)
    expect(b.msUntil(1)).toBe(150)
    expect(b.take(1)).toBe(0)
    advance(149)
    expect(b.take(1)).toBe(0)
    advance(1)
    expect(b.take(1)).toBe(1)
    expect(b.msUntil(1)).toBe(250)
  })

  it('msUntil() is pure: asking does not change what the bucket holds', () => {
    const { b, advance } = bucket(2, 4)
    b.take(4)
    advance(1000)
    for (let i = 0; i < 5; i++) expect(b.msUntil(4)).toBe(1000)
    expect(b.take(4)).toBe(2)
  })

  it('refills up to the burst, never beyond', () => {
    const { b, advance } = bucket(1000, 3)
    b.take(3)
    advance(60_000)
    expect(b.msUntil(3)).toBe(0)
    expect(b.msUntil(4)).toBe(1)
    expect(b.take(100)).toBe(3)
  })

  it('beyond the burst, msUntil() is when the last token will have accrued if they are taken as they come', () => {
    const { b, advance } = bucket(10, 5)
    expect(b.msUntil(25)).toBe(2000)
    b.take(5)
    expect(b.msUntil(25)).toBe(2500)
    // Taken as they come (never letting the bucket fill up), the 25th token is there at 2,500 ms.
    let taken = 0
    for (let t = 0; t < 2500; t += 100) {
      advance(100)
      taken += b.take(25 - taken)
    }
    expect(taken).toBe(25)
  })

  it('a clock that goes backwards grants nothing extra', () => {
    const { b, advance } = bucket(10, 5)
    b.take(5)
    advance(-10_000)
    expect(b.take(1)).toBe(0)
    // Back where it was, plus 100 ms: one token, not the 10 s the clock repeated.
    advance(10_100)
    expect(b.take(5)).toBe(1)
  })

  it('rounding in the refill does not cost a token: waiting what msUntil(n) says grants n', () => {
    // Without care, 94 - 93 tokens of refill at this rate come out as 93.99999999999999 tokens.
    const { b, advance } = bucket(1.7999999999999998, 97)
    b.take(93)
    advance(316)
    const wait = b.msUntil(94)
    expect(wait).toBeGreaterThan(49_683)
    advance(Math.ceil(wait))
    expect(b.take(94)).toBe(94)
  })

  it('waiting (rounded up to whole ms) as long as msUntil(n) says always lets take(n) have them', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.01, max: 100_000, noNaN: true }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 5_000 }),
        (rate, burst, first, pause) => {
          const { b, advance } = bucket(rate, burst)
          b.take(first)
          advance(pause)
          const n = Math.min(burst, 1 + (first % burst))
          advance(Math.ceil(b.msUntil(n)))
          expect(b.take(n)).toBe(n)
        },
      ),
      { numRuns: 500 },
    )
  })
})

describe('TokenBucket: work owed what accrues (while held work waits)', () => {
  it('what accrued since the last take is not capped at the burst; what is left over after the take is', () => {
    const { b, advance } = bucket(1000, 1)
    expect(b.take(1)).toBe(1)
    advance(50)
    // Held work waited 50 ms: 50 tokens at 1,000/s, though the burst is 1.
    expect(b.msUntil(50, true)).toBe(0)
    expect(b.msUntil(60, true)).toBe(10)
    expect(b.tokensWithin(100, true)).toBe(150)
    expect(b.take(100, true)).toBe(50)
    advance(50)
    expect(b.take(10, true)).toBe(10)
    // The other 40 were not owed to anything: capped at the burst.
    expect(b.take(5)).toBe(1)
  })

  it('without owed, the burst caps what accrued, as ever', () => {
    const { b, advance } = bucket(1000, 1)
    b.take(1)
    advance(50)
    expect(b.msUntil(50)).toBe(49)
    expect(b.tokensWithin(100)).toBe(101)
    expect(b.take(100)).toBe(1)
  })

  it('taken as they accrue, owed tokens come at the rate whatever the burst and however late the timer', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 1, max: 100_000, noNaN: true }),
        fc.integer({ min: 1, max: 100 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }),
        (rate, burst, steps) => {
          const { b, advance } = bucket(rate, burst)
          b.take(burst)
          let taken = 0
          let elapsed = 0
          for (const ms of steps) {
            advance(ms)
            elapsed += ms
            taken += b.take(Number.MAX_SAFE_INTEGER, true)
          }
          expect(taken).toBe(Math.floor((elapsed * rate) / 1000 + 1e-9))
        },
      ),
      { numRuns: 300 },
    )
  })

  it('waiting (rounded up to whole ms) as long as msUntil(n, true) says lets take(n, true) have them, for any n', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.01, max: 100_000, noNaN: true }),
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 1, max: 10_000 }),
        (rate, burst, n) => {
          const { b, advance } = bucket(rate, burst)
          b.take(burst)
          advance(Math.ceil(b.msUntil(n, true)))
          expect(b.take(n, true)).toBe(n)
        },
      ),
      { numRuns: 500 },
    )
  })
})

describe('TokenBucket: its default clock', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('is monotonic: the wall clock set back an hour neither stalls the refill nor grants the hour again', () => {
    vi.useFakeTimers()
    const b = new TokenBucket({ rate: 10, burst: 5 })
    expect(b.take(5)).toBe(5)
    vi.setSystemTime(Date.now() - 3_600_000)
    vi.advanceTimersByTime(100)
    expect(b.take(5)).toBe(1)
    vi.setSystemTime(Date.now() + 3_600_000)
    expect(b.take(5)).toBe(0)
  })
})

describe('TokenBucket: an infinite rate', () => {
  it('is never NaN, not even when no time has passed (0 ms × Infinity)', () => {
    const b = new TokenBucket({ rate: Number.POSITIVE_INFINITY, burst: 5 }, () => 0)
    expect(b.take(3)).toBe(3)
    expect(b.take(3)).toBe(2)
    expect(b.take(1, true)).toBe(0)
    expect(b.msUntil(1)).toBe(0)
    expect(b.tokensWithin(0)).toBe(0)
  })
})

describe("createTetherServer's rateLimit option", () => {
  it.each([
    ['an infinite rate', { rate: Number.POSITIVE_INFINITY, burst: 5 }],
    ['a NaN rate', { rate: Number.NaN, burst: 5 }],
    ['a rate of 0', { rate: 0, burst: 5 }],
    ['a burst below 1', { rate: 10, burst: 0.5 }],
  ])('refuses %s with an OptionError', async (_name, rateLimit) => {
    const refused = createTetherServer({ server: createServer(), rateLimit })
    await expect(refused).rejects.toThrow(/options\.rateLimit must be false or \{ rate: a finite number > 0, burst >= 1 \}/)
    await expect(refused).rejects.toThrow(OptionError)
  })

  it('names the value given', async () => {
    await expect(createTetherServer({ server: createServer(), rateLimit: { rate: Number.NaN, burst: 5 } })).rejects.toThrow(
      /options\.rateLimit must be .*; got \{ rate: NaN, burst: 5 \}$/,
    )
  })

  it('accepts a finite rate above 0 and a burst of at least 1, or false', async () => {
    for (const rateLimit of [{ rate: 0.5, burst: 1 }, false as const]) {
      const server = await createTetherServer({ server: createServer(), rateLimit, heartbeatInterval: 0 })
      await server.close()
    }
  })
})

describe("createTetherServer's rateLimit option: the byte budget", () => {
  const MiB = 1024 * 1024

  it.each([
    ['0', 0],
    ['a negative number', -1],
    ['NaN', Number.NaN],
    ['a string', '1000'],
  ])('refuses a bytesPerSecond of %s with an OptionError naming it', async (_name, bytesPerSecond) => {
    const rateLimit = { rate: 10, burst: 5, bytesPerSecond: bytesPerSecond as number }
    await expect(createTetherServer({ server: createServer(), rateLimit })).rejects.toThrow(OptionError)
    await expect(createTetherServer({ server: createServer(), rateLimit })).rejects.toThrow(
      /^createTetherServer: options\.rateLimit\.bytesPerSecond must be a number of bytes > 0 \(Infinity for no byte budget\); got /,
    )
  })

  it.each([
    ['below maxPayload', { maxPayload: 64 * 1024, burstBytes: 64 * 1024 - 1 }],
    ['below the default maxPayload (1 MiB)', { maxPayload: undefined, burstBytes: 512 * 1024 }],
    ['infinite', { maxPayload: undefined, burstBytes: Number.POSITIVE_INFINITY }],
    ['NaN', { maxPayload: undefined, burstBytes: Number.NaN }],
  ])('refuses a burstBytes %s with an OptionError naming it and maxPayload', async (_name, { maxPayload, burstBytes }) => {
    const options = { server: createServer(), maxPayload, rateLimit: { rate: 10, burst: 5, burstBytes } }
    await expect(createTetherServer(options)).rejects.toThrow(
      /^createTetherServer: options\.rateLimit\.burstBytes must be a finite number of bytes >= maxPayload \(\d+\)/,
    )
  })

  it('accepts a byte budget, Infinity for none, or none given (the defaults)', async () => {
    for (const rateLimit of [
      { rate: 10, burst: 5, bytesPerSecond: 1, burstBytes: MiB },
      { rate: 10, burst: 5, bytesPerSecond: Number.POSITIVE_INFINITY },
      { rate: 10, burst: 5 },
    ]) {
      const server = await createTetherServer({ server: createServer(), rateLimit, heartbeatInterval: 0 })
      await server.close()
    }
  })

  it('defaults to 2 MiB a second and a burst of 4 MiB, or of maxPayload if that is more', () => {
    expect(DEFAULT_BYTES_PER_SECOND).toBe(2 * MiB)
    expect(DEFAULT_BURST_BYTES).toBe(4 * MiB)
    expect(resolveRateLimit(undefined, MiB)).toEqual({ rate: 1000, burst: 10000, bytesPerSecond: 2 * MiB, burstBytes: 4 * MiB })
    expect(resolveRateLimit({ rate: 5, burst: 1 }, 16 * MiB)).toEqual({ rate: 5, burst: 1, bytesPerSecond: 2 * MiB, burstBytes: 16 * MiB })
    expect(resolveRateLimit(false, MiB)).toBe(false)
  })
})

describe('maxHeldBytes', () => {
  it('is four frames of maxPayload, at least 1 MiB', () => {
    expect(maxHeldBytes(1024 * 1024)).toBe(4 * 1024 * 1024)
    expect(maxHeldBytes(1000)).toBe(1024 * 1024)
  })
})
