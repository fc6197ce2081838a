/**
 * Review of `sendTo` across a claim (src/server/service.ts `forward`, `appended`, `claimOrCreate`),
 * against a real redis-server.
 *
 * A node that claims a session reads its messages in the claim script, then (after the `ZADD` of
 * the due index, one more round trip) registers the session in `sessions`. A message another node
 * appends in between (`sendTo`) is not in what the claim read, and its `appended` notice finds no
 * session here (`this.host.sessions.get(id)?.pull()`), so it is dropped. Nothing else brings the
 * message in: it comes only as the gap of the session's next commit, and an idle client (one that
 * only receives: a dashboard, a notification feed) causes none. The message sits in Redis, the
 * client never gets it, and the `sendTo()` promise never settles, while the client is connected.
 *
 * To make the overlap certain, node 1's link here holds its next claim's answer until the test
 * lets it go (the claim ran in the real Redis; only its answer is delayed, as a slow network
 * would). The test failed on the code before the fix, because of this bug (checked), and
 * passes once a node that claims a session commits once after registering it (or keeps notices
 * for a session it is claiming).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import { connectedClient, type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { holdingOne } from '../support/store-gate.js'
import { cleanupTether, sleep, startProxy, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

const redisClient = () => connectedClient(redis.url)

describe('review: sendTo while the session is being claimed', () => {
  it('a message appended between the claim and its registration reaches the idle client', async () => {
    const prefix = `st-${Date.now()}`
    const a = await startTether({ store: redisStore(await redisClient(), { prefix }), heartbeatInterval: 0 })
    const { store, gate } = holdingOne(redisStore(await redisClient(), { prefix }), 'claim')
    const b = await startTether({ store, heartbeatInterval: 0 })
    for (const node of [a, b]) node.on('error', () => {})
    let target = a.port
    const proxy = await startProxy(() => target)
    const client = tetherClient<string>(urlOf(proxy))
    await waitFor(() => client.sock.sessionId, 5000, 'session on node a')
    const sid = client.sock.sessionId ?? ''
    target = 0
    proxy.cutAll()
    await waitFor(() => a.sessions.size === 0, 5000, 'node a handed the session back')
    // The client comes back, to node b; b's claim has run in Redis, its answer is on the way.
    gate.arm()
    target = b.port
    await waitFor(() => gate.held === 1, 5000, 'node b claimed the session')
    const admin = await redisClient()
    const tx = async () => Number(await admin.sendCommand(['HGET', `${prefix}:{${sid}}`, 'tx']))
    const before = await tx()
    const sent = a.sendTo(sid, 'hello')
    sent.catch(() => {})
    const until = Date.now() + 5000
    while ((await tx()) !== before + 1) {
      if (Date.now() > until) throw new Error('the message was not appended in Redis within 5 s')
      await sleep(5)
    }
    await sleep(200) // its notice reaches node b, which does not hold the session yet
    gate.release()
    await waitFor(() => client.sock.state === 'open' && b.sessions.get(sid)?.connected, 5000, 'resumed on node b')
    // The client is idle: it sends nothing. Before the fix the message stayed in Redis and sendTo() never settled.
    await withTimeout(sent, 3000, 'sendTo() did not settle')
    expect(client.messages).toEqual(['hello'])
  })
})
