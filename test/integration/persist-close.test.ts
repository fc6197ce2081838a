/**
 * `close()` with `persist`, against a real reference server: closing a socket is the app saying
 * it is done, so the stored outbox is deleted (a later page in the tab starts afresh); a socket
 * closed while its store is still opening never took the outbox over, so the previous page's
 * outbox stays for the next page.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { ClosedError } from '../../src/errors.js'
import { tabKey } from '../../src/persist/schema.js'
import { Origin } from '../support/pages.js'
import { eventually, gated, persistClient, received, stored } from '../support/persist.js'
import { cleanupTether, freePort, sleep, startProxy, startTether, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

interface Msg {
  n: number
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

/** A page in `tab` that queues 0..(count-1) while nothing listens on its port, then goes away; returns the port. */
async function leavePending(origin: Origin, tab: ReturnType<Origin['tab']>, count = 5): Promise<number> {
  const port = await freePort()
  const page = origin.page(tab)
  const a = persistClient<Msg, Msg>(page, `ws://127.0.0.1:${port}`)
  for (const n of range(0, count)) a.sock.send({ n }).catch(() => {})
  await eventually(async () => (await stored(origin))[0]?.entries.length === count, 5000, 'the messages stored')
  page.crash()
  return port
}

describe('close()', () => {
  it('fails what is pending, deletes the stored outbox, and a later page in the tab starts a new session', async () => {
    const server = await startTether()
    const got = received<Msg>(server)
    const proxy = await startProxy(server.port)
    const origin = new Origin()
    const tab = origin.tab()
    const a = persistClient<Msg, Msg>(origin.page(tab), `ws://127.0.0.1:${proxy.port}`)
    await a.sock.send({ n: 0 })
    const session = a.sock.sessionId
    await proxy.close()
    await waitFor(() => a.sock.state !== 'open', 5000, 'disconnected')
    const pending = range(1, 4).map((n) => a.sock.send({ n }))
    await eventually(async () => (await stored(origin))[0]?.entries.length === 3, 5000, 'the pending ones stored')
    await a.sock.close()
    for (const sent of pending) await expect(sent).rejects.toBeInstanceOf(ClosedError)
    await eventually(async () => (await stored(origin)).length === 0, 5000, 'the stored outbox deleted')
    expect(tab.getItem(tabKey('chat'))).toBeNull()

    const b = persistClient<Msg, Msg>(origin.page(tab), urlOf(server))
    await b.sock.send({ n: 10 })
    expect(b.restored).toEqual([])
    expect(b.sessions).toEqual([expect.objectContaining({ previous: undefined })])
    expect(b.sock.sessionId).not.toBe(session)
    expect(got.map((m) => m.n)).toEqual([0, 10])
  })

  it("while the store is still opening: the previous page's outbox stays stored, and the next page delivers it once", async () => {
    const origin = new Origin()
    const tab = origin.tab()
    const port = await leavePending(origin, tab)
    const closing = origin.page(tab)
    const store = gated(closing)
    store.opening.hold()
    const b = persistClient<Msg, Msg>(closing, `ws://127.0.0.1:${port}`, { store: store.store })
    await waitFor(() => store.opening.waiting === 1, 5000, 'the store opening')
    await b.sock.close()
    store.opening.release()
    await waitFor(() => closing.locks.broker.held().length === 0, 5000, 'the outbox released')
    expect((await stored(origin)).map((o) => o.entries.length)).toEqual([5])
    expect(b.restored).toEqual([])
    expect(b.errors).toEqual([])

    const server = await startTether({ port })
    const got = received<Msg>(server)
    const c = persistClient<Msg, Msg>(origin.page(tab), urlOf(server))
    await waitFor(() => c.restored.length === 1, 5000, 'the restored report')
    expect(c.restored[0]!.delivered.map((m) => m.data.n)).toEqual(range(0, 5))
    expect(got.map((m) => m.n)).toEqual(range(0, 5))
  })

  it('then connect() while the store is still opening: the outbox is restored once, and nothing is left to deliver twice', async () => {
    const origin = new Origin()
    const tab = origin.tab()
    const port = await leavePending(origin, tab)
    const server = await startTether({ port })
    const got = received<Msg>(server)
    const page = origin.page(tab)
    const store = gated(page)
    // The first run's open holds the tab's outbox but finishes last.
    store.opened.hold()
    const b = persistClient<Msg, Msg>(page, urlOf(server), { store: store.store })
    await waitFor(() => store.opened.waiting === 1, 5000, 'the first run holding the outbox')
    void b.sock.close()
    b.sock.connect()
    // Time for a second run to race the first one to the outbox (a run may also wait its turn).
    await sleep(50)
    store.opened.release()
    await waitFor(() => b.restored.length === 1 && b.sock.pending === 0, 5000, 'the restored report')
    expect(got.map((m) => m.n)).toEqual(range(0, 5))
    await b.sock.send({ n: 5 })
    // The page holds one outbox, and no stored entry is left that a later page would send again.
    await eventually(async () => (await stored(origin)).every((o) => o.entries.length === 0), 5000, 'nothing left stored')
    expect(page.locks.broker.held()).toHaveLength(1)
    expect(b.errors).toEqual([])

    page.crash()
    const c = persistClient<Msg, Msg>(origin.page(tab), urlOf(server))
    await c.sock.send({ n: 6 })
    expect(c.restored).toEqual([])
    expect(got.map((m) => m.n)).toEqual(range(0, 7))
  })
})

describe('a socket closed while its store opens, and another socket of the page right after it', () => {
  it("the other socket restores the previous page's outbox (as a component mounted twice does)", async () => {
    const origin = new Origin()
    const tab = origin.tab()
    const port = await leavePending(origin, tab)
    const server = await startTether({ port })
    const got = received<Msg>(server)
    const page = origin.page(tab)
    const first = persistClient<Msg, Msg>(page, urlOf(server))
    void first.sock.close()
    const second = persistClient<Msg, Msg>(page, urlOf(server))
    await waitFor(() => second.sock.state === 'open', 5000, 'open')
    await waitFor(() => second.restored.length === 1, 5000, 'the restored report')
    expect(got.map((m) => m.n)).toEqual(range(0, 5))
  })
})
