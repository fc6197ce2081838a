/**
 * Review of `Journal.drain()` (src/server/journal.ts) as src/server/service.ts uses it, against a
 * real redis-server.
 *
 * `drain()` keeps ONE pending resolver (`this.drained = resolve`): a second call while a commit
 * is in flight replaces the first one's, which then never resolves. Two drains of one session
 * overlap whenever its connection drops while a commit is in flight and, before that commit
 * answers, either the client's next hello reaches the same node (`claimOrCreate` drains the
 * session it still holds) or `server.close()` runs (`releaseAll` drains every held session). The
 * release started by the drop then waits forever, it stays in `SharedService.busy`, and
 * `server.close()` (which waits until `busy` is empty) never resolves: a rolling deploy's
 * `await server.close()` hangs.
 *
 * A commit is held in flight here with Redis's `CLIENT PAUSE … WRITE` (a slow Redis, as under an
 * fsync stall). The test failed on the code before the fix, because of this bug
 * (checked), and passes once every pending `drain()` resolves.
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

describe('review: two drains of one session', () => {
  it('a client that reconnects to the same node while its commit is in flight: server.close() still finishes', async () => {
    const node = await startTether({ store: redisStore(await redisClient(), { prefix: `dr-${Date.now()}` }), heartbeatInterval: 0 })
    node.on('error', () => {})
    node.on('message', (data, session) => {
      session.send({ echo: data }).catch(() => {})
    })
    const proxy = await startProxy(node.port)
    const client = tetherClient<{ echo: number }, number>(urlOf(proxy))
    await waitFor(() => client.sock.sessionId, 5000, 'session')
    await client.sock.send(1)
    const admin = await redisClient()
    // Redis holds write commands (the scripts) for 800 ms: the next commit stays in flight.
    await admin.sendCommand(['CLIENT', 'PAUSE', '800', 'WRITE'])
    void client.sock.send(2).catch(() => {})
    await sleep(100)
    // The connection drops: its release drains the session (commit in flight). The client comes
    // back at once, to the same node: the hello drains the same session again.
    proxy.cutAll()
    await waitFor(() => proxy.accepted === 2 && client.sock.state === 'open', 5000, 'resumed on the same node')
    await waitFor(() => client.messages.length === 2, 5000, 'both echoes')
    expect(client.messages).toEqual([{ echo: 1 }, { echo: 2 }])
    // Before the fix the first drain never resolves: its release stays busy, and close() waits for it forever.
    await withTimeout(node.close(), 5000, 'server.close() did not finish')
  })
})
