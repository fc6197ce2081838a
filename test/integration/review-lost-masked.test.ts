/**
 * Review of the detection of lost writes (src/redis/scripts.ts `COMMIT` and `CLAIM`), against a
 * real redis-server restored from an older append-only file.
 *
 * Both checks compare message NUMBERS: a commit is refused as lost when Redis holds fewer
 * messages (`tx < base`), a claim when the client received more than Redis holds (`ack > tx`).
 * But after Redis lost writes, other nodes go on appending (`sendTo`, `APPEND`, which checks
 * nothing), and their messages take the numbers that were lost. Once `tx` is back at or above
 * what the holder (or the client) knows, neither check fires: the holder's next commit asks for
 * its gap by those numbers and gets only the messages numbered after what it had, so the first
 * appended messages are never written to the client, while their `sendTo()` promises resolve
 * (the client's ack passes their numbers). docs/SCALING.md: "Never a silent skip".
 *
 * The test failed on the code before the fix, because of this bug (checked), and passes
 * once lost writes are detected by something appends cannot mask (a counter only commits
 * advance, say), so the client is told 'lost', or the messages are delivered.
 */
import { createClient } from 'redis'
import { afterEach, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import type { Session, TetherServer } from '../../src/server/index.js'
import { startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, defer, sleep, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(async () => {
  await cleanupTether()
  await stopAllRedis()
})

describe('review: Redis lost writes, then another node appends', () => {
  it('the appended messages reach the client, or the client is told its session was lost', async () => {
    const redis = await startRedis()
    const prefix = `lm-${Date.now()}`
    const nodes: TetherServer[] = []
    for (let i = 0; i < 2; i++) {
      const client = createClient({ url: redis.url, socket: { reconnectStrategy: () => 100 } })
      client.on('error', () => {}) // it reconnects by itself while Redis is restored
      await client.connect()
      defer(() => client.close())
      const node = await startTether({ store: redisStore(client, { prefix }), heartbeatInterval: 0 })
      node.on('error', () => {})
      node.on('message', () => {})
      nodes.push(node)
    }
    const [a, b] = nodes
    let session: Session | undefined
    a.on('session', (s) => {
      session = s
    })
    const tc = tetherClient<string>(urlOf(a))
    await waitFor(() => session?.connected, 5000, 'session on node a')
    const sid = session?.id ?? ''
    const admin = createClient({ url: redis.url, socket: { reconnectStrategy: () => 100 } })
    admin.on('error', () => {})
    await admin.connect()
    defer(() => admin.close())
    const trimmedTo = async (n: number) => {
      const until = Date.now() + 5000
      while (Number(await admin.sendCommand(['HGET', `${prefix}:{${sid}}`, 'ak'])) !== n) {
        if (Date.now() > until) throw new Error(`Redis did not record the client's ack of ${n}`)
        await sleep(10)
      }
    }
    await Promise.all(['m1', 'm2', 'm3'].map((m) => session?.send(m)))
    await trimmedTo(3)
    const older = await redis.snapshot()
    // No client item from here on (a lower 'rx' after the restore would be noticed): only messages.
    await Promise.all(['m4', 'm5'].map((m) => session?.send(m)))
    await trimmedTo(5)
    // Redis comes back knowing the session at m3; node b appends three messages: numbered 4, 5, 6.
    await redis.restore(older)
    await admin.sendCommand(['PING'])
    const sent = ['n1', 'n2', 'n3'].map((m) => b.sendTo(sid, m))
    for (const promise of sent) promise.catch(() => {})
    await sleep(300)
    session?.send('m6').catch(() => {}) // node a's next commit (whatever the notices did) brings what was appended
    await waitFor(() => tc.messages.includes('m6') || tc.sessions.length === 2, 5000, 'm6, or a new session')
    await sleep(500)
    const toldLost = tc.sessions.some((s) => s.reason === 'lost')
    const after = tc.messages.slice(5)
    // Before the fix: ['n3', 'm6'] and no 'lost': n1 and n2 are skipped, and their sendTo() promises resolve.
    expect(toldLost ? ['n1', 'n2', 'n3', 'm6'] : after).toEqual(['n1', 'n2', 'n3', 'm6'])
    if (!toldLost) await withTimeout(Promise.all(sent), 3000, 'the sendTo() promises')
  })
})
