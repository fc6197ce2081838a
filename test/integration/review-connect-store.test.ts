/**
 * Review of `createTetherServer({ server, store })` when the store cannot be opened
 * (src/server/index.ts `createTetherServer`, `connectStore`), with a real redis-server.
 *
 * Attached to the user's HTTP server, the TetherServer registers its `upgrade` listener (and its
 * heartbeat interval) in its constructor, before `connectStore()`; when opening the store fails,
 * `createTetherServer` rejects but nothing is taken back. The user's HTTP server keeps a listener
 * of a server the user never got (it cannot even close it), which answers every upgrade on the
 * path. An app that retries at boot (Redis not ready yet, a common pattern) then has two
 * listeners: both handle each upgrade, `ws` throws on the second `handleUpgrade()` of the same
 * socket, and the failed server's `catch` destroys that socket: no client can connect, though the
 * retry succeeded.
 *
 * The test failed on the code before the fix, because of this bug (checked), and passes
 * once a failed `createTetherServer` removes its listener (or registers it only once the store is
 * open).
 */
import { createServer } from 'node:http'
import { createClient } from 'redis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import { createTetherServer } from '../../src/server/index.js'
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, defer, tetherClient, waitFor } from '../support/tether.js'

let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

describe('review: a store that fails to open, with an attached server', () => {
  it('leaves nothing on the HTTP server, so a retry that succeeds serves clients', async () => {
    const http = createServer()
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
    defer(() => new Promise<void>((resolve) => http.close(() => resolve())))
    const port = (http.address() as { port: number }).port
    // First attempt: the app's Redis client is not connected yet, so opening the store fails.
    const early = createClient({ url: redis.url })
    await expect(createTetherServer({ server: http, path: '/ws', store: redisStore(early) })).rejects.toThrow()
    // The retry, once Redis is reachable.
    const client = createClient({ url: redis.url })
    client.on('error', () => {})
    await client.connect()
    defer(() => client.close())
    const server = await createTetherServer({ server: http, path: '/ws', store: redisStore(client, { prefix: `cs-${Date.now()}` }) })
    defer(() => server.close())
    server.on('error', () => {})
    expect(http.listeners('upgrade')).toHaveLength(1) // today 2: the failed attempt's is still there
    const tc = tetherClient(`ws://127.0.0.1:${port}/ws`)
    await waitFor(() => tc.sock.sessionId, 3000, 'a session through the retried server')
  })
})
