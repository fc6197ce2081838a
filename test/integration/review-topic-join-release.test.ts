/**
 * Review of `session.join(topic)` with a store when the store answers after the node let the
 * session go (src/server/sessions.ts `joinShared`): the store recorded the membership, but the
 * session's record never got its place in the topic, so presence listed a member that no node
 * would ever give the topic's messages. The join is undone instead (a `leave` follows the
 * `join`), and the app may join again from the session's next message. Against a real
 * redis-server; the store's answer is held back with support/store-gate.ts.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
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

it('a join answered after the node let the session go is undone: presence does not list it, and leave says so', async () => {
  const prefix = `tj-${Date.now()}`
  const { store, gate } = holdingOne(redisStore(await connectedClient(redis.url), { prefix }), 'member')
  const node = await startTether({ store, heartbeatInterval: 0 })
  node.on('error', () => {})
  const events: string[] = []
  node.on('join', (_s, topic) => events.push(`join ${topic}`))
  node.on('leave', (_s, topic, reason) => events.push(`leave ${topic} ${reason}`))
  let target = node.port
  const proxy = await startProxy(() => target)
  const client = tetherClient<string>(urlOf(proxy))
  await waitFor(() => client.sock.state === 'open', 5000, 'open')
  const session = [...node.sessions.values()][0]!
  gate.arm()
  session.join('room')
  await waitFor(() => gate.held === 1, 5000, 'the join answered, and held')
  target = 0
  proxy.cutAll() // the client goes away: the node lets the session go
  await waitFor(() => node.sessions.size === 0, 5000, 'the session handed back')
  gate.release()
  await waitFor(() => events.length === 2, 5000, 'the join undone')
  expect(events).toEqual(['join room', 'leave room left'])
  // The undoing goes through the store: presence is read there.
  const deadline = Date.now() + 5000
  while ((await node.presence('room')).length > 0 && Date.now() < deadline) await sleep(20)
  expect(await node.presence('room')).toEqual([])
})
