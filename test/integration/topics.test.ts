/**
 * Topics against a real reference server and real clients on 127.0.0.1: `session.join`,
 * `server.publish`, `session.leave`, `server.presence`, the `join` and `leave` events, what an
 * away member gets when it resumes, and the `missed` report when it fell behind the retention.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { MissedInfo } from '../../src/client/wire/types.js'
import { OptionError, QueueFullError } from '../../src/errors.js'
import type { MessageInfo } from '../../src/index.js'
import type { Session, TetherServer, TetherServerOptions } from '../../src/server/index.js'
import { cleanupTether, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

interface Msg {
  n: number
}

/** A client recording messages with their infos and missed reports, and its server-side session. */
async function member(server: TetherServer) {
  const c = tetherClient<Msg, Msg>(urlOf(server))
  const infos: MessageInfo[] = []
  const missed: MissedInfo[] = []
  c.sock.on('message', (_m, info) => infos.push(info))
  c.sock.on('missed', (info) => missed.push(info))
  await waitFor(() => c.sock.state === 'open', 5000, 'open')
  const session = server.sessions.get(c.sock.sessionId as string) as Session<Msg>
  return { ...c, infos, missed, session }
}

async function topicServer(options: TetherServerOptions = {}) {
  const server = await startTether(options)
  const events: string[] = []
  server.on('join', (s, topic) => events.push(`join ${s.id} ${topic}`))
  server.on('leave', (s, topic, reason) => events.push(`leave ${s.id} ${topic} ${reason}`))
  return { server, events }
}

describe('publish', () => {
  it('reaches every member once with info.topic, and no one else', async () => {
    const { server, events } = await topicServer()
    const a = await member(server)
    const b = await member(server)
    const outsider = await member(server)
    a.session.join('room')
    b.session.join('room')
    expect(events).toEqual([`join ${a.session.id} room`, `join ${b.session.id} room`])
    for (let n = 0; n < 5; n++) expect(server.publish('room', { n })).toBe(2)
    await waitFor(() => a.messages.length === 5 && b.messages.length === 5, 5000, 'both got 5')
    expect(a.messages.map((m) => m.n)).toEqual([0, 1, 2, 3, 4])
    expect(b.messages.map((m) => m.n)).toEqual([0, 1, 2, 3, 4])
    expect(a.infos.every((info) => info.topic === 'room')).toBe(true)
    await outsider.sock.send({ n: 0 }) // a round trip: anything published would have arrived before its ack
    expect(outsider.messages).toEqual([])
  })

  it('keeps the stream in send order: direct messages and topic messages interleaved as sent', async () => {
    const { server } = await topicServer()
    const a = await member(server)
    a.session.join('room')
    server.publish('room', { n: 1 })
    void a.session.send({ n: 2 })
    server.publish('room', { n: 3 })
    await waitFor(() => a.messages.length === 3, 5000, '3 messages')
    expect(a.messages.map((m) => m.n)).toEqual([1, 2, 3])
    expect(a.infos.map((info) => info.topic)).toEqual(['room', undefined, 'room'])
  })
})

describe('an away member', () => {
  it('gets what was published while it was away on resume, in order, once, with a direct message sent after them behind them', async () => {
    const { server } = await topicServer()
    const a = await member(server)
    a.session.join('room')
    a.session.join('news')
    await a.sock.close()
    expect(await server.presence('room')).toEqual([{ id: a.session.id, principal: undefined, connected: false }])
    server.publish('room', { n: 1 })
    server.publish('news', { n: 2 })
    server.publish('room', { n: 3 })
    void a.session.send({ n: 4 })
    a.sock.connect()
    await waitFor(() => a.messages.length === 4, 5000, '4 messages')
    expect(a.messages.map((m) => m.n)).toEqual([1, 2, 3, 4])
    expect(a.infos.map((info) => info.topic)).toEqual(['room', 'news', 'room', undefined])
    expect(a.sessions).toHaveLength(1) // resumed, not a new session
  })

  it('that fell behind the retention is told how many it missed, then gets what is kept', async () => {
    const { server } = await topicServer({ topics: { maxMessages: 3 } })
    const a = await member(server)
    a.session.join('room')
    server.publish('room', { n: 0 })
    await waitFor(() => a.messages.length === 1, 5000, 'the first')
    await a.sock.close()
    for (let n = 1; n <= 10; n++) server.publish('room', { n })
    a.sock.connect()
    await waitFor(() => a.messages.length === 4, 5000, 'the kept ones')
    expect(a.missed).toEqual([expect.objectContaining({ topic: 'room', count: 7, redelivered: false })])
    expect(a.messages.map((m) => m.n)).toEqual([0, 8, 9, 10])
    // The report took its place in the stream: between the first message and the kept ones.
    expect(a.missed[0]!.seq).toBe(a.infos[0]!.seq! + 1)
    expect(a.infos[1]!.seq).toBe(a.missed[0]!.seq + 1)
  })
})

describe('membership', () => {
  it('after leave(): what was published before still comes, nothing after; leave and join events', async () => {
    const { server, events } = await topicServer()
    const a = await member(server)
    a.session.join('room')
    await a.sock.close()
    server.publish('room', { n: 1 })
    a.session.leave('room')
    a.session.leave('room') // not a member: nothing
    expect(server.publish('room', { n: 2 })).toBe(0)
    a.sock.connect()
    await waitFor(() => a.messages.length === 1, 5000, 'the one before')
    await a.sock.send({ n: 0 })
    expect(a.messages.map((m) => m.n)).toEqual([1])
    expect(a.session.topics).toEqual([])
    expect(events).toEqual([`join ${a.session.id} room`, `leave ${a.session.id} room left`])
  })

  it('presence tells connected and away members apart; a session that ends leaves its topics', async () => {
    const { server, events } = await topicServer()
    const a = await member(server)
    const b = await member(server)
    a.session.join('room')
    b.session.join('room')
    b.session.join('other')
    await b.sock.close()
    expect(await server.presence('room')).toEqual([
      { id: a.session.id, principal: undefined, connected: true },
      { id: b.session.id, principal: undefined, connected: false },
    ])
    b.session.end()
    expect(await server.presence('room')).toEqual([{ id: a.session.id, principal: undefined, connected: true }])
    expect(await server.presence('other')).toEqual([])
    expect(events.slice(-2).sort()).toEqual([`leave ${b.session.id} other ended`, `leave ${b.session.id} room ended`])
  })

  it('a join listener that publishes reaches the session that just joined', async () => {
    const { server } = await topicServer()
    server.on('join', (_s, topic) => server.publish(topic, { n: 99 }))
    const a = await member(server)
    a.session.join('room')
    await waitFor(() => a.messages.length === 1, 5000, 'the welcome to the room')
    expect(a.messages).toEqual([{ n: 99 }])
  })

  it('refuses at publish a message no member could hold (over maxQueueBytes): it would stall every member', async () => {
    const { server } = await topicServer({ maxQueueBytes: 1000 })
    const a = await member(server)
    a.session.join('room')
    expect(() => server.publish('room', { n: 1, pad: 'x'.repeat(1000) } as never)).toThrow(QueueFullError)
    expect(server.publish('room', { n: 2 })).toBe(1)
    await waitFor(() => a.messages.length === 1, 5000, 'the small one')
    expect(a.messages).toEqual([{ n: 2 }])
  })

  it('refuses a bad topic name with an OptionError naming the call', async () => {
    const { server } = await topicServer()
    const a = await member(server)
    expect(() => a.session.join('')).toThrow(OptionError)
    expect(() => server.publish(42 as never, { n: 1 })).toThrow(/publish\(topic\)/)
    expect(() => server.presence('')).toThrow(OptionError)
  })
})
