import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Heartbeat, MAX_SLICES } from '../../src/server/heartbeat.js'

/** Members 0..n-1 in a heartbeat of `interval`, each visit recorded with its time. */
function visited(interval: number, n: number) {
  const visits = new Map<number, number[]>()
  const beats = new Heartbeat<number>(interval, (member) => visits.get(member)?.push(Date.now()))
  for (let member = 0; member < n; member++) {
    visits.set(member, [])
    beats.add(member)
  }
  return { beats, visits }
}

describe('Heartbeat', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('visits every member once per interval, each at its own phase, its visits exactly an interval apart', () => {
    const { beats, visits } = visited(30_000, 1000)
    vi.advanceTimersByTime(90_000)
    for (const times of visits.values()) {
      expect(times).toHaveLength(3)
      expect(times[1]! - times[0]!).toBe(30_000)
      expect(times[2]! - times[1]!).toBe(30_000)
    }
    beats.stop()
  })

  it('spreads the members over the interval: no tick visits more than a slice of them', () => {
    const { beats, visits } = visited(30_000, 1000)
    vi.advanceTimersByTime(30_000)
    const perTick = new Map<number, number>()
    for (const [first] of visits.values()) perTick.set(first!, (perTick.get(first!) ?? 0) + 1)
    expect(perTick.size).toBe(MAX_SLICES)
    for (const count of perTick.values()) expect(count).toBe(1000 / MAX_SLICES)
    beats.stop()
  })

  it('keeps the slices even as members leave and come, and never visits a member that left', () => {
    const { beats, visits } = visited(1000, 100)
    // The members of two slices leave; ten newcomers fill the emptied slices first.
    for (let member = 0; member < 100; member += 10) beats.delete(member)
    for (let member = 1; member < 100; member += 10) beats.delete(member)
    expect(beats.size).toBe(80)
    for (let member = 100; member < 120; member++) {
      visits.set(member, [])
      beats.add(member)
    }
    expect(beats.size).toBe(100)
    vi.advanceTimersByTime(1000)
    const perTick = new Map<number, number>()
    for (const [member, times] of visits) {
      if (member % 10 < 2 && member < 100) expect(times).toEqual([])
      else perTick.set(times[0]!, (perTick.get(times[0]!) ?? 0) + 1)
    }
    expect([...perTick.values()]).toEqual(Array(MAX_SLICES).fill(10))
    beats.stop()
  })

  it('with a short interval, ticks no closer than 10 ms (fewer slices), and never visits a member sooner than the interval', () => {
    const { beats, visits } = visited(35, 9)
    vi.advanceTimersByTime(200)
    for (const times of visits.values()) {
      expect(times.length).toBeGreaterThanOrEqual(4)
      for (let k = 1; k < times.length; k++) expect(times[k]! - times[k - 1]!).toBeGreaterThanOrEqual(35)
    }
    const phases = new Set([...visits.values()].map((times) => times[0]))
    expect(phases.size).toBe(3) // 35 ms: three slices, a tick every 12 ms
    beats.stop()
  })

  it('a visit that ends its member (the connection closes) does not disturb the others of its slice', () => {
    const seen: number[] = []
    const beats: Heartbeat<number> = new Heartbeat<number>(100, (member) => {
      seen.push(member)
      if (member % 2 === 0) beats.delete(member)
    })
    for (let member = 0; member < 20; member++) beats.add(member)
    vi.advanceTimersByTime(100)
    expect(seen.sort((a, b) => a - b)).toEqual([...Array(20).keys()])
    expect([...beats].sort((a, b) => a - b)).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19])
    beats.stop()
  })

  it('with interval 0 only holds the members; stop() ends the visits', () => {
    const visit = vi.fn()
    const idle = new Heartbeat<string>(0, visit)
    idle.add('a')
    idle.add('a')
    expect([...idle]).toEqual(['a'])
    expect(idle.delete('b')).toBe(false)
    vi.advanceTimersByTime(60_000)
    expect(visit).not.toHaveBeenCalled()
    const { beats, visits } = visited(100, 5)
    beats.stop()
    vi.advanceTimersByTime(1000)
    expect([...visits.values()].flat()).toEqual([])
  })
})
