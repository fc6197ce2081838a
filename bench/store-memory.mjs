// Redis memory per session and per queued message: `INFO memory` used_memory before and after.
// Clients are raw `ws` connections that speak just enough tether.v1: a hello for a new session,
// then they read and never acknowledge, so what is sent to them stays in Redis.
import { WebSocket } from 'ws'
import { message, url } from './clients.mjs'
import { now, sleep } from './harness.mjs'

/** Idle sessions per measurement. */
export const SESSIONS = 2_000
/** Sessions that get queued messages, and messages queued to each. */
export const QUEUED_SESSIONS = 200
export const QUEUED_EACH = 100
/** Opened at once: more would overflow the server's accept backlog. */
const BATCH = 200

async function until(condition, what, timeoutMs = 30_000) {
  const deadline = now() + timeoutMs
  while (!(await condition())) {
    if (now() > deadline) throw new Error(`store memory: no ${what} within ${timeoutMs} ms`)
    await sleep(10)
  }
}

/** A connection with a new session; counts the messages it receives and never acknowledges them. */
function rawSession(target) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target, 'tether.v1')
    const client = { ws, received: 0 }
    ws.once('error', reject)
    ws.once('open', () => ws.send('{"t":"hello","sid":null,"ack":0}'))
    ws.on('message', (data) => {
      const frame = JSON.parse(data)
      if (frame.t === 'welcome') resolve(client)
      else if (frame.t === 'msg') client.received += frame.d.length
    })
  })
}

async function openSessions(target, count) {
  const clients = []
  for (let i = 0; i < count; i += BATCH) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(BATCH, count - i) }, () => rawSession(target)))))
  }
  return clients
}

async function closeAll(clients) {
  await Promise.all(
    clients.map(
      ({ ws }) =>
        new Promise((resolve) => {
          ws.once('close', resolve)
          ws.close()
        }),
    ),
  )
}

/**
 * One measurement on an empty Redis (`redis.flush()` empties it; `redis.usedMemory()` reads
 * used_memory; `redis.releasedCount(prefix)` counts the sessions no node holds) through `node`,
 * a server node with redisStore and `prefix`. Returns bytes per idle session
 * connected, per idle session released (disconnected, waiting for a resume), and per queued
 * message, with the average payload and Redis key count for the record.
 */
export async function measureMemory({ node, redis, prefix }) {
  const target = url(node.port)
  await redis.flush()
  const empty = await redis.usedMemory()

  // Idle sessions, connected, then released.
  const idle = await openSessions(target, SESSIONS)
  await until(async () => (await node.call('stats')).sessions === SESSIONS, 'sessions held')
  const connected = await redis.usedMemory()
  await closeAll(idle)
  await until(async () => (await node.call('stats')).sessions === 0, 'sessions released')
  // Releases are written after the node let the session go: wait for the last of them.
  await until(async () => (await redis.releasedCount(prefix)) === SESSIONS, 'releases recorded in Redis')
  const released = await redis.usedMemory()

  // Queued messages: sessions that never acknowledge what they receive.
  await redis.flush()
  const base = await redis.usedMemory()
  const queued = await openSessions(target, QUEUED_SESSIONS)
  await until(async () => (await node.call('stats')).sessions === QUEUED_SESSIONS, 'queue sessions held')
  const before = await redis.usedMemory()
  const total = await node.call('fill', QUEUED_EACH)
  // A message reaches its client only after Redis recorded it.
  await until(() => queued.every((client) => client.received === QUEUED_EACH), 'queued messages delivered')
  const after = await redis.usedMemory()
  await closeAll(queued)
  await until(async () => (await node.call('stats')).sessions === 0, 'queue sessions released')

  let payload = 0
  for (let i = 0; i < QUEUED_EACH; i++) payload += JSON.stringify(message(i)).length
  return {
    connected: (connected - empty) / SESSIONS,
    released: (released - empty) / SESSIONS,
    queued: (after - before) / total,
    payload: payload / QUEUED_EACH,
    sessionBase: (before - base) / QUEUED_SESSIONS,
  }
}
