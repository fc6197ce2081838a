import { describe, expect, it } from 'vitest'
import { type BackoffPolicy, backoffDelay, isServerBusy } from '../../src/client/backoff.js'

const policy = (overrides: Partial<BackoffPolicy> = {}): BackoffPolicy => ({
  minDelay: 1000,
  maxDelay: 30000,
  factor: 2,
  jitter: 0,
  busyDelay: 5000,
  ...overrides,
})

/** The largest value Math.random() returns in V8 (52 random mantissa bits): the top of [0, 1). */
const almostOne = 1 - Number.EPSILON
const zero = () => 0
const top = () => almostOne

/** A deterministic pseudo-random source (mulberry32), so the property checks are reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('backoffDelay: the bound grows by factor per attempt', () => {
  it('is minDelay for the first retry', () => {
    expect(backoffDelay(policy(), 1, undefined, zero)).toBe(1000)
  })

  it('multiplies by factor for every further attempt: minDelay * factor ^ (attempt - 1)', () => {
    const delays = [1, 2, 3, 4, 5].map((attempt) => backoffDelay(policy(), attempt, undefined, zero))
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16000])
  })

  it('uses the given factor', () => {
    const delays = [1, 2, 3].map((attempt) => backoffDelay(policy({ minDelay: 100, factor: 3 }), attempt, undefined, zero))
    expect(delays).toEqual([100, 300, 900])
  })

  it('stays at minDelay with factor 1', () => {
    for (let attempt = 1; attempt <= 50; attempt++) expect(backoffDelay(policy({ factor: 1 }), attempt, undefined, zero)).toBe(1000)
  })

  it('treats attempt 0 (or less) like the first retry', () => {
    expect(backoffDelay(policy(), 0, undefined, zero)).toBe(1000)
    expect(backoffDelay(policy(), -3, undefined, zero)).toBe(1000)
  })

  it('matches the documented example: attempt 3 of 1000/30000/2 without jitter is 4000', () => {
    expect(backoffDelay({ minDelay: 1000, maxDelay: 30000, factor: 2, jitter: 0, busyDelay: 5000 }, 3)).toBe(4000)
  })
})

describe('backoffDelay: maxDelay caps the bound', () => {
  it('never exceeds maxDelay once the growth passes it', () => {
    // 1000 * 2^5 = 32000 > 30000
    expect(backoffDelay(policy(), 6, undefined, zero)).toBe(30000)
    expect(backoffDelay(policy(), 7, undefined, zero)).toBe(30000)
    expect(backoffDelay(policy(), 100, undefined, zero)).toBe(30000)
  })

  it('is maxDelay (not Infinity or NaN) for attempts where factor ^ attempt overflows', () => {
    expect(backoffDelay(policy(), 5000, undefined, zero)).toBe(30000)
    expect(backoffDelay(policy({ factor: 10 }), 400, undefined, zero)).toBe(30000)
  })

  it('is 0 for every attempt with minDelay 0 (an accepted option value), never NaN', () => {
    for (const attempt of [1, 2, 10, 1024, 1025, 5000]) {
      expect(backoffDelay(policy({ minDelay: 0 }), attempt, undefined, zero)).toBe(0)
    }
  })

  it('is minDelay when minDelay equals maxDelay', () => {
    expect(backoffDelay(policy({ minDelay: 500, maxDelay: 500 }), 10, undefined, zero)).toBe(500)
  })
})

describe('backoffDelay: jitter', () => {
  it('jitter 0 gives the exact bound, whatever random() returns', () => {
    for (const random of [zero, () => 0.5, top]) {
      expect(backoffDelay(policy({ jitter: 0 }), 1, undefined, random)).toBe(1000)
      expect(backoffDelay(policy({ jitter: 0 }), 4, undefined, random)).toBe(8000)
      expect(backoffDelay(policy({ jitter: 0 }), 9, undefined, random)).toBe(30000)
    }
  })

  it('random() = 0 gives the full bound', () => {
    expect(backoffDelay(policy({ jitter: 0.3 }), 3, undefined, zero)).toBe(4000)
    expect(backoffDelay(policy({ jitter: 1 }), 3, undefined, zero)).toBe(4000)
  })

  it('random() near 1 takes off jitter share of the bound: delay -> bound * (1 - jitter)', () => {
    const partial = backoffDelay(policy({ jitter: 0.25 }), 3, undefined, top)
    expect(partial).toBeCloseTo(3000, 6)
    expect(partial).toBeGreaterThanOrEqual(3000)
    const full = backoffDelay(policy({ jitter: 1 }), 3, undefined, top)
    expect(full).toBeGreaterThanOrEqual(0)
    expect(full).toBeLessThan(1e-9)
  })

  it('a jitter share of j keeps the delay in (bound * (1 - j), bound]', () => {
    const random = seeded(7)
    for (let i = 0; i < 1000; i++) {
      const delay = backoffDelay(policy({ jitter: 0.5 }), 4, undefined, random)
      expect(delay).toBeGreaterThan(4000)
      expect(delay).toBeLessThanOrEqual(8000)
    }
  })

  it('is linear in random(): delay = bound * (1 - jitter * random())', () => {
    expect(backoffDelay(policy({ jitter: 0.5 }), 2, undefined, () => 0.5)).toBe(1500)
    expect(backoffDelay(policy({ jitter: 1 }), 2, undefined, () => 0.25)).toBe(1500)
    expect(backoffDelay(policy({ jitter: 1 }), 10, undefined, () => 0.5)).toBe(15000)
  })

  it('full jitter (1) spreads delays over the whole window up to the bound', () => {
    const random = seeded(42)
    const delays = Array.from({ length: 2000 }, () => backoffDelay(policy({ jitter: 1 }), 5, undefined, random))
    for (const delay of delays) {
      expect(delay).toBeGreaterThan(0)
      expect(delay).toBeLessThanOrEqual(16000)
    }
    // every tenth of the window gets used
    const buckets = new Set(delays.map((d) => Math.min(9, Math.floor(d / 1600))))
    expect(buckets.size).toBe(10)
    expect(Math.min(...delays)).toBeLessThan(160)
    expect(Math.max(...delays)).toBeGreaterThan(15840)
  })

  it('uses Math.random() when no random source is given', () => {
    const delays = Array.from({ length: 50 }, () => backoffDelay(policy({ jitter: 1 }), 3))
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(0)
      expect(delay).toBeLessThanOrEqual(4000)
    }
    expect(new Set(delays).size).toBeGreaterThan(1)
  })
})

describe('backoffDelay: a busy server (close 1012 Service Restart or 1013 Try Again Later)', () => {
  it('isServerBusy is true for 1012 and 1013 only', () => {
    expect(isServerBusy(1012)).toBe(true)
    expect(isServerBusy(1013)).toBe(true)
    for (const code of [1000, 1001, 1006, 1008, 1011, 1014, 4000, 4401]) expect(isServerBusy(code)).toBe(false)
  })

  it.each([1012, 1013])('after %i the delay is at least busyDelay (random() = 0)', (code) => {
    expect(backoffDelay(policy({ jitter: 1 }), 1, code, zero)).toBe(5000)
  })

  it.each([1012, 1013])('after %i the delay stays below 2 * busyDelay (random() near 1)', (code) => {
    const delay = backoffDelay(policy({ jitter: 1 }), 1, code, top)
    expect(delay).toBeLessThan(10000)
    expect(delay).toBeCloseTo(10000, 6)
  })

  it.each([1012, 1013])('after %i the delay lies in [busyDelay, 2 * busyDelay) for any random()', (code) => {
    const random = seeded(code)
    for (let i = 0; i < 1000; i++) {
      const delay = backoffDelay(policy({ jitter: 1 }), 1 + (i % 3), code, random)
      expect(delay).toBeGreaterThanOrEqual(5000)
      expect(delay).toBeLessThan(10000)
    }
  })

  it('keeps the normal backoff when that is already longer than the busy delay', () => {
    expect(backoffDelay(policy({ jitter: 0 }), 6, 1013, zero)).toBe(30000)
    expect(backoffDelay(policy({ jitter: 0 }), 6, 1012, top)).toBe(30000)
  })

  it.each([undefined, 1000, 1001, 1006, 1011, 1014, 4000])('close code %s does not apply the busy delay', (code) => {
    expect(backoffDelay(policy({ jitter: 0 }), 1, code, zero)).toBe(1000)
    expect(backoffDelay(policy({ jitter: 1 }), 1, code, top)).toBeLessThan(1)
  })
})

describe('backoffDelay: property: the delay is always a number in [0, maxDelay]', () => {
  const policies: BackoffPolicy[] = [
    policy(),
    policy({ jitter: 1 }),
    policy({ jitter: 0.5, factor: 1.5 }),
    policy({ minDelay: 1, maxDelay: 1, factor: 10, jitter: 1 }),
    policy({ minDelay: 250, maxDelay: 60000, factor: 3, jitter: 0.1 }),
    policy({ minDelay: 0, maxDelay: 30000, factor: 2, jitter: 1 }),
    policy({ minDelay: 0, maxDelay: 0, factor: 2, jitter: 0 }),
  ]
  const closeCodes = [undefined, 1000, 1001, 1006, 1011, 4000]

  it.each(policies.map((p, i) => [i, p] as const))('policy #%i over attempts 1..3000 with random() in [0, 1)', (i, p) => {
    const random = seeded(1000 + i)
    const sources = [zero, top, random]
    for (let attempt = 1; attempt <= 3000; attempt++) {
      const source = sources[attempt % sources.length]!
      const delay = backoffDelay(p, attempt, closeCodes[attempt % closeCodes.length], source)
      if (!(delay >= 0 && delay <= p.maxDelay)) {
        throw new Error(`policy ${JSON.stringify(p)} attempt ${attempt}: delay ${delay} is outside [0, ${p.maxDelay}]`)
      }
    }
  })
})
