/**
 * The end-of-tick schedulers of protocol/frames.ts: `perTick` runs its function once per tick,
 * `perTickEach` runs its function once per item asked for in the tick, all in one microtask.
 */
import { describe, expect, it } from 'vitest'
import { perTick, perTickEach } from '../../src/protocol/frames.js'

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0))

describe('perTickEach', () => {
  it('runs once per item asked for in the tick, in the order first asked, after the synchronous work', async () => {
    const ran: string[] = []
    const each = perTickEach((item: string) => ran.push(item))
    each('a')
    each('b')
    each('a')
    ran.push('sync')
    await tick()
    expect(ran).toEqual(['sync', 'a', 'b'])
  })

  it('schedules one microtask for all of them', async () => {
    let scheduled = 0
    const original = globalThis.queueMicrotask
    globalThis.queueMicrotask = (fn) => {
      scheduled++
      original(fn)
    }
    try {
      const each = perTickEach((_item: number) => {})
      for (let i = 0; i < 1000; i++) each(i)
      await tick()
    } finally {
      globalThis.queueMicrotask = original
    }
    expect(scheduled).toBe(1)
  })

  it('an item asked for while the items run goes into the next run, not lost', async () => {
    const ran: string[] = []
    const each = perTickEach((item: string) => {
      ran.push(item)
      if (item === 'a') each('a again')
    })
    each('a')
    await tick()
    expect(ran).toEqual(['a', 'a again'])
  })
})

describe('perTick', () => {
  it('runs once at the end of the tick however often it is asked for', async () => {
    let runs = 0
    const once = perTick(() => runs++)
    once()
    once()
    await tick()
    expect(runs).toBe(1)
  })
})
