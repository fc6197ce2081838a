/**
 * Review of `maxQueueBytes` for sessions no node holds (src/server/service.ts `forward`,
 * src/redis/scripts.ts `APPEND`), against a real redis-server.
 *
 * docs/SCALING.md and the `store` option's TSDoc: with a store, "`maxDisconnectedBytes` does not
 * apply: disconnected sessions live in the store, each within `maxQueue` and `maxQueueBytes`".
 * `APPEND` checks the count only (`tx - ak >= maxQueue`); nothing checks bytes. So `sendTo()` (or
 * `send()` on a let-go session) to a client that is away grows its list in Redis without bound
 * but the count (20,000 by default, of any size each), where the same sends without a store are
 * refused with `QueueFullError` once the session holds `maxQueueBytes`. Redis memory is what
 * runs out (and with `noeviction`, every session's writes then fail).
 *
 * The test failed on the code before the fix, because of this bug (checked), and passes
 * once appends are refused beyond `maxQueueBytes` (the hash could keep the queued bytes).
 */
import { createClient } from 'redis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, defer, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

describe('review: sendTo a session whose client is away', () => {
  it('is refused with QueueFullError beyond maxQueueBytes, as without a store', async () => {
    const client = createClient({ url: redis.url })
    client.on('error', () => {})
    await client.connect()
    defer(() => client.close())
    const node = await startTether({
      store: redisStore(client, { prefix: `ab-${Date.now()}` }),
      maxQueueBytes: 8192,
      heartbeatInterval: 0,
    })
    node.on('error', () => {})
    const tc = tetherClient(urlOf(node), { reconnect: false })
    await waitFor(() => tc.sock.sessionId, 5000, 'session')
    const sid = tc.sock.sessionId ?? ''
    await tc.sock.close()
    await waitFor(() => node.sessions.size === 0, 5000, 'handed back: the client is away')
    // 50 messages of 4 KiB: 200 KiB for a session allowed 8 KiB.
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        Promise.race([
          node.sendTo(sid, 'x'.repeat(4096)).then(
            () => 'acknowledged',
            (error: Error) => error.name,
          ),
          new Promise<string>((resolve) => setTimeout(() => resolve('queued'), 1000)),
        ]),
      ),
    )
    // Before the fix: 50 × 'queued' (all appended in Redis).
    expect(results.filter((r) => r === 'QueueFullError').length).toBeGreaterThan(40)
  })
})
