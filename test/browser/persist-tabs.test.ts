/**
 * Which page owns which outbox (`persist`), in real Chromium with its own IndexedDB, Web Locks
 * and sessionStorage, against the reference server: a tab closed with messages pending leaves
 * them to the next page that opens with the same store name, and a duplicated tab (which copies
 * sessionStorage) gets a session of its own while its origin tab lives.
 */
import type { Page } from 'playwright-core'
import { expect, it } from 'vitest'
import { tabKey } from '../../src/persist/schema.js'
import type { Session } from '../../src/server/index.js'
import { browserSuite, waitFor } from '../support/browser.js'
import { startPageServer, startTcpGate, type TcpGate } from '../support/browser-server.js'
import { loadPage, span, start, startReports, waitForStored } from './persist-page.js'

const suite = browserSuite()

/** A page server behind a TCP gate (up), recording what its handler got, per session; `onMessage` runs after each. */
async function serverBehindGate(onMessage?: (data: unknown, gate: TcpGate) => void) {
  const bySession = new Map<string, unknown[]>()
  const sessions: Session[] = []
  let gate: TcpGate | undefined
  const server = await startPageServer({
    setup: (tether) => {
      tether.on('message', (data, session) => {
        if (!bySession.has(session.id)) bySession.set(session.id, [])
        bySession.get(session.id)!.push(data)
        onMessage?.(data, gate!)
      })
      tether.on('session', (session) => sessions.push(session))
    },
  })
  suite.defer(() => server.close())
  gate = await startTcpGate(server.port)
  suite.defer(() => gate!.close())
  return { server, gate, bySession, sessions, url: `ws://127.0.0.1:${gate.port}/ws` }
}

/** Sends `values` from the page in one tick and waits until its stored outbox holds `stored` entries. */
async function sendStored(page: Page, values: number[], stored: number): Promise<void> {
  await page.evaluate((values) => {
    for (const value of values) window.t!.send(value)
  }, values)
  await waitForStored(page, stored)
}

/**
 * How the first page stood when it was closed: never connected (no session), connected and then
 * cut off before sending, or cut off while its messages were in flight (the server got them, the
 * page got no acknowledgement).
 */
const closedWhen = ['never connected', 'connected, then cut off', 'cut off in flight'] as const

for (const when of closedWhen) {
  it(`delivers once what a tab closed with messages pending left, from the next page with the same store name (${when})`, async () => {
    const { server, gate, bySession, sessions, url } = await serverBehindGate((data, gate) => {
      if (when === 'cut off in flight' && data === 9) gate.down()
    })
    const reports = await startReports(suite)
    const { page: first, context, errors } = await suite.open()
    if (when === 'never connected') gate.down()
    await loadPage(first, server.origin)
    await start(first, { load: 1, url, reports: reports.url })
    if (when !== 'never connected') await waitFor(() => reports.of('state', 1).includes('open'), 5000, 'the first page to connect')
    if (when === 'connected, then cut off') gate.down()
    await first.evaluate(() => window.t!.stream(0, 20, 20, 0))
    if (when === 'cut off in flight') await waitFor(() => bySession.size === 1, 5000, 'the messages at the server')
    await waitFor(() => reports.of('state', 1).at(-1) === 'reconnecting', 5000, 'the first page to notice the outage')
    // Pending and durable, the page goes away for good: its tab is closed.
    const acked = reports.of('acked', 1)
    await waitForStored(first, 20 - acked.length)
    await first.close({ runBeforeUnload: false })

    // A new tab of the same browser (no sessionStorage of the closed one), same store name.
    const second = await context.newPage()
    second.on('pageerror', (error) => errors.push(`${error.name}: ${error.message}`))
    await loadPage(second, server.origin)
    await start(second, { load: 2, url, reports: reports.url })
    await second.evaluate(() => window.t!.stream(100, 105, 5, 0))
    gate.up()

    await waitFor(() => reports.of('acked', 2).length === 5, 10000, "the second page's sends to be acknowledged")
    await waitFor(() => reports.of('restored', 2).length === 1, 5000, 'the restored report')
    expect(reports.of('restored', 2)).toEqual([{ from: 'adopted', delivered: span(acked.length, 20), failed: [] }])
    // One session: the closed page's, continued, when it had one; the adopted messages go first.
    expect(sessions).toHaveLength(1)
    expect([...bySession.entries()]).toEqual([[sessions[0]!.id, [...span(0, 20), ...span(100, 105)]]])
    expect(acked).toEqual(span(0, acked.length))
    expect(reports.of('failed')).toEqual([])
    expect(reports.of('error').filter((e) => e.name !== 'ConnectionError')).toEqual([])
    // Nothing is left for a later page.
    await waitForStored(second, 0)
    expect(errors).toEqual([])
  })
}

it("gives a duplicated tab its own session while the original lives: each delivers its own messages once, the copy none of the original's", async () => {
  const { server, gate, bySession, sessions, url } = await serverBehindGate()
  const reports = await startReports(suite)
  const { page: original, context, errors } = await suite.open()
  await loadPage(original, server.origin)
  await start(original, { load: 1, url, reports: reports.url })
  await original.evaluate(() => window.t!.stream(0, 5, 5, 0))
  await waitFor(() => reports.of('acked', 1).length === 5, 5000, 'the first 5 acknowledgements')
  // The server goes away; the original has messages pending, durable.
  gate.down()
  await waitFor(() => reports.of('state', 1).at(-1) !== 'open', 5000, 'the original to notice the outage')
  await sendStored(original, span(5, 10), 5)

  // The duplicate: a new tab with a copy of the original's sessionStorage before any script runs.
  const copied = await original.evaluate(() => Object.entries(sessionStorage))
  expect(Object.fromEntries(copied)).toHaveProperty([tabKey('chat')])
  const duplicate = await context.newPage()
  duplicate.on('pageerror', (error) => errors.push(`${error.name}: ${error.message}`))
  await duplicate.addInitScript((items) => {
    for (const [key, value] of items) sessionStorage.setItem(key, value)
  }, copied)
  await loadPage(duplicate, server.origin)
  const before = await duplicate.evaluate(() => Object.entries(sessionStorage))
  expect(before).toEqual(copied)
  await start(duplicate, { load: 2, url, reports: reports.url })
  await duplicate.evaluate(() => window.t!.stream(100, 105, 5, 0))
  gate.up()

  await waitFor(() => reports.of('acked', 1).length === 10, 10000, "the original's 10 acknowledgements")
  await waitFor(() => reports.of('acked', 2).length === 5, 10000, "the duplicate's 5 acknowledgements")
  const [originalSession, duplicateSession] = await Promise.all(
    [original, duplicate].map((page) => page.evaluate(() => window.t!.sock.sessionId)),
  )
  expect(originalSession).toBe(sessions[0]!.id)
  expect(duplicateSession).toBe(sessions[1]?.id)
  expect(duplicateSession).not.toBe(originalSession)
  expect(sessions).toHaveLength(2)
  expect(Object.fromEntries(bySession)).toEqual({ [originalSession!]: span(0, 10), [duplicateSession!]: span(100, 105) })
  expect(reports.of('acked', 1)).toEqual(span(0, 10))
  expect(reports.of('acked', 2)).toEqual(span(100, 105))
  // The duplicate took over nothing of the original's, and keeps its own outbox from now on.
  expect(reports.of('restored')).toEqual([])
  const [originalKept, duplicateKept] = await Promise.all(
    [original, duplicate].map((page) => page.evaluate(() => Object.entries(sessionStorage))),
  )
  expect(originalKept).toEqual(copied)
  expect(Object.fromEntries(duplicateKept)[tabKey('chat')]).not.toBe(Object.fromEntries(copied)[tabKey('chat')])
  expect(reports.of('failed')).toEqual([])
  expect(reports.of('error').filter((e) => e.name !== 'ConnectionError')).toEqual([])
  expect(errors).toEqual([])
})
