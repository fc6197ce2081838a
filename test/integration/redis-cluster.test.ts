/**
 * The Redis session store on a real Redis Cluster (three masters, no replicas): two server
 * nodes in this process, each with its own node-redis cluster client. Sessions whose keys live
 * on different masters are created on one node and resumed on the other with nothing lost or
 * repeated, `sendTo` crosses nodes, a broadcast reaches a held and an away session, and a
 * session expires once. Each test first checks, by asking the masters themselves, that a
 * session's two keys share a slot and that its sessions are spread over at least two masters:
 * so the commands were routed, not all sent to one Redis.
 */
import { createHash } from 'node:crypto'
import { createClient, createCluster } from 'redis'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import * as scripts from '../../src/redis/scripts.js'
import type { MessageInfo, TetherServer, TetherServerOptions } from '../../src/server/index.js'
import type { StoreListener } from '../../src/server/store.js'
import { type RedisCluster, startRedisCluster, stopAllRedisClusters } from '../support/redis-cluster.js'
import {
  cleanupTether,
  defer,
  sleep,
  startProxy,
  startTether,
  type Proxy as TcpProxy,
  tetherClient,
  urlOf,
  waitFor,
} from '../support/tether.js'

/** A standalone client on one master, to ask it what it holds and what it was asked. */
async function directClient(url: string) {
  const client = createClient({ url })
  client.on('error', () => {})
  await client.connect()
  return client
}

let cluster: RedisCluster
/** A standalone client on each master, by port. */
const direct = new Map<number, Awaited<ReturnType<typeof directClient>>>()
let prefixCount = 0

beforeAll(async () => {
  cluster = await startRedisCluster()
  for (const master of cluster.masters) direct.set(master.port, await directClient(master.url))
}, 40_000)
afterAll(async () => {
  await Promise.allSettled([...direct.values()].map((client) => client.close()))
  direct.clear()
  await stopAllRedisClusters()
})
beforeEach(async () => {
  for (const client of direct.values()) await client.sendCommand(['CONFIG', 'RESETSTAT'])
})
afterEach(() => cleanupTether())

/** A number from a master's INFO `section`: the first capture of `pattern`, 0 when absent. */
async function stat(port: number, section: string, pattern: RegExp): Promise<number> {
  const info = String(await direct.get(port)?.sendCommand(['INFO', section]))
  return Number(pattern.exec(info)?.[1] ?? 0)
}

/**
 * What proves the store routed each command itself: no master answered any of them with a
 * redirection (MOVED, ASK: a command sent to a master that does not serve its key, which
 * node-redis would follow silently) or CROSSSLOT (a script whose keys are in two slots), and
 * the session scripts ran on at least two masters.
 */
async function expectRoutedByKey() {
  for (const port of direct.keys()) {
    for (const error of ['MOVED', 'ASK', 'CROSSSLOT']) {
      expect({ port, error, count: await stat(port, 'errorstats', new RegExp(`errorstat_${error}:count=(\\d+)`)) }).toEqual({
        port,
        error,
        count: 0,
      })
    }
  }
  const ran = []
  for (const port of direct.keys()) {
    if ((await stat(port, 'commandstats', /cmdstat_evalsha:calls=(\d+)/)) > 0) ran.push(port)
  }
  expect(ran.length).toBeGreaterThanOrEqual(2)
}

/** A connected node-redis cluster client that discovers the cluster from `url`, closed after the test. */
async function clusterClient(url: string) {
  const client = createCluster({ rootNodes: [{ url }] })
  client.on('error', () => {})
  await client.connect()
  defer(() => client.close())
  return client
}

/** Two server nodes sharing one store on the cluster; each client starts from a different master. */
async function twoNodes(options: TetherServerOptions = {}) {
  const prefix = `c${++prefixCount}-${Date.now()}`
  const nodes: TetherServer[] = []
  for (let i = 0; i < 2; i++) {
    const client = await clusterClient(cluster.masters[i].url)
    nodes.push(await startTether({ store: redisStore(client, { prefix }), heartbeatInterval: 0, ...options }))
  }
  return { prefix, nodes: nodes as [TetherServer, TetherServer] }
}

/** Where a session's keys live, as the masters say: the slot of each key and the port of the master that serves the hash's slot. */
async function placement(prefix: string, sid: string) {
  const ask = [...direct.values()][0]
  const hashKey = `${prefix}:{${sid}}`
  const hashSlot = Number(await ask.sendCommand(['CLUSTER', 'KEYSLOT', hashKey]))
  const queueSlot = Number(await ask.sendCommand(['CLUSTER', 'KEYSLOT', `${hashKey}:q`]))
  const ranges = (await ask.sendCommand(['CLUSTER', 'SLOTS'])) as Array<[number, number, [string, number, ...unknown[]]]>
  const owner = ranges.find(([from, to]) => hashSlot >= Number(from) && hashSlot <= Number(to))
  if (!owner) throw new Error(`no master serves slot ${hashSlot}`)
  const port = Number(owner[2][1])
  // The master itself lists the session's hash among the keys of that slot: it was written there.
  const stored = (await direct.get(port)?.sendCommand(['CLUSTER', 'GETKEYSINSLOT', String(hashSlot), '100'])) as string[]
  return { hashSlot, queueSlot, port, stored: stored.includes(hashKey) }
}

interface Placed {
  client: ReturnType<typeof tetherClient<{ echo: number } | string, number>>
  proxy: TcpProxy
  sid: string
  /** The port of the master that holds the session's keys. */
  master: number
  /** Where the proxy sends the client's next connection (0: refused). */
  target: number
}

/**
 * Sessions made through proxies on `node`, one at a time, until there are at least `min` and
 * they live on at least two masters (bounded: ids are random, three masters share the slots).
 */
async function spreadSessions(prefix: string, node: TetherServer, min: number, options: { reconnect?: false } = {}): Promise<Placed[]> {
  const placed: Placed[] = []
  const masters = () => new Set(placed.map((p) => p.master)).size
  while (placed.length < min || masters() < 2) {
    if (placed.length >= 16) throw new Error(`16 sessions, all on one master: ${placed[0]?.master}`)
    const entry = { target: node.port } as Placed
    entry.proxy = await startProxy(() => entry.target)
    entry.client = tetherClient<{ echo: number } | string, number>(urlOf(entry.proxy), options)
    entry.sid = await waitFor(() => entry.client.sock.sessionId, 5000, 'a session')
    const where = await placement(prefix, entry.sid)
    expect(where.queueSlot).toBe(where.hashSlot)
    expect(where.stored).toBe(true)
    entry.master = where.port
    placed.push(entry)
  }
  expect(masters()).toBeGreaterThanOrEqual(2)
  return placed
}

interface Received {
  data: unknown
  node: number
  sid: string
  info: MessageInfo
}

/** Records what each node's `message` listener gets; each echoes it back to the session. */
function echo(nodes: TetherServer[]) {
  const received: Received[] = []
  nodes.forEach((node, index) => {
    node.on('message', (data, session, info) => {
      received.push({ data, node: index, sid: session.id, info })
      void session.send({ echo: data }).catch(() => {})
    })
  })
  return received
}

describe('the Redis store on a Redis Cluster', () => {
  it('sessions on different masters, created on one node, resume on the other: the same ids, nothing lost or repeated either way', async () => {
    // No master has the scripts: the store loads them on every master when it opens.
    for (const client of direct.values()) await client.sendCommand(['SCRIPT', 'FLUSH'])
    const { prefix, nodes } = await twoNodes()
    const shas = Object.values(scripts).map((source) => createHash('sha1').update(source).digest('hex'))
    for (const client of direct.values()) expect(await client.sendCommand(['SCRIPT', 'EXISTS', ...shas])).toEqual(shas.map(() => 1))

    const received = echo(nodes)
    const sessions = await spreadSessions(prefix, nodes[0], 3)
    await Promise.all(sessions.flatMap(({ client }) => [1, 2, 3].map((n) => client.sock.send(n))))
    await waitFor(() => sessions.every(({ client }) => client.messages.length === 3), 5000, 'echoes from node 0')

    // The masters forget the scripts (as a promoted replica or a new shard would not have them):
    // each script's first call on a master falls back to EVAL, on the master of its keys.
    for (const client of direct.values()) await client.sendCommand(['SCRIPT', 'FLUSH'])

    // Every connection moves to node 1.
    for (const session of sessions) {
      session.target = nodes[1].port
      session.proxy.cutAll()
    }
    await waitFor(
      () => sessions.every(({ client, proxy }) => client.sock.state === 'open' && proxy.accepted === 2),
      5000,
      'every client reconnected through node 1',
    )
    await Promise.all(sessions.flatMap(({ client }) => [4, 5, 6].map((n) => client.sock.send(n))))
    await waitFor(() => sessions.every(({ client }) => client.messages.length === 6), 5000, 'echoes from node 1')
    await sleep(200) // room for a duplicate to show up

    for (const { client, sid } of sessions) {
      const mine = received.filter((r) => r.sid === sid)
      expect(client.sock.sessionId).toBe(sid)
      expect(client.sessions).toHaveLength(1)
      expect(mine.map((r) => r.data)).toEqual([1, 2, 3, 4, 5, 6])
      expect(mine.map((r) => r.node)).toEqual([0, 0, 0, 1, 1, 1])
      expect(mine.map((r) => r.info.id)).toEqual([1, 2, 3, 4, 5, 6].map((n) => `${sid}:${n}`))
      expect(mine.every((r) => !r.info.redelivered)).toBe(true)
      expect(client.messages).toEqual([1, 2, 3, 4, 5, 6].map((n) => ({ echo: n })))
      expect(nodes[1].sessions.get(sid)?.connected).toBe(true)
    }
    expect(received).toHaveLength(6 * sessions.length)
    expect(nodes[0].sessions.size).toBe(0) // node 0 let them all go
    let fallbacks = 0
    for (const port of direct.keys()) fallbacks += await stat(port, 'errorstats', /errorstat_NOSCRIPT:count=(\d+)/)
    expect(fallbacks).toBeGreaterThan(0)
    await expectRoutedByKey()
  })

  it('sendTo from one node reaches sessions held by the other, whichever master holds them', async () => {
    const { prefix, nodes } = await twoNodes()
    const sessions = await spreadSessions(prefix, nodes[1], 2)
    for (const { client, sid } of sessions) {
      await nodes[0].sendTo(sid, `to ${sid}`)
      expect(client.messages).toEqual([`to ${sid}`])
    }
    await expect(nodes[0].sendTo('no-such-session', 'x')).rejects.toMatchObject({ name: 'ClosedError' })
    await expectRoutedByKey()
  })

  it('a hello naming an id no session can have (braces, empty) gets a new session, reason unknown, and sendTo to it a ClosedError: Redis is not asked', async () => {
    const { nodes } = await twoNodes()
    const { WebSocket } = await import('ws')
    for (const sid of ['}x', '', '{a}b', 'x'.repeat(23)]) {
      const ws = new WebSocket(urlOf(nodes[0]), 'tether.v1')
      defer(() => ws.terminate())
      const welcome = await new Promise<Record<string, unknown>>((resolve, reject) => {
        ws.once('open', () => ws.send(JSON.stringify({ t: 'hello', sid, ack: 0 })))
        ws.once('message', (data) => resolve(JSON.parse(String(data))))
        ws.once('close', (code) => reject(new Error(`closed with ${code} for sid ${JSON.stringify(sid)}`)))
      })
      expect(welcome).toMatchObject({ t: 'welcome', resumed: false, reason: 'unknown' })
      ws.terminate()
      await expect(nodes[1].sendTo(sid, 'x')).rejects.toMatchObject({ name: 'ClosedError' })
    }
    await expectRoutedByKey()
  })

  it('a broadcast reaches the held sessions of both nodes, and an away session once it resumes: each once, in order', async () => {
    const { prefix, nodes } = await twoNodes()
    const sessions = await spreadSessions(prefix, nodes[0], 3)
    const onNode1 = tetherClient<string>(urlOf(nodes[1]))
    await waitFor(() => onNode1.sock.sessionId, 5000, 'a session on node 1')
    // The first goes away: no node holds it while the first broadcasts are made.
    const [away, ...held] = sessions
    away.target = 0
    away.proxy.cutAll()
    await waitFor(() => nodes[0].sessions.size === held.length, 5000, 'node 0 released the away session')

    nodes[1].broadcast('one')
    nodes[1].broadcast('two')
    await waitFor(
      () => onNode1.messages.length === 2 && held.every(({ client }) => client.messages.length === 2),
      5000,
      'the held sessions got them',
    )
    expect(away.client.messages).toEqual([])
    away.target = nodes[1].port
    await waitFor(() => away.client.messages.length === 2, 5000, 'the away session caught up on resume')
    nodes[0].broadcast('three')
    const all = [onNode1, ...sessions.map(({ client }) => client)]
    await waitFor(() => all.every((client) => client.messages.length === 3), 5000, 'the third, everywhere')
    await sleep(300) // room for a duplicate to show up
    for (const client of all) expect(client.messages).toEqual(['one', 'two', 'three'])
    expect(away.client.sock.sessionId).toBe(away.sid)
    expect(nodes[1].sessions.get(away.sid)?.connected).toBe(true)
    await expectRoutedByKey()
  })

  it('topics: a publish on one node reaches members held by both nodes and an away member on resume, each once, in order; presence across nodes', async () => {
    const { prefix, nodes } = await twoNodes()
    const sessions = await spreadSessions(prefix, nodes[0], 3)
    const onNode1 = tetherClient<string>(urlOf(nodes[1]))
    await waitFor(() => onNode1.sock.sessionId, 5000, 'a session on node 1')
    for (const { sid } of sessions) nodes[0].sessions.get(sid)?.join('room')
    nodes[1].sessions.get(onNode1.sock.sessionId as string)?.join('room')
    const members = async () => (await nodes[1].presence('room')).length
    const expected = sessions.length + 1 // spreadSessions makes at least 3, as many as it took to reach two masters
    for (let i = 0; i < 50 && (await members()) < expected; i++) await sleep(20)
    expect(await members()).toBe(expected)
    const [away, ...held] = sessions
    away.target = 0
    away.proxy.cutAll()
    await waitFor(() => nodes[0].sessions.size === held.length, 5000, 'node 0 released the away session')
    nodes[1].publish('room', 'one')
    // From the other node once the first is in: two publishes at once from two nodes have no order.
    await waitFor(() => onNode1.messages.length === 1, 5000, 'the first published')
    nodes[0].publish('room', 'two')
    await waitFor(
      () => onNode1.messages.length === 2 && held.every(({ client }) => client.messages.length === 2),
      5000,
      'the held members got them',
    )
    expect(away.client.messages).toEqual([])
    away.target = nodes[1].port
    await waitFor(() => away.client.messages.length === 2, 5000, 'the away member caught up on resume')
    await sleep(300) // room for a duplicate to show up
    for (const client of [onNode1, ...sessions.map(({ client }) => client)]) expect(client.messages).toEqual(['one', 'two'])
    await expectRoutedByKey()
  })

  it('sessions whose clients never come back expire once each, on one node, and their keys are gone from their masters', async () => {
    const { prefix, nodes } = await twoNodes({ sessionTtl: 300 })
    const expired: { node: number; id: string; reason: string }[] = []
    nodes.forEach((node, index) => {
      node.on('expire', (session, reason) => expired.push({ node: index, id: session.id, reason }))
    })
    const sessions = await spreadSessions(prefix, nodes[0], 2, { reconnect: false })
    for (const { client } of sessions) void client.sock.close()
    await waitFor(() => expired.length >= sessions.length, 5000, 'every session expired')
    await sleep(800) // both nodes sweep meanwhile: none may expire a session again
    expect(expired.map((e) => e.id).sort()).toEqual(sessions.map((s) => s.sid).sort())
    expect(expired.every((e) => e.reason === 'ttl')).toBe(true)
    for (const { sid, master } of sessions) {
      const owner = direct.get(master)
      expect(await owner?.sendCommand(['EXISTS', `${prefix}:{${sid}}`, `${prefix}:{${sid}}:q`])).toBe(0)
    }
    await expectRoutedByKey()
  })
})

describe('redisStore given something else than a connected client', () => {
  const listener: StoreListener = {
    appended: () => {},
    acknowledged: () => {},
    ended: () => {},
    claimed: () => {},
    broadcast: () => {},
    error: () => {},
  }

  it('a cluster client not connected yet: opening the store says to connect it', async () => {
    const client = createCluster({ rootNodes: [{ url: cluster.masters[0].url }] })
    await expect(redisStore(client).open(listener)).rejects.toThrow(/knows no masters.*createCluster\(\{ rootNodes \}\)\.connect\(\)/)
  })

  it('a promise, or an object that is no client: a TypeError naming both kinds of client to pass', () => {
    const connecting = new Promise<never>(() => {})
    expect(() => redisStore(connecting as never)).toThrow(TypeError)
    expect(() => redisStore(connecting as never)).toThrow(
      /got a promise.*createClient\(\{ url \}\)\.connect\(\).*createCluster\(\{ rootNodes \}\)\.connect\(\)/,
    )
    expect(() => redisStore({ url: 'redis://127.0.0.1' } as never)).toThrow(/without sendCommand\(\) and duplicate\(\)/)
    expect(() => redisStore(undefined as never)).toThrow(/got undefined/)
  })
})
