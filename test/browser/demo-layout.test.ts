/**
 * The demo page on a 375 × 667 screen (a small phone): nothing scrolls sideways, whatever it
 * shows (the rooms, who is in the room, long unbroken lines, the outbox, the reconnecting status
 * and its button), and the field and its button stay on screen.
 */
import type { Page } from 'playwright-core'
import { expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { TetherSocket } from '../../src/index.js'
import { browserSuite, range, waitInPage } from '../support/browser.js'
import { openChat, say, startDemo, waitForLines } from './demo-page.js'

const suite = browserSuite()
const WIDTH = 375

/** How wide the page is laid out, and where the widest of the controls ends. */
const layout = (page: Page) =>
  page.evaluate(() => {
    const right = (selector: string) => document.querySelector(selector)?.getBoundingClientRect().right ?? Number.NaN
    return {
      scrollWidth: document.documentElement.scrollWidth,
      bodyScrollWidth: document.body.scrollWidth,
      widest: Math.max(
        right('#text'),
        right('#form button'),
        right('#retry'),
        right('#log'),
        right('#outbox'),
        right('#rooms button:last-child'),
        right('#people'),
      ),
    }
  })

it('fits a 375 px wide screen without horizontal scrolling', async () => {
  const server = await startDemo(suite)
  const { page, context, errors } = await suite.open({ viewport: { width: WIDTH, height: 667 } })
  await openChat(page, server.origin)
  expect(await page.evaluate(() => window.innerWidth)).toBe(WIDTH)
  // Eight others in the lobby, with names as long as the server keeps (12 characters): the member list wraps.
  for (const n of range(8)) {
    const sock = new TetherSocket(`${server.origin.replace('http:', 'ws:')}/ws`, { WebSocket })
    suite.defer(() => sock.close())
    await sock.request({ join: 'lobby', name: `visitor-${n}`.padEnd(12, '-') })
  }
  await waitInPage(page, () => document.querySelectorAll('#members li').length === 9, 'nine members in the lobby')

  // Lines with no place to break: a URL-like word and the longest line the server keeps.
  await say(page, 'see https://example.com/a/really/long/path/that/does/not/stop/anywhere/at/all/soon')
  await say(page, 'x'.repeat(500))
  await waitForLines(page, 2)
  const open = await layout(page)
  expect(open.scrollWidth).toBeLessThanOrEqual(WIDTH)
  expect(open.bodyScrollWidth).toBeLessThanOrEqual(WIDTH)
  expect(open.widest).toBeLessThanOrEqual(WIDTH)

  // Offline, with the status at its longest, the retry button and a long line in the outbox.
  await context.setOffline(true)
  server.dropConnections()
  await waitInPage(page, () => document.getElementById('state')?.textContent === 'waiting for network', '"waiting for network"')
  await say(page, 'y'.repeat(500))
  expect(await page.isVisible('#outbox-box')).toBe(true)
  expect(await page.isVisible('#retry')).toBe(true)
  const offline = await layout(page)
  expect(offline.scrollWidth).toBeLessThanOrEqual(WIDTH)
  expect(offline.bodyScrollWidth).toBeLessThanOrEqual(WIDTH)
  expect(offline.widest).toBeLessThanOrEqual(WIDTH)
  await context.setOffline(false)
  await waitForLines(page, 3, 'the line typed offline, back from the server')
  expect(errors).toEqual([])
})
