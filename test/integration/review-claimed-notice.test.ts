/**
 * Review of letting a session go on a `claimed` notice while a commit is in flight
 * (src/server/service.ts `claimed` → `letGo`; src/server/journal.ts), against a real redis-server.
 *
 * `letGo` sorts the session's waiting messages by `recordedUpTo`, the journal's idea of what the
 * store holds. A commit in flight may already have been recorded: its answer is on the way, on the
 * node's command connection, while the other node's `claimed` notice comes on the subscriber
 * connection; nothing orders the two (a node busy with many sessions reads a backlog of answers
 * in several turns). When the notice is handled first, the in-flight messages count as
 * unrecorded, and those sent outside any item's handling are appended again through the store
 * (`forward`): the client gets them twice, under two numbers. docs/SCALING.md: "every message to
 * the client is delivered once".
 *
 * Node a's link here answers one commit only after the test lets it go (the commit ran in the
 * real Redis; only its answer is late, as under load). The other connection is a raw `ws` client
 * that resumes the session on node b, as a client whose old connection hung would. The test
 * failed on the code before the fix, because of this bug (checked), and passes now that a
 * session is let go only after the outcome of its in-flight commit is known.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { redisStore } from '../../src/redis/index.js'
import type { Session } from '../../src/server/index.js'
import { connectedClient, type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { holdingOne } from '../support/store-gate.js'
import { cleanupTether, defer, sleep, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

const redisClient = () => connectedClient(redis.url)

describe('review: a claimed notice that overtakes a commit answer', () => {
  it('the message of that commit reaches the client once', async () => {
    const prefix = `cn-${Date.now()}`
    const { store, gate } = holdingOne(redisStore(await redisClient(), { prefix }), 'commit')
    const a = await startTether({ store, heartbeatInterval: 0 })
    const b = await startTether({ store: redisStore(await redisClient(), { prefix }), heartbeatInterval: 0 })
    for (const node of [a, b]) node.on('error', () => {})
    let session: Session | undefined
    a.on('session', (s) => {
      session = s
    })
    const first = tetherClient<string>(urlOf(a), { reconnect: false })
    await waitFor(() => session?.connected && first.sock.sessionId, 5000, 'session on node a')
    const sid = first.sock.sessionId ?? ''
    // Node a sends; its commit is recorded in Redis, and its answer is late.
    gate.arm()
    session?.send('x').catch(() => {})
    await waitFor(() => gate.held === 1, 5000, 'the commit recorded, its answer held')
    // Another connection resumes the session on node b (the client gave up on the first one).
    const ws = new WebSocket(urlOf(b), 'tether.v1')
    defer(() => ws.terminate())
    const items: Array<{ s: number; d: unknown }> = []
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { t: string; s?: number; d?: unknown[] }
      if (frame.t === 'msg') frame.d?.forEach((d, i) => void items.push({ s: (frame.s ?? 0) + i, d }))
    })
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
    ws.send(JSON.stringify({ t: 'hello', sid, ack: 0, acked: 0, sent: 0 }))
    await waitFor(() => items.length >= 1, 5000, "node b resent what Redis holds: 'x'")
    await sleep(200) // node b's claimed notice reaches node a before the commit's answer
    gate.release()
    await waitFor(() => a.sessions.size === 0, 5000, 'node a let the session go')
    await sleep(500)
    // Before the fix: [{ s: 1, d: 'x' }, { s: 2, d: 'x' }]: node a appended 'x' again, as if never recorded.
    expect(items).toEqual([{ s: 1, d: 'x' }])
  })
})
