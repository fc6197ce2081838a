/**
 * The durable outbox (`persist: indexedDBStore('chat')`) across reloads in real Chromium, with
 * the browser's own IndexedDB, Web Locks and sessionStorage, against the reference server:
 * messages typed while the server is away survive a reload in the middle of sending, and
 * streams both ways survive repeated reloads, each message delivered exactly once.
 */
import { expect, it } from 'vitest'
import type { Session } from '../../src/server/index.js'
import { browserSuite, sleep, waitFor, withTimeout } from '../support/browser.js'
import { startPageServer, startTcpGate } from '../support/browser-server.js'
import { loadPage, type Reports, span, start, startReports, waitForLib } from './persist-page.js'

const suite = browserSuite()

/**
 * A send is durable once its transaction has completed; the page going away aborts what was
 * still being written. So what a page handed to send() just before it was reloaded may be lost,
 * but never what it handed this long (ms) before.
 */
const UNWRITTEN_MS = 500

/** What page load `load` handed to send() and was not delivered, though it had been handed UNWRITTEN_MS before `reloadAt`. */
function lostEarly(reports: Reports, load: number, delivered: ReadonlySet<unknown>, reloadAt: number): unknown[] {
  return reports.all.filter((r) => r.load === load && r.kind === 'sent' && !delivered.has(r.data) && r.at < reloadAt - UNWRITTEN_MS)
}

it('delivers 500 messages sent while the server was down exactly once and in order, across a reload in the middle of sending', async () => {
  const atServer: number[] = []
  let sessions = 0
  const server = await startPageServer({
    setup: (tether) => {
      tether.on('message', (data) => atServer.push(data as number))
      tether.on('session', () => sessions++)
    },
  })
  suite.defer(() => server.close())
  const gate = await startTcpGate(server.port)
  suite.defer(() => gate.close())
  gate.down()
  const url = `ws://127.0.0.1:${gate.port}/ws`
  const reports = await startReports(suite)

  const { page, errors } = await suite.open()
  await loadPage(page, server.origin)
  await start(page, { load: 1, url, reports: reports.url })
  void page.evaluate(() => window.t!.stream(0, 500, 4, 10)).catch(() => undefined)
  // Reloaded while the sends are still being handed to the socket and written.
  await waitFor(() => reports.of('sent', 1).length >= 240, 5000, '240 sends in the first page')
  const reloadAt = Date.now()
  await page.reload()
  await waitForLib(page)
  const handed = reports.of('sent', 1) as number[]
  expect(handed).toEqual(span(0, handed.length))
  expect(handed.length).toBeLessThan(500)

  // The second page sends the rest; the server comes back.
  await start(page, { load: 2, url, reports: reports.url })
  await page.evaluate((from) => window.t!.stream(from, 500, 4, 10), handed.length)
  gate.up()

  await waitFor(() => reports.of('acked', 2).length === 500 - handed.length, 10000, "the second page's sends to be acknowledged")
  await waitFor(() => reports.of('restored', 2).length === 1, 5000, 'the restored report')
  // What the first page had written before it went away (all but an unwritten tail), then the second page's.
  const [restored] = reports.of('restored', 2)
  const fromFirst = restored!.delivered.length
  expect(restored).toEqual({ from: 'reload', delivered: span(0, fromFirst), failed: [] })
  expect(lostEarly(reports, 1, new Set(restored!.delivered), reloadAt)).toEqual([])
  expect(atServer).toEqual([...span(0, fromFirst), ...span(handed.length, 500)])
  expect(reports.of('acked', 2)).toEqual(span(handed.length, 500))
  expect(reports.of('failed')).toEqual([])
  // Failed attempts while the server was away are reported as ConnectionErrors; nothing else went wrong.
  expect(reports.of('error').filter((e) => e.name !== 'ConnectionError')).toEqual([])
  expect(sessions).toBe(1)
  expect(errors).toEqual([])
})

it('streams both ways through 5 reloads at varied moments: each client message reaches the handler once and in order, each server message reaches the pages, marked when seen before', async () => {
  const atServer: number[] = []
  const sessions: Session[] = []
  const server = await startPageServer({
    setup: (tether) => {
      tether.on('message', (data) => atServer.push(data as number))
      tether.on('session', (session) => sessions.push(session))
    },
  })
  suite.defer(() => server.close())
  const url = `ws://127.0.0.1:${server.port}/ws`
  const reports = await startReports(suite)
  const { page, errors } = await suite.open()
  const streaming = (from: number) => page.evaluate((from) => window.t!.stream(from, 1e6, 3, 10), from).catch(() => undefined)

  await loadPage(page, server.origin)
  await start(page, { load: 1, url, reports: reports.url })
  void streaming(0)
  // A message of this page at the server: its session is durable (a frame leaves only then), so
  // the next page resumes it rather than starting its own.
  await waitFor(() => sessions.length === 1 && atServer.length > 0, 5000, 'the session and a first message')
  const [session] = sessions

  // The server streams too, from now on, through every reload.
  const PUSHED = 300
  const pushes: Promise<void>[] = []
  const pusher = setInterval(() => {
    if (pushes.length < PUSHED) pushes.push(session!.send({ s: pushes.length }))
    else clearInterval(pusher)
  }, 4)
  suite.defer(() => clearInterval(pusher))

  // Reloads at varied moments of each page's life, one right after its socket was created (the store still opening).
  const delays = [20, 0, 150, 80, 250]
  const reloadAt: number[] = []
  for (const [i, delay] of delays.entries()) {
    await sleep(delay)
    reloadAt[i + 1] = Date.now()
    await page.reload()
    await waitForLib(page)
    const next = Math.max(-1, ...(reports.of('sent') as number[])) + 1
    await start(page, { load: i + 2, url, reports: reports.url })
    if (i < delays.length - 1) void streaming(next)
    else await page.evaluate((from) => window.t!.stream(from, from + 60, 3, 10), next)
  }
  const last = delays.length + 1
  const lastSent = reports.of('sent', last)
  await waitFor(() => reports.of('acked', last).length === lastSent.length, 10000, "the last page's sends to be acknowledged")
  await waitFor(() => pushes.length === PUSHED, 5000, 'every server message pushed')
  await withTimeout(Promise.all(pushes), 10000, 'the pages to acknowledge every server message')

  // Client to server: exactly once, in order; of each page, what it sent but for an unwritten tail.
  expect(atServer).toEqual([...atServer].sort((a, b) => a - b))
  expect(new Set(atServer).size).toBe(atServer.length)
  const got = new Set<unknown>(atServer)
  for (let load = 1; load <= last; load++) {
    const sent = reports.of('sent', load) as number[]
    const delivered = sent.filter((n) => got.has(n))
    expect(delivered, `page ${load}: a prefix of what it sent`).toEqual(sent.slice(0, delivered.length))
    if (load < last) expect(lostEarly(reports, load, got, reloadAt[load]!), `page ${load}: lost though written`).toEqual([])
    else expect(delivered).toEqual(sent)
  }
  // Every delivered message's fate was reported: by its page's send(), or by a later page's restored event.
  const restored = reports.of('restored')
  for (const r of restored) expect(r).toMatchObject({ from: 'reload', failed: [] })
  const reported = new Set([...reports.of('acked'), ...restored.flatMap((r) => r.delivered)])
  expect([...reported].sort((a, b) => (a as number) - (b as number))).toEqual(atServer)

  // Server to client: every message reached the pages, each page got a run in order, and a later
  // page got again only what it is told it may have seen, under the same id.
  const seen = new Map<number, string>()
  for (let load = 1; load <= last; load++) {
    const received = reports.of('received', load).map((r) => ({ ...r, s: (r.msg as { s: number }).s }))
    if (received.length)
      expect(
        received.map((r) => r.s),
        `page ${load}`,
      ).toEqual(span(received[0]!.s, received.at(-1)!.s + 1))
    for (const r of received) {
      expect(r.id).toMatch(new RegExp(`^${session!.id}:\\d+$`))
      if (seen.has(r.s)) expect({ s: r.s, id: r.id, redelivered: r.redelivered }).toEqual({ s: r.s, id: seen.get(r.s), redelivered: true })
      else seen.set(r.s, r.id!)
    }
  }
  expect([...seen.keys()].sort((a, b) => a - b)).toEqual(span(0, PUSHED))
  expect(new Set(seen.values()).size).toBe(PUSHED)

  expect(reports.of('failed')).toEqual([])
  expect(reports.of('error')).toEqual([])
  expect(sessions).toHaveLength(1)
  expect(errors).toEqual([])
})
