/**
 * When Redis itself goes: restarted with its append-only file kept, nothing is lost and the
 * session goes on; restored from an older file (it lost acknowledged writes), the client is
 * told once that its session was lost, starts a new one and goes on, never looping.
 */
import { createClient } from 'redis'
import { afterEach, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import type { TetherServer } from '../../src/server/index.js'
import { startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, defer, sleep, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(async () => {
  await cleanupTether()
  await stopAllRedis()
})

async function nodeOn(url: string): Promise<TetherServer> {
  const client = createClient({ url, socket: { reconnectStrategy: () => 100 } })
  client.on('error', () => {}) // it reconnects by itself while Redis restarts
  await client.connect()
  defer(() => client.close())
  const node = await startTether({ store: redisStore(client), heartbeatInterval: 0 })
  node.on('message', (data, session) => void session.send({ echo: data }).catch(() => {}))
  node.on('error', () => {}) // commits fail while Redis is down: reported, and the client comes back
  return node
}

describe('Redis restarts', () => {
  it('with its append-only file kept (killed, then restarted): nothing lost, nothing repeated, the same session', async () => {
    const redis = await startRedis()
    const node = await nodeOn(redis.url)
    const client = tetherClient<{ echo: number }, number>(urlOf(node))
    await waitFor(() => client.sock.sessionId, 5000, 'session')
    const sid = client.sock.sessionId
    await Promise.all(Array.from({ length: 200 }, (_, i) => client.sock.send(i + 1)))
    await redis.kill()
    const during = Array.from({ length: 100 }, (_, i) => client.sock.send(201 + i))
    await sleep(300)
    await redis.restart()
    await withTimeout(Promise.all(during), 15000, 'sends made while Redis was down')
    await waitFor(() => client.messages.length >= 300, 15000, 'every echo')
    await sleep(200)
    expect(client.messages).toEqual(Array.from({ length: 300 }, (_, i) => ({ echo: i + 1 })))
    expect(client.sock.sessionId).toBe(sid)
    expect(client.sessions).toHaveLength(1)
  }, 40000)

  it('restored from an older file: the client reports the lost session once, with the reason, and goes on in a new one', async () => {
    const redis = await startRedis()
    const node = await nodeOn(redis.url)
    const client = tetherClient<{ echo: number }, number>(urlOf(node))
    await waitFor(() => client.sock.sessionId, 5000, 'session')
    const sid = client.sock.sessionId
    await Promise.all(Array.from({ length: 50 }, (_, i) => client.sock.send(i + 1)))
    const older = await redis.snapshot()
    // Acknowledged after the snapshot: the restored Redis will not know these.
    await Promise.all(Array.from({ length: 50 }, (_, i) => client.sock.send(51 + i)))
    await waitFor(() => client.messages.length >= 100, 5000, 'echoes')
    await redis.restore(older)
    // The next commit finds the store behind: the node lets the session go, the client resumes, is refused.
    const after = client.sock.send(101)
    await withTimeout(after, 15000, 'a send after the restore')
    await waitFor(() => client.sessions.length === 2, 15000, 'the new session')
    await sleep(1500) // a loop would show as more sessions, or closes
    expect(client.sessions).toHaveLength(2)
    expect(client.sessions[1]).toMatchObject({ previous: sid, reason: 'lost' })
    expect(client.sock.state).toBe('open')
    expect(client.closes.length).toBeLessThanOrEqual(2)
  }, 40000)
})
