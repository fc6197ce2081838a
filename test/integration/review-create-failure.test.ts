/**
 * Review of a hello whose new session cannot be recorded (src/server/service.ts `claimOrCreate`),
 * against a real redis-server that refuses writes (`maxmemory` reached, with the `noeviction`
 * policy docs/SCALING.md asks for).
 *
 * `claimOrCreate` makes the session and registers it in `server.sessions` (`host.create`)
 * BEFORE `link.create` records it. When that write fails, the hello is answered with 1013 as
 * documented, but the session stays registered: held, never attached, never released, never
 * expired (no timer: with a store, expiry is the store's; the toucher's `touch()` answers false,
 * which is ignored). Each failed hello during a Redis incident leaves one such session in
 * `server.sessions` for the life of the process (memory, and `server.sessions` lies to the app),
 * and every one of them is touched every `sessionTtl / 3` from then on.
 *
 * The test failed on the code before the fix, because of this bug (checked), and passes
 * once a session whose creation failed is removed (or registered only once recorded).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { redisStore } from '../../src/redis/index.js'
import { connectedClient, type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, defer, sleep, startTether, urlOf } from '../support/tether.js'

let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

const redisClient = () => connectedClient(redis.url)

describe('review: a new session that Redis refuses to record', () => {
  it('the hello is answered with 1013, and the node keeps nothing of it', async () => {
    const node = await startTether({
      store: redisStore(await redisClient(), { prefix: `cf-${Date.now()}` }),
      sessionTtl: 600,
      heartbeatInterval: 0,
    })
    node.on('error', () => {})
    const admin = await redisClient()
    await admin.sendCommand(['CONFIG', 'SET', 'maxmemory', '1'])
    defer(() => admin.sendCommand(['CONFIG', 'SET', 'maxmemory', '0']))
    const ws = new WebSocket(urlOf(node), 'tether.v1')
    defer(() => ws.terminate())
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
    ws.send(JSON.stringify({ t: 'hello', sid: null, ack: 0 }))
    const code = await closed
    await admin.sendCommand(['CONFIG', 'SET', 'maxmemory', '0'])
    expect(code).toBe(1013) // as documented: come back later
    await sleep(500) // a touch or two of the node's sessions
    // Before the fix: 1, for good: the session made for that hello stays registered, held by no connection.
    expect(node.sessions.size).toBe(0)
  })
})
