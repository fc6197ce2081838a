/**
 * The durable outbox's two write-ahead rules (`persist`), against a real reference server: a
 * message's frame leaves only once the commit carrying its entry and number completed, and the
 * page acknowledges server messages only once how far it delivered them is durable. The store's
 * commits are held by a gate (support/persist.ts), as a slow disk would hold them.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Origin } from '../support/pages.js'
import { gated, persistClient, received, recordingWebSocket } from '../support/persist.js'
import { cleanupTether, sleep, startTether, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

interface Msg {
  n: number
}

const carries = (frames: string[], n: number) => frames.some((f) => f.startsWith('{"t":"msg"') && f.includes(`{"n":${n}}`))
const acks = (frames: string[]) => frames.filter((f) => f.startsWith('{"t":"ack"')).map((f) => (JSON.parse(f) as { s: number }).s)

/** A page in a new tab with a gated store, connected and with every commit done. */
async function connectedPage(url: string) {
  const origin = new Origin()
  const tab = origin.tab()
  const page = origin.page(tab)
  const store = gated(page)
  const wire = recordingWebSocket(page)
  const client = persistClient<Msg, Msg>(page, url, { store: store.store, WebSocket: wire.WebSocket })
  await waitFor(() => client.sock.state === 'open', 5000, 'open')
  await waitFor(() => store.completed() === store.commits.length, 5000, 'every commit done')
  return { origin, tab, page, store, wire, client }
}

describe('write-ahead of client messages', () => {
  it('writes no frame carrying a message until the commit holding it completes; then it goes', async () => {
    const server = await startTether()
    const got = received<Msg>(server)
    const { store, wire, client } = await connectedPage(urlOf(server))
    store.committing.hold()
    const sent = client.sock.send({ n: 1 })
    await waitFor(() => store.committing.waiting === 1, 5000, 'the commit carrying it')
    // The commit holds the entry with its sequence number, and the session that gave it.
    const held = store.commits.at(-1)!
    expect(held.put).toEqual([expect.objectContaining({ seq: 1, payload: '{"n":1}' })])
    expect(held.session).toEqual(expect.objectContaining({ sent: 1 }))
    // Many ticks and round trips' worth of time: the page writes nothing of it meanwhile.
    await sleep(150)
    expect(carries(wire.frames, 1)).toBe(false)
    expect(got).toEqual([])
    expect(client.sock.pending).toBe(1)

    store.committing.release()
    await sent
    expect(got).toEqual([{ n: 1 }])
    expect(carries(wire.frames, 1)).toBe(true)
    // One transaction carried the entry and its number (not the entry, then its number).
    expect(store.commits.filter((c) => c.put?.some((e) => e.payload === '{"n":1}'))).toHaveLength(1)
  })

  it('holds messages sent while a commit is held behind it, and sends them in order once it completes', async () => {
    const server = await startTether()
    const got = received<Msg>(server)
    const { store, wire, client } = await connectedPage(urlOf(server))
    store.committing.hold()
    void client.sock.send({ n: 1 })
    await waitFor(() => store.committing.waiting === 1, 5000, 'the first commit')
    for (let n = 2; n <= 20; n++) void client.sock.send({ n })
    await sleep(100)
    expect(wire.frames.filter((f) => f.startsWith('{"t":"msg"'))).toEqual([])
    store.committing.release()
    await waitFor(() => got.length === 20 && client.sock.pending === 0, 5000, '20 at the server')
    expect(got.map((m) => m.n)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
  })
})

describe('acknowledgement of server messages after delivery is durable', () => {
  it('sends no ack until the commit recording the delivery completes; the server keeps them meanwhile', async () => {
    const server = await startTether()
    const { store, wire, client } = await connectedPage(urlOf(server))
    const [session] = [...server.sessions.values()]
    store.committing.hold()
    const sends = [1, 2, 3, 4, 5].map((n) => session!.send({ n }))
    await waitFor(() => client.messages.length === 5, 5000, '5 delivered')
    await waitFor(() => store.committing.waiting === 1, 5000, 'the commit recording the delivery')
    expect(store.commits.at(-1)!.session).toEqual(expect.objectContaining({ delivered: 5 }))
    await sleep(150)
    expect(acks(wire.frames)).toEqual([])
    expect(session!.pending).toBe(5)

    store.committing.release()
    await Promise.all(sends)
    expect(acks(wire.frames)).toEqual([5])
    expect(session!.pending).toBe(0)
  })

  it('a page that goes away before the delivery is durable gets them again on the next page, marked redelivered', async () => {
    const server = await startTether()
    const { origin, tab, page, store, client } = await connectedPage(urlOf(server))
    const [session] = [...server.sessions.values()]
    store.committing.hold()
    for (let n = 1; n <= 5; n++) void session!.send({ n })
    await waitFor(() => client.messages.length === 5, 5000, '5 delivered')
    await waitFor(() => store.committing.waiting === 1, 5000, 'the commit recording the delivery')
    page.crash()
    store.committing.release()

    const next = persistClient<Msg, Msg>(origin.page(tab), urlOf(server))
    await waitFor(() => next.messages.length === 5, 5000, 'the 5 again')
    expect(next.sock.sessionId).toBe(session!.id)
    expect(next.messages).toEqual(client.messages)
    expect(next.infos.map((i) => [i.id, i.redelivered])).toEqual(client.infos.map((i) => [i.id, true]))
    await waitFor(() => session!.pending === 0, 5000, 'acknowledged by the next page')
  })
})

describe('the session itself', () => {
  it('is durable once welcomed: a page reloaded before anything else happened resumes it and gets what the server sent meanwhile', async () => {
    const server = await startTether()
    const origin = new Origin()
    const tab = origin.tab()
    const first = origin.page(tab)
    const store = gated(first)
    const a = persistClient<Msg, Msg>(first, urlOf(server), { store: store.store })
    await waitFor(() => a.sock.state === 'open', 5000, 'open')
    const [session] = [...server.sessions.values()]
    await waitFor(() => store.completed() > 0 && store.completed() === store.commits.length, 5000, 'the commit recording the new session')
    first.crash()
    const sent = session!.send({ n: 1 })

    const b = persistClient<Msg, Msg>(origin.page(tab), urlOf(server))
    await waitFor(() => b.messages.length === 1, 5000, 'the message sent while the page reloaded')
    await sent
    expect(b.sock.sessionId).toBe(session!.id)
    expect(b.sessions).toEqual([])
  })
})
