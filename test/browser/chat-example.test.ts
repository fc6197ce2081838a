/**
 * The script-tag chat example (examples/script-tag/index.html) with the demo's chat
 * (examples/script-tag/chat-server.mjs), served as `npm start` serves them. Two tabs of one
 * browser chat: both show the lines in the server's order, each marks its own, and nothing
 * fails to load or logs an error. A tab recognises its own lines across a reconnect and a
 * server restart. With UPDATE_SCREENSHOT=1 the first tab is saved as docs/screenshot.png (the
 * README's picture); otherwise nothing is written.
 */
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import { expect, it } from 'vitest'
import { browserSuite, waitFor, waitInPage } from '../support/browser.js'
import { startTcpGate } from '../support/browser-server.js'
import { logLines, nameOf, openChat, retryIfShown, say, startDemo, waitForLines, watchProblems } from './demo-page.js'

const suite = browserSuite()
const screenshotFile = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'screenshot.png')

/** The log with `you` replaced by the page's name: what every tab should show alike. */
async function asSeenByAll(page: Page): Promise<string[]> {
  const name = await nameOf(page)
  return (await logLines(page)).map((line) => line.replace(/^you: /, `${name}: `))
}

const outbox = (page: Page) => page.$$eval('#outbox li .text', (items) => items.map((item) => item.textContent))

it('shows the lines in the server order in both tabs, each marking its own, with nothing failing to load', async () => {
  const server = await startDemo(suite)
  // Alice reaches the server through a gate, to be cut off while Bob goes on talking.
  const gate = await startTcpGate(server.port)
  suite.defer(() => gate.close())
  const { page: alice, context } = await suite.open({ viewport: { width: 720, height: 560 } })
  const bob = await context.newPage()
  const problems = { alice: watchProblems(alice), bob: watchProblems(bob) }
  await openChat(alice, `http://127.0.0.1:${gate.port}`)
  await openChat(bob, server.origin)
  const names = { alice: await nameOf(alice), bob: await nameOf(bob) }
  expect(names.alice).toMatch(/^[0-9a-f]{4}$/)
  expect(names.bob).not.toBe(names.alice)
  // Nothing failed to load or was refused (the page asks for no favicon: its icon is inline).
  expect(problems).toEqual({ alice: [], bob: [] })

  await say(alice, 'Hello! Is the server up?')
  await waitForLines(bob, 1)
  await say(bob, 'It is. Try stopping it and typing.')
  await waitForLines(alice, 2)

  // Alice is cut off and types: her line waits in the outbox, not in the log, while Bob's line
  // reaches the server first. The server's order is Bob's, then hers, and so is her log.
  gate.down()
  await waitInPage(alice, () => document.getElementById('status')?.dataset.state === 'reconnecting', 'Alice to notice the cut')
  await say(alice, 'I typed this while cut off.')
  expect(await outbox(alice)).toEqual(['I typed this while cut off.'])
  expect(await alice.isVisible('#outbox-box')).toBe(true)
  await say(bob, 'Alice, are you there?')
  await waitForLines(bob, 3)
  expect(await logLines(alice)).toHaveLength(2)
  gate.up()
  await retryIfShown(alice)
  await waitForLines(alice, 4, "Alice's queued line back from the server")
  await waitForLines(bob, 4)
  expect(await outbox(alice)).toEqual([])
  expect(await alice.isVisible('#outbox-box')).toBe(false)

  // Both type at once: each tab still shows exactly what the server broadcast, in its order.
  await Promise.all([
    (async () => {
      for (const n of [1, 2, 3]) await say(alice, `alice ${n}`)
    })(),
    (async () => {
      for (const n of [1, 2, 3]) await say(bob, `bob ${n}`)
    })(),
  ])
  await waitForLines(alice, 10)
  await waitForLines(bob, 10)
  const serverOrder = server.chat.history.lobby.map(({ from, text }) => `${from}: ${text}`)
  expect(serverOrder.slice(0, 4)).toEqual([
    `${names.alice}: Hello! Is the server up?`,
    `${names.bob}: It is. Try stopping it and typing.`,
    `${names.bob}: Alice, are you there?`,
    `${names.alice}: I typed this while cut off.`,
  ])
  expect(await asSeenByAll(alice)).toEqual(serverOrder)
  expect(await asSeenByAll(bob)).toEqual(serverOrder)

  // Own lines: "you" and the `mine` class in the sender's tab, the sender's name in the other.
  const marks = (page: Page) => page.$$eval('#log li', (items) => items.map((li) => li.classList.contains('mine')))
  const fromAlice = server.chat.history.lobby.map((line) => line.from === names.alice)
  expect(await marks(alice)).toEqual(fromAlice)
  expect(await marks(bob)).toEqual(fromAlice.map((mine) => !mine))
  expect((await logLines(alice))[0]).toBe('you: Hello! Is the server up?')
  expect((await logLines(bob))[0]).toBe(`${names.alice}: Hello! Is the server up?`)
  await waitInPage(alice, () => document.getElementById('pending')?.textContent === '0', 'nothing pending')
  expect(await alice.textContent('#state')).toBe('connected')
  expect(await alice.isHidden('#retry')).toBe(true)

  // The README's picture: the conversation, and Alice cut off again with a line waiting.
  gate.down()
  await say(alice, 'Cut off again: this waits here until the server is back.')
  await waitInPage(alice, () => /^reconnecting in \d+ s$/.test(document.getElementById('state')?.textContent ?? ''), 'a countdown')
  const png = await alice.screenshot({ fullPage: true })
  expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a')
  if (process.env.UPDATE_SCREENSHOT === '1') writeFileSync(screenshotFile, png)
  // Bob never lost his connection: nothing went wrong in his tab. Alice's only console errors
  // are Chromium's own reports of the connections refused while she was cut off.
  expect(problems.bob).toEqual([])
  expect(problems.alice.filter((problem) => !/^console error: WebSocket connection to '.*' failed/.test(problem))).toEqual([])
})

it('recognises its own lines after a reconnect and after a server restart that starts a new session', async () => {
  const server = await startDemo(suite)
  const { page, errors } = await suite.open()
  await openChat(page, server.origin)
  await say(page, 'one')
  await waitForLines(page, 1)
  const firstSession = await page.evaluate<string | undefined>('sock.sessionId')

  // A dropped connection: the session resumes. The drop is read from the socket's close event:
  // the first retry may come within milliseconds (full jitter), before the shown state is polled.
  await page.evaluate("window.drops = 0; sock.on('close', () => window.drops++)")
  expect(server.dropConnections()).toBe(1)
  await waitInPage(page, () => (window as unknown as { drops: number }).drops > 0, 'the page to notice the drop')
  await retryIfShown(page)
  await waitInPage(page, () => document.getElementById('state')?.textContent === 'connected', 'the page to reconnect')
  await say(page, 'two')
  await waitForLines(page, 2)
  expect(await logLines(page)).toEqual(['you: one', 'you: two'])

  // The server restarts, knowing nothing: the page gets a new session, and the line typed
  // meanwhile is sent to it and comes back as the page's own.
  await server.close()
  await waitInPage(page, () => document.getElementById('status')?.dataset.state === 'reconnecting', 'the page to notice the restart')
  await say(page, 'three')
  const restarted = await startDemo(suite, server.port)
  await retryIfShown(page)
  await waitInPage(page, () => document.querySelector('#log li.mine .text')?.textContent === 'three', "'three' back from the new server")
  const secondSession = await page.evaluate<string | undefined>('sock.sessionId')
  expect(secondSession).not.toBe(firstSession)
  // The log starts over from the new server's history (it has none but 'three').
  expect(await page.textContent('#log li.notice')).toMatch(/^New session/)
  expect(await logLines(page)).toEqual(['you: three'])
  expect(restarted.chat.history.lobby.map(({ text }) => text)).toEqual(['three'])

  // Another tab joining now gets the history, with the line as someone else's.
  const { page: other } = await suite.open()
  await openChat(other, restarted.origin)
  await waitForLines(other, 1)
  expect(await logLines(other)).toEqual([`${await nameOf(page)}: three`])
  await waitFor(() => restarted.tether.sessions.size === 2, 3000, 'two sessions')
  expect(errors).toEqual([])
})
