/**
 * The deployment docs/SCALING.md describes, for real: two server processes sharing a
 * redis-server, behind HAProxy (round robin, no stickiness, health checks), with the chaos
 * proxy in front of HAProxy (connections killed, stalled, split and refused at random). A client
 * streams messages, each echoed back, while the node holding its session is killed with SIGKILL
 * again and again and replaced. Every reconnect may land on either node.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type ChaosFaults, seedFromEnv, startChaosProxy } from '../support/chaos-proxy.js'
import { startHaproxy, stopAllHaproxy } from '../support/haproxy.js'
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, defer, sleep, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'
import { type NodeLine, startNode, stopAllNodes, type TetherNode } from '../support/tether-nodes.js'

let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(async () => {
  await cleanupTether()
  await stopAllHaproxy()
  await stopAllNodes()
})

const FAULTS: ChaosFaults = {
  kill: { rate: 1 },
  stall: { rate: 0.5, minMs: 100, maxMs: 600, thenKill: 0.5 },
  split: { share: 0.2, maxPieces: 4, maxDelayMs: 3 },
  refuse: { rate: 0.3, minMs: 50, maxMs: 200, unlisten: 0 },
}

type Delivery = Extract<NodeLine, { t: 'msg' }>

/** The node that took the session last (its latest `hold` line), if it is running. */
function holder(nodes: TetherNode[]): TetherNode | undefined {
  let latest: { node: TetherNode; at: number } | undefined
  for (const node of nodes) {
    for (const line of node.lines) if (line.t === 'hold' && (!latest || line.at > latest.at)) latest = { node, at: line.at }
  }
  return latest?.node.running ? latest.node : undefined
}

describe('behind HAProxy, with the chaos proxy in front', () => {
  it('the holding node killed four times while the network misbehaves: every send resolves, echoes exactly once and in order, redeliveries flagged, one session', async () => {
    const prefix = `b-${Date.now()}`
    const nodes = [await startNode({ redisUrl: redis.url, prefix }), await startNode({ redisUrl: redis.url, prefix })]
    const balancer = await startHaproxy(nodes.map((node) => node.port))
    const seed = seedFromEnv()
    const chaos = await startChaosProxy({ target: balancer.port, seed })
    defer(() => chaos.close())
    const client = tetherClient<{ echo: number }, number>(urlOf(chaos), {
      heartbeat: { interval: 300, timeout: 300 },
      reconnect: { minDelay: 10, maxDelay: 150, connectTimeout: 2000 },
    })
    await waitFor(() => client.sock.sessionId, 10000, 'first session')
    const sid = client.sock.sessionId
    chaos.setFaults(FAULTS)

    const sends: Promise<void>[] = []
    let next = 1
    const pump = setInterval(() => {
      for (let i = 0; i < 10; i++) sends.push(client.sock.send(next++))
    }, 5)
    let kills = 0
    try {
      for (let round = 0; round < 4; round++) {
        await sleep(300 + Math.floor(Math.random() * 400))
        const victim = await waitFor(() => holder(nodes), 10000, 'a node holding the session')
        await victim.kill()
        kills++
        await victim.restart()
      }
    } finally {
      clearInterval(pump)
    }
    chaos.calm()
    const total = next - 1
    await withTimeout(Promise.all(sends), 30000, `every send resolved (seed ${seed})`)
    await waitFor(() => client.messages.length >= total, 30000, `every echo (seed ${seed})`)
    await sleep(300)

    const numbers = Array.from({ length: total }, (_, i) => i + 1)
    expect(client.sock.sessionId).toBe(sid)
    expect(client.sessions).toHaveLength(1)
    expect(client.messages).toEqual(numbers.map((n) => ({ echo: n })))
    const all = nodes.flatMap((node) => node.lines.filter((line): line is Delivery => line.t === 'msg')).sort((a, b) => a.at - b.at)
    const seen = new Set<string>()
    const unflagged: Delivery[] = []
    for (const delivery of all) {
      expect(delivery.id).toBe(`${sid}:${delivery.data}`)
      if (seen.has(delivery.id) && !delivery.redelivered) unflagged.push(delivery)
      seen.add(delivery.id)
    }
    expect(unflagged).toEqual([])
    expect(seen.size).toBe(total)
    const holds = nodes.reduce((sum, node) => sum + node.lines.filter((line) => line.t === 'hold').length, 0)
    console.log(
      `balanced: ${total} messages, ${kills} SIGKILLs, ${holds} claims across both nodes, chaos ${chaos.describe()} (seed ${seed}); ${all.length} deliveries, ${all.length - seen.size} handled twice (flagged), echoes exactly once`,
    )
    expect(kills).toBe(4)
  }, 120000)
})
