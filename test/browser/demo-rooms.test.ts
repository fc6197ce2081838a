/**
 * The demo's rooms (topics on the server): a page shows only its room's lines; switching leaves
 * the old room and joins the new one, whose history comes first; the member list shows who is
 * in the room, connected or away, and follows joins, leaves and cuts; a page cut off in a room
 * gets what was published meanwhile on return, once and in order, and is told how many lines
 * the server's retention dropped when it was away longer than that; a server restart keeps a
 * page in its room.
 */
import type { Page } from 'playwright-core'
import { expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { CHAT_OPTIONS } from '../../examples/script-tag/chat-server.mjs'
import { TetherSocket } from '../../src/index.js'
import { browserSuite, range, waitFor, waitInPage } from '../support/browser.js'
import { startTcpGate } from '../support/browser-server.js'
import {
  enterRoom,
  logLines,
  membersOf,
  nameOf,
  openChat,
  retryIfShown,
  roomOf,
  say,
  startDemo,
  waitForLines,
  waitForMembers,
  watchProblems,
} from './demo-page.js'

const suite = browserSuite()

const notices = (page: Page) => page.$$eval('#log li.notice', (items) => items.map((item) => item.textContent))
/** The whole log, notices included, as `who: text` (notices as `notice: text`). */
const wholeLog = (page: Page) =>
  page.$$eval('#log li', (items) =>
    items.map((li) =>
      li.classList.contains('notice')
        ? `notice: ${li.querySelector('.text')?.textContent}`
        : `${li.querySelector('.who')?.textContent}: ${li.querySelector('.text')?.textContent}`,
    ),
  )

/** The problems apart from Chromium's own console reports of the connections refused while cut off. */
const apartFromRefusals = (problems: string[]) =>
  problems.filter((problem) => !/^console error: WebSocket connection to '.*' failed/.test(problem))

it('shows a page only the lines of its room, and who is in it', async () => {
  const server = await startDemo(suite)
  const { page: alice } = await suite.open()
  const { page: bob } = await suite.open()
  const problems = { alice: watchProblems(alice), bob: watchProblems(bob) }
  await openChat(alice, server.origin)
  await openChat(bob, server.origin)
  const names = { alice: await nameOf(alice), bob: await nameOf(bob) }
  // Every page starts in the lobby, and sees the other there.
  expect(await roomOf(alice)).toBe('lobby')
  await waitForMembers(alice, [`${names.alice} (you)`, names.bob])
  await waitForMembers(bob, [names.alice, `${names.bob} (you)`])

  await enterRoom(bob, 'random')
  expect(await membersOf(bob)).toEqual([`${names.bob} (you)`])
  // Alice hears that Bob left the lobby.
  await waitForMembers(alice, [`${names.alice} (you)`], 'Bob gone from the lobby')

  await say(alice, 'lobby line')
  await say(bob, 'random line')
  await waitForLines(alice, 1)
  await waitForLines(bob, 1)
  await say(alice, 'lobby again')
  await waitForLines(alice, 2)
  expect(await logLines(alice)).toEqual(['you: lobby line', 'you: lobby again'])
  expect(await logLines(bob)).toEqual(['you: random line'])
  expect(server.chat.history.lobby.map(({ text }) => text)).toEqual(['lobby line', 'lobby again'])
  expect(server.chat.history.random.map(({ text }) => text)).toEqual(['random line'])
  // The server's membership is what the pages show.
  const sessions = { alice: await alice.evaluate<string>('sock.sessionId'), bob: await bob.evaluate<string>('sock.sessionId') }
  expect((await server.tether.presence('room:lobby')).map(({ id }) => id)).toEqual([sessions.alice])
  expect((await server.tether.presence('room:random')).map(({ id }) => id)).toEqual([sessions.bob])
  expect(await alice.isHidden('#outbox-box')).toBe(true)
  expect(problems).toEqual({ alice: [], bob: [] })
})

it("switches rooms: the new room's history first, then its lines; the room is kept across a reload", async () => {
  const server = await startDemo(suite)
  const { page: alice, errors } = await suite.open()
  const { page: bob } = await suite.open()
  await openChat(alice, server.origin)
  await openChat(bob, server.origin)
  const names = { alice: await nameOf(alice), bob: await nameOf(bob) }
  await enterRoom(bob, 'help')
  await say(bob, 'is anyone here?')
  await say(bob, 'I need help')
  await waitForLines(bob, 2)
  await say(alice, 'hello lobby')
  await waitForLines(alice, 1)

  // Alice moves to #help: the log starts over from the room's history, then goes on live.
  await enterRoom(alice, 'help')
  await waitForLines(alice, 2, "the history of #help on Alice's page")
  expect(await logLines(alice)).toEqual([`${names.bob}: is anyone here?`, `${names.bob}: I need help`])
  expect(await alice.getAttribute('#log', 'data-room')).toBe('help')
  expect(await alice.textContent('#here')).toBe('In #help:')
  await waitForMembers(alice, [`${names.alice} (you)`, names.bob])
  await waitForMembers(bob, [names.alice, `${names.bob} (you)`])
  await say(alice, 'what do you need?')
  await waitForLines(bob, 3)
  await waitForLines(alice, 3)
  expect(await logLines(bob)).toEqual(['you: is anyone here?', 'you: I need help', `${names.alice}: what do you need?`])

  // A reload keeps the room, its log and who is in it: the session resumes where it was.
  await alice.reload()
  await waitInPage(alice, () => document.getElementById('state')?.textContent === 'connected', 'Alice reconnected')
  expect(await roomOf(alice)).toBe('help')
  expect(await logLines(alice)).toEqual([`${names.bob}: is anyone here?`, `${names.bob}: I need help`, 'you: what do you need?'])
  await waitForMembers(alice, [`${names.alice} (you)`, names.bob])
  await say(bob, 'thanks')
  await waitForLines(alice, 4)

  // Back to the lobby: its history, which has Alice's line and nothing of #help.
  await enterRoom(alice, 'lobby')
  await waitForLines(alice, 1, 'the history of the lobby')
  expect(await logLines(alice)).toEqual(['you: hello lobby'])
  await waitForMembers(bob, [`${names.bob} (you)`], 'Alice gone from #help')
  await say(bob, 'only in #help')
  await waitForLines(bob, 5)
  await say(alice, 'only in the lobby')
  await waitForLines(alice, 2)
  expect(await logLines(alice)).toEqual(['you: hello lobby', 'you: only in the lobby'])
  expect(server.chat.history.help.map(({ text }) => text)).toEqual([
    'is anyone here?',
    'I need help',
    'what do you need?',
    'thanks',
    'only in #help',
  ])
  await waitFor(() => server.tether.sessions.size === 2, 3000, 'two sessions: the reload resumed Alice')
  expect(errors).toEqual([])
})

it('shows a member cut off as away, and connected again when it is back', async () => {
  const server = await startDemo(suite)
  // Alice reaches the server through a gate, to be cut off.
  const gate = await startTcpGate(server.port)
  suite.defer(() => gate.close())
  const { page: alice } = await suite.open()
  const { page: bob, errors } = await suite.open()
  await openChat(alice, `http://127.0.0.1:${gate.port}`)
  await openChat(bob, server.origin)
  const names = { alice: await nameOf(alice), bob: await nameOf(bob) }
  await enterRoom(alice, 'random')
  await enterRoom(bob, 'random')
  await waitForMembers(bob, [names.alice, `${names.bob} (you)`])

  gate.down()
  await waitForMembers(bob, [`${names.alice} (away)`, `${names.bob} (you)`], 'Alice away on Bob’s page')
  expect(await bob.$eval('#members li.away', (li) => li.textContent)).toBe(`${names.alice} (away)`)
  gate.up()
  await retryIfShown(alice)
  await waitForMembers(bob, [names.alice, `${names.bob} (you)`], 'Alice connected again on Bob’s page')
  await waitForMembers(alice, [`${names.alice} (you)`, names.bob])
  expect(errors).toEqual([])
})

it('gives a page cut off in a room the lines published meanwhile, once and in order, on its return', async () => {
  const server = await startDemo(suite)
  const gate = await startTcpGate(server.port)
  suite.defer(() => gate.close())
  const { page: alice } = await suite.open()
  const { page: bob } = await suite.open()
  const problems = { alice: watchProblems(alice), bob: watchProblems(bob) }
  await openChat(alice, `http://127.0.0.1:${gate.port}`)
  await openChat(bob, server.origin)
  const names = { alice: await nameOf(alice), bob: await nameOf(bob) }
  await enterRoom(alice, 'random')
  await enterRoom(bob, 'random')
  await say(bob, 'before')
  await waitForLines(alice, 1)

  gate.down()
  await waitForMembers(bob, [`${names.alice} (away)`, `${names.bob} (you)`], 'Alice away')
  for (const n of [1, 2, 3]) await say(bob, `meanwhile ${n}`)
  // Published to the lobby meanwhile: not Alice's room.
  server.tether.publish('room:lobby', { from: 'bot', text: 'lobby only' })
  await waitForLines(bob, 4)
  expect(await logLines(alice)).toEqual([`${names.bob}: before`])

  gate.up()
  await retryIfShown(alice)
  await waitForLines(alice, 4, 'the lines published while Alice was away')
  expect(await logLines(alice)).toEqual([`${names.bob}: before`, ...[1, 2, 3].map((n) => `${names.bob}: meanwhile ${n}`)])
  expect(await notices(alice)).toEqual([])
  await say(alice, 'back')
  await waitForLines(bob, 5)
  await waitForLines(alice, 5)
  expect(problems.bob).toEqual([])
  expect(apartFromRefusals(problems.alice)).toEqual([])
})

it('tells a page away longer than the retention how many lines it missed, then shows the rest in order', async () => {
  const kept = CHAT_OPTIONS.topics.maxMessages
  expect(kept).toBe(20)
  const server = await startDemo(suite)
  const gate = await startTcpGate(server.port)
  suite.defer(() => gate.close())
  const { page: alice, errors } = await suite.open()
  const { page: bob } = await suite.open()
  await openChat(alice, `http://127.0.0.1:${gate.port}`)
  await openChat(bob, server.origin)
  const names = { alice: await nameOf(alice), bob: await nameOf(bob) }
  await enterRoom(alice, 'random')
  await enterRoom(bob, 'random')

  gate.down()
  // The room publishes that Alice is away (one message), then Bob's 25 lines: 26 messages for
  // Alice, of which the room keeps the last 20.
  await waitForMembers(bob, [`${names.alice} (away)`, `${names.bob} (you)`], 'Alice away')
  const lines = range(25, 1).map((n) => `line ${n}`)
  for (const text of lines) await say(bob, text)
  await waitForLines(bob, lines.length)

  gate.up()
  await retryIfShown(alice)
  await waitInPage(alice, (last) => document.querySelector('#log li:last-child .text')?.textContent === last, 'the last line', {
    arg: lines.at(-1),
  })
  const missed = 1 + lines.length - kept
  expect(await wholeLog(alice)).toEqual([
    `notice: ${missed} earlier messages in #random were missed while you were away`,
    ...lines.slice(lines.length - kept).map((text) => `${names.bob}: ${text}`),
  ])
  // The room's history (the app's own, 50 lines) still has them all: entering the room again shows them.
  await enterRoom(alice, 'lobby')
  await enterRoom(alice, 'random')
  await waitForLines(alice, lines.length)
  expect(await logLines(alice)).toEqual(lines.map((text) => `${names.bob}: ${text}`))
  expect(errors).toEqual([])
})

it('moves a page that switched rooms while cut off: what the old room published meanwhile is not shown in the new one', async () => {
  const server = await startDemo(suite)
  const gate = await startTcpGate(server.port)
  suite.defer(() => gate.close())
  const { page: alice } = await suite.open()
  const { page: bob } = await suite.open()
  const problems = { alice: watchProblems(alice), bob: watchProblems(bob) }
  await openChat(alice, `http://127.0.0.1:${gate.port}`)
  await openChat(bob, server.origin)
  const names = { alice: await nameOf(alice), bob: await nameOf(bob) }
  await waitForMembers(bob, [names.alice, `${names.bob} (you)`])
  // Alice notes each line her page received but did not show (it says so on its console).
  const notShown: string[] = []
  alice.on('console', (message) => {
    if (message.type() === 'info' && message.text().startsWith('a line of #')) notShown.push(message.text())
  })

  gate.down()
  await waitForMembers(bob, [`${names.alice} (away)`, `${names.bob} (you)`], 'Alice away')
  await say(bob, 'lobby 1')
  await say(bob, 'lobby 2')
  await waitForLines(bob, 2)
  // Cut off, Alice types in the lobby, then moves to #random: the line, then the request to join, wait in her outbox.
  await say(alice, 'typed in the lobby')
  await alice.click('#rooms button[data-room="random"]')
  expect(await roomOf(alice)).toBe('random')
  expect(await logLines(alice)).toEqual([])
  expect(await alice.$$eval('#outbox li .text', (items) => items.map((item) => item.textContent))).toEqual(['typed in the lobby'])

  gate.up()
  await retryIfShown(alice)
  await waitForMembers(alice, [`${names.alice} (you)`], 'Alice alone in #random')
  // Bob's two lines (published while she was a member) and her own reached her page, in the lobby's name.
  await waitFor(() => notShown.length === 3, 3000, 'the lobby lines delivered to Alice')
  expect(notShown).toEqual([
    'a line of #lobby, not shown in #random',
    'a line of #lobby, not shown in #random',
    'a line of #lobby, not shown in #random',
  ])
  expect(await logLines(alice)).toEqual([])
  // Her line reached the lobby; her page no longer waits for it.
  await waitForLines(bob, 3)
  expect((await logLines(bob))[2]).toBe(`${names.alice}: typed in the lobby`)
  await waitInPage(alice, () => document.getElementById('outbox-box')?.hidden === true, 'the outbox empty')

  await enterRoom(bob, 'random')
  await say(bob, 'hello #random')
  await waitForLines(alice, 1)
  expect(await logLines(alice)).toEqual([`${names.bob}: hello #random`])
  expect(problems.bob).toEqual([])
  expect(apartFromRefusals(problems.alice)).toEqual([])
})

it('keeps a page in its room across a server restart: the new session is moved there, and the line typed meanwhile comes back once', async () => {
  const server = await startDemo(suite)
  const { page, errors } = await suite.open()
  await openChat(page, server.origin)
  const name = await nameOf(page)
  await enterRoom(page, 'random')
  await say(page, 'before the restart')
  await waitForLines(page, 1)

  await server.close()
  await waitInPage(page, () => document.getElementById('status')?.dataset.state === 'reconnecting', 'the page to notice the restart')
  await say(page, 'typed while it was down')
  const restarted = await startDemo(suite, server.port)
  // Someone chats in the restarted lobby first: a new session starts there and gets its
  // history, which a page in #random does not show.
  const other = new TetherSocket(`${restarted.origin.replace('http:', 'ws:')}/ws`, { WebSocket })
  suite.defer(() => other.close())
  await other.send({ from: 'node', text: 'in the lobby' })
  await retryIfShown(page)
  await waitInPage(page, () => document.querySelector('#log li.mine .text')?.textContent === 'typed while it was down', 'the line back')
  await waitForMembers(page, [`${name} (you)`])
  expect(await roomOf(page)).toBe('random')
  expect(await notices(page)).toEqual(['New session: the server restarted or forgot this tab. Its history follows.'])
  expect(await logLines(page)).toEqual(['you: typed while it was down'])
  expect(restarted.chat.history.random.map(({ text }) => text)).toEqual(['typed while it was down'])
  expect(restarted.chat.history.lobby.map(({ text }) => text)).toEqual(['in the lobby'])
  const session = await page.evaluate<string>('sock.sessionId')
  expect((await restarted.tether.presence('room:random')).map(({ id }) => id)).toEqual([session])
  expect((await restarted.tether.presence('room:lobby')).map(({ id }) => id)).toEqual([other.sessionId])
  await waitInPage(page, () => document.getElementById('outbox-box')?.hidden === true, 'nothing waiting')
  expect(errors).toEqual([])
})
