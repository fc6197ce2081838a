/**
 * The script tag with the durable outbox (dist/tethersocket.persist.global.js) in a real browser:
 * `window.TetherSocket` carries `indexedDBStore` and `requestPersistentStorage` as statics, so a
 * page without modules can use `persist`, and `shared`: two tabs of one context share one
 * connection and one session, each tab's messages reaching the server once and in order.
 */
import { expect, it } from 'vitest'
import { browserSuite, waitFor } from '../support/browser.js'
import { startRecordingPageServer } from '../support/browser-server.js'
import { loadPage, span, start, startReports } from './persist-page.js'

const suite = browserSuite()

it('defines TetherSocket.indexedDBStore, and two tabs with `shared` and `persist` from it share one connection', async () => {
  const { server, atServer, sessions } = await startRecordingPageServer()
  suite.defer(() => server.close())
  const got = atServer as number[]
  const reports = await startReports(suite)
  const url = `ws://127.0.0.1:${server.port}/ws`
  const { page: first, context, errors } = await suite.open()
  const second = await context.newPage()
  second.on('pageerror', (error) => errors.push(`${error.name}: ${error.message}`))

  await loadPage(first, server.origin, '/persist-script-tag.html')
  const statics = await first.evaluate(() => {
    const T = (window as unknown as { TetherSocket: Record<string, unknown> }).TetherSocket
    return {
      indexedDBStore: typeof T.indexedDBStore,
      requestPersistentStorage: typeof T.requestPersistentStorage,
      // The errors are the client bundle's classes: PersistError is a TetherError.
      persistError:
        typeof T.PersistError === 'function' &&
        new (T.PersistError as new (m: string) => Error)('x') instanceof (T.TetherError as new () => Error),
    }
  })
  expect(statics).toEqual({ indexedDBStore: 'function', requestPersistentStorage: 'function', persistError: true })

  const role = (load: number) => reports.of('shared', load).at(-1)?.role
  await start(first, { load: 1, url, reports: reports.url, shared: true })
  await waitFor(() => role(1) === 'holder', 5000, 'the first tab to hold the connection')
  await loadPage(second, server.origin, '/persist-script-tag.html')
  await start(second, { load: 2, url, reports: reports.url, shared: true })
  await waitFor(() => role(2) === 'follower' && reports.of('state', 2).includes('open'), 5000, 'the second tab to follow, open')

  await Promise.all([first, second].map((page, i) => page.evaluate((from) => window.t!.stream(from, from + 50, 10, 5), (i + 1) * 1000)))
  await waitFor(() => [1, 2].every((load) => reports.of('acked', load).length === 50), 10000, 'both tabs’ 50 acknowledgements')
  for (const load of [1, 2]) {
    expect(got.filter((value) => Math.floor(value / 1000) === load)).toEqual(span(load * 1000, load * 1000 + 50))
    expect(reports.of('acked', load)).toEqual(span(load * 1000, load * 1000 + 50))
  }
  expect(sessions).toHaveLength(1)
  expect(server.upgrades).toHaveLength(1)
  expect(reports.of('failed')).toEqual([])
  expect(reports.of('error')).toEqual([])
  expect(errors).toEqual([])
})
