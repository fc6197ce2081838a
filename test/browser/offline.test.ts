/**
 * The browser's offline/online signals (playwright's context.setOffline): no connection
 * attempts while offline, an immediate reconnect on `online`.
 *
 * What Chromium does with setOffline(true): navigator.onLine turns false and `offline` fires,
 * new WebSockets fail at once (they never reach the server), but an open WebSocket is not
 * severed. So the tests cut the connection from the server side while offline, and count
 * attempts both in the page (every WebSocket the client constructs) and on the server.
 */
import { expect, it } from 'vitest'
import type { Session } from '../../src/server/index.js'
import { browserSuite, openHarness, range, sleep, waitFor, waitInPage, withTimeout } from '../support/browser.js'
import { startPageServer } from '../support/browser-server.js'

const suite = browserSuite()

/** A page server recording messages and sessions, and a page whose socket is open on it. */
async function connected(reconnect: Record<string, number>) {
  const atServer: unknown[] = []
  const sessions: Session[] = []
  let resumes = 0
  const server = await startPageServer({
    setup: (tether) => {
      tether.on('message', (data) => atServer.push(data))
      tether.on('session', (session) => sessions.push(session))
      tether.on('resume', () => resumes++)
    },
  })
  suite.defer(() => server.close())
  const { page, context, errors } = await suite.open()
  await openHarness(page, `${server.origin}/script-tag.html`)
  await page.evaluate((options) => window.harness.start(options), { reconnect })
  await waitInPage(page, () => window.harness.sock?.state === 'open', 'the socket to open')
  await waitFor(() => sessions.length === 1, 3000, 'the session')
  return { server, page, context, errors, atServer, sessions, resumes: () => resumes }
}

it('makes no connection attempt while the browser is offline, and delivers the queue once it is back', async () => {
  // Short delays: a client ignoring `offline` would try several times a second.
  const { server, page, context, errors, atServer, sessions, resumes } = await connected({ minDelay: 50, maxDelay: 200 })

  await context.setOffline(true)
  await waitInPage(
    page,
    () => !navigator.onLine && window.harness.network.at(-1)?.type === 'offline',
    'navigator.onLine false and an offline event',
  )
  expect(await page.evaluate(() => window.harness.network)).toEqual([{ type: 'offline', at: expect.any(Number), onLine: false }])

  // The connection dies while offline; the client waits without trying.
  expect(server.dropConnections()).toBe(1)
  await waitInPage(page, () => window.harness.sock?.state === 'reconnecting', 'the socket to notice the drop')
  const attempts = await page.evaluate(() => window.harness.attempts.length)
  const upgrades = server.upgrades.length
  // The UI can tell: the socket waits for the network, not for a backoff delay. (Before, no
  // `reconnecting` event fired while offline; this assertion replaced that silence.)
  await waitInPage(page, () => window.harness.reconnecting.length > 0, 'a reconnecting event')
  expect(
    await page.evaluate(() => window.harness.reconnecting.map(({ attempt, delay, waitingFor }) => ({ attempt, delay, waitingFor }))),
  ).toEqual([{ attempt: 1, delay: Number.POSITIVE_INFINITY, waitingFor: 'network' }])
  await page.evaluate(() => window.harness.sendRange(0, 5))
  const fromServer = sessions[0].send('queued while offline')
  await sleep(1500)
  expect(await page.evaluate(() => window.harness.attempts.length)).toBe(attempts)
  expect(server.upgrades.length).toBe(upgrades)
  expect(await page.evaluate(() => ({ state: window.harness.sock?.state, pending: window.harness.sock?.pending }))).toEqual({
    state: 'reconnecting',
    pending: 5,
  })
  expect(atServer).toEqual([])

  // Back online: the `online` event fires and the client reconnects and resumes.
  await context.setOffline(false)
  await waitInPage(
    page,
    () => navigator.onLine && window.harness.network.at(-1)?.type === 'online',
    'navigator.onLine true and an online event',
  )
  await waitInPage(page, () => window.harness.acked.length === 5, 'the 5 queued messages acknowledged')
  await withTimeout(fromServer, 5000, 'the acknowledgement of the message queued on the server')
  expect(atServer).toEqual(range(5))
  expect(await page.evaluate(() => window.harness.received)).toEqual(['queued while offline'])
  expect(await page.evaluate(() => window.harness.attempts.length)).toBe(attempts + 1)
  expect(server.upgrades.length).toBe(upgrades + 1)
  expect(resumes()).toBe(1)
  expect(sessions).toHaveLength(1)
  expect(errors).toEqual([])
})

it('reconnects as soon as the browser is back online, long before its 30 s backoff delay', async () => {
  // jitter 0: every retry waits exactly minDelay (30 s), so only the online event explains a quick reconnect.
  const { server, page, context, errors, resumes } = await connected({ minDelay: 30000, maxDelay: 60000, jitter: 0 })

  await context.setOffline(true)
  await waitInPage(page, () => !navigator.onLine, 'navigator.onLine false')
  server.dropConnections()
  await waitInPage(page, () => window.harness.sock?.state === 'reconnecting', 'the socket to notice the drop')
  const upgrades = server.upgrades.length
  await sleep(300)

  await context.setOffline(false)
  const reopened = await waitInPage(
    page,
    () => {
      const h = window.harness
      const online = h.network.find((e) => e.type === 'online')
      return h.sock?.state === 'open' && online && { online: online.at, attempt: h.attempts.at(-1) ?? 0, open: h.opens.at(-1) ?? 0 }
    },
    'the socket to reopen after the online event',
  )
  expect(reopened.attempt).toBeGreaterThanOrEqual(reopened.online)
  expect(reopened.attempt - reopened.online).toBeLessThan(1000)
  expect(reopened.open - reopened.online).toBeLessThan(3000)
  expect(server.upgrades.length).toBe(upgrades + 1)
  expect(resumes()).toBe(1)
  // No retry with a short delay was ever scheduled: the only wait was for the network.
  const waits = await page.evaluate(() => window.harness.reconnecting.map(({ delay, waitingFor }) => ({ delay, waitingFor })))
  expect(waits).toEqual([{ delay: Number.POSITIVE_INFINITY, waitingFor: 'network' }])
  expect(errors).toEqual([])
})
