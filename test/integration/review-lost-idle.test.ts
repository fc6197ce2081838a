/**
 * Review of how a node notices that Redis lost a session it holds (src/server/service.ts
 * `touch`, src/redis/scripts.ts `TOUCH`), against a real redis-server restored from an older
 * append-only file.
 *
 * docs/SCALING.md ("Redis lost writes"): "The node that holds a connected session notices it too,
 * at its next write … The node lets the session go (closing the connection with 1000); the client
 * resumes, and is answered as above." The only write a node makes for an idle session is the
 * touch every `sessionTtl / 3`, and `touch()`'s answer (false: fenced, or no such session) is
 * ignored. So a client that only receives stays attached to a session Redis no longer has: every
 * `sendTo()` to it rejects with `ClosedError` ("does not exist") while it is connected, and it
 * learns nothing until it happens to send something. (The same ignored `false` keeps a holder
 * whose `claimed` notice was missed attached to a fenced session.)
 *
 * The test failed on the code before the fix, because of this bug (checked), and passes
 * once a touch that finds the session gone (or fenced) lets it go as a refused commit does.
 */
import { createClient } from 'redis'
import { afterEach, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import { startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, defer, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

afterEach(async () => {
  await cleanupTether()
  await stopAllRedis()
})

describe('review: an idle connected session that Redis lost', () => {
  it('is let go by its node, and its client is told (a new session), without having to send anything', async () => {
    const redis = await startRedis()
    const client = createClient({ url: redis.url, socket: { reconnectStrategy: () => 100 } })
    client.on('error', () => {}) // it reconnects by itself while Redis is restored
    await client.connect()
    defer(() => client.close())
    const older = await redis.snapshot() // before the session exists
    const node = await startTether({ store: redisStore(client), sessionTtl: 900, heartbeatInterval: 0 })
    node.on('error', () => {})
    const tc = tetherClient<string>(urlOf(node))
    await waitFor(() => tc.sock.sessionId, 5000, 'session')
    const sid = tc.sock.sessionId ?? ''
    await redis.restore(older)
    // Redis answers again (a send to another id: one to this session would make a commit, which notices).
    await expect(node.sendTo(`other-${sid}`, 'x')).rejects.toMatchObject({ name: 'ClosedError' })
    // The client only receives. Touches happen every 300 ms; today nothing comes of them.
    await waitFor(() => tc.sessions.length === 2, 4000, 'the client moved to a new session')
    expect(tc.sessions[1]).toMatchObject({ previous: sid, reason: 'unknown' })
  })
})
