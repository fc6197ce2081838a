/**
 * The IIFE build in a real browser: `<script src>` defines window.TetherSocket with every
 * other export as a static, and a tether-mode socket from it talks to the reference server.
 */
import { expect, it } from 'vitest'
import type { Session } from '../../src/server/index.js'
import { browserSuite, openHarness, range, waitFor, waitInPage, withTimeout } from '../support/browser.js'
import { startPageServer } from '../support/browser-server.js'

const suite = browserSuite()

it('defines window.TetherSocket with statics, delivers 100 acknowledged sends, receives, and gets a reply', async () => {
  const server = await startPageServer()
  suite.defer(() => server.close())
  const atServer: unknown[] = []
  const sessions: Session[] = []
  server.tether.on('message', (data) => atServer.push(data))
  server.tether.on('session', (session) => sessions.push(session))
  server.tether.onRequest((data) => ({ echo: data, answeredBy: 'server' }))

  const { page, errors } = await suite.open()
  await openHarness(page, `${server.origin}/script-tag.html`)

  const shape = await page.evaluate(() => {
    const T = (window as unknown as { TetherSocket: Record<string, unknown> & (new (...args: never[]) => unknown) }).TetherSocket
    const statics = [
      'TetherError',
      'DeliveryError',
      'TimeoutError',
      'QueueFullError',
      'ProtocolError',
      'ClosedError',
      'ConnectionError',
      'EncodeError',
    ]
    const classes = statics.filter((name) => typeof T[name] === 'function')
    const Delivery = T.DeliveryError as new (message: string) => Error
    const error = new Delivery('x')
    return {
      type: typeof T,
      selfStatic: 'TetherSocket' in T, // the class is not a static of itself (issue 11)
      classes,
      subclass: error instanceof (T.TetherError as new () => Error),
      errorName: error.name,
      backoff: typeof T.backoffDelay,
    }
  })
  expect(shape).toEqual({
    type: 'function',
    selfStatic: false,
    classes: [
      'TetherError',
      'DeliveryError',
      'TimeoutError',
      'QueueFullError',
      'ProtocolError',
      'ClosedError',
      'ConnectionError',
      'EncodeError',
    ],
    subclass: true,
    errorName: 'DeliveryError',
    backoff: 'function',
  })

  await page.evaluate(() => window.harness.start())
  await waitInPage(page, () => window.harness.sock?.state === 'open' && window.harness.sock.sessionId, 'the socket to open')
  expect(await page.evaluate(() => window.harness.sock?.sessionId)).toBe(sessions[0]?.id)

  // 100 sends at once: every promise resolves, the server has each once, in order.
  await page.evaluate(() => window.harness.sendRange(0, 100))
  await waitInPage(page, () => window.harness.acked.length + window.harness.failed.length === 100, 'all 100 send() promises to settle')
  const sent = await page.evaluate(() => ({
    acked: window.harness.acked,
    failed: window.harness.failed,
    pending: window.harness.sock?.pending,
  }))
  expect(sent.failed).toEqual([])
  expect([...(sent.acked as number[])].sort((a, b) => a - b)).toEqual(range(100))
  expect(sent.pending).toBe(0)
  expect(atServer).toEqual(range(100))

  // Server to page.
  const session = sessions[0]
  await withTimeout(Promise.all(range(5).map((i) => session.send({ seq: i }))), 5000, 'acknowledgements of five server messages')
  await waitInPage(page, () => window.harness.received.length >= 5, 'five server messages')
  expect(await page.evaluate(() => window.harness.received)).toEqual(range(5).map((i) => ({ seq: i })))

  // Request/reply.
  const reply = await page.evaluate(() => window.harness.request({ ask: 'time?' }))
  expect(reply).toEqual({ echo: { ask: 'time?' }, answeredBy: 'server' })

  // A clean close ends the session's connection.
  await page.evaluate(() => window.harness.sock?.close())
  expect(await page.evaluate(() => window.harness.sock?.state)).toBe('closed')
  await waitFor(() => server.openConnections() === 0, 3000, 'the server to see the close')
  expect(sessions).toHaveLength(1)
  expect(errors).toEqual([])
  expect(await page.evaluate(() => window.harness.errors)).toEqual([])
})
