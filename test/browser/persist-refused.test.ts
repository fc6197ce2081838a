/**
 * IndexedDB refused (private modes, storage disabled), in real Chromium against the reference
 * server: a page whose `indexedDB.open` throws, or fails with an error event, gets one `error`
 * event (a PersistError, reason 'unavailable') and a socket that works in memory only.
 */
import { expect, it } from 'vitest'
import { browserSuite, waitFor } from '../support/browser.js'
import { startPageServer } from '../support/browser-server.js'
import { loadPage, span, start, startReports } from './persist-page.js'

const suite = browserSuite()

/** Replaces `indexedDB.open` before any script of the page runs. */
const refusals = {
  'throws at once': () => {
    IDBFactory.prototype.open = () => {
      throw new DOMException('The user denied permission to access the database.', 'SecurityError')
    }
  },
  'fails with an error event': () => {
    IDBFactory.prototype.open = () => {
      const request = new EventTarget() as IDBOpenDBRequest
      Object.defineProperty(request, 'error', { value: new DOMException('Storage is disabled.', 'UnknownError') })
      setTimeout(() => {
        const event = new Event('error')
        request.dispatchEvent(event)
        request.onerror?.call(request, event)
      })
      return request
    }
  },
}

for (const [how, refuse] of Object.entries(refusals)) {
  it(`says once that the outbox is kept in memory only when IndexedDB.open ${how}, and works without it`, async () => {
    const atServer: unknown[] = []
    const server = await startPageServer({ setup: (tether) => tether.on('message', (data) => atServer.push(data)) })
    suite.defer(() => server.close())
    const reports = await startReports(suite)
    const { page, errors } = await suite.open()
    await page.addInitScript(refuse)
    await loadPage(page, server.origin)
    await start(page, { load: 1, url: `ws://127.0.0.1:${server.port}/ws`, reports: reports.url })
    await page.evaluate(() => window.t!.stream(0, 10, 10, 0))
    await waitFor(() => reports.of('acked').length === 10, 5000, '10 acknowledgements')

    // A reconnect does not try the store again.
    expect(server.dropConnections()).toBe(1)
    await waitFor(() => reports.of('state').filter((s) => s === 'open').length === 2, 5000, 'the socket to reconnect')
    await page.evaluate(() => window.t!.stream(10, 20, 10, 0))
    await waitFor(() => reports.of('acked').length === 20, 5000, '20 acknowledgements')

    expect(reports.of('error')).toEqual([
      {
        name: 'PersistError',
        code: 'ERR_PERSIST',
        reason: 'unavailable',
        message: expect.stringMatching(/memory only/),
      },
    ])
    expect(reports.of('acked')).toEqual(span(0, 20))
    expect(atServer).toEqual(span(0, 20))
    expect(reports.of('restored')).toEqual([])
    expect(reports.of('failed')).toEqual([])
    expect(errors).toEqual([])
  })
}
