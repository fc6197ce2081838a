/**
 * One connection for all tabs (`shared`), in Node against the real reference server: pages of
 * one origin (support/shared-tabs.ts) with their own Web Locks, BroadcastChannel and store.
 * The same in real Chromium: test/browser/shared-tabs.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { TetherSocketOptions } from '../../src/index.js'
import type { Session } from '../../src/server/index.js'
import { Origin } from '../support/pages.js'
import { stored } from '../support/persist.js'
import { closeChannels, sharedPage } from '../support/shared-tabs.js'
import { cleanupTether, freePort, startProxy, startTether, urlOf, waitFor } from '../support/tether.js'

afterEach(async () => {
  await cleanupTether()
  closeChannels()
})

interface Msg {
  tab: string
  n: number
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

/** A server recording each message with the session it came in. */
async function recordingServer() {
  const server = await startTether()
  const got: (Msg & { session: string })[] = []
  const sessions: Session[] = []
  server.on('message', (data, session) => got.push({ ...(data as Msg), session: session.id }))
  server.on('session', (session) => sessions.push(session))
  server.onRequest((data) => ({ echo: data }))
  const of = (tab: string) => got.filter((m) => m.tab === tab).map((m) => m.n)
  return { server, got, sessions, of }
}

/** Two tabs of one origin on `url`: the first holds the connection, the second follows; both open. */
async function twoTabs(url: string, options: TetherSocketOptions<Msg, Msg> = {}) {
  const origin = new Origin()
  const [a, b] = [sharedPage(origin), sharedPage(origin)]
  const ta = a.open<Msg, Msg>(url, options)
  await waitFor(() => ta.sock.state === 'open', 5000, 'the holder open')
  const tb = b.open<Msg, Msg>(url, options)
  await waitFor(() => tb.sock.state === 'open', 5000, 'the follower open')
  return { origin, a, b, ta, tb }
}

/**
 * Two tabs (a holder, then a follower, both open) connected through a proxy that `cut()` makes
 * refuse (the server unreachable) until `restore()`, with the reconnect options given.
 */
async function twoTabsBehindProxy(reconnect: { minDelay: number; maxDelay: number; jitter: number }) {
  const recording = await recordingServer()
  let up = true
  const dead = await freePort()
  const proxy = await startProxy(() => (up ? recording.server.port : dead))
  return {
    ...recording,
    ...(await twoTabs(urlOf(proxy), { reconnect })),
    cut: () => {
      up = false
      proxy.cutAll()
    },
    restore: () => {
      up = true
    },
  }
}

describe('tabs sharing one connection', () => {
  it('one session for all tabs: each tab sends, exactly once and in order, and every tab hears the server', async () => {
    const { server, sessions, of } = await recordingServer()
    const { ta, tb } = await twoTabs(urlOf(server))
    expect(ta.parts.at(-1)?.role).toBe('holder')
    expect(tb.parts.at(-1)?.role).toBe('follower')
    await Promise.all([
      ...range(0, 20).map((n) => ta.sock.send({ tab: 'a', n })),
      ...range(0, 20).map((n) => tb.sock.send({ tab: 'b', n })),
    ])
    expect(of('a')).toEqual(range(0, 20))
    expect(of('b')).toEqual(range(0, 20))
    expect(sessions).toHaveLength(1)
    expect(tb.sock.sessionId).toBe(sessions[0]!.id)
    // Each tab says its session began, once, as a socket of its own would.
    expect(ta.sessions.map((s) => s.id)).toEqual([sessions[0]!.id])
    expect(tb.sessions.map((s) => s.id)).toEqual([sessions[0]!.id])
    await sessions[0]!.send({ tab: 'server', n: 1 })
    await waitFor(() => ta.messages.length === 1 && tb.messages.length === 1, 5000, 'both tabs got the server message')
    expect(await tb.sock.request({ tab: 'b', n: 99 })).toEqual({ echo: { tab: 'b', n: 99 } })
    expect(ta.sock.pending + tb.sock.pending).toBe(0)
  })

  it('the holder crashes mid-stream: the other tab takes over the session, and nothing is lost or sent twice', async () => {
    const { server, sessions, of } = await recordingServer()
    const { a, tb } = await twoTabs(urlOf(server))
    const sent = range(0, 200).map((n) => tb.sock.send({ tab: 'b', n }))
    await waitFor(() => of('b').length >= 50, 5000, 'some of them reached the server')
    a.crash()
    await waitFor(() => tb.parts.at(-1)?.role === 'holder', 5000, 'the follower holds the connection now')
    await Promise.all(sent)
    const more = range(200, 220).map((n) => tb.sock.send({ tab: 'b', n }))
    await Promise.all(more)
    expect(of('b')).toEqual(range(0, 220))
    expect(sessions).toHaveLength(1)
    await sessions[0]!.send({ tab: 'server', n: 2 })
    await waitFor(() => tb.messages.length === 1, 5000, 'the survivor hears the server')
  })

  it('the holder tab closes its socket: the other tab takes over and continues the session', async () => {
    const { server, sessions, of } = await recordingServer()
    const { ta, tb } = await twoTabs(urlOf(server))
    await Promise.all(range(0, 10).map((n) => tb.sock.send({ tab: 'b', n })))
    const sent = range(10, 100).map((n) => tb.sock.send({ tab: 'b', n }))
    await ta.sock.close()
    await waitFor(() => tb.parts.at(-1)?.role === 'holder', 5000, 'the follower holds the connection now')
    await Promise.all(sent)
    expect(of('b')).toEqual(range(0, 100))
    expect(sessions).toHaveLength(1)
    expect(tb.sock.sessionId).toBe(sessions[0]!.id)
    expect(tb.sessions).toHaveLength(1) // the hand-over continued it: no new session to say
  })

  it("a request's reply goes to the tab that asked, also when it was answered across a change of holder", async () => {
    const { server } = await recordingServer()
    const { a, ta, tb } = await twoTabs(urlOf(server))
    const [ra, rb] = await Promise.all([ta.sock.request({ tab: 'a', n: 1 }), tb.sock.request({ tab: 'b', n: 2 })])
    expect(ra).toEqual({ echo: { tab: 'a', n: 1 } })
    expect(rb).toEqual({ echo: { tab: 'b', n: 2 } })
    const asked = tb.sock.request({ tab: 'b', n: 3 })
    a.crash()
    expect(await asked).toEqual({ echo: { tab: 'b', n: 3 } })
  })

  it('a tab that connects as another principal (other protocols) is refused by the holder and gets a connection of its own', async () => {
    const { server, sessions, of } = await recordingServer()
    const origin = new Origin()
    const ta = sharedPage(origin).open<Msg, Msg>(urlOf(server), { protocols: ['token.alice'] })
    await waitFor(() => ta.sock.state === 'open', 5000, 'the holder open')
    const tb = sharedPage(origin).open<Msg, Msg>(urlOf(server), { protocols: ['token.bob'] })
    await waitFor(() => tb.parts.at(-1)?.role === 'alone', 5000, 'the second tab refused')
    expect(tb.parts.at(-1)).toEqual({ role: 'alone', reason: 'principal' })
    await tb.sock.send({ tab: 'b', n: 1 })
    await ta.sock.send({ tab: 'a', n: 1 })
    expect(of('b')).toEqual([1])
    expect(sessions).toHaveLength(2)
    expect(tb.sock.sessionId).not.toBe(ta.sock.sessionId)
    expect(tb.errors).toEqual([])
  })

  it("a tab's messages sent while the connection is down go into the shared outbox at once, and reach the server once when it is back", async () => {
    const { sessions, of, origin, tb, cut, restore } = await twoTabsBehindProxy({ minDelay: 300, maxDelay: 300, jitter: 0 })
    cut()
    await waitFor(() => tb.sock.state === 'reconnecting', 5000, 'the follower waits, as the holder does')
    const sent = range(0, 5).map((n) => tb.sock.send({ tab: 'b', n }))
    // In the holder's durable outbox (IndexedDB), not only in the follower's memory.
    const entries = async () => (await stored(origin)).reduce((sum, outbox) => sum + outbox.entries.length, 0)
    await waitFor(async () => (await entries()) === 5, 5000, "the follower's messages stored by the holder")
    expect(tb.sock.state).not.toBe('open')
    restore()
    await Promise.all(sent)
    expect(of('b')).toEqual(range(0, 5))
    expect(sessions).toHaveLength(1)
  })

  it("a tab's reconnect() makes the holder try its connection now", async () => {
    const { ta, tb, cut, restore } = await twoTabsBehindProxy({ minDelay: 60_000, maxDelay: 60_000, jitter: 0 })
    cut()
    await waitFor(() => ta.sock.state === 'reconnecting' && tb.sock.state === 'reconnecting', 5000, 'both wait a minute')
    restore()
    tb.sock.reconnect()
    await waitFor(() => ta.sock.state === 'open' && tb.sock.state === 'open', 5000, 'both open again at once')
  })

  it('a reloaded tab gets the server messages its previous page had not, and none twice', async () => {
    const { server, sessions } = await recordingServer()
    const origin = new Origin()
    const a = sharedPage(origin)
    const tabB = origin.tab()
    const b1 = sharedPage(origin, tabB)
    const ta = a.open<Msg, Msg>(urlOf(server))
    await waitFor(() => ta.sock.state === 'open', 5000, 'the holder open')
    const first = b1.open<Msg, Msg>(urlOf(server))
    await waitFor(() => first.sock.state === 'open', 5000, 'the follower open')
    const session = sessions[0]!
    for (const n of range(0, 3)) await session.send({ tab: 'server', n })
    await waitFor(() => first.messages.length === 3, 5000, 'the first page got 3')
    b1.crash() // a reload: the page goes, the tab (its sessionStorage) stays
    for (const n of range(3, 6)) await session.send({ tab: 'server', n })
    const second = sharedPage(origin, tabB).open<Msg, Msg>(urlOf(server))
    await waitFor(() => second.messages.length === 3, 5000, 'the next page caught up')
    expect(second.messages.map((m) => m.n)).toEqual([3, 4, 5])
    expect(ta.messages.map((m) => m.n)).toEqual(range(0, 6))
  })

  it('without Web Locks each tab has its own connection, and says so', async () => {
    const { server, sessions } = await recordingServer()
    const origin = new Origin()
    const t = sharedPage(origin, undefined, { locks: false }).open<Msg, Msg>(urlOf(server))
    await waitFor(() => t.sock.state === 'open', 5000, 'open')
    expect(t.parts).toEqual([{ role: 'alone', reason: 'unsupported' }])
    await t.sock.send({ tab: 'x', n: 1 })
    expect(sessions).toHaveLength(1)
  })
})
