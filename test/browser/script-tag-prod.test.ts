/**
 * The production script tag (dist/tethersocket.global.prod.js) in a real browser: the same API
 * as the development one, connecting, sending with acknowledgements and receiving; its errors
 * keep their class, `code` and fields, and their message is the code and its docs/ERRORS.md
 * anchor, in place of the development explanation.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'
import { browserSuite, openHarness, range, waitFor, waitInPage, withTimeout } from '../support/browser.js'
import { startRecordingPageServer } from '../support/browser-server.js'

const suite = browserSuite()
const anchors = readFileSync(fileURLToPath(new URL('../../docs/ERRORS.md', import.meta.url)), 'utf8')

it('connects, sends with acknowledgements, receives and requests; errors are the code and its docs/ERRORS.md anchor', async () => {
  const { server, atServer, sessions } = await startRecordingPageServer()
  suite.defer(() => server.close())
  const { page, errors } = await suite.open()
  await openHarness(page, `${server.origin}/script-tag-prod.html`)
  expect(await page.evaluate(() => window.harness.build)).toBe('iife-prod')

  await page.evaluate(() => window.harness.start())
  await waitInPage(page, () => window.harness.sock?.state === 'open', 'the socket to open')
  await waitFor(() => sessions.length === 1, 3000, 'the session')
  await page.evaluate(() => window.harness.sendRange(0, 20))
  await waitInPage(page, () => window.harness.acked.length + window.harness.failed.length === 20, 'all 20 send() promises to settle')
  expect(await page.evaluate(() => window.harness.failed)).toEqual([])
  expect(atServer).toEqual(range(20))
  await withTimeout(Promise.all(['one', 'two'].map((text) => sessions[0].send({ text }))), 5000, 'acknowledgements of two server messages')
  await waitInPage(page, () => window.harness.received.length >= 2, 'two server messages')
  expect(await page.evaluate(() => window.harness.received)).toEqual([{ text: 'one' }, { text: 'two' }])
  expect(await page.evaluate(() => window.harness.request('ping'))).toEqual({ got: 'ping' })

  // Errors: an option error thrown at once, a full queue's rejection with the message it is about.
  const seen = await page.evaluate(async () => {
    type Built = Error & { code: string; data?: unknown }
    const T = (window as unknown as { TetherSocket: Record<string, new (...args: never[]) => Built> & (new (...args: unknown[]) => any) })
      .TetherSocket
    const describe = (error: Built) => ({
      name: error.name,
      code: error.code,
      message: error.message,
      data: error.data ?? null,
      tether: error instanceof T.TetherError,
    })
    let option: Built | undefined
    try {
      new T(new URL('/ws', location.href).href, { autoConnect: false, reconnect: { jitter: 2 } })
    } catch (error) {
      option = error as Built
    }
    const sock = new T(new URL('/ws', location.href).href, { autoConnect: false, queue: { maxMessages: 1 } })
    void sock.send('first')
    const full = (await sock.send('second').catch((error: unknown) => error)) as Built
    await sock.close()
    return {
      option: option && { ...describe(option), isClass: option instanceof T.OptionError },
      full: { ...describe(full), isClass: full instanceof T.QueueFullError },
    }
  })
  expect(seen.option).toEqual({
    name: 'OptionError',
    code: 'ERR_INVALID_OPTION',
    message: 'ERR_INVALID_OPTION: see docs/ERRORS.md#err_invalid_option',
    data: null,
    tether: true,
    isClass: true,
  })
  expect(seen.full).toEqual({
    name: 'QueueFullError',
    code: 'ERR_QUEUE_FULL',
    message: 'ERR_QUEUE_FULL: see docs/ERRORS.md#err_queue_full',
    data: 'second',
    tether: true,
    isClass: true,
  })
  // The anchors the messages name are sections of the page.
  expect(anchors).toMatch(/^### ERR_INVALID_OPTION$/m)
  expect(anchors).toMatch(/^### ERR_QUEUE_FULL$/m)
  expect(errors).toEqual([])
  expect(await page.evaluate(() => window.harness.errors)).toEqual([])
})
