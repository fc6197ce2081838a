/**
 * The conformance kit's session (src/conformance/session.ts) against a scripted server on
 * 127.0.0.1 that sends the topic additions of PROTOCOL.md §13: a kit that refused them would
 * fail servers that have topics, and one that let malformed ones pass would check nothing. The
 * server answers each hello with a welcome and then the frames its script gives.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocketServer } from 'ws'
import { Violation } from '../../src/conformance/peer.js'
import { connect, KitSession } from '../../src/conformance/session.js'

const TIMEOUT = 2000
const WELCOME = { t: 'welcome', sid: 'S', resumed: false, ack: 0, max: 65536, sent: 0 }

const servers = new Set<WebSocketServer>()
const sessions = new Set<KitSession>()

afterEach(async () => {
  for (const session of sessions) await session.connection.close()
  sessions.clear()
  await Promise.all(
    [...servers].map(
      (wss) =>
        new Promise<void>((resolve) => {
          for (const client of wss.clients) client.terminate()
          wss.close(() => resolve())
        }),
    ),
  )
  servers.clear()
})

/** A server that answers the hello with `before` (frames ahead of the welcome), the welcome, then `after`. */
async function scripted(after: object[], before: object[] = []): Promise<string> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => 'tether.v1' })
  servers.add(wss)
  await new Promise<void>((resolve) => wss.once('listening', resolve))
  wss.on('connection', (ws) => {
    ws.on('error', () => {})
    ws.once('message', () => {
      for (const frame of [...before, WELCOME, ...after]) ws.send(JSON.stringify(frame))
    })
  })
  return `ws://127.0.0.1:${(wss.address() as { port: number }).port}/`
}

/** A kit session on `url`, opened (its welcome awaited). */
async function opened(url: string): Promise<KitSession> {
  const session = new KitSession(() => connect(url, TIMEOUT))
  sessions.add(session)
  await session.open()
  return session
}

/** The Violation the kit raises while taking in what the server sent, or a failure when it raises none. */
async function violation(session: KitSession, count: number): Promise<Violation> {
  const error = await session.until(() => (session.items.length >= count ? true : undefined), 'the items', TIMEOUT).catch((e) => e)
  expect(error).toBeInstanceOf(Violation)
  return error as Violation
}

describe('the conformance kit and topics (PROTOCOL.md §13)', () => {
  it('takes topic messages and miss items in sequence, with their topic and count; a resent miss is a duplicate', async () => {
    const session = await opened(
      await scripted([
        { t: 'msg', s: 1, d: ['direct'] },
        { t: 'msg', s: 2, tp: 'room', d: ['a', 'b'] },
        { t: 'miss', s: 4, tp: 'room', n: 7 },
        { t: 'miss', s: 4, tp: 'room', n: 7 },
        { t: 'msg', s: 5, tp: 'room', d: ['z'] },
      ]),
    )
    await session.until(() => (session.rxSeq === 5 ? true : undefined), 'item 5', TIMEOUT)
    expect(session.items).toEqual([
      { kind: 'msg', seq: 1, data: 'direct' },
      { kind: 'msg', seq: 2, data: 'a', topic: 'room' },
      { kind: 'msg', seq: 3, data: 'b', topic: 'room' },
      { kind: 'miss', seq: 4, topic: 'room', count: 7 },
      { kind: 'msg', seq: 5, data: 'z', topic: 'room' },
    ])
    // Echoes are messages only: a miss is no echo (§12.2).
    expect(session.echoes()).toEqual(['direct', 'a', 'b', 'z'])
  })

  it.each([
    ['a msg with an empty tp', { t: 'msg', s: 1, tp: '', d: [1] }, 'tp'],
    ['a msg with a numeric tp', { t: 'msg', s: 1, tp: 5, d: [1] }, 'tp'],
    ['a miss without tp', { t: 'miss', s: 1, n: 1 }, 'tp'],
    ['a miss with n 0', { t: 'miss', s: 1, tp: 'room', n: 0 }, 'n'],
    ['a miss with a fractional n', { t: 'miss', s: 1, tp: 'room', n: 1.5 }, 'n'],
    ['a miss with s 0', { t: 'miss', s: 0, tp: 'room', n: 1 }, 's'],
  ])('%s is a violation of §13.6 naming the field', async (_name, frame, field) => {
    const session = await opened(await scripted([frame]))
    const error = await violation(session, 1)
    expect(error.section).toBe('§13.6')
    expect(error.message).toContain(`invalid "${field}"`)
  })

  it('a miss that skips sequence numbers is a gap (§2.3)', async () => {
    const session = await opened(
      await scripted([
        { t: 'msg', s: 1, tp: 'room', d: ['a'] },
        { t: 'miss', s: 3, tp: 'room', n: 1 },
      ]),
    )
    const error = await violation(session, 2)
    expect(error.section).toBe('§2.3')
    expect(error.message).toContain('item 3 came after 1')
  })

  it('a miss before the welcome is a frame of tether.v1 where only the welcome may come (§4.5)', async () => {
    const url = await scripted([], [{ t: 'miss', s: 1, tp: 'room', n: 1 }])
    const session = new KitSession(() => connect(url, TIMEOUT))
    sessions.add(session)
    const error = await session.open().catch((e) => e)
    expect(error).toBeInstanceOf(Violation)
    expect((error as Violation).section).toBe('§4.5')
  })
})
