/**
 * The demo page's connection status: a live "reconnecting in N s" countdown from the
 * `reconnecting` event's delay, a "retry now" button that makes an attempt at once
 * (`sock.reconnect()`), and "waiting for network" while the browser is offline.
 */
import type { Page } from 'playwright-core'
import { expect, it } from 'vitest'
import { browserSuite, sleep, waitFor, waitInPage } from '../support/browser.js'
import { startTcpGate } from '../support/browser-server.js'
import { logLines, openChat, say, startDemo, waitForLines } from './demo-page.js'

const suite = browserSuite()

const statusOf = (page: Page) =>
  page.evaluate(() => ({
    state: document.getElementById('status')?.dataset.state,
    text: document.getElementById('state')?.textContent,
    detail: document.getElementById('detail')?.textContent,
    retry: !document.getElementById('retry')?.hidden,
  }))

it('counts down to the next attempt, and "retry now" makes one at once', async () => {
  const server = await startDemo(suite)
  // The page and its socket reach the server through a gate that can refuse every connection.
  const gate = await startTcpGate(server.port)
  suite.defer(() => gate.close())
  const { page, errors } = await suite.open()
  await openChat(page, `http://127.0.0.1:${gate.port}`)
  expect(await statusOf(page)).toEqual({ state: 'open', text: 'connected', detail: '', retry: false })

  gate.down()
  // The backoff delay is random (full jitter) and grows with each failed attempt: wait for one
  // of more than a second, to see it count down.
  const first = await waitInPage(
    page,
    () => {
      const match = /^reconnecting in (\d+) s$/.exec(document.getElementById('state')?.textContent ?? '')
      return match && Number(match[1]) >= 2 && { seconds: Number(match[1]), detail: document.getElementById('detail')?.textContent }
    },
    'a countdown of 2 s or more',
    { timeout: 20000 },
  )
  expect(first.detail).toMatch(/^\d+ failed attempts$/)
  const failed = Number.parseInt(first.detail ?? '', 10)
  expect(failed).toBeGreaterThanOrEqual(2)
  expect(await statusOf(page)).toMatchObject({ state: 'reconnecting', retry: true })
  // A second later it shows one second less, for the same wait.
  await waitInPage(
    page,
    (expected) =>
      document.getElementById('state')?.textContent === expected.text && document.getElementById('detail')?.textContent === expected.detail,
    'the countdown to go down by one',
    { arg: { text: `reconnecting in ${first.seconds - 1} s`, detail: first.detail }, timeout: 1500 },
  )

  // "retry now": an attempt at once, with the backoff reset, so the next wait counts one
  // failed attempt (a scheduled attempt would have made it failed + 1).
  const refused = gate.refused
  await page.click('#retry')
  await waitFor(() => gate.refused > refused, 1000, 'an attempt right after the click')
  await waitInPage(
    page,
    () =>
      document.getElementById('detail')?.textContent === '1 failed attempt' &&
      document.getElementById('state')?.textContent === 'reconnecting in 1 s',
    'a new countdown after one failed attempt',
  )

  // The server is reachable again: "retry now" connects without waiting for the countdown. The
  // gate opens while the next attempt is more than a second away (a countdown of 2 s or more:
  // the wait grows with each failed attempt), so that the attempt that connects is the click's
  // (after a shorter wait the page's own attempt could connect first, and hide the button).
  await waitInPage(
    page,
    () => Number(/^reconnecting in (\d+) s$/.exec(document.getElementById('state')?.textContent ?? '')?.[1]) >= 2,
    'a countdown of 2 s or more',
    { timeout: 20000 },
  )
  gate.up()
  const clicked = Date.now()
  await page.click('#retry')
  await waitInPage(page, () => document.getElementById('state')?.textContent === 'connected', 'the page to reconnect')
  expect(Date.now() - clicked).toBeLessThan(1000)
  expect(await statusOf(page)).toEqual({ state: 'open', text: 'connected', detail: '', retry: false })
  expect(errors).toEqual([])
})

it('says "waiting for network" while the browser is offline, then delivers what was typed', async () => {
  const server = await startDemo(suite)
  const { page, context, errors } = await suite.open()
  await openChat(page, server.origin)

  // Chromium offline keeps an open WebSocket, as a connection on loopback would: the server cuts it.
  await context.setOffline(true)
  expect(server.dropConnections()).toBe(1)
  // The close reaches an offline page late, or not at all (Chromium's offline emulation held it
  // past 15 s once in CI): the socket probes at the offline event, so the heartbeat's timeout
  // (10 s by default) replaces the connection at the latest.
  await waitInPage(page, () => document.getElementById('state')?.textContent === 'waiting for network', '"waiting for network"', {
    timeout: 15000,
  })
  expect(await statusOf(page)).toEqual({ state: 'offline', text: 'waiting for network', detail: '', retry: true })
  await say(page, 'typed offline')
  expect(await page.$$eval('#outbox li .text', (items) => items.map((item) => item.textContent))).toEqual(['typed offline'])
  // No countdown while offline: the socket waits for the browser's `online` event.
  const upgrades = server.upgrades.length
  await sleep(1200)
  expect(await statusOf(page)).toMatchObject({ text: 'waiting for network' })
  expect(server.upgrades.length).toBe(upgrades)

  await context.setOffline(false)
  await waitInPage(page, () => document.getElementById('state')?.textContent === 'connected', 'the page to reconnect once online')
  await waitForLines(page, 1, 'the line typed offline, back from the server')
  expect(await logLines(page)).toEqual(['you: typed offline'])
  expect(server.chat.history.lobby.map(({ text }) => text)).toEqual(['typed offline'])
  expect(errors).toEqual([])
})
