/**
 * Per-message options across a reload (`persist`), against a real reference server: `ttl` and
 * `timeout` keep their absolute deadlines (a ttl that ran out while the page was away drops the
 * message unsent), and a restored message with a `key` is replaced by a newer send with that key.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { TimeoutError } from '../../src/errors.js'
import { Origin } from '../support/pages.js'
import { eventually, persistClient, received, stored } from '../support/persist.js'
import { cleanupTether, freePort, sleep, startTether, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

type Msg = Record<string, number>

/** A page in `tab` that sends what `send` does while nothing listens on a port, then goes away once it is stored. */
async function leave(
  origin: Origin,
  tab: ReturnType<Origin['tab']>,
  count: number,
  send: (c: ReturnType<typeof persistClient<Msg, Msg>>) => void,
) {
  const port = await freePort()
  const page = origin.page(tab)
  const a = persistClient<Msg, Msg>(page, `ws://127.0.0.1:${port}`)
  send(a)
  await eventually(async () => (await stored(origin))[0]?.entries.length === count, 5000, 'the messages stored')
  page.crash()
  return port
}

describe('ttl across a reload', () => {
  it('a message whose ttl ran out while the page was away is dropped unsent, reported failed with a TimeoutError', async () => {
    const origin = new Origin()
    const tab = origin.tab()
    const port = await leave(origin, tab, 2, (a) => {
      a.sock.send({ n: 1 }, { ttl: 200 }).catch(() => {})
      a.sock.send({ n: 2 }).catch(() => {})
    })
    await sleep(300)
    const server = await startTether({ port })
    const got = received<Msg>(server)
    const b = persistClient<Msg, Msg>(origin.page(tab), urlOf(server))
    await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
    expect(got).toEqual([{ n: 2 }])
    const { delivered, failed } = b.restored[0]!
    expect(delivered).toEqual([{ data: { n: 2 } }])
    expect(failed).toHaveLength(1)
    expect(failed[0]!.data).toEqual({ n: 1 })
    expect(failed[0]!.error).toBeInstanceOf(TimeoutError)
    expect(failed[0]!.error.message).toMatch(/ttl/)
    expect(failed[0]!.error.message).not.toMatch(/after waiting 0 ms/)
  })

  it('a ttl not yet run out goes on from where it was: the message is sent when the server is back in time', async () => {
    const origin = new Origin()
    const tab = origin.tab()
    const port = await leave(origin, tab, 1, (a) => {
      a.sock.send({ n: 1 }, { ttl: 10000 }).catch(() => {})
    })
    const server = await startTether({ port })
    const got = received<Msg>(server)
    const b = persistClient<Msg, Msg>(origin.page(tab), urlOf(server))
    await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
    expect(got).toEqual([{ n: 1 }])
    expect(b.restored[0]!.delivered).toEqual([{ data: { n: 1 } }])
  })
})

describe('timeout across a reload', () => {
  it('continues from its absolute deadline, not from the reload', async () => {
    const origin = new Origin()
    const tab = origin.tab()
    let sentAt = 0
    const port = await leave(origin, tab, 1, (a) => {
      sentAt = Date.now()
      a.sock.send({ n: 1 }, { timeout: 1500 }).catch(() => {})
    })
    await sleep(Math.max(0, sentAt + 800 - Date.now()))
    const b = persistClient<Msg, Msg>(origin.page(tab), `ws://127.0.0.1:${port}`)
    await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
    const failedAt = Date.now()
    expect(b.restored[0]!.failed.map((f) => f.error)).toEqual([expect.any(TimeoutError)])
    // Restarted at the reload it would fail at sentAt + 800 + 1500 at the earliest.
    expect(failedAt - sentAt).toBeGreaterThanOrEqual(1490)
    expect(failedAt - sentAt).toBeLessThan(2200)
  })

  it("a request acknowledged before the reload fails when its reply's deadline passes, counted from the first page", async () => {
    const server = await startTether()
    let calls = 0
    server.onRequest(() => {
      calls++
      return new Promise(() => {}) // never answered
    })
    const origin = new Origin()
    const tab = origin.tab()
    const first = origin.page(tab)
    const a = persistClient<Msg, Msg>(first, urlOf(server))
    await waitFor(() => a.sock.state === 'open', 5000, 'open')
    const sentAt = Date.now()
    a.sock.request({ q: 1 }, { timeout: 1500 }).catch(() => {})
    await eventually(async () => (await stored(origin))[0]?.session?.acked === 1, 5000, 'the acknowledgement recorded')
    first.crash()
    await sleep(Math.max(0, sentAt + 800 - Date.now()))
    const b = persistClient<Msg, Msg>(origin.page(tab), urlOf(server))
    await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
    const failedAt = Date.now()
    expect(b.restored[0]!.failed).toEqual([{ data: { q: 1 }, error: expect.any(TimeoutError) }])
    expect(failedAt - sentAt).toBeGreaterThanOrEqual(1490)
    expect(failedAt - sentAt).toBeLessThan(2200)
    expect(calls).toBe(1)
  })
})

describe('key across a reload', () => {
  for (const when of ['before the store opened', 'once restored, while disconnected'] as const) {
    it(`a restored keyed message replaced by a newer send with its key (${when}) is not sent`, async () => {
      const origin = new Origin()
      const tab = origin.tab()
      const port = await leave(origin, tab, 2, (a) => {
        a.sock.send({ v: 1 }, { key: 'k' }).catch(() => {})
        a.sock.send({ n: 9 }).catch(() => {})
      })
      const b = persistClient<Msg, Msg>(origin.page(tab), `ws://127.0.0.1:${port}`)
      if (when === 'once restored, while disconnected') await waitFor(() => b.sock.stats.attempts >= 1, 5000, 'restored')
      const newer = b.sock.send({ v: 2 }, { key: 'k' })
      const server = await startTether({ port })
      const got = received<Msg>(server)
      await newer
      await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
      expect(got).toEqual([{ n: 9 }, { v: 2 }])
      expect(b.restored[0]!.failed).toEqual([])
      // Nothing of the replaced one is kept.
      await eventually(async () => (await stored(origin))[0]?.entries.length === 0, 5000, 'nothing left stored')
    })
  }
})
