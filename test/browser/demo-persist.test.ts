/**
 * The demo page's durable outbox (`persist: indexedDBStore('chat')`): lines typed while the
 * server is away survive a reload and reach the server once when it is back; the page keeps its
 * log across a reload and shows a line the server sends again (`info.redelivered`) only once;
 * the `restored` event's count is shown; with IndexedDB refused the page says so and chats on.
 *
 * The page loads from a front server (a reverse proxy, as deployments have) that serves its
 * files whether or not the chat server is up, since a reload needs them, and relays the
 * WebSocket to the chat server.
 */
import { createServer } from 'node:http'
import { type AddressInfo, connect as netConnect, type Socket } from 'node:net'
import type { Page } from 'playwright-core'
import { expect, it } from 'vitest'
import { browserSuite, waitFor, waitInPage } from '../support/browser.js'
import { type PageServer, startPageServer } from '../support/browser-server.js'
import { listen } from '../support/servers.js'
import { logLines, nameOf, openChat, retryIfShown, say, startDemo, waitForLines, watchProblems } from './demo-page.js'
import { storedEntries } from './persist-page.js'

const suite = browserSuite()

/** The origin pages load from: the files from an always-up server, the WebSocket relayed to the chat server. */
interface Front {
  readonly origin: string
  /** Cuts the relayed WebSocket connections and refuses new ones (the page's files still load). */
  down(): void
  up(): void
}

/**
 * A front server, as a deployment has one (a reverse proxy, a CDN): it serves the page's files
 * from `files` whether or not the chat server is up, so that a page can reload while the chat
 * server is down, and relays WebSocket upgrades to the chat server on `chatPort`.
 */
async function startFront(files: PageServer, chatPort: number): Promise<Front> {
  const relayed = new Set<Socket>()
  let open = true
  const http = createServer((request, response) => {
    fetch(`${files.origin}${request.url}`)
      .then(async (answer) => {
        const type = answer.headers.get('content-type')
        response.writeHead(answer.status, { 'Cache-Control': 'no-store', ...(type && { 'Content-Type': type }) })
        response.end(Buffer.from(await answer.arrayBuffer()))
      })
      .catch(() => response.writeHead(502).end())
  })
  http.on('upgrade', (request, client: Socket, head: Buffer) => {
    if (!open) return client.destroy()
    const upstream = netConnect(chatPort, '127.0.0.1')
    const pair = [client, upstream]
    const end = () => {
      for (const socket of pair) {
        socket.destroy()
        relayed.delete(socket)
      }
    }
    for (const socket of pair) {
      relayed.add(socket)
      socket.on('error', end)
      socket.on('close', end)
    }
    upstream.on('connect', () => {
      // The upgrade request as it came, then bytes both ways.
      const headers = request.rawHeaders.map((value, i) => (i % 2 ? `${value}\r\n` : `${value}: `)).join('')
      upstream.write(`${request.method} ${request.url} HTTP/${request.httpVersion}\r\n${headers}\r\n`)
      upstream.write(head)
      client.pipe(upstream)
      upstream.pipe(client)
    })
  })
  await listen(http, 0)
  suite.defer(
    () =>
      new Promise<void>((resolve) => {
        open = false
        for (const socket of relayed) socket.destroy()
        http.close(() => resolve())
        http.closeAllConnections()
      }),
  )
  return {
    origin: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    down() {
      open = false
      for (const socket of relayed) socket.destroy()
    },
    up() {
      open = true
    },
  }
}

/** A server for the page's files only. */
async function fileServer(): Promise<PageServer> {
  const files = await startPageServer()
  suite.defer(() => files.close())
  return files
}

const waitingLines = (page: Page) => page.$$eval('#outbox li .text', (items) => items.map((item) => item.textContent))
const notices = (page: Page) => page.$$eval('#log li.notice', (items) => items.map((item) => item.textContent))

/**
 * Waits until the page's durable outbox holds `count` messages on disk (write-ahead: a user
 * reloading a moment after typing finds them there; a test may be quicker than the commit).
 */
const storedMessages = async (page: Page, count: number) => {
  const deadline = Date.now() + 5000
  while ((await storedEntries(page, 'chat', 'all')) !== count) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} messages in the stored outbox`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** The problems apart from Chromium's own console reports of the connections refused while the server was away. */
const apartFromRefusals = (problems: string[]) =>
  problems.filter((problem) => !/^console error: WebSocket connection to '.*' failed/.test(problem))

it('keeps lines typed while the server is down across a reload, and the restarted server gets each once', async () => {
  const server = await startDemo(suite)
  const front = await startFront(await fileServer(), server.port)
  const { page } = await suite.open()
  const problems = watchProblems(page)
  await openChat(page, front.origin)
  const name = await nameOf(page)
  await say(page, 'hello')
  await waitForLines(page, 1)

  await server.close()
  await waitInPage(page, () => document.getElementById('status')?.dataset.state === 'reconnecting', 'the page to notice the server is gone')
  await say(page, 'typed offline 1')
  await say(page, 'typed offline 2')
  await storedMessages(page, 2)

  // The reload keeps the log, the lines waiting and the tab's name; the server is still down.
  await page.reload()
  await waitInPage(page, () => document.querySelectorAll('#outbox li').length === 2, 'the waiting lines back after the reload')
  expect(await waitingLines(page)).toEqual(['typed offline 1', 'typed offline 2'])
  expect(await logLines(page)).toEqual(['you: hello'])
  expect(await nameOf(page)).toBe(name)
  expect(await page.textContent('#state')).not.toBe('connected')

  // The server comes back knowing nothing: a new session, whose (empty) history starts the log,
  // and the two lines, resent from the stored outbox, once each.
  const restarted = await startDemo(suite, server.port)
  await retryIfShown(page)
  await waitForLines(page, 2, 'the lines typed offline, back from the restarted server')
  await waitInPage(page, () => document.getElementById('pending')?.textContent === '0', 'nothing pending')
  expect(await logLines(page)).toEqual(['you: typed offline 1', 'you: typed offline 2'])
  expect(restarted.chat.history.lobby).toEqual([
    { from: name, text: 'typed offline 1', id: expect.any(String) },
    { from: name, text: 'typed offline 2', id: expect.any(String) },
  ])
  await waitInPage(page, () => document.querySelectorAll('#log li.notice').length === 2, 'the restored notice')
  expect(await notices(page)).toEqual([
    'New session: the server restarted or forgot this tab. Its history follows.',
    '2 messages sent from your last visit',
  ])
  expect(await waitingLines(page)).toEqual([])
  expect(await page.isVisible('#outbox-box')).toBe(false)

  // One more reload, everything delivered: the same session, the same log, nothing sent again.
  const session = await page.evaluate<string | undefined>('sock.sessionId')
  await page.reload()
  await waitInPage(page, () => document.getElementById('state')?.textContent === 'connected', 'the page to reconnect')
  expect(await page.evaluate<string | undefined>('sock.sessionId')).toBe(session)
  expect(await logLines(page)).toEqual(['you: typed offline 1', 'you: typed offline 2'])
  expect(restarted.chat.history.lobby).toHaveLength(2)
  expect(apartFromRefusals(problems)).toEqual([])
})

it('delivers a line typed while cut off into the same session after a reload, and the log goes on', async () => {
  const server = await startDemo(suite)
  // The front cuts the page off; the server keeps its session meanwhile.
  const front = await startFront(server, server.port)
  const { page } = await suite.open()
  const problems = watchProblems(page)
  await openChat(page, front.origin)
  await say(page, 'hello')
  await waitForLines(page, 1)
  const session = await page.evaluate<string | undefined>('sock.sessionId')

  front.down()
  await waitInPage(page, () => document.getElementById('status')?.dataset.state === 'reconnecting', 'the page to notice the cut')
  await say(page, 'typed while cut off')
  await storedMessages(page, 1)
  await page.reload()
  await waitInPage(page, () => document.querySelectorAll('#outbox li').length === 1, 'the waiting line back after the reload')

  front.up()
  await retryIfShown(page)
  await waitForLines(page, 2, 'the line back from the server')
  await waitInPage(page, () => document.querySelectorAll('#log li.notice').length === 1, 'the restored notice')
  // The session resumed: no history sent again, no "new session", the log goes on.
  expect(await page.evaluate<string | undefined>('sock.sessionId')).toBe(session)
  expect(await logLines(page)).toEqual(['you: hello', 'you: typed while cut off'])
  expect(await notices(page)).toEqual(['1 message sent from your last visit'])
  expect(server.chat.history.lobby.map(({ text }) => text)).toEqual(['hello', 'typed while cut off'])
  expect(await waitingLines(page)).toEqual([])
  expect(apartFromRefusals(problems)).toEqual([])
})

it('shows every line once, in order, when the page reloads while lines stream in', async () => {
  const server = await startDemo(suite)
  const { page, errors } = await suite.open()
  // The page says on its console when it leaves out a line it showed before the reload.
  let skipped = 0
  page.on('console', (message) => {
    if (message.type() === 'info' && message.text().startsWith('already shown before the reload')) skipped++
  })
  await openChat(page, server.origin)
  const sent: string[] = []
  // Streams of lines with reloads in the middle. The demo's socket is shared (option `shared`):
  // the page holding the connection shows each line before the server is acknowledged, and a
  // reloaded page says how far it had shown (sessionStorage), so it is sent only what it had not;
  // the page's own check of what it showed before (`skipped`) is left for a socket of its own.
  for (let round = 0; round < 4; round++) {
    const stream = (async () => {
      // 40 lines, about 3 ms apart; the reload comes after the first ten or so have been shown.
      for (let i = 0; i < 40; i++) {
        const text = `line ${sent.length}`
        sent.push(text)
        server.tether.broadcast({ from: 'bot', text })
        await new Promise((resolve) => setTimeout(resolve, 3))
      }
    })()
    await waitInPage(page, (n) => document.querySelectorAll('#log li:not(.notice)').length >= n, 'the stream under way', {
      arg: sent.length - 30,
    })
    await page.reload()
    await stream
    await waitInPage(page, (last) => document.querySelector('#log li:last-child .text')?.textContent === last, 'the last line streamed', {
      arg: sent.at(-1),
    })
  }
  expect(skipped, 'no line was sent again to a page that had shown it').toBe(0)
  expect(await logLines(page)).toEqual(sent.map((text) => `bot: ${text}`))
  await waitFor(() => server.tether.sessions.size === 1, 3000, 'one session: every reload resumed it')
  expect(errors).toEqual([])
})

it('gives a duplicated tab a name of its own, and the log from the server once', async () => {
  const server = await startDemo(suite)
  const { page, context, errors } = await suite.open()
  await openChat(page, server.origin)
  await say(page, 'one')
  await say(page, 'two')
  await waitForLines(page, 2)
  const name = await nameOf(page)

  // A duplicated tab: a second page that starts with a copy of the first one's sessionStorage.
  const copied = await page.evaluate(() => Object.entries(sessionStorage))
  const duplicate = await context.newPage()
  duplicate.on('pageerror', (error) => errors.push(`${error.name}: ${error.message}`))
  await duplicate.addInitScript((items) => {
    if (sessionStorage.length === 0) for (const [key, value] of items) sessionStorage.setItem(key, value)
  }, copied)
  await openChat(duplicate, server.origin)
  const copy = await nameOf(duplicate)
  expect(copy).not.toBe(name)
  // Not the copied log: the room's, from the server, with the lines as the first tab's. The two
  // tabs share one connection (option `shared`), so one session.
  await waitForLines(duplicate, 2)
  expect(await logLines(duplicate)).toEqual([`${name}: one`, `${name}: two`])
  expect(await page.evaluate<string | undefined>('sock.sessionId')).toBe(await duplicate.evaluate<string | undefined>('sock.sessionId'))

  await say(duplicate, 'three')
  await waitForLines(page, 3)
  await waitForLines(duplicate, 3)
  expect(await logLines(page)).toEqual(['you: one', 'you: two', `${copy}: three`])
  expect(await logLines(duplicate)).toEqual([`${name}: one`, `${name}: two`, 'you: three'])
  expect(errors).toEqual([])
})

it('says so when IndexedDB is refused, and chats on with the outbox in memory', async () => {
  const server = await startDemo(suite)
  const { page, context, errors } = await suite.open()
  // As in a browser with storage disabled: reading window.indexedDB throws.
  await context.addInitScript(() => {
    Object.defineProperty(window, 'indexedDB', {
      get() {
        throw new DOMException('access to IndexedDB is denied', 'SecurityError')
      },
    })
  })
  const problems = watchProblems(page)
  await openChat(page, server.origin)
  await waitInPage(
    page,
    () => document.getElementById('durable')?.textContent === 'not kept across reloads (unavailable)',
    'the page to say so',
  )
  await say(page, 'still here')
  await waitForLines(page, 1)
  expect(await logLines(page)).toEqual(['you: still here'])
  expect(server.chat.history.lobby.map(({ text }) => text)).toEqual(['still here'])
  expect(problems).toEqual([])
  expect(errors).toEqual([])
})
