/**
 * The durable outbox (`persist: indexedDBStore('chat')`) across reloads in real Chromium, with
 * the browser's own IndexedDB, Web Locks and sessionStorage, against the reference server:
 * messages typed while the server is away survive a reload in the middle of sending, and
 * streams both ways survive repeated reloads, each message delivered exactly once.
 */
import { expect, it } from 'vitest'
import { browserSuite, waitFor } from '../support/browser.js'
import { startPageServer, startTcpGate } from '../support/browser-server.js'
import { loadPage, Reports, span, start, waitForLib } from './persist-page.js'

const suite = browserSuite()

/**
 * At most how many of the sends handed to the socket just before a reload may be lost: those
 * whose write had not completed (a send is durable only once its transaction has; the page
 * going away aborts what was still being written).
 */
const UNWRITTEN = 60

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

  const { page, errors } = await suite.open()
  const reports = new Reports()
  reports.watch(page)
  await loadPage(page, server.origin)
  await start(page, { load: 1, url })
  void page.evaluate(() => window.t!.stream(0, 500, 5, 10)).catch(() => undefined)
  // Reloaded while the sends are still being handed to the socket and written.
  await waitFor(() => reports.of('sent', 1).length >= 200, 5000, '200 sends in the first page')
  await page.reload()
  await waitForLib(page)
  const handed = reports.of('sent', 1) as number[]
  expect(handed).toEqual(span(0, handed.length))
  expect(handed.length).toBeLessThan(500)

  await start(page, { load: 2, url })
  await page.evaluate((from) => window.t!.stream(from, 500, 10, 4), handed.length)
  gate.up()

  await waitFor(() => reports.of('acked', 2).length === 500 - handed.length, 10000, "the second page's sends to be acknowledged")
  await waitFor(() => reports.of('restored', 2).length === 1, 5000, 'the restored report')
  // What the first page had written before it went away (all but an unwritten tail), then the second page's.
  // What the first page had written before it went away (all but an unwritten tail), then the second page's.
  const [restored] = reports.of('restored', 2)
  const fromFirst = restored!.delivered.length
  expect(handed.length - fromFirst).toBeLessThanOrEqual(UNWRITTEN)
  expect(restored).toEqual({ from: 'reload', delivered: span(0, fromFirst), failed: [] })
  expect(atServer).toEqual([...span(0, fromFirst), ...span(handed.length, 500)])
  expect(reports.of('acked', 2)).toEqual(span(handed.length, 500))
  expect(reports.of('failed')).toEqual([])
  // Failed attempts while the server was away are reported as ConnectionErrors; nothing else went wrong.
  expect(reports.of('error').filter((e) => e.name !== 'ConnectionError')).toEqual([])
  expect(sessions).toBe(1)
  expect(errors).toEqual([])
})
