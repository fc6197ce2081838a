/**
 * Bounded resources, against the real reference server on 127.0.0.1: the client's queue and
 * the server's per-session outbox at their limits (the last accepted, the first refused),
 * idle sessions freed after sessionTtl, and 1,000 connect/drop cycles that leave no timers,
 * sockets, listeners, sessions or heap behind.
 */
import v8 from 'node:v8'
import vm from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { QueueFullError, type TetherSocket } from '../../src/index.js'
import type { Session, TetherServer } from '../../src/server/index.js'
import {
  cleanupTether,
  freePort,
  killConnections,
  serverSockets,
  startProxy,
  startTether,
  tetherClient,
  urlOf,
  waitFor,
  withTimeout,
} from '../support/tether.js'

afterEach(cleanupTether)

/** The rejection of `promise` (fails when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected a rejection')
}

/** Whether `promise` settled within a few event-loop turns. */
async function settledSoon(promise: Promise<unknown>): Promise<boolean> {
  let settled = false
  promise.then(
    () => {
      settled = true
    },
    () => {
      settled = true
    },
  )
  await new Promise((resolve) => setTimeout(resolve, 20))
  return settled
}

/**
 * The server's private connection bookkeeping, read to prove it empties. (Whether a connection
 * answered the heartbeat's ping is kept by the connection itself, ws.ts, and goes with it.)
 */
function internals(server: TetherServer) {
  const s = server as unknown as { sockets: Set<unknown> }
  return { sockets: s.sockets.size }
}

/** Active handles and requests by type (Timeout, TCPSocketWrap, …), as Node reports them. */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1
  return counts
}

/** Just the kinds a leak would show up in. */
function leakable(counts = resources()) {
  return { Timeout: counts.Timeout ?? 0, TCPSocketWrap: counts.TCPSocketWrap ?? 0, Immediate: counts.Immediate ?? 0 }
}

type Leakable = ReturnType<typeof leakable>

/** Waits until no kind of resource is above the baseline (a timer of the test runner's may come and go). */
async function backToBaseline(baseline: Leakable): Promise<void> {
  let now = leakable()
  const within = () => {
    now = leakable()
    return (Object.keys(baseline) as (keyof Leakable)[]).every((kind) => now[kind] <= baseline[kind])
  }
  try {
    await waitFor(within, 3000, 'timers and sockets back to the baseline')
  } catch {
    expect(now, 'active timers and sockets, compared with before').toEqual(baseline)
  }
}

/** The garbage collector, without restarting node with --expose-gc. */
function getGc(): () => void {
  v8.setFlagsFromString('--expose_gc')
  return vm.runInNewContext('gc') as () => void
}

async function heapAfterGc(gc: () => void): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

const EVENTS = ['open', 'message', 'close', 'reconnecting', 'state', 'error', 'session'] as const
const listenerCounts = (sock: TetherSocket<any, any>) => Object.fromEntries(EVENTS.map((e) => [e, sock.listenerCount(e)]))

/** Resolves on the socket's next `open`, bounded. */
const nextOpen = (sock: TetherSocket<any, any>, ms = 3000) =>
  withTimeout(new Promise<void>((resolve) => sock.once('open', resolve)), ms, 'the next open')

describe("the client's queue at its limits, against a real server", () => {
  it('maxMessages: the last accepted is number maxMessages, the first refused is the next; refused ones never reach the server', async () => {
    const server = await startTether()
    const received: unknown[] = []
    server.on('message', (data) => received.push(data))
    const proxy = await startProxy(server.port)
    const { sock, errors } = tetherClient<unknown, number>(urlOf(proxy), { queue: { maxMessages: 5 } })
    await waitFor(() => sock.state === 'open', 3000, 'open')
    proxy.freeze() // nothing is acknowledged: sent messages stay held
    const accepted = [1, 2, 3, 4, 5].map((n) => sock.send(n))
    expect(sock.pending).toBe(5)
    const refused = sock.send(6)
    const error = await rejection(refused)
    expect(error).toBeInstanceOf(QueueFullError)
    expect((error as QueueFullError).data).toBe(6)
    expect((error as QueueFullError).message).toContain('queue.maxMessages 5')
    expect(errors.filter((e) => e instanceof QueueFullError)).toHaveLength(1)
    expect(sock.pending).toBe(5)
    // Held, not lost: none of the accepted ones settled.
    expect(await settledSoon(Promise.race(accepted))).toBe(false)

    proxy.thaw()
    await withTimeout(Promise.all(accepted), 3000, 'the accepted five')
    expect(sock.pending).toBe(0)
    // Room again: one more is accepted and delivered; the refused one never was.
    await withTimeout(sock.send(7), 3000, 'a send after the acks')
    expect(received).toEqual([1, 2, 3, 4, 5, 7])
  })

  it('maxBytes: a message that fills the queue to exactly maxBytes is accepted, one byte more is refused', async () => {
    const server = await startTether()
    const received: unknown[] = []
    server.on('message', (data) => received.push(data))
    const proxy = await startProxy(server.port)
    // Payloads are JSON: 'x'.repeat(8) is 10 bytes on the wire ("xxxxxxxx"), 'é' counts 2 bytes.
    const { sock } = tetherClient<unknown, string | number>(urlOf(proxy), { queue: { maxBytes: 30 } })
    await waitFor(() => sock.state === 'open', 3000, 'open')
    proxy.freeze()
    const first = sock.send('x'.repeat(8)) // 10
    const second = sock.send('éééé') // 2 + 4 × 2 = 10 bytes
    const last = sock.send('x'.repeat(8)) // 30: exactly at the limit
    const over = sock.send(0) // 1 byte: 31
    const error = await rejection(over)
    expect(error).toBeInstanceOf(QueueFullError)
    expect((error as QueueFullError).message).toContain('30 bytes')
    expect(sock.pending).toBe(3)
    proxy.thaw()
    await withTimeout(Promise.all([first, second, last]), 3000, 'the accepted three')
    expect(received).toEqual(['x'.repeat(8), 'éééé', 'x'.repeat(8)])

    // On an empty queue: exactly maxBytes fits; maxBytes + 1 never does, and says so.
    await withTimeout(sock.send('y'.repeat(28)), 3000, 'a message of exactly maxBytes')
    const tooBig = await rejection(sock.send('y'.repeat(29)))
    expect(tooBig).toBeInstanceOf(QueueFullError)
    expect((tooBig as QueueFullError).message).toContain('exceeds queue.maxBytes (30)')
    expect(received).toHaveLength(4)
  })
})

describe("the server's per-session outbox at maxQueue while the client is away", () => {
  it('holds exactly maxQueue messages for an absent client, refuses the next, and delivers the held ones once it resumes', async () => {
    const server = await startTether({ maxQueue: 4 })
    const created: Session[] = []
    server.on('session', (s) => created.push(s))
    const deadPort = await freePort()
    const proxy = await startProxy(server.port)
    let target = urlOf(proxy)
    const { sock, messages } = tetherClient<number, number>(() => target)
    await waitFor(() => sock.state === 'open' && created.length === 1, 3000, 'open')
    const session = created[0]

    // The client goes away: its connection is cut and it cannot get back for now.
    target = `ws://127.0.0.1:${deadPort}`
    proxy.cutAll()
    await waitFor(() => !session.connected, 3000, 'the session to lose its connection')
    const held = [1, 2, 3, 4].map((n) => session.send(n))
    expect(session.pending).toBe(4)
    const refused = await rejection(session.send(5))
    expect(refused).toBeInstanceOf(QueueFullError)
    expect((refused as Error).message).toContain('maxQueue')
    expect(session.pending).toBe(4)
    expect(await settledSoon(Promise.race(held))).toBe(false)

    // The client comes back within sessionTtl: it resumes and gets exactly the held four, in order.
    target = urlOf(server)
    await withTimeout(Promise.all(held), 5000, 'the held messages to be acknowledged')
    expect(messages).toEqual([1, 2, 3, 4])
    expect(sock.sessionId).toBe(session.id)
    expect(session.pending).toBe(0)
    await withTimeout(session.send(6), 3000, 'room again')
    expect(messages).toEqual([1, 2, 3, 4, 6])
  })
})

describe('idle sessions', () => {
  it('200 clients that connect and go away: every session expires after sessionTtl, each with one expire event', async () => {
    const N = 200
    const server = await startTether({ sessionTtl: 300 })
    const baseline = leakable()
    const created = new Set<string>()
    const expired: string[] = []
    const disconnects: number[] = []
    server.on('session', (s) => created.add(s.id))
    server.on('expire', (s) => expired.push(s.id))
    server.on('disconnect', (_s, code) => disconnects.push(code))
    // Half leave with close(); half lose their connection (server-side) and do not retry.
    const clients = Array.from({ length: N }, () => tetherClient(urlOf(server), { reconnect: false }))
    await waitFor(() => clients.every((c) => c.sock.state === 'open'), 10_000, `${N} clients open`)
    expect(server.sessions.size).toBe(N)
    expect(created.size).toBe(N)

    const leaving = clients.slice(0, N / 2).map((c) => c.sock.close())
    await withTimeout(Promise.all(leaving), 5000, 'half the clients closing')
    killConnections(server)
    await waitFor(() => clients.every((c) => c.sock.state === 'closed'), 5000, 'every client closed')
    await waitFor(() => disconnects.length === N, 5000, 'every disconnect')
    // Kept for sessionTtl, for a resume that never comes…
    expect(server.sessions.size).toBe(N)
    // …then freed, every one of them, once.
    await waitFor(() => server.sessions.size === 0, 5000, 'every session to expire')
    expect(expired).toHaveLength(N)
    expect(new Set(expired)).toEqual(created)
    expect(internals(server)).toEqual({ sockets: 0 })
    // No expiry timer or socket is left behind.
    await backToBaseline(baseline)
  }, 30_000)
})

describe('1,000 connect/drop cycles', () => {
  it('sock.reconnect() 1,000 times: every message delivered once, and no timers, sockets, listeners, sessions or heap left behind', async () => {
    const CYCLES = 1000
    const WARMUP = 20
    const gc = getGc()
    const server = await startTether({ sessionTtl: 200 })
    const received: number[] = []
    const expired: string[] = []
    let resumes = 0
    server.on('message', (data) => received.push(data as number))
    server.on('expire', (s) => expired.push(s.id))
    server.on('resume', () => resumes++)
    const baseline = leakable()

    const { sock, sessions, errors } = tetherClient<unknown, number>(urlOf(server))
    await nextOpen(sock)
    let sent = 0
    const cycle = async () => {
      const opened = nextOpen(sock)
      sock.reconnect()
      await opened
      sock.send(sent++) // one message per connection, not awaited: the outbox and the session carry them across drops
    }
    for (let i = 0; i < WARMUP; i++) await cycle()
    const listeners = listenerCounts(sock)
    const heapBefore = await heapAfterGc(gc)
    const started = Date.now()
    for (let i = 0; i < CYCLES; i++) {
      await cycle()
      // Never more than the current connection and the one being replaced.
      if (i % 100 === 0) expect(internals(server).sockets).toBeLessThanOrEqual(2)
    }
    const elapsed = Date.now() - started
    await waitFor(() => received.length === sent && sock.pending === 0, 5000, 'every message to be acknowledged')
    const heapAfter = await heapAfterGc(gc)

    expect(received).toEqual(Array.from({ length: sent }, (_, i) => i)) // exactly once, in order
    expect(resumes).toBe(CYCLES + WARMUP) // one session all along, resumed on every connection
    expect(sessions).toHaveLength(1)
    expect(server.sessions.size).toBe(1)
    expect(errors).toEqual([])
    expect(listenerCounts(sock)).toEqual(listeners)
    expect(sock.stats.reconnects).toBe(CYCLES + WARMUP)
    // What remains after gc is the warm-up of JIT and caches (about 1 MB, flat from 1,000 to 5,000
    // cycles); a leak of 4 KB per cycle, one socket's worth of buffers, would double the limit.
    expect(heapAfter - heapBefore, `heap grew by ${((heapAfter - heapBefore) / 1e6).toFixed(2)} MB in ${elapsed} ms`).toBeLessThan(4e6)

    await sock.close()
    await waitFor(() => internals(server).sockets === 0, 3000, 'the server to forget the connection')
    await waitFor(() => server.sessions.size === 0, 3000, 'the session to expire')
    expect(expired).toHaveLength(1)
    await backToBaseline(baseline)
    expect(serverSockets(server)).toEqual([])
  }, 30_000)

  it('1,000 server-side drops with automatic reconnects: nothing accumulates on either side', async () => {
    const CYCLES = 1000
    const server = await startTether({ sessionTtl: 200 })
    const baseline = leakable()
    let resumes = 0
    server.on('resume', () => resumes++)
    const { sock, sessions, errors } = tetherClient(urlOf(server), { reconnect: { minDelay: 0, maxDelay: 0 } })
    await nextOpen(sock)
    const listeners = listenerCounts(sock)
    for (let i = 0; i < CYCLES; i++) {
      const opened = nextOpen(sock)
      expect(killConnections(server)).toBe(1)
      await opened
    }
    expect(resumes).toBe(CYCLES)
    expect(sessions).toHaveLength(1)
    expect(server.sessions.size).toBe(1)
    expect(errors).toEqual([])
    expect(listenerCounts(sock)).toEqual(listeners)
    await sock.close()
    await waitFor(() => server.sessions.size === 0 && internals(server).sockets === 0, 3000, 'the server to forget everything')
    await backToBaseline(baseline)
  }, 30_000)
})
