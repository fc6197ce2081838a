/**
 * Adoption (`persist`): a tab closed with messages pending leaves its outbox; the next page that
 * opens the same store name in another tab delivers them. Against a real reference server; a
 * tab's page "closing" is its crash (support/pages.ts) with the tab never reopened.
 *
 * What restore.ts promises: the adopting page continues the orphan's session when it has none of
 * its own (exactly once); otherwise the orphan's messages are renumbered into the page's session:
 * those never written arrive exactly once, those written and unacknowledged at least once.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Origin } from '../support/pages.js'
import { eventually, gated, persistClient, received, stored, storedData } from '../support/persist.js'
import { cleanupTether, freePort, sleep, startProxy, startTether, type Proxy as TcpProxy, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

interface Msg {
  n: number
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

/**
 * A page in `tab` (a new one by default) that gets a session through `proxy`, has base+0..4
 * acknowledged, then sends base+5..9 that reach the server but whose ack never comes back (the
 * proxy freezes as the server takes base+9, then goes away for good), then base+10..(until-1)
 * that are never written. Returns once all of that is durable; the page still lives.
 */
async function pageWithPending(
  origin: Origin,
  server: Awaited<ReturnType<typeof startTether>>,
  proxy: TcpProxy,
  until = 10,
  { tab = origin.tab(), base = 0 } = {},
) {
  const page = origin.page(tab)
  const store = gated(page)
  const c = persistClient<Msg, Msg>(page, `ws://127.0.0.1:${proxy.port}`, { store: store.store })
  for (const n of range(0, 5)) await c.sock.send({ n: base + n })
  const session = c.sock.sessionId
  let frozen = false
  server.on('message', (m) => {
    if ((m as Msg).n !== base + 9 || frozen) return
    frozen = true
    proxy.freeze()
  })
  for (const n of range(5, 10)) void c.sock.send({ n: base + n })
  await waitFor(() => frozen, 5000, 'the server took the last and the proxy froze')
  await proxy.close()
  await waitFor(() => c.sock.state !== 'open', 5000, 'the page disconnected')
  for (const n of range(10, until)) void c.sock.send({ n: base + n })
  await waitFor(() => store.completed() === store.commits.length, 5000, 'every commit done')
  const [outbox] = (await stored(origin)).filter((o) => o.session?.id === session)
  expect(storedData<Msg>(outbox!).map((m) => m.n - base)).toEqual(range(5, until))
  return { page, client: c, session: session! }
}

describe('an orphan adopted by a page with no session of its own', () => {
  it('continues the orphan session: its messages arrive exactly once, in order, reported from "adopted"', async () => {
    const server = await startTether()
    const got = received<Msg>(server)
    const proxy = await startProxy(server.port)
    const origin = new Origin()
    const tab1 = await pageWithPending(origin, server, proxy, 15)
    await waitFor(() => got.length === 10, 5000, '0..9 at the server')
    tab1.page.crash()

    const b = persistClient<Msg, Msg>(origin.page(origin.tab()), urlOf(server))
    await waitFor(() => b.restored.length === 1, 10000, 'the restored report')
    expect(got.map((m) => m.n)).toEqual(range(0, 15))
    expect(b.sock.sessionId).toBe(tab1.session)
    expect(b.sessions).toEqual([])
    expect(b.restored[0]).toEqual({ from: 'adopted', delivered: range(5, 15).map((n) => ({ data: { n } })), failed: [] })
    // The acknowledgement's removals are recorded with the next commit, or within LATER ms.
    await eventually(async () => (await stored(origin))[0]?.entries.length === 0, 5000, 'the removals recorded')
    expect(await stored(origin)).toEqual([expect.objectContaining({ session: expect.objectContaining({ id: tab1.session }), entries: [] })])
  })

  it('keeps the continued session across its own reload before anything else happened (still exactly once)', async () => {
    const server = await startTether()
    const got = received<Msg>(server)
    const proxy = await startProxy(server.port)
    const origin = new Origin()
    const tab1 = await pageWithPending(origin, server, proxy)
    await waitFor(() => got.length === 10, 5000, '0..9 at the server')
    tab1.page.crash()

    // A new tab adopts it while the server cannot be reached, and is reloaded then.
    const tab2 = origin.tab()
    const adopting = origin.page(tab2)
    const store = gated(adopting)
    const [orphan] = await stored(origin)
    persistClient<Msg, Msg>(adopting, `ws://127.0.0.1:${await freePort()}`, { store: store.store })
    await eventually(
      async () => {
        const outboxes = await stored(origin)
        return outboxes.length === 1 && outboxes[0]!.id !== orphan!.id && outboxes[0]!.entries.length === 5
      },
      5000,
      'the adoption',
    )
    // What the page does right after the adoption is written by then.
    await sleep(20)
    await waitFor(() => store.completed() === store.commits.length, 5000, 'every commit done')
    // The continued session is kept with the entries numbered in it.
    expect((await stored(origin)).map((o) => o.session?.id)).toEqual([tab1.session])
    adopting.crash()

    const b = persistClient<Msg, Msg>(origin.page(tab2), urlOf(server))
    await waitFor(() => b.restored.length === 1 && b.sock.pending === 0, 10000, 'the restored report')
    expect(b.sock.sessionId).toBe(tab1.session)
    expect(b.sessions).toEqual([])
    expect(got.map((m) => m.n)).toEqual(range(0, 10))
    expect(b.restored[0]!.delivered.map((m) => m.data.n)).toEqual(range(5, 10))
  })

  it('two pages racing to adopt the same orphan: it is delivered once', async () => {
    const server = await startTether()
    const got = received<Msg>(server)
    const proxy = await startProxy(server.port)
    const origin = new Origin()
    const tab1 = await pageWithPending(origin, server, proxy, 20)
    await waitFor(() => got.length === 10, 5000, '0..9 at the server')
    tab1.page.crash()

    const x = persistClient<Msg, Msg>(origin.page(origin.tab()), urlOf(server))
    const y = persistClient<Msg, Msg>(origin.page(origin.tab()), urlOf(server))
    await waitFor(() => x.restored.length + y.restored.length === 1, 10000, 'one restored report')
    await waitFor(() => got.length >= 20 && x.sock.pending + y.sock.pending === 0, 10000, 'everything at the server')
    const [winner] = x.restored.length ? [x, y] : [y, x]
    expect(winner.restored[0]!.delivered.map((m) => m.data.n)).toEqual(range(5, 20))
    expect(winner.sock.sessionId).toBe(tab1.session)
    expect(got.map((m) => m.n)).toEqual(range(0, 20))
    expect(x.restored.length + y.restored.length).toBe(1)
  })
})

describe('an orphan adopted by a page with a session of its own', () => {
  it('renumbers it into that session: never-written messages arrive exactly once, written unacknowledged ones at least once', async () => {
    const server = await startTether()
    const got: { from: string; n: number; session: string }[] = []
    server.on('message', (m, session) => got.push({ ...(m as Msg & { from: string }), session: session.id }))
    const origin = new Origin()
    // Tab 2 has a session of its own (its page lives while tab 1 goes, so it adopts nothing yet).
    const tab2 = origin.tab()
    const first2 = origin.page(tab2)
    const own = persistClient<Msg & { from: string }, Msg & { from: string }>(first2, urlOf(server))
    await own.sock.send({ from: 'tab2', n: 0 })
    const ownSession = own.sock.sessionId

    const proxy = await startProxy(server.port)
    const tab1 = await pageWithPending(origin, server, proxy, 15)
    await waitFor(() => got.length === 11, 5000, "tab 1's 0..9 at the server")
    tab1.page.crash()
    await eventually(async () => (await stored(origin)).some((o) => o.session?.id === ownSession), 5000, "tab 2's session stored")
    first2.crash()

    // Tab 2 reloads: its own session goes on; tab 1's outbox is an orphan it adopts.
    const b = persistClient<Msg, Msg>(origin.page(tab2), urlOf(server))
    await waitFor(() => b.restored.some((r) => r.from === 'adopted'), 10000, 'the adopted report')
    await waitFor(() => b.sock.pending === 0, 5000, 'nothing pending')
    expect(b.sock.sessionId).toBe(ownSession)
    const fromTab1 = got.filter((m) => m.from === undefined)
    const inOwn = fromTab1.filter((m) => m.session === ownSession).map((m) => m.n)
    // Renumbered into tab 2's session, in order: the written ones (5..9, which the server had) again, then the rest.
    expect(inOwn).toEqual(range(5, 15))
    for (const n of range(10, 15)) expect(fromTab1.filter((m) => m.n === n)).toHaveLength(1)
    for (const n of range(5, 10)) expect(fromTab1.filter((m) => m.n === n).length).toBeGreaterThanOrEqual(1)
    expect(b.restored.find((r) => r.from === 'adopted')).toEqual({
      from: 'adopted',
      delivered: range(5, 15).map((n) => ({ data: { n } })),
      failed: [],
    })
    expect(b.sessions).toEqual([])
  })
})

describe('an orphan adopted by a page whose own outbox has messages pending too', () => {
  it('sends its own first in their session (exactly once), then the orphan renumbered after them', async () => {
    const server = await startTether()
    const got: { n: number; session: string }[] = []
    server.on('message', (m, session) => got.push({ n: (m as Msg).n, session: session.id }))
    const origin = new Origin()
    const tab1 = await pageWithPending(origin, server, await startProxy(server.port), 15)
    const tab2 = origin.tab()
    const own = await pageWithPending(origin, server, await startProxy(server.port), 15, { tab: tab2, base: 100 })
    await waitFor(() => got.length === 20, 5000, "both pages' 0..9 at the server")
    tab1.page.crash()
    own.page.crash()

    const b = persistClient<Msg, Msg>(origin.page(tab2), urlOf(server))
    await waitFor(() => b.restored.length === 2 && b.sock.pending === 0, 10000, 'both restored reports')
    expect(b.errors).toEqual([])
    expect(b.sock.sessionId).toBe(own.session)
    const inOwn = got.filter((m) => m.session === own.session).map((m) => m.n)
    // Its own: 100..114 once; then tab 1's renumbered into it: 5..14 (5..9 the server had in tab 1's session).
    expect(inOwn).toEqual([...range(100, 115), ...range(5, 15)])
    expect(b.restored.map((r) => [r.from, r.delivered.map((m) => m.data.n)])).toEqual(
      expect.arrayContaining([
        ['reload', range(105, 115)],
        ['adopted', range(5, 15)],
      ]),
    )
  })
})

describe('an own outbox whose session was lost', () => {
  it('does not lend its numbers to an adopted session: its messages are renumbered and delivered', async () => {
    const server = await startTether()
    const got = received<Msg>(server)
    const proxy = await startProxy(server.port)
    const origin = new Origin()
    const tab1 = await pageWithPending(origin, server, proxy)
    await waitFor(() => got.length === 10, 5000, '0..9 at the server')
    tab1.page.crash()

    // Tab 2's previous page left entries numbered 6 and 7 in a session it never recorded (as when
    // a page went away between an adoption and the commit of the adopted session).
    const tab2 = origin.tab()
    const previous = origin.page(tab2)
    const handle = await previous.store.open()
    await handle.commit({
      put: [
        { position: 0, seq: 6, payload: '{"n":100}' },
        { position: 1, seq: 7, payload: '{"n":101}' },
      ],
    })
    previous.crash()

    // Tab 2's next page continues tab 1's session (it has none of its own): 6 and 7 there are tab 1's.
    const b = persistClient<Msg, Msg>(origin.page(tab2), urlOf(server))
    await waitFor(() => b.restored.length === 2 && b.sock.pending === 0, 10000, 'both restored reports')
    expect(b.sock.sessionId).toBe(tab1.session)
    expect(got.map((m) => m.n)).toEqual([...range(0, 10), 100, 101])
  })
})

describe('a duplicated tab', () => {
  it("gets a session of its own while its origin tab lives, and takes nothing of the origin tab's outbox", async () => {
    const server = await startTether()
    const got = received<Msg>(server)
    const proxy = await startProxy(server.port)
    const origin = new Origin()
    const tab = origin.tab()
    const original = await pageWithPending(origin, server, proxy, 15, { tab })
    const copy = persistClient<Msg, Msg>(origin.page(tab.copy()), urlOf(server))
    await copy.sock.send({ n: 1000 })
    expect(copy.sock.sessionId).not.toBe(original.session)
    expect(copy.restored).toEqual([])
    expect(got.map((m) => m.n)).toEqual([...range(0, 10), 1000])
    // The origin tab's outbox is still its own, whole.
    const kept = (await stored(origin)).find((o) => o.session?.id === original.session)
    expect(storedData<Msg>(kept!).map((m) => m.n)).toEqual(range(5, 15))
  })
})
