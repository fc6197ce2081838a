/**
 * Topics across two server nodes sharing a real redis-server: a publish on one node reaches a
 * member held by the other; an away member resumed on another node gets what it missed, once,
 * in order; a member that fell behind the log's retention gets one `missed` with the exact
 * count, wherever it resumes; presence is the service's, with each member's connected flag.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { MissedInfo } from '../../src/client/wire/types.js'
import type { MessageInfo } from '../../src/index.js'
import { redisStore } from '../../src/redis/index.js'
import type { Session, TetherServer } from '../../src/server/index.js'
import { connectedClient, type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, startProxy, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

let redis: RedisServer
let prefixCount = 0

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

interface Msg {
  n: number
}

/** Two nodes sharing one store (a prefix of their own); `maxMessages` per topic. */
async function twoNodes(maxMessages = 1000) {
  const prefix = `tp${++prefixCount}-${Date.now()}`
  const nodes: TetherServer[] = []
  for (let i = 0; i < 2; i++) {
    const client = await connectedClient(redis.url)
    nodes.push(await startTether({ store: redisStore(client, { prefix }), heartbeatInterval: 0, topics: { maxMessages } }))
  }
  return nodes as [TetherServer, TetherServer]
}

/** A client through a proxy whose target can move between nodes, recording messages with infos and missed reports. */
async function member(nodes: TetherServer[], at: number) {
  let target = nodes[at].port
  const proxy = await startProxy(() => target)
  const c = tetherClient<Msg, Msg>(urlOf(proxy))
  const infos: MessageInfo[] = []
  const missed: MissedInfo[] = []
  c.sock.on('message', (_m, info) => infos.push(info))
  c.sock.on('missed', (info) => missed.push(info))
  await waitFor(() => c.sock.state === 'open', 5000, 'open')
  const id = c.sock.sessionId as string
  const session = () => nodes.find((node) => node.sessions.get(id)?.isHeld)?.sessions.get(id) as Session<Msg>
  await waitFor(() => session(), 5000, 'held')
  return {
    ...c,
    id,
    infos,
    missed,
    session,
    /** Cuts the connection and keeps the client away (connections refused). */
    async away() {
      target = 0
      proxy.cutAll()
      await waitFor(() => c.sock.state !== 'open' && nodes.every((node) => !node.sessions.get(id)?.isHeld), 5000, 'released')
    },
    /** Lets it come back, through node `to`. */
    async resume(to: number) {
      target = nodes[to].port
      await waitFor(() => c.sock.state === 'open' && nodes[to].sessions.get(id)?.isHeld, 10000, `resumed on node ${to}`)
    },
  }
}

/** Waits until the members' places are recorded (a join is answered by the store asynchronously). */
async function joined(node: TetherServer, topic: string, ids: string[]) {
  await waitFor(
    async () => {
      const members = await node.presence(topic)
      return ids.every((id) => members.some((m) => m.id === id))
    },
    5000,
    `members of ${topic}`,
  )
}

describe('topics across nodes (Redis)', () => {
  it('a publish on node A reaches members held by node A and node B, each once, in order, with info.topic', async () => {
    const nodes = await twoNodes()
    const a = await member(nodes, 0)
    const b = await member(nodes, 1)
    const outsider = await member(nodes, 1)
    a.session().join('room')
    b.session().join('room')
    await joined(nodes[0], 'room', [a.id, b.id])
    await waitFor(() => b.session().topics.includes('room'), 5000, 'b joined')
    for (let n = 0; n < 20; n++) expect(nodes[n % 2].publish('room', { n })).toBe(-1)
    await waitFor(() => a.messages.length === 20 && b.messages.length === 20, 5000, 'both got 20')
    // Published alternately from both nodes: the order is the topic's (one log), the same for both members.
    expect(a.messages).toEqual(b.messages)
    expect(a.messages.map((m) => m.n).sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, n) => n))
    // From one node, in the order published.
    const fromNode0 = a.messages.map((m) => m.n).filter((n) => n % 2 === 0)
    expect(fromNode0).toEqual([...fromNode0].sort((x, y) => x - y))
    expect(a.infos.every((info) => info.topic === 'room') && b.infos.every((info) => info.topic === 'room')).toBe(true)
    await outsider.sock.send({ n: 0 }) // a round trip: anything sent to it would have come first
    expect(outsider.messages).toEqual([])
  })

  it('an away member resumed on the other node gets what was published meanwhile, once, in order, then goes on', async () => {
    const nodes = await twoNodes()
    const a = await member(nodes, 0)
    a.session().join('room')
    a.session().join('news')
    await joined(nodes[0], 'news', [a.id])
    nodes[0].publish('room', { n: 1 })
    await waitFor(() => a.messages.length === 1, 5000, 'first')
    await a.away()
    const presence = await nodes[1].presence('room')
    expect(presence).toEqual([{ id: a.id, principal: undefined, connected: false }])
    nodes[1].publish('room', { n: 2 })
    nodes[0].publish('news', { n: 3 })
    nodes[1].publish('room', { n: 4 })
    await a.resume(1)
    await waitFor(() => a.messages.length === 4, 5000, 'caught up')
    nodes[0].publish('room', { n: 5 })
    await waitFor(() => a.messages.length === 5, 5000, 'live again')
    // Each topic in publish order; across topics published from two nodes at once, either order.
    const of = (topic: string) => a.messages.filter((_, i) => a.infos[i].topic === topic).map((m) => m.n)
    expect(of('room')).toEqual([1, 2, 4, 5])
    expect(of('news')).toEqual([3])
    expect(a.missed).toEqual([])
    expect(new Set(a.infos.map((info) => info.id)).size).toBe(5)
  })

  it('a member that fell behind the retention while away gets one missed with the exact count on the other node, then the rest', async () => {
    const nodes = await twoNodes(5)
    const a = await member(nodes, 0)
    // A member of another topic, told after the publishes: they have landed by then (one node's publishes keep their order).
    const watcher = await member(nodes, 0)
    a.session().join('room')
    watcher.session().join('marker')
    await joined(nodes[0], 'room', [a.id])
    await joined(nodes[0], 'marker', [watcher.id])
    nodes[1].publish('room', { n: 0 })
    await waitFor(() => a.messages.length === 1, 5000, 'first')
    await a.away()
    for (let n = 1; n <= 12; n++) nodes[1].publish('room', { n })
    // The log keeps the last 5 (8..12): 1..7 are lost to a's place.
    nodes[1].publish('marker', { n: 13 })
    await waitFor(() => watcher.messages.length === 1, 5000, 'all published')
    await a.resume(1)
    await waitFor(() => a.messages.length === 6, 5000, 'the kept five')
    expect(a.missed.map(({ topic, count }) => ({ topic, count }))).toEqual([{ topic: 'room', count: 7 }])
    expect(a.messages.map((m) => m.n)).toEqual([0, 8, 9, 10, 11, 12])
  })

  it('presence is the service’s: members of both nodes with their connected flags; leave and expiry take them out', async () => {
    const nodes = await twoNodes()
    const events: string[] = []
    nodes.forEach((node, i) => {
      node.on('join', (s, topic) => events.push(`${i} join ${s.id} ${topic}`))
      node.on('leave', (s, topic, reason) => events.push(`${i} leave ${s.id} ${topic} ${reason}`))
    })
    const a = await member(nodes, 0)
    const b = await member(nodes, 1)
    a.session().join('room')
    b.session().join('room')
    await joined(nodes[1], 'room', [a.id, b.id])
    const byId = <T extends { id: string }>(list: T[]) => [...list].sort((x, y) => (x.id < y.id ? -1 : 1))
    expect(byId(await nodes[0].presence('room'))).toEqual(
      byId([
        { id: a.id, principal: undefined, connected: true },
        { id: b.id, principal: undefined, connected: true },
      ]),
    )
    await b.away()
    await waitFor(async () => (await nodes[0].presence('room')).some((m) => m.id === b.id && !m.connected), 5000, 'b away')
    await b.resume(0)
    await waitFor(async () => (await nodes[1].presence('room')).every((m) => m.connected), 5000, 'b back, on node 0')
    a.session().leave('room')
    await waitFor(async () => (await nodes[1].presence('room')).length === 1, 5000, 'a left')
    expect(await nodes[1].presence('room')).toEqual([{ id: b.id, principal: undefined, connected: true }])
    expect(events).toEqual([`0 join ${a.id} room`, `1 join ${b.id} room`, `0 leave ${a.id} room left`])
    b.session().end()
    await waitFor(async () => (await nodes[0].presence('room')).length === 0, 5000, 'b ended')
  })
})
