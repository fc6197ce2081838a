/**
 * The demo page with `shared: true`: two tabs of one browser share one connection. Exactly one
 * says it holds it and the other that it goes through it; the server sees one session; a line
 * typed in the tab that does not hold the connection reaches both; a tab opened later gets the
 * room's log; a tab that switches rooms takes the other with it (one session, one room); and
 * when the holding tab closes, the other takes the connection over within a few seconds and
 * chats on in the same session. Without BroadcastChannel each tab says it has its own.
 */
import { expect, it } from 'vitest'
import { browserSuite, waitFor, waitInPage } from '../support/browser.js'
import {
  enterRoom,
  logLines,
  nameOf,
  openChat,
  roleOf,
  roomOf,
  say,
  startDemo,
  waitForLines,
  waitForRole,
  watchProblems,
} from './demo-page.js'

const suite = browserSuite()

const HOLDS = 'this tab holds the connection'
const THROUGH = 'connected through another tab'

it('shows which tab holds the shared connection, relays the other tab’s lines, and hands over when that tab closes', async () => {
  const server = await startDemo(suite)
  const { page: first, context, errors } = await suite.open()
  const second = await context.newPage()
  const problems = { first: watchProblems(first), second: watchProblems(second) }
  await openChat(first, server.origin)
  await openChat(second, server.origin)

  // One holds the connection, the other goes through it: whichever the browser elected.
  await waitFor(
    async () => [await roleOf(first), await roleOf(second)].sort().join() === 'follower,holder',
    5000,
    'one tab holding the connection and one going through it',
  )
  const [holder, follower] = (await roleOf(first)) === 'holder' ? [first, second] : [second, first]
  expect(await holder.textContent('#shared')).toBe(HOLDS)
  expect(await follower.textContent('#shared')).toBe(THROUGH)
  // One connection, so one session, which both tabs name.
  expect(server.tether.sessions.size).toBe(1)
  const session = await holder.evaluate<string | undefined>('sock.sessionId')
  expect(session).toBe([...server.tether.sessions.keys()][0])
  expect(await follower.evaluate<string | undefined>('sock.sessionId')).toBe(session)

  // A line from the tab that goes through the other: the server has it once, and both show it.
  const names = { holder: await nameOf(holder), follower: await nameOf(follower) }
  expect(names.follower).not.toBe(names.holder)
  await say(follower, 'through the other tab')
  await waitForLines(follower, 1)
  await waitForLines(holder, 1)
  expect(await logLines(follower)).toEqual(['you: through the other tab'])
  expect(await logLines(holder)).toEqual([`${names.follower}: through the other tab`])
  expect(server.chat.history.lobby).toEqual([{ from: names.follower, text: 'through the other tab', id: expect.any(String) }])
  await waitInPage(follower, () => document.getElementById('pending')?.textContent === '0', 'the line acknowledged in its tab')

  // A third tab joins the session where it is, and the reply gives it the room's log so far.
  const third = await context.newPage()
  const thirdProblems = watchProblems(third)
  await openChat(third, server.origin)
  await waitForLines(third, 1, "the room's log in the new tab")
  expect(await logLines(third)).toEqual([`${names.follower}: through the other tab`])
  expect(await roleOf(third)).toBe('follower')
  expect(server.tether.sessions.size).toBe(1)
  await third.close()
  expect(thirdProblems).toEqual([])

  // One session is in one room: a tab that switches rooms takes the other with it.
  await enterRoom(follower, 'random')
  await waitInPage(holder, () => document.getElementById('log')?.dataset.room === 'random', 'the other tab in #random too')
  expect(await roomOf(holder)).toBe('random')
  expect(await logLines(holder)).toEqual([])

  // The holding tab closes: the other one takes the connection over, in the same session.
  const closed = Date.now()
  await holder.close()
  await waitForRole(follower, 'holder', 'the remaining tab to hold the connection', 5000)
  const handedOver = Date.now() - closed
  expect(handedOver).toBeLessThan(5000)
  expect(await follower.textContent('#shared')).toBe(HOLDS)
  await waitInPage(follower, () => document.getElementById('state')?.textContent === 'connected', 'the remaining tab connected')
  await say(follower, 'now holding it')
  await waitForLines(follower, 1)
  expect(await logLines(follower)).toEqual(['you: now holding it'])
  expect(server.chat.history.lobby.map(({ text }) => text)).toEqual(['through the other tab'])
  expect(server.chat.history.random.map(({ text }) => text)).toEqual(['now holding it'])
  expect(await follower.evaluate<string | undefined>('sock.sessionId')).toBe(session)
  await waitFor(() => server.tether.sessions.size === 1, 3000, 'still one session: the new holder resumed it')
  expect(problems).toEqual({ first: [], second: [] })
  expect(errors).toEqual([])
})

it('says each tab has its own connection where the browser has no BroadcastChannel, and chats on', async () => {
  const server = await startDemo(suite)
  const { page: first, context, errors } = await suite.open()
  // As in a browser without BroadcastChannel: the tabs cannot talk to each other.
  await context.addInitScript(() => {
    Reflect.deleteProperty(window, 'BroadcastChannel')
  })
  const second = await context.newPage()
  const problems = { first: watchProblems(first), second: watchProblems(second) }
  await openChat(first, server.origin)
  await openChat(second, server.origin)
  for (const page of [first, second]) {
    await waitForRole(page, 'alone')
    expect(await page.textContent('#shared')).toBe('own connection (this browser cannot share it between tabs)')
  }
  // Two connections, two sessions, as without the option.
  await waitFor(() => server.tether.sessions.size === 2, 3000, 'two sessions')
  expect(await first.evaluate<string | undefined>('sock.sessionId')).not.toBe(await second.evaluate<string | undefined>('sock.sessionId'))
  await say(second, 'on my own')
  await waitForLines(first, 1)
  await waitForLines(second, 1)
  expect(await logLines(first)).toEqual([`${await nameOf(second)}: on my own`])
  expect(await logLines(second)).toEqual(['you: on my own'])
  expect(problems).toEqual({ first: [], second: [] })
  expect(errors).toEqual([])
})
