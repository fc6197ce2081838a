/**
 * The script-tag chat example (examples/script-tag/index.html) served as `npm start` serves
 * it: the page at /, the IIFE at /tethersocket.global.js, the reference server at /ws with the
 * demo's broadcast. Two tabs chat; the delivery ticks turn to ✓. With UPDATE_SCREENSHOT=1 the
 * first tab is saved as docs/screenshot.png (the README's picture); otherwise nothing is written.
 */
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import { expect, it } from 'vitest'
import { browserSuite, waitInPage } from '../support/browser.js'
import { startPageServer } from '../support/browser-server.js'

const suite = browserSuite()
const screenshotFile = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'screenshot.png')

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#text', text)
  await page.press('#text', 'Enter')
}

const lines = (page: Page) => page.$$eval('#log li', (items) => items.map((li) => li.textContent ?? ''))

it('chats between two tabs of the example page, every own message ticked as delivered', async () => {
  const server = await startPageServer({
    // The demo's wiring (scripts/start.mjs): every chat line is broadcast to every session.
    setup: (tether) =>
      tether.on('message', (msg) => {
        const m = msg as { from?: unknown; text?: unknown }
        if (typeof m?.text === 'string') tether.broadcast({ from: String(m.from).slice(0, 12), text: m.text.slice(0, 500) })
      }),
  })
  suite.defer(() => server.close())
  const { page: alice, context, errors } = await suite.open({ viewport: { width: 720, height: 420 } })
  const bob = await context.newPage()
  const bobErrors: string[] = []
  bob.on('pageerror', (error) => bobErrors.push(error.message))

  for (const page of [alice, bob]) {
    await page.goto(`${server.origin}/`)
    await waitInPage(page, () => document.getElementById('state')?.textContent === 'open', 'the chat to connect')
  }
  await say(alice, 'Hello! Is the server up?')
  await waitInPage(alice, () => document.querySelectorAll('#log .tick.done').length === 1, 'the first tick')
  await say(bob, 'It is. Try stopping it and typing.')
  await waitInPage(alice, () => document.querySelectorAll('#log li').length === 2, "the other tab's message")
  await say(alice, 'Each line gets a tick once the server has it.')
  await waitInPage(alice, () => document.querySelectorAll('#log .tick.done').length === 2, 'both ticks')
  await waitInPage(alice, () => document.getElementById('pending')?.textContent === '0', 'nothing pending')

  const ticks = await alice.$$eval('#log .tick', (items) => items.map((t) => [t.textContent, t.className, t.getAttribute('title')]))
  expect(ticks).toEqual([
    ['✓', 'tick done', 'delivered'],
    ['✓', 'tick done', 'delivered'],
  ])
  const shown = await lines(alice)
  expect(shown).toHaveLength(3)
  expect(shown[0]).toMatch(/^\w+: Hello! Is the server up\?✓$/)
  expect(shown[1]).toMatch(/^\w+: It is\. Try stopping it and typing\.$/)
  expect(shown[2]).toMatch(/^\w+: Each line gets a tick once the server has it\.✓$/)
  await waitInPage(bob, () => document.querySelectorAll('#log li').length === 3, 'all three lines in the other tab')
  expect(await alice.textContent('#state')).toBe('open')

  const png = await alice.screenshot({ fullPage: true })
  expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a')
  if (process.env.UPDATE_SCREENSHOT === '1') writeFileSync(screenshotFile, png)
  expect([...errors, ...bobErrors]).toEqual([])
})
