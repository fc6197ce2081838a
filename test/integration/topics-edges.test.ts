/**
 * Topics at their edges, against a real reference server and real clients on 127.0.0.1:
 * rejoining after a leave, a member whose outbox is full while connected, the order of topic
 * messages against direct messages, broadcasts and replies when the outbox has no room for all
 * of them, and a member evicted by the memory budget while its topic messages are pulled.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { MissedInfo } from '../../src/client/wire/types.js'
import { DeliveryError, QueueFullError } from '../../src/errors.js'
import type { MessageInfo } from '../../src/index.js'
import type { ExpireReason, Session, TetherServer, TetherServerOptions } from '../../src/server/index.js'
import { cleanupTether, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(cleanupTether)

interface Msg {
  n: number
  pad?: string
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

const start = (options: TetherServerOptions = {}) => startTether(options)

/** What a client got, as `topic:n` (`direct:n` for direct messages). */
const stream = (c: { messages: Msg[]; infos: MessageInfo[] }) => c.messages.map((m, i) => `${c.infos[i]?.topic ?? 'direct'}:${m.n}`)

describe('rejoining after leave()', () => {
  it('with messages still due: gets those, then only what is published after the rejoin, not what came while it was out', async () => {
    const server = await start()
    const a = await member(server)
    const b = await member(server) // keeps the topic alive while a is out
    a.session.join('room')
    b.session.join('room')
    await a.sock.close()
    server.publish('room', { n: 1 }) // due to a
    a.session.leave('room')
    server.publish('room', { n: 2 }) // a is not a member
    a.session.join('room')
    server.publish('room', { n: 3 })
    a.sock.connect()
    await waitFor(() => a.messages.length >= 2, 5000, 'two messages')
    await a.sock.send({ n: 0 }) // a round trip: anything more would have come before its ack
    expect(stream(a)).toEqual(['room:1', 'room:3'])
    await waitFor(() => b.messages.length === 3, 5000, 'b got all three')
  })

  it('as the only member (its topic was dropped with its leave): still gets what was due before, then what comes after', async () => {
    const server = await start()
    const a = await member(server)
    a.session.join('room')
    await a.sock.close()
    server.publish('room', { n: 1 })
    a.session.leave('room')
    expect(await server.presence('room')).toEqual([])
    a.session.join('room')
    server.publish('room', { n: 2 })
    a.sock.connect()
    await waitFor(() => a.messages.length >= 2, 5000, 'two messages')
    await a.sock.send({ n: 0 })
    expect(stream(a)).toEqual(['room:1', 'room:2'])
    expect(a.missed).toEqual([])
  })
})

describe('a connected member whose outbox is full (maxQueue)', () => {
  it('gets every topic message once acknowledgements make room: none dropped, in order', async () => {
    const server = await start({ maxQueue: 5 })
    const a = await member(server)
    a.session.join('room')
    for (let n = 0; n < 100; n++) server.publish('room', { n })
    expect(a.session.pending).toBe(5) // the rest waits in the topic's log
    await waitFor(() => a.messages.length === 100, 5000, 'all 100')
    expect(a.messages.map((m) => m.n)).toEqual(Array.from({ length: 100 }, (_, n) => n))
    expect(a.missed).toEqual([])
  })

  it('that falls behind the retention meanwhile is told how many it missed, in its place in the stream', async () => {
    const server = await start({ maxQueue: 5, topics: { maxMessages: 20 } })
    const a = await member(server)
    a.session.join('room')
    for (let n = 0; n < 100; n++) server.publish('room', { n })
    await waitFor(() => a.messages.length === 25, 5000, 'the 5 pulled and the 20 kept')
    expect(a.messages.map((m) => m.n)).toEqual([0, 1, 2, 3, 4, ...Array.from({ length: 20 }, (_, i) => 80 + i)])
    expect(a.missed).toEqual([expect.objectContaining({ topic: 'room', count: 75 })])
    expect(a.missed[0]?.seq).toBe(6)
  })
})

describe('order when the outbox has no room for every waiting topic message (maxQueueBytes)', () => {
  /** An away member with two 1,500-byte topic messages waiting; its outbox holds 2,000 bytes. */
  async function twoBigWaiting() {
    const server = await start({ maxQueueBytes: 2000 })
    const a = await member(server)
    a.session.join('room')
    await a.sock.close()
    const pad = 'x'.repeat(1500)
    server.publish('room', { n: 1, pad })
    server.publish('room', { n: 2, pad })
    return { server, a }
  }

  it('a direct message sent after them is refused rather than sent ahead of one that waits for room', async () => {
    const { a } = await twoBigWaiting()
    // 1,516 + 320 + ~8 bytes would fit; the second topic message does not, and it came first.
    const sent = withTimeout(a.session.send({ n: 3 }), 1000, 'the send to be refused')
    await expect(sent).rejects.toBeInstanceOf(QueueFullError)
    await expect(sent).rejects.toThrow(/maxQueueBytes/)
    a.sock.connect()
    await waitFor(() => a.messages.length >= 2, 5000, 'both topic messages')
    await a.sock.send({ n: 0 })
    expect(stream(a)).toEqual(['room:1', 'room:2'])
  })

  it('a broadcast after them skips the session rather than overtaking one that waits', async () => {
    const { server, a } = await twoBigWaiting()
    server.broadcast({ n: 3 })
    a.sock.connect()
    await waitFor(() => a.messages.length >= 2, 5000, 'both topic messages')
    await a.sock.send({ n: 0 })
    expect(stream(a)).toEqual(['room:1', 'room:2'])
  })
})

describe('a reply to a request', () => {
  it('answered while the client is away comes after the topic messages published before it', async () => {
    const server = await start()
    let answer: (value: string) => void = () => {}
    server.onRequest(() => new Promise<string>((resolve) => (answer = resolve)))
    const a = await member(server)
    a.session.join('room')
    const asked = a.sock.request({ n: 0 })
    asked.catch(() => {}) // the client closes before the reply: it fails there, the server still queues it
    await waitFor(() => a.session.received === 1, 5000, 'the request at the server')
    await a.sock.close()
    server.publish('room', { n: 1 })
    answer('done')
    await waitFor(() => a.session.pending > 0, 5000, 'the reply queued')
    a.sock.connect()
    await waitFor(() => a.messages.length === 1, 5000, 'the topic message')
    // The topic message was published first: it takes the first number, the reply the next.
    expect(a.infos[0]?.seq).toBe(1)
    expect(a.session.lastSent).toBe(2)
  })
})

describe('a member evicted by the memory budget while its topic messages are pulled', () => {
  it('by a send(): the send rejects with the eviction, the session is gone and the budget holds nothing of it', async () => {
    const server = await start({ maxDisconnectedBytes: 4096 })
    const expired: ExpireReason[] = []
    server.on('expire', (_s, reason) => expired.push(reason))
    const a = await member(server)
    a.session.join('room')
    await a.sock.close()
    const pad = 'x'.repeat(1000)
    for (let n = 0; n < 3; n++) server.publish('room', { n, pad }) // pulled on send: 2,048 + 3 × ~1,030 > 4,096
    const sent = withTimeout(a.session.send({ n: 9 }), 2000, 'the send to settle')
    await expect(sent).rejects.toBeInstanceOf(DeliveryError)
    await expect(sent).rejects.toThrow(/evicted/)
    expect(expired).toEqual(['evicted'])
    expect(server.sessions.size).toBe(0)
    expect((server as unknown as { budget: { sessions: number; bytes: number } }).budget).toMatchObject({ sessions: 0, bytes: 0 })
  })

  it('by a broadcast: the session is gone and the budget holds nothing of it', async () => {
    const server = await start({ maxDisconnectedBytes: 4096 })
    const expired: ExpireReason[] = []
    server.on('expire', (_s, reason) => expired.push(reason))
    const a = await member(server)
    a.session.join('room')
    await a.sock.close()
    const pad = 'x'.repeat(1000)
    for (let n = 0; n < 3; n++) server.publish('room', { n, pad })
    server.broadcast({ n: 9 })
    expect(expired).toEqual(['evicted'])
    expect(server.sessions.size).toBe(0)
    expect((server as unknown as { budget: { sessions: number; bytes: number } }).budget).toMatchObject({ sessions: 0, bytes: 0 })
  })
})
