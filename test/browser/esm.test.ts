/**
 * The ESM build for browsers (dist/browser/index.mjs and its chunks) imported natively by a `<script type="module">`
 * page, with an import map resolving the bare `eventemitter3` import.
 */
import { expect, it } from 'vitest'
import { browserSuite, openHarness, range, waitFor, waitInPage, withTimeout } from '../support/browser.js'
import { startRecordingPageServer } from '../support/browser-server.js'

const suite = browserSuite()

it('works when imported as a native ES module: connects, sends with acknowledgements, receives, requests', async () => {
  const { server, atServer, sessions } = await startRecordingPageServer()
  suite.defer(() => server.close())
  const { page, errors } = await suite.open()
  const failedRequests: string[] = []
  page.on('requestfailed', (request) => failedRequests.push(request.url()))
  page.on('response', (response) => {
    if (response.status() >= 400) failedRequests.push(`${response.status()} ${response.url()}`)
  })

  await openHarness(page, `${server.origin}/esm.html`)
  const loaded = await page.evaluate(() => ({
    build: window.harness.build,
    exports: window.esmExports,
    globalDefined: 'TetherSocket' in window,
  }))
  expect(loaded.build).toBe('esm')
  expect(loaded.exports).toEqual(expect.arrayContaining(['TetherSocket', 'TetherError', 'DeliveryError', 'QueueFullError', 'ClosedError']))
  // The ESM build defines no global: this page never loaded the IIFE.
  expect(loaded.globalDefined).toBe(false)

  await page.evaluate(() => window.harness.start())
  await waitInPage(page, () => window.harness.sock?.state === 'open', 'the socket to open')
  await waitFor(() => sessions.length === 1, 3000, 'the session')
  await page.evaluate(() => window.harness.sendRange(0, 20))
  await waitInPage(page, () => window.harness.acked.length + window.harness.failed.length === 20, 'all 20 send() promises to settle')
  expect(await page.evaluate(() => window.harness.failed)).toEqual([])
  expect(atServer).toEqual(range(20))

  await withTimeout(
    Promise.all(['one', 'two', 'three'].map((text) => sessions[0].send({ text }))),
    5000,
    'acknowledgements of three server messages',
  )
  await waitInPage(page, () => window.harness.received.length >= 3, 'three server messages')
  expect(await page.evaluate(() => window.harness.received)).toEqual([{ text: 'one' }, { text: 'two' }, { text: 'three' }])
  expect(await page.evaluate(() => window.harness.request('ping'))).toEqual({ got: 'ping' })

  expect(failedRequests.filter((url) => !url.endsWith('/favicon.ico'))).toEqual([])
  expect(errors).toEqual([])
})
