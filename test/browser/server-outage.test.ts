/**
 * The server away for seconds, in a real browser: behind a TCP gate that refuses every
 * connection for ~2 s the session survives and everything sent meanwhile arrives once, in
 * order; after a restart that lost all server state, the client starts a new session and
 * resends what was not acknowledged.
 */
import { expect, it } from 'vitest'
import type { Session } from '../../src/server/index.js'
import { browserSuite, openHarness, range, sleep, waitFor, waitInPage, withTimeout } from '../support/browser.js'
import { startPageServer, startTcpGate } from '../support/browser-server.js'

const suite = browserSuite()
const reconnect = { minDelay: 100, maxDelay: 400 }

it('delivers what was sent during a ~2 s outage once and in order, both ways, on the same session', async () => {
  const atServer: number[] = []
  const sessions: Session[] = []
  let resumes = 0
  const server = await startPageServer({
    setup: (tether) => {
      tether.on('message', (data) => atServer.push(data as number))
      tether.on('session', (session) => sessions.push(session))
      tether.on('resume', () => resumes++)
    },
  })
  suite.defer(() => server.close())
  const gate = await startTcpGate(server.port)
  suite.defer(() => gate.close())

  const { page, errors } = await suite.open()
  await openHarness(page, `${server.origin}/script-tag.html`)
  await page.evaluate((options) => window.harness.start(options), { url: `ws://127.0.0.1:${gate.port}/ws`, reconnect })
  await waitInPage(page, () => window.harness.sock?.state === 'open', 'the socket to open')
  await page.evaluate(() => window.harness.sendRange(0, 10))
  await waitInPage(page, () => window.harness.acked.length === 10, 'the first 10 acknowledgements')
  expect(sessions).toHaveLength(1)
  const session = sessions[0]

  // The server goes away: every connection cut, every new one refused.
  gate.down()
  await waitInPage(page, () => window.harness.sock?.state === 'reconnecting', 'the socket to notice the outage')
  await page.evaluate(() => window.harness.sendRange(10, 60))
  const serverAcks = range(20).map((i) => session.send({ n: i }))
  await sleep(2000)
  // Meanwhile the client kept trying, and nothing went through.
  expect(gate.refused).toBeGreaterThanOrEqual(2)
  expect(atServer).toEqual(range(10))
  const during = await page.evaluate(() => ({
    state: window.harness.sock?.state,
    pending: window.harness.sock?.pending,
    acked: window.harness.acked.length,
    received: window.harness.received.length,
  }))
  // Between attempts the socket is 'reconnecting'; the poll may also catch it inside an
  // attempt ('connecting'), which the refusing gate ends a moment later.
  expect(['reconnecting', 'connecting']).toContain(during.state)
  expect({ ...during, state: undefined }).toEqual({ state: undefined, pending: 50, acked: 10, received: 0 })

  // Back: the session resumes and both backlogs go through.
  const back = Date.now()
  gate.up()
  await waitInPage(page, () => window.harness.acked.length === 60, 'all 60 acknowledgements after the outage')
  await waitInPage(page, () => window.harness.received.length >= 20, '20 server messages after the outage')
  await withTimeout(Promise.all(serverAcks), 5000, "the page's acknowledgements of the 20 server messages")
  expect(Date.now() - back).toBeLessThan(3000)

  expect(atServer).toEqual(range(60))
  const after = await page.evaluate(() => ({
    received: window.harness.received,
    acked: window.harness.acked,
    failed: window.harness.failed,
    sessions: window.harness.sessions,
    sessionId: window.harness.sock?.sessionId,
  }))
  expect(after.received).toEqual(range(20).map((n) => ({ n })))
  expect(after.acked).toEqual(range(60))
  expect(after.failed).toEqual([])
  expect(after.sessions).toEqual([{ id: session.id, previous: null }])
  expect(after.sessionId).toBe(session.id)
  expect(sessions).toHaveLength(1)
  expect(resumes).toBe(1)
  expect(errors).toEqual([])
})

it('starts a new session and resends what was unacknowledged when a restarted server lost every session', async () => {
  const first: number[] = []
  const server = await startPageServer({ setup: (tether) => tether.on('message', (data) => first.push(data as number)) })
  suite.defer(() => server.close())

  const { page, errors } = await suite.open()
  await openHarness(page, `${server.origin}/script-tag.html`)
  await page.evaluate((options) => window.harness.start(options), { reconnect })
  const oldId = await waitInPage(page, () => window.harness.sock?.state === 'open' && window.harness.sock.sessionId, 'the first session')
  await page.evaluate(() => window.harness.sendRange(0, 10))
  await waitInPage(page, () => window.harness.acked.length === 10, 'the first 10 acknowledgements')
  expect(first).toEqual(range(10))

  // The server process dies (connections cut, sessions gone, port closed)…
  await server.close()
  await waitInPage(page, () => window.harness.sock?.state === 'reconnecting', 'the socket to notice the crash')
  const attemptsBefore = await page.evaluate(() => window.harness.attempts.length)
  await page.evaluate(() => window.harness.sendRange(10, 40))
  await sleep(1000)
  expect(await page.evaluate(() => window.harness.attempts.length)).toBeGreaterThan(attemptsBefore + 1)

  // …and a new one comes up on the same port, knowing nothing.
  const second: number[] = []
  const fresh: Session[] = []
  const restarted = await startPageServer({
    port: server.port,
    setup: (tether) => {
      tether.on('message', (data) => second.push(data as number))
      tether.on('session', (session) => fresh.push(session))
    },
  })
  suite.defer(() => restarted.close())
  expect(restarted.port).toBe(server.port)

  await waitInPage(page, () => window.harness.acked.length === 40, 'all 40 acknowledgements after the restart', { timeout: 8000 })
  await waitFor(() => fresh.length === 1, 3000, 'the new session')
  // Nothing was in flight at the crash (0-9 were acknowledged), so 10-39 arrive exactly once.
  expect(second).toEqual(range(30, 10))
  const after = await page.evaluate(() => ({
    sessions: window.harness.sessions,
    sessionId: window.harness.sock?.sessionId,
    failed: window.harness.failed,
    pending: window.harness.sock?.pending,
  }))
  expect(after.sessions).toEqual([
    { id: oldId, previous: null },
    { id: fresh[0].id, previous: oldId },
  ])
  expect(after.sessionId).toBe(fresh[0].id)
  expect(after.failed).toEqual([])
  expect(after.pending).toBe(0)

  // The new session works server → client too.
  await withTimeout(fresh[0].send('welcome back'), 5000, 'the acknowledgement of a message on the new session')
  await waitInPage(page, () => window.harness.received.includes('welcome back'), 'a message on the new session')
  expect(errors).toEqual([])
})
