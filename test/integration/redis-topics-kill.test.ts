/**
 * Topics across two server processes sharing a real redis-server, with a node killed mid-stream:
 * both nodes publish to three topics while six members (each in two of them) are connected to
 * either node; one node is SIGKILLed and replaced, its members resume on the other. Every
 * member gets every message of its topics exactly once and in the topic's order (the topic's
 * log in Redis is the reference: what the killed node published but never logged was never
 * published), and nothing of the topic it is not in.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { MessageInfo } from '../../src/index.js'
import { connectedClient, type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, sleep, startProxy, tetherClient, urlOf, waitFor } from '../support/tether.js'
import { startNode, stopAllNodes } from '../support/tether-nodes.js'

let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(async () => {
  await cleanupTether()
  await stopAllNodes()
})

interface Pub {
  src: number
  pid: number
  k: number
}

const TOPICS = ['t0', 't1', 't2']

describe('topics across two node processes, one killed mid-stream', () => {
  it('every member gets every message of its topics exactly once, in order, and nothing else', async () => {
    const prefix = `tk-${Date.now()}`
    const start = Date.now()
    const publish = { topics: TOPICS, every: 4, from: start + 3000, until: start + 7000 }
    const nodes = [
      await startNode({ redisUrl: redis.url, prefix, publish, topicMax: 100_000 }),
      await startNode({ redisUrl: redis.url, prefix, publish: { ...publish, topics: [...TOPICS].reverse() }, topicMax: 100_000 }),
    ]
    // Each member through its own proxy, to the node it starts on while that one runs, else the other.
    const members = await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const home = i % 2
        const proxy = await startProxy(() => (nodes[home].running ? nodes[home] : nodes[1 - home]).port)
        const client = tetherClient<Pub>(urlOf(proxy))
        const infos: MessageInfo[] = []
        client.sock.on('message', (_m, info) => infos.push(info))
        const topics = [TOPICS[i % 3], TOPICS[(i + 1) % 3]]
        await waitFor(() => client.sock.state === 'open', 10000, 'open')
        await client.sock.request({ join: topics })
        return { client, infos, topics, home }
      }),
    )
    const redisClient = await connectedClient(redis.url)
    // Joined (the store answered) before the publishing begins: each member's topics are theirs from the first message.
    await waitFor(
      async () => {
        for (const topic of TOPICS) if (Number(await redisClient.sendCommand(['HLEN', `${prefix}:members:{${topic}}`])) !== 4) return false
        return true
      },
      3000,
      'members recorded',
    )
    expect(Date.now()).toBeLessThan(publish.from)
    // Mid-stream: node 0 dies, its members resume on node 1; node 0 comes back and publishes on.
    await sleep(publish.from + 1500 - Date.now())
    await nodes[0].kill()
    const held = () => nodes[1].lines.filter((line) => line.t === 'hold').length
    await waitFor(() => held() >= 6, 10000, "node 0's members resumed on node 1")
    await nodes[0].restart()
    await sleep(Math.max(0, publish.until + 200 - Date.now()))

    // The reference: each topic's log as Redis holds it.
    const logs = new Map<string, string[]>()
    for (const topic of TOPICS) {
      const entries = (await redisClient.sendCommand(['XRANGE', `${prefix}:topic:{${topic}}`, '-', '+'])) as Array<[string, string[]]>
      logs.set(
        topic,
        entries.map(([, fields]) => fields[fields.indexOf('p') + 1]),
      )
    }
    const published = nodes.flatMap((node) => node.lines.filter((line) => line.t === 'pub')).length
    const logged = [...logs.values()].reduce((sum, log) => sum + log.length, 0)
    expect(logged).toBeGreaterThan(1000)
    expect(logged).toBeLessThanOrEqual(published) // the killed node's last publishes may not have landed
    await waitFor(
      () => members.every((m) => m.infos.length === m.topics.reduce((sum, topic) => sum + (logs.get(topic)?.length ?? 0), 0)),
      20000,
      'every member got all of its topics',
    )
    await sleep(300) // anything more (a duplicate) would come now
    for (const m of members) {
      for (const topic of TOPICS) {
        const got = m.client.messages.filter((_, i) => m.infos[i].topic === topic).map((message) => JSON.stringify(message))
        expect(got).toEqual(m.topics.includes(topic) ? logs.get(topic) : [])
      }
      expect(new Set(m.infos.map((info) => info.id)).size).toBe(m.infos.length)
    }
    const errors = nodes.flatMap((node) => node.lines.filter((line) => line.t === 'error'))
    expect(errors).toEqual([])
  }, 60_000)
})
