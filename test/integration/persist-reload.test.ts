/**
 * The durable outbox (`persist`) across a reload, in Node: pages of support/pages.ts (an
 * in-memory IndexedDB and Web Locks) against a real reference server on 127.0.0.1. A reload is
 * the page crashing (connections dropped, locks released, nothing more written) and a new page
 * opening in the same tab.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { RestoredInfo } from '../../src/client/persist.js'
import type { MessageInfo } from '../../src/client/wire/types.js'
import type { TetherServer } from '../../src/server/index.js'
import { Origin, type Page } from '../support/pages.js'
import { cleanupTether, freePort, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

interface Msg {
  n: number
}

/** A tether client on `page` with `persist`, recording restored reports and message infos. */
function client(page: Page, url: string) {
  const c = tetherClient<Msg, Msg>(url, { WebSocket: page.WebSocket, persist: page.store })
  const restored: RestoredInfo<Msg>[] = []
  const infos: MessageInfo[] = []
  c.sock.on('restored', (info) => restored.push(info))
  c.sock.on('message', (_m, info) => infos.push(info))
  return { ...c, restored, infos }
}

/** Every message the server's handler got, in order. */
function received(server: TetherServer): Msg[] {
  const got: Msg[] = []
  server.on('message', (data) => got.push(data as Msg))
  return got
}

describe('a reload with messages pending', () => {
  it('delivers what was sent while the server was down exactly once, in order, after the reload', async () => {
    const port = await freePort()
    const origin = new Origin()
    const tab = origin.tab()
    const first = origin.page(tab)
    const a = client(first, `ws://127.0.0.1:${port}`)
    for (let n = 0; n < 50; n++) void a.sock.send({ n })
    await waitFor(() => a.sock.stats.attempts >= 1, 5000, 'an attempt')
    // The writes of those sends are durable once the store has committed them.
    await new Promise((resolve) => setTimeout(resolve, 50))
    first.crash()

    const server = await startTether({ port })
    const got = received(server)
    const b = client(origin.page(tab), urlOf(server))
    await waitFor(() => got.length >= 50, 10000, '50 messages at the server')
    await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
    expect(got.map((m) => m.n)).toEqual(Array.from({ length: 50 }, (_, n) => n))
    expect(b.restored[0]!.from).toBe('reload')
    expect(b.restored[0]!.delivered.map((m) => m.data.n)).toEqual(Array.from({ length: 50 }, (_, n) => n))
    expect(b.restored[0]!.failed).toEqual([])
    expect(b.sock.pending).toBe(0)
  })

  it('resumes the same session and resends only what the server has not acknowledged', async () => {
    const server = await startTether()
    const got = received(server)
    const origin = new Origin()
    const tab = origin.tab()
    const first = origin.page(tab)
    const a = client(first, urlOf(server))
    for (let n = 0; n < 20; n++) await a.sock.send({ n })
    const session = a.sock.sessionId
    // The page goes away while those are in flight: the server has some, none acknowledged to the page.
    server.on('message', (data) => {
      if ((data as Msg).n === 25) first.crash()
    })
    for (let n = 20; n < 40; n++) void a.sock.send({ n })
    await waitFor(() => got.length > 25, 5000, 'the crash')
    expect(a.sock.pending).toBeGreaterThan(0)
    const b = client(origin.page(tab), urlOf(server))
    await waitFor(() => b.sock.state === 'open' && got.length >= 40 && b.sock.pending === 0, 10000, 'all 40')
    await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
    expect(b.sock.sessionId).toBe(session)
    expect(b.sessions).toEqual([])
    expect(got.map((m) => m.n)).toEqual(Array.from({ length: 40 }, (_, n) => n))
  })

  it('resends to the page only what it never delivered, marking what it may have seen as redelivered', async () => {
    const server = await startTether()
    const origin = new Origin()
    const tab = origin.tab()
    const first = origin.page(tab)
    const a = client(first, urlOf(server))
    await waitFor(() => a.sock.state === 'open', 5000, 'open')
    const [session] = [...server.sessions.values()]
    for (let n = 0; n < 30; n++) void session!.send({ n })
    await waitFor(() => a.messages.length === 30, 5000, '30 delivered')
    // Let that delivery be recorded; then the page goes away while delivering more (in a listener:
    // before the journal can record it, so the page may have seen messages it did not record).
    await new Promise((resolve) => setTimeout(resolve, 50))
    a.sock.on('message', (m) => {
      if (m.n === 35) first.crash()
    })
    for (let n = 30; n < 40; n++) void session!.send({ n })
    await waitFor(() => a.messages.length >= 36, 5000, 'the crash')
    const b = client(origin.page(tab), urlOf(server))
    await waitFor(() => b.sock.state === 'open', 5000, 'open again')
    for (let n = 40; n < 45; n++) void session!.send({ n })
    await waitFor(() => b.messages.at(-1)?.n === 44, 5000, 'the new ones')
    // Nothing before what the first page recorded comes again; what follows is marked until the new ones.
    const seen = new Set(a.messages.map((m) => m.n))
    for (const [i, m] of b.messages.entries()) expect(b.infos[i]!.redelivered).toBe(seen.has(m.n))
    expect(b.messages.filter((m) => m.n >= 40).map((m) => m.n)).toEqual([40, 41, 42, 43, 44])
    expect(b.messages.map((m) => m.n)).toEqual(Array.from({ length: 15 }, (_, i) => 30 + i))
    expect(b.infos.map((info) => info.redelivered)).toEqual([...Array(10).fill(true), ...Array(5).fill(false)])
    expect(b.infos[0]!.id).toBe(`${b.sock.sessionId}:${b.messages[0]!.n + 1}`)
  })
})
