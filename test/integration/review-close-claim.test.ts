/**
 * Review of `server.close()` while a hello's claim is in flight (src/server/index.ts `shutdown`,
 * src/server/service.ts `releaseAll`), against a real redis-server.
 *
 * `releaseAll` takes the sessions held when it starts, then waits for everything `busy`, hellos
 * included. A hello whose claim was in flight registers its session after that list was taken,
 * so it is not released: `shutdown` then ends it like a session without a store (`endWith(…,
 * 'shutdown')`). The app gets `expire` with reason `'shutdown'` for a session that lives on (its
 * client resumes it on another node), though docs/SCALING.md says that with a store
 * `server.close()` hands sessions back "so there is no 'shutdown' either"; and the session stays
 * held in Redis by a node that is gone, so the next claim counts it unclean and flags every item
 * the client had written as redelivered.
 *
 * A claim is held in flight here with Redis's `CLIENT PAUSE … WRITE`. The test failed
 * on the code before the fix, because of this bug (checked), and passes now that sessions
 * registered during `releaseAll` are released too.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import { connectedClient, type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, sleep, startProxy, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

const redisClient = () => connectedClient(redis.url)

describe('review: server.close() while a resume is being claimed', () => {
  it('hands that session back too: no expire, and Redis holds it for no node', async () => {
    const prefix = `cc-${Date.now()}`
    const node = await startTether({ store: redisStore(await redisClient(), { prefix }), heartbeatInterval: 0 })
    node.on('error', () => {})
    const expired: string[] = []
    node.on('expire', (_session, reason) => void expired.push(reason))
    let resumed = false
    node.on('resume', () => {
      resumed = true
    })
    let target = node.port
    const proxy = await startProxy(() => target)
    const client = tetherClient<string>(urlOf(proxy))
    await waitFor(() => client.sock.sessionId, 5000, 'session')
    const sid = client.sock.sessionId ?? ''
    target = 0
    proxy.cutAll()
    await waitFor(() => node.sessions.size === 0, 5000, 'the session handed back')
    const admin = await redisClient()
    await admin.sendCommand(['CLIENT', 'PAUSE', '600', 'WRITE'])
    target = node.port // the client comes back: its claim waits in Redis
    await waitFor(() => proxy.accepted >= 2, 5000, 'the client reconnected')
    await sleep(100)
    await withTimeout(node.close(), 5000, 'server.close()')
    expect(resumed).toBe(true) // the claim finished during close()
    // Before the fix: ['shutdown'], and the hash still says held ('o' = 1).
    expect(expired).toEqual([])
    expect(await admin.sendCommand(['HGET', `${prefix}:{${sid}}`, 'o'])).toBe('0')
  })
})
