/**
 * Review of the broadcast log read (src/server/service.ts `readLog`/`readLogSoon`, and
 * src/server/sessions.ts `sendShared`) around a claim, against a real redis-server.
 *
 * A read of the log starts from the earliest place of the sessions held WHEN IT STARTS. A session
 * claimed while that read is in flight (its place `X` is behind the node's, because broadcasts
 * were made while its client was away) is registered, its own read is deferred (`readAgain`), and
 * the in-flight read's entries (after the node's place `Y > X`) are queued to it first:
 * `sendShared` accepts any broadcast after the session's place and moves the place past it. The
 * deferred read then starts from that new place, and the broadcasts in `(X, Y]` are never queued
 * to the session: skipped, silently. docs/SCALING.md: "the node that claims it reads the log on
 * from the session's place and queues what it missed, once, in order"; "nothing is skipped".
 *
 * Reads are in flight every second anyway (the sweep reads the log), and on every broadcast
 * notice. To make the overlap certain, node 0's link here holds one `broadcastsAfter` read until
 * the test lets it go (the link and Redis are real; only that one answer is delayed, as a slow
 * network would). The test failed on the code before the fix, because of this bug
 * (checked), and passes once a read's entries go only to sessions whose place it covers.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import { connectedClient, type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { holdingOne } from '../support/store-gate.js'
import { cleanupTether, sleep, startProxy, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

const redisClient = () => connectedClient(redis.url)

describe('review: a session claimed while the node reads the broadcast log', () => {
  it('gets every broadcast it missed while away, once, in order', async () => {
    const prefix = `bc-${Date.now()}`
    const { store, gate } = holdingOne(redisStore(await redisClient(), { prefix }), 'broadcastsAfter', 'before')
    const a = await startTether({ store, heartbeatInterval: 0 })
    const b = await startTether({ store: redisStore(await redisClient(), { prefix }), heartbeatInterval: 0 })
    for (const node of [a, b]) node.on('error', () => {})
    // d stays on node a (it shows when a has read the log); c goes away and comes back to a.
    const d = tetherClient<string>(urlOf(a))
    let target = a.port
    const proxy = await startProxy(() => target)
    const c = tetherClient<string>(urlOf(proxy))
    await waitFor(() => d.sock.sessionId && c.sock.sessionId, 5000, 'two sessions on node a')
    const cid = c.sock.sessionId
    target = 0 // refused while away
    proxy.cutAll()
    await waitFor(() => a.sessions.size === 1, 5000, "node a handed c's session back")
    b.broadcast('one')
    b.broadcast('two')
    await waitFor(() => d.messages.length === 2, 5000, 'node a read the log up to two')
    // The next read of node a is in flight (held) when c's session is claimed there.
    gate.arm()
    b.broadcast('three')
    await waitFor(() => gate.held === 1, 5000, 'a read of node a in flight')
    target = a.port
    await waitFor(() => c.sock.state === 'open' && a.sessions.get(cid ?? '')?.connected, 5000, 'c resumed on node a')
    gate.release()
    await waitFor(() => c.messages.includes('three') && d.messages.length === 3, 5000, 'the third broadcast')
    await sleep(300)
    expect(c.sock.sessionId).toBe(cid)
    expect(d.messages).toEqual(['one', 'two', 'three'])
    // Before the fix: ['three']: 'one' and 'two', logged while c was away, are skipped.
    expect(c.messages).toEqual(['one', 'two', 'three'])
  })
})
