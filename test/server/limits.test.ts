// @vitest-environment node
/**
 * The token bucket of the server's rate limit, on an injected clock: what `take()` grants and
 * when `msUntil()` says tokens will be there.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { maxHeldBytes, TokenBucket } from '../../src/server/limits.js'

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

describe('maxHeldBytes', () => {
  it('is four frames of maxPayload, at least 1 MiB', () => {
    expect(maxHeldBytes(1024 * 1024)).toBe(4 * 1024 * 1024)
    expect(maxHeldBytes(1000)).toBe(1024 * 1024)
  })
})
