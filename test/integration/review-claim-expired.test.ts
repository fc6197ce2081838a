/**
 * Review of claiming a session whose deadline passed (src/redis/scripts.ts `CLAIM`), against a
 * real redis-server.
 *
 * Expiry with a store is a sweep: each node, every `min(1s, sessionTtl / 4)`, ends the sessions
 * whose deadline passed. `CLAIM` does not look at the deadline, so until some node's sweep gets to
 * a session, a client can resume it however long ago it expired. When no node runs for a while (a
 * full restart, an outage of every node: docs/SCALING.md says "while no node runs, sessions stay
 * in Redis; the first node to start again sweeps those that are due"), every client that reaches a
 * fresh node before its first sweep resumes a session that expired, possibly hours ago: no
 * `expire` is ever emitted for it, and the broadcasts it missed may have been trimmed from the
 * log (kept `2 × sessionTtl` plus a minute), so they are skipped silently. Without a store the
 * same client gets a new session ('unknown').
 *
 * The test failed on the code before the fix, because of this bug (checked), and passes
 * once a claim refuses (and ends) a session whose deadline passed.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { redisStore } from '../../src/redis/index.js'
import { connectedClient, type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, defer, sleep, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

const redisClient = () => connectedClient(redis.url)

describe('review: a session whose deadline passed while no node ran', () => {
  it('is not resumed by the first node to start again', async () => {
    const prefix = `ce-${Date.now()}`
    const options = { sessionTtl: 2000, heartbeatInterval: 0 }
    const first = await startTether({ store: redisStore(await redisClient(), { prefix }), ...options })
    first.on('error', () => {})
    const tc = tetherClient(urlOf(first), { reconnect: false })
    await waitFor(() => tc.sock.sessionId, 5000, 'session')
    const sid = tc.sock.sessionId
    await tc.sock.close()
    await waitFor(() => first.sessions.size === 0, 5000, 'handed back')
    await first.close() // no node runs now
    await sleep(2600) // the session's deadline passes
    const next = await startTether({ store: redisStore(await redisClient(), { prefix }), ...options })
    next.on('error', () => {})
    // The client comes back before the new node's first sweep (500 ms after it started).
    const ws = new WebSocket(urlOf(next), 'tether.v1')
    defer(() => ws.terminate())
    const frames: Array<{ t: string; sid?: string; resumed?: boolean }> = []
    ws.on('message', (data) => void frames.push(JSON.parse(String(data))))
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
    ws.send(JSON.stringify({ t: 'hello', sid, ack: 0, acked: 0, sent: 0 }))
    await waitFor(() => frames.length > 0, 2000, 'welcome')
    // Before the fix: { resumed: true, sid } 2.6 s after the session expired, and no expire for it, ever.
    expect(frames[0]).toMatchObject({ t: 'welcome', resumed: false })
  })
})
