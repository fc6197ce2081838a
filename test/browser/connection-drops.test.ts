/**
 * Exactly-once delivery in a real browser while the server cuts every connection in the
 * middle of a stream both ways.
 */
import { expect, it } from 'vitest'
import type { Session } from '../../src/server/index.js'
import { browserSuite, openHarness, range, sleep, waitFor, waitInPage, withTimeout } from '../support/browser.js'
import { startPageServer } from '../support/browser-server.js'

const suite = browserSuite()

it('loses and duplicates nothing, either way, when the server drops every connection every ~50 ms mid-stream', async () => {
  const N = 1000
  const server = await startPageServer()
  suite.defer(() => server.close())
  const atServer: number[] = []
  const sessions: Session[] = []
  let resumes = 0
  server.tether.on('message', (data) => atServer.push(data as number))
  server.tether.on('session', (session) => sessions.push(session))
  server.tether.on('resume', () => resumes++)

  const { page, errors } = await suite.open()
  await openHarness(page, `${server.origin}/script-tag.html`)
  await page.evaluate(() => window.harness.start({ reconnect: { minDelay: 10, maxDelay: 100 } }))
  await waitInPage(page, () => window.harness.sock?.state === 'open', 'the socket to open')
  await waitFor(() => sessions.length === 1, 3000, 'the session on the server')
  const session = sessions[0]

  // Every ~50 ms the server cuts whatever connection there is, until both streams are through.
  let streaming = true
  let drops = 0
  const chaos = (async () => {
    while (streaming) {
      await sleep(40 + Math.random() * 20)
      if (streaming) drops += server.dropConnections()
    }
  })()

  // Server → page: 1,000 messages in random bursts; each promise resolves on the client's ack.
  const serverAcks: Promise<void>[] = []
  const serverStream = (async () => {
    for (let i = 0; i < N; ) {
      const end = Math.min(N, i + 1 + Math.floor(Math.random() * 8))
      while (i < end) serverAcks.push(session.send(i++))
      await sleep(2)
    }
  })()
  // Page → server: 1,000 messages likewise, at the same time.
  const pageStream = page.evaluate((n) => window.harness.stream(0, n, 2), N)

  try {
    await withTimeout(Promise.all([serverStream, pageStream]), 15000, 'both streams to be handed to send()')
    await waitFor(() => atServer.length >= N, 20000, `${N} messages at the server (have ${atServer.length})`)
    await waitInPage(page, (n) => window.harness.received.length >= n, `${N} messages in the page`, { arg: N, timeout: 20000 })
    await waitInPage(page, (n) => window.harness.acked.length + window.harness.failed.length >= n, 'every send() to settle', {
      arg: N,
      timeout: 20000,
    })
  } finally {
    streaming = false
    await chaos
  }
  const settled = await withTimeout(Promise.allSettled(serverAcks), 5000, "the page's acknowledgements of the server's messages")
  expect(settled.filter((r) => r.status === 'rejected')).toEqual([])

  expect(atServer).toEqual(range(N))
  const inPage = await page.evaluate(() => ({
    received: window.harness.received,
    failed: window.harness.failed,
    acked: window.harness.acked.length,
    opens: window.harness.opens.length,
    sessions: window.harness.sessions,
  }))
  expect(inPage.received).toEqual(range(N))
  expect(inPage.failed).toEqual([])
  expect(inPage.acked).toBe(N)
  // The drops really happened mid-stream, and each reconnect resumed the one session.
  expect(drops).toBeGreaterThanOrEqual(3)
  expect(resumes).toBeGreaterThanOrEqual(3)
  // A drop can land between the server's resume and the client's open, so opens ≤ resumes + 1.
  expect(inPage.opens).toBeGreaterThanOrEqual(4)
  expect(inPage.opens).toBeLessThanOrEqual(resumes + 1)
  expect(sessions).toHaveLength(1)
  expect(inPage.sessions).toEqual([{ id: session.id, previous: null }])
  expect(errors).toEqual([])
})
