/**
 * The Redis session store with two server nodes in this process and a real redis-server: a
 * session created on one node resumes on the other, nothing is lost or repeated across the
 * move, a claim fences the old holder, `sendTo` reaches a session on another node, and a
 * session whose client never comes back expires once, on one node.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import type { MessageInfo, Session, TetherServer } from '../../src/server/index.js'
import { connectedClient, type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, defer, startProxy, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

let redis: RedisServer
let prefixCount = 0

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

/** A connected node-redis client, closed after the test. */
const redisClient = () => connectedClient(redis.url)

/** Two server nodes sharing one store (a prefix of their own, so tests do not see each other's sessions). */
async function twoNodes(options: { sessionTtl?: number } = {}) {
  const prefix = `t${++prefixCount}-${Date.now()}`
  const nodes: TetherServer[] = []
  for (let i = 0; i < 2; i++) {
    nodes.push(await startTether({ store: redisStore(await redisClient(), { prefix }), heartbeatInterval: 0, ...options }))
  }
  return nodes as [TetherServer, TetherServer]
}

interface Received {
  data: unknown
  node: number
  info: MessageInfo
}

/** Records what each node's `message` listener gets; each echoes it back to the session. */
function echo(nodes: TetherServer[]) {
  const received: Received[] = []
  nodes.forEach((node, index) => {
    node.on('message', (data, session, info) => {
      received.push({ data, node: index, info })
      void session.send({ echo: data }).catch(() => {})
    })
  })
  return received
}

describe('a session in Redis', () => {
  it('created on one node, resumes on the other: the same session id, nothing lost or repeated either way', async () => {
    const nodes = await twoNodes()
    const received = echo(nodes)
    let target = nodes[0].port
    const proxy = await startProxy(() => target)
    const client = tetherClient<{ echo: number }, number>(urlOf(proxy))
    await waitFor(() => client.sock.sessionId, 5000, 'first session')
    const sid = client.sock.sessionId
    await Promise.all([1, 2, 3, 4, 5].map((n) => client.sock.send(n)))
    await waitFor(() => client.messages.length === 5, 5000, 'echoes from node 0')

    // The client's connection moves to node 1.
    target = nodes[1].port
    proxy.cutAll()
    await waitFor(() => client.sock.state === 'open' && proxy.accepted === 2, 5000, 'reconnected through node 1')
    await Promise.all([6, 7, 8].map((n) => client.sock.send(n)))
    await waitFor(() => client.messages.length === 8, 5000, 'echoes from node 1')

    expect(client.sock.sessionId).toBe(sid)
    expect(client.sessions).toHaveLength(1)
    expect(received.map((r) => r.data)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(received.map((r) => r.node)).toEqual([0, 0, 0, 0, 0, 1, 1, 1])
    expect(received.map((r) => r.info.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => `${sid}:${n}`))
    expect(received.every((r) => !r.info.redelivered)).toBe(true)
    expect(client.messages).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => ({ echo: n })))
    expect(nodes[0].sessions.size).toBe(0) // node 0 let it go
    expect(nodes[1].sessions.get(sid ?? '')?.connected).toBe(true)
  })

  it('messages sent while the client is away wait in Redis, and the node that resumes the session writes them, once, in order', async () => {
    const nodes = await twoNodes()
    let target = nodes[0].port
    const proxy = await startProxy(() => target)
    let session: Session | undefined
    nodes[0].on('session', (s) => {
      session = s
    })
    const client = tetherClient<number>(urlOf(proxy))
    await waitFor(() => session?.connected, 5000, 'connected to node 0')
    const first = session?.send(1)
    await first
    // The client goes away; node 0 sends on (through the store), then the client comes back on node 1.
    target = 0 // refused while away
    proxy.cutAll()
    await waitFor(() => nodes[0].sessions.size === 0, 5000, 'node 0 released the session')
    const later = [2, 3, 4].map((n) => session?.send(n))
    target = nodes[1].port
    await Promise.all(later)
    await waitFor(() => client.messages.length === 4, 5000, 'all four')
    expect(client.messages).toEqual([1, 2, 3, 4])
  })

  it('sendTo reaches a session held by another node, and resolves when its client acknowledged', async () => {
    const nodes = await twoNodes()
    const client = tetherClient<string>(urlOf(nodes[1]))
    await waitFor(() => client.sock.sessionId, 5000, 'session on node 1')
    const sid = client.sock.sessionId ?? ''
    await nodes[0].sendTo(sid, 'from node 0')
    expect(client.messages).toEqual(['from node 0'])
    await expect(nodes[0].sendTo('no-such-session', 'x')).rejects.toMatchObject({ name: 'ClosedError' })
  })

  it('a claim fences the old holder: its later writes fail, and it closes its connection', async () => {
    const nodes = await twoNodes()
    const received = echo(nodes)
    const first = tetherClient<{ echo: number }, number>(urlOf(nodes[0]))
    await waitFor(() => first.sock.sessionId, 5000, 'session on node 0')
    const sid = first.sock.sessionId ?? ''
    await first.sock.send(1)
    // Read when the close arrives: the client reconnects at once and may claim the session back.
    let heldAtClose: boolean | undefined
    first.sock.on('close', () => {
      heldAtClose ??= nodes[0].sessions.has(sid)
    })
    // Another connection resumes the same session on node 1 (as a client whose old connection hung would).
    const raw = await import('ws')
    const ws = new raw.WebSocket(urlOf(nodes[1]), 'tether.v1')
    defer(() => ws.terminate())
    const frames: Record<string, unknown>[] = []
    ws.on('message', (data) => frames.push(JSON.parse(String(data))))
    await new Promise((resolve) => ws.once('open', resolve))
    ws.send(JSON.stringify({ t: 'hello', sid, ack: 1, acked: 1, sent: 1 }))
    await waitFor(() => frames.length > 0, 5000, 'welcome')
    // sent: node 0's one echo, restored from the store by the node that claimed the session.
    expect(frames[0]).toMatchObject({ t: 'welcome', sid, resumed: true, ack: 1, sent: 1 })
    // Node 0 hears of the claim and lets its connection go.
    await waitFor(() => first.closes.length > 0, 5000, 'old connection closed')
    expect(first.closes[0]).toMatchObject({ code: 1000 })
    expect(heldAtClose).toBe(false)
    expect(received).toHaveLength(1)
  })

  it('a client that never comes back expires once, on one node, after sessionTtl', async () => {
    const nodes = await twoNodes({ sessionTtl: 300 })
    const expired: { node: number; id: string; reason: string }[] = []
    nodes.forEach((node, index) => {
      node.on('expire', (session, reason) => expired.push({ node: index, id: session.id, reason }))
    })
    const client = tetherClient(urlOf(nodes[0]), { reconnect: false })
    await waitFor(() => client.sock.sessionId, 5000, 'session')
    const sid = client.sock.sessionId
    client.sock.close()
    await waitFor(() => expired.length > 0, 5000, 'expired')
    await new Promise((resolve) => setTimeout(resolve, 800))
    expect(expired).toHaveLength(1)
    expect(expired[0]).toMatchObject({ id: sid, reason: 'ttl' })
  })

  it('broadcast reaches the sessions of every node, and a session away at the time once it resumes: each once, in order', async () => {
    const nodes = await twoNodes()
    const a = tetherClient<string>(urlOf(nodes[0]))
    const b = tetherClient<string>(urlOf(nodes[1]))
    let target = nodes[0].port
    const proxy = await startProxy(() => target)
    const c = tetherClient<string>(urlOf(proxy))
    await waitFor(() => a.sock.sessionId && b.sock.sessionId && c.sock.sessionId, 5000, 'three sessions')
    const cid = c.sock.sessionId
    // c goes away: its session is held by no node while the broadcasts are made.
    target = 0
    proxy.cutAll()
    await waitFor(() => nodes[0].sessions.size === 1, 5000, 'node 0 released c')
    for (const text of ['one', 'two', 'three']) nodes[1].broadcast(text)
    await waitFor(() => a.messages.length === 3 && b.messages.length === 3, 5000, 'connected sessions got them')
    target = nodes[1].port
    await waitFor(() => c.messages.length === 3, 5000, 'c caught up on resume')
    nodes[0].broadcast('four')
    await waitFor(() => a.messages.length === 4 && b.messages.length === 4 && c.messages.length === 4, 5000, 'the fourth')
    await new Promise((resolve) => setTimeout(resolve, 300))
    for (const client of [a, b, c]) expect(client.messages).toEqual(['one', 'two', 'three', 'four'])
    expect(c.sock.sessionId).toBe(cid)
  })

  it('a handler that holds its item (a promise) while its echo waits: no commands to Redis meanwhile, and the echo goes with the item', async () => {
    const [node] = await twoNodes()
    let release = () => {}
    let holding = false
    node.on('message', (data, session) => {
      void session.send({ echo: data }).catch(() => {})
      holding = true
      return new Promise<void>((resolve) => {
        release = resolve
      })
    })
    const client = tetherClient<{ echo: number }, number>(urlOf(node))
    await waitFor(() => client.sock.sessionId, 5000, 'session')
    const stats = await redisClient()
    const commits = async () =>
      Number(/cmdstat_evalsha:calls=(\d+)/.exec(String(await stats.sendCommand(['INFO', 'commandstats'])))?.[1] ?? 0)
    const sent = client.sock.send(1)
    await waitFor(() => holding, 5000, 'the handler holds the item')
    const before = await commits()
    await new Promise((resolve) => setTimeout(resolve, 300))
    const during = (await commits()) - before
    expect(client.messages).toEqual([]) // the echo waits for the item
    release()
    await sent
    await waitFor(() => client.messages.length === 1, 5000, 'the echo, after the item was recorded')
    expect(client.messages).toEqual([{ echo: 1 }])
    expect(during).toBeLessThanOrEqual(3) // not a loop of empty commits
  })

  it('a client that leaves while a handler holds its item: the session is handed back at once, and where it resumes the item comes again, flagged, and is echoed once', async () => {
    const nodes = await twoNodes()
    const errors: Error[] = []
    const delivered: { node: number; data: unknown; redelivered: boolean }[] = []
    const held: Promise<void>[] = []
    nodes.forEach((node, index) => {
      node.on('message', (data, session, info) => {
        delivered.push({ node: index, data, redelivered: info.redelivered })
        held.push(session.send({ echo: data }).catch((error: Error) => void errors.push(error)))
        // Node 0 never finishes; node 1 does at once.
        if (index === 0) return new Promise<void>(() => {})
      })
    })
    let target = nodes[0].port
    const proxy = await startProxy(() => target)
    const client = tetherClient<{ echo: number }, number>(urlOf(proxy))
    await waitFor(() => client.sock.sessionId, 5000, 'session')
    void client.sock.send(7)
    await waitFor(() => delivered.length === 1, 5000, 'delivered on node 0')
    target = nodes[1].port
    proxy.cutAll()
    await waitFor(() => client.messages.length === 1, 5000, 'the echo, from node 1')
    await waitFor(() => errors.length === 1, 5000, "node 0's held echo refused")
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(delivered).toEqual([
      { node: 0, data: 7, redelivered: false },
      { node: 1, data: 7, redelivered: true },
    ])
    expect(client.messages).toEqual([{ echo: 7 }])
    expect(errors[0]).toMatchObject({ name: 'DeliveryError' })
    expect(errors[0].message).toMatch(/delivered again/)
    expect(nodes[0].sessions.size).toBe(0)
  })

  it('a handler that awaits the ack of its own message (which waits for the handler) is reported as an error naming the cause', async () => {
    const [node] = await twoNodes()
    const errors: Error[] = []
    node.on('error', (error) => errors.push(error))
    node.on('message', async (data, session) => {
      await session.send({ echo: data }) // never acknowledged: it is written only once this handler is done
    })
    const client = tetherClient<{ echo: number }, number>(urlOf(node))
    await waitFor(() => client.sock.sessionId, 5000, 'session')
    void client.sock.send(1).catch(() => {})
    await waitFor(() => errors.length > 0, 9000, 'the report')
    expect(errors[0].message).toMatch(/client item 1 has not finished .* do not await it there/)
    expect(client.messages).toEqual([])
  }, 15000)

  it('frames a client sends before its welcome, while the store is asked, are bounded as frames before a hello are', async () => {
    const [node] = await twoNodes()
    const { WebSocket } = await import('ws')
    const ws = new WebSocket(urlOf(node), 'tether.v1')
    defer(() => ws.terminate())
    const closed = new Promise<number>((resolve) => ws.once('close', resolve))
    await new Promise((resolve) => ws.once('open', resolve))
    // Both in one write: the second arrives while the session is being recorded in Redis.
    ws.send(JSON.stringify({ t: 'hello', sid: null, ack: 0 }))
    ws.send(JSON.stringify({ t: 'msg', s: 1, d: ['x'.repeat(5000)] }))
    expect(await closed).toBe(1002)
  })

  it('a resume on the same node while the old connection is still attached: resume, and no disconnect (as without a store)', async () => {
    const [node] = await twoNodes()
    const events: string[] = []
    node.on('disconnect', () => events.push('disconnect'))
    node.on('resume', () => events.push('resume'))
    const first = tetherClient(urlOf(node), { reconnect: false })
    await waitFor(() => first.sock.sessionId, 5000, 'session')
    const { WebSocket } = await import('ws')
    const ws = new WebSocket(urlOf(node), 'tether.v1')
    defer(() => ws.terminate())
    const welcome = await new Promise<Record<string, unknown>>((resolve) => {
      ws.once('open', () => ws.send(JSON.stringify({ t: 'hello', sid: first.sock.sessionId, ack: 0, acked: 0, sent: 0 })))
      ws.once('message', (data) => resolve(JSON.parse(String(data))))
    })
    expect(welcome).toMatchObject({ resumed: true })
    await waitFor(() => first.closes.length > 0, 5000, 'the old connection closed')
    expect(first.closes[0]).toMatchObject({ code: 1000 })
    expect(events).toEqual(['resume'])
  })
})
