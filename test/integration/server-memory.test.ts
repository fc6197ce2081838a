/**
 * The reference server's memory, measured on a real server on 127.0.0.1 (heap and external
 * memory after full garbage collections, in this process): 2,000 abandoned sessions under a
 * stream of broadcasts stay within `maxDisconnectedBytes`, and a client that never reads does
 * not make the server buffer what it is sent (writing stops at WRITE_BUFFER_BYTES, the rest is
 * bounded by `maxQueueBytes`). docs/SECURITY.md records the figures these tests print.
 */
import v8 from 'node:v8'
import vm from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { type RawData, WebSocket } from 'ws'
import { QueueFullError } from '../../src/errors.js'
import type { ExpireReason, Session } from '../../src/server/index.js'
import { cleanupTether, defer, sleep, startTether, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(cleanupTether)

const MiB = 1024 * 1024

/** The garbage collector, without restarting node with --expose-gc. */
function getGc(): () => void {
  v8.setFlagsFromString('--expose_gc')
  return vm.runInNewContext('gc') as () => void
}

/** Heap and memory outside it (Buffers: what sockets hold), after full collections. */
async function memoryAfterGc(gc: () => void): Promise<{ heap: number; external: number; total: number }> {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  const { heapUsed, external } = process.memoryUsage()
  return { heap: heapUsed, external, total: heapUsed + external }
}

const mb = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`

/** A raw tether.v1 client: connects, says hello, and resolves with the socket once `welcome` came. */
async function rawClient(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, 'tether.v1')
  ws.on('error', () => {})
  defer(() => ws.terminate())
  await withTimeout(new Promise((resolve) => ws.once('open', resolve)), 5000, 'raw client open')
  const welcome = withTimeout(new Promise((resolve) => ws.once('message', resolve)), 5000, 'welcome')
  ws.send(JSON.stringify({ t: 'hello', sid: null, ack: 0 }))
  await welcome
  return ws
}

describe("the server's memory", () => {
  it('2,000 abandoned sessions under a stream of broadcasts: the heap grows by less than maxDisconnectedBytes plus a margin, and the longest-disconnected are evicted', async () => {
    const gc = getGc()
    const budget = 8 * MiB
    const server = await startTether({ maxDisconnectedBytes: budget, heartbeatInterval: 0 })
    const expired: ExpireReason[] = []
    server.on('expire', (_session, reason) => expired.push(reason))
    const before = await memoryAfterGc(gc)
    const N = 2000
    // Clients connect, get a session, and vanish without a close frame.
    for (let i = 0; i < N; i += 200) {
      const batch = await Promise.all(Array.from({ length: 200 }, () => rawClient(urlOf(server))))
      for (const ws of batch) ws.terminate()
    }
    await waitFor(() => [...server.sessions.values()].every((s) => !s.connected), 10_000, 'every session disconnected')
    const broadcasts = 300
    for (let i = 0; i < broadcasts; i++) {
      server.broadcast({ type: 'news', i, text: `item ${i} of a stream of small broadcasts, about a hundred bytes` })
      if (i % 50 === 0) await sleep(1)
    }
    const after = await memoryAfterGc(gc)
    const growth = after.heap - before.heap
    const remaining = server.sessions.size
    console.log(
      `memory: ${N} abandoned sessions, ${broadcasts} broadcasts, maxDisconnectedBytes ${mb(budget)}: heap ${mb(before.heap)} → ${mb(after.heap)} (+${mb(growth)}), ${remaining} sessions kept, ${expired.length} evicted`,
    )
    // Before: every broadcast cost each session a promise and its closures (about 400 bytes):
    // 2,000 × 300 × 400 B, about 230 MiB.
    expect(growth).toBeLessThan(budget + 16 * MiB)
    expect(expired.length).toBe(N - remaining)
    expect(new Set(expired)).toEqual(new Set(['evicted']))
    // Those kept have every broadcast (none was skipped for them).
    for (const session of server.sessions.values()) expect(session.pending).toBe(broadcasts)
  }, 60_000)

  it('a connected session does not keep its upgrade request (its headers and buffers, about 1.5 KiB per connection)', async () => {
    const gc = getGc()
    const requests: WeakRef<object>[] = []
    const server = await startTether({ heartbeatInterval: 0, authenticate: (request) => Boolean(requests.push(new WeakRef(request))) })
    const clients = await Promise.all(Array.from({ length: 5 }, () => rawClient(urlOf(server))))
    await waitFor(() => server.sessions.size === clients.length, 3000, 'the sessions')
    await memoryAfterGc(gc)
    expect(requests).toHaveLength(clients.length)
    expect(requests.filter((request) => request.deref() !== undefined)).toHaveLength(0)
    // The connections still serve their sessions.
    for (const session of server.sessions.values()) expect(session.connected).toBe(true)
  })

  it('a client that never reads, sent 200 MB: the server stops writing at the buffer bound, refuses beyond maxQueueBytes, and its memory grows by little more than both', async () => {
    const gc = getGc()
    const maxQueueBytes = 16 * MiB
    const server = await startTether({ heartbeatInterval: 0 }) // maxQueueBytes at its default, 16 MiB
    const sessions: Session[] = []
    server.on('session', (session) => sessions.push(session))
    const ws = await rawClient(urlOf(server))
    await waitFor(() => sessions.length === 1, 3000, 'the session')
    const [session] = sessions
    // Stops reading from its socket: what the server writes piles up in the kernel, then in the server.
    ws.pause()
    const before = await memoryAfterGc(gc)
    const chunk = 'x'.repeat(100_000)
    let accepted = 0
    const refused: unknown[] = []
    for (let i = 0; i < 2000; i++) {
      session.send({ i, chunk }).catch((error) => refused.push(error))
      if (i % 20 === 19) await new Promise((resolve) => setImmediate(resolve)) // let the server write
    }
    await sleep(200)
    accepted = session.pending
    const after = await memoryAfterGc(gc)
    const growth = after.total - before.total
    console.log(
      `memory: a client that never reads, sent 2,000 × 100 kB: heap+external ${mb(before.total)} → ${mb(after.total)} (+${mb(growth)}; heap +${mb(after.heap - before.heap)}, external +${mb(after.external - before.external)}), ${accepted} accepted, ${refused.length} refused`,
    )
    // Before: all 200 MB accepted, written, and held twice (the outbox's strings and the socket's buffers), about 400 MB.
    expect(growth).toBeLessThan(maxQueueBytes + 1 * MiB + 1 * MiB + 8 * MiB)
    expect(refused.length).toBeGreaterThan(0)
    expect(refused[0]).toBeInstanceOf(QueueFullError)
    expect(String(refused[0])).toMatch(/maxQueueBytes/)
    expect(accepted * 100_000).toBeLessThanOrEqual(maxQueueBytes)
    // The client reads again: everything accepted arrives, in order, written as the socket drains.
    const seqs: number[] = []
    ws.on('message', (data: RawData) => {
      const frame = JSON.parse(String(data)) as { t: string; s: number; d?: unknown[] }
      if (frame.t === 'msg') for (let i = 0; i < (frame.d?.length ?? 0); i++) seqs.push(frame.s + i)
    })
    ws.resume()
    await waitFor(() => seqs.length >= accepted, 15_000, 'every accepted message')
    expect(seqs).toEqual(Array.from({ length: accepted }, (_, i) => i + 1))
  }, 60_000)
})
