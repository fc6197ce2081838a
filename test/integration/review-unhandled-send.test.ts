/**
 * Review of `session.send()` on a session this node let go (src/server/sessions.ts
 * `sendEncoded` when not held → src/server/service.ts `forward`), against a real redis-server.
 *
 * Without a store, a `session.send()` whose promise the app ignores never becomes an unhandled
 * rejection: refusals use `handledRejection`, and `outbox.close()` marks every entry's promise
 * handled before rejecting it (the code says why: "an ignored failure must not end the process").
 * With a shared store, a send on a session this node let go (its client left, and the app kept the
 * Session object, as chat rooms and presence lists do) goes through `SharedService.forward`, an
 * `async` function whose own promise is returned to the app unmarked (`done.catch(noop)` marks
 * only the inner promise). When the session then ends (it expires, or `end()`), that promise
 * rejects with `DeliveryError`, unhandled, and Node's default (`--unhandled-rejections=throw`)
 * ends the user's process. `letGo`'s `forward(...).then(entry.resolve, entry.reject)` has the same
 * gap for the entries it forwards.
 *
 * The test catches unhandled rejections itself (vitest's own listener is put back after), so the
 * bug shows as a failed expectation. The test failed on the code before the fix because of
 * this bug (checked), and passes once these promises are marked handled as `outbox.close()` does.
 */
import { createClient } from 'redis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import type { Session } from '../../src/server/index.js'
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, defer, sleep, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

/** Records unhandled rejections instead of letting the runner (or Node) see them, until `restore()`. */
function catchUnhandled() {
  const seen: unknown[] = []
  const saved = process.listeners('unhandledRejection')
  process.removeAllListeners('unhandledRejection')
  const listener = (reason: unknown) => void seen.push(reason)
  process.on('unhandledRejection', listener)
  return {
    seen,
    restore() {
      process.off('unhandledRejection', listener)
      for (const listener1 of saved) process.on('unhandledRejection', listener1)
    },
  }
}

describe('review: an ignored send() on a session this node let go', () => {
  it('rejects when the session expires, without an unhandled rejection (as without a store)', async () => {
    const client = createClient({ url: redis.url })
    client.on('error', () => {})
    await client.connect()
    defer(() => client.close())
    const node = await startTether({
      store: redisStore(client, { prefix: `uh-${Date.now()}` }),
      sessionTtl: 400,
      heartbeatInterval: 0,
    })
    node.on('error', () => {})
    let session: Session | undefined
    const expired: string[] = []
    node.on('session', (s) => {
      session = s
    })
    node.on('expire', (_s, reason) => void expired.push(reason))
    const tc = tetherClient(urlOf(node), { reconnect: false })
    await waitFor(() => session?.connected, 5000, 'connected')
    await tc.sock.close()
    await waitFor(() => node.sessions.size === 0, 5000, 'the session handed back to the store')
    const unhandled = catchUnhandled()
    try {
      // The app still has the Session object (a room's member list) and sends, ignoring the promise.
      session?.send({ type: 'room update' })
      await waitFor(() => expired.length > 0, 5000, 'the session expired')
      await sleep(200)
    } finally {
      unhandled.restore()
    }
    expect(expired).toEqual(['ttl'])
    // Before the fix: [DeliveryError: session … ended (ttl) before the client acknowledged], unhandled.
    expect(unhandled.seen).toEqual([])
  })
})
