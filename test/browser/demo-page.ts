/**
 * The demo of `npm start` for the browser tests: the chat page (examples/script-tag/index.html)
 * served with the chat of examples/script-tag/chat-server.mjs on the reference server, as
 * scripts/start.mjs serves them, and what the tests read from the page.
 */
import type { Page } from 'playwright-core'
import { CHAT_OPTIONS, type Chat, serveChat } from '../../examples/script-tag/chat-server.mjs'
import type { BrowserSuite } from '../support/browser.js'
import { waitInPage } from '../support/browser.js'
import { type PageServer, startPageServer } from '../support/browser-server.js'

/** A page server with the demo's chat on it, closed after the test. */
export async function startDemo(suite: BrowserSuite, port?: number): Promise<PageServer & { chat: Chat }> {
  let chat: Chat | undefined
  const server = await startPageServer({
    ...(port === undefined ? {} : { port }),
    tether: CHAT_OPTIONS,
    setup: (tether) => {
      chat = serveChat(tether)
    },
  })
  suite.defer(() => server.close())
  return Object.assign(server, { chat: chat! })
}

/** What went wrong while a page was open: uncaught errors, console errors, failed or refused requests. */
export function watchProblems(page: Page): string[] {
  const problems: string[] = []
  page.on('pageerror', (error) => problems.push(`uncaught ${error.name}: ${error.message}`))
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`)
  })
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`)
  })
  page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`))
  return problems
}

/** Loads the chat page from `origin` and waits until it says it is connected. */
export async function openChat(page: Page, origin: string): Promise<void> {
  await page.goto(`${origin}/`)
  await waitInPage(page, () => document.getElementById('state')?.textContent === 'connected', 'the chat to say it is connected')
}

/** Types a line and presses Enter. */
export async function say(page: Page, text: string): Promise<void> {
  await page.fill('#text', text)
  await page.press('#text', 'Enter')
}

/** The chat log as shown: `who: text` per line, `who` being `you` on the page's own lines. */
export const logLines = (page: Page): Promise<string[]> =>
  page.$$eval('#log li:not(.notice)', (items) =>
    items.map((li) => `${li.querySelector('.who')?.textContent}: ${li.querySelector('.text')?.textContent}`),
  )

/** Waits until the log shows `count` lines (notices aside). */
export const waitForLines = (page: Page, count: number, description = `${count} lines in the log`) =>
  waitInPage(page, (n) => document.querySelectorAll('#log li:not(.notice)').length === n, description, { arg: count })

/** The page's name (what the other tabs see as the sender of its lines). */
export const nameOf = async (page: Page): Promise<string> => (await page.textContent('#me')) ?? ''

/**
 * Clicks "retry now" if the page shows it, in one step in the page: right after the server is
 * back, the page may be reconnecting on its own (the button disappears once it is connected).
 */
export const retryIfShown = (page: Page): Promise<void> =>
  page.evaluate(() => {
    const button = document.getElementById('retry')
    if (button && !button.hidden) button.click()
  })

/** The room the page shows as its current one (the pressed room button), e.g. `'lobby'`. */
export const roomOf = (page: Page): Promise<string | undefined> =>
  page.$eval('#rooms', (nav) => nav.querySelector<HTMLElement>('button[aria-current="true"]')?.dataset.room)

/** Clicks a room's button, and waits until the page shows it as current and the server's member list of it includes the page. */
export async function enterRoom(page: Page, room: string): Promise<void> {
  await page.click(`#rooms button[data-room="${room}"]`)
  await waitInPage(
    page,
    (room) =>
      document.querySelector<HTMLElement>('#rooms button[aria-current="true"]')?.dataset.room === room &&
      Array.from(document.querySelectorAll('#members li')).some((li) => li.textContent?.endsWith('(you)')),
    `the page in #${room}, among its members`,
    { arg: room },
  )
}

/** Who the page shows in its room, as shown: `name`, with ` (you)` and ` (away)` where they apply. */
export const membersOf = (page: Page): Promise<string[]> => page.$$eval('#members li', (items) => items.map((li) => li.textContent ?? ''))

/** Waits until the page's member list is `expected` (in any order). */
export const waitForMembers = (page: Page, expected: string[], description = `the members ${expected.join(', ')}`) =>
  waitInPage(
    page,
    (expected) => {
      const shown = Array.from(document.querySelectorAll('#members li'), (li) => li.textContent ?? '').sort()
      return JSON.stringify(shown) === JSON.stringify([...expected].sort())
    },
    description,
    { arg: expected },
  )

/** Which part the page says it plays in the connection its tabs share: `holder`, `follower` or `alone` (or '' before it says). */
export const roleOf = async (page: Page): Promise<string> => (await page.getAttribute('#shared', 'data-role')) ?? ''

/** Waits until the page says it plays `role` in the shared connection (by default within 5 s). */
export const waitForRole = (
  page: Page,
  role: 'holder' | 'follower' | 'alone',
  description = `the page to say it is the ${role}`,
  timeout?: number,
) =>
  waitInPage(page, (role) => document.getElementById('shared')?.dataset.role === role, description, {
    arg: role,
    ...(timeout === undefined ? {} : { timeout }),
  })
