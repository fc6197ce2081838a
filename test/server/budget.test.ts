// @vitest-environment node
/**
 * The server's memory bounds, driven directly: a session's byte bound (`maxQueueBytes`), the
 * server-wide budget for disconnected sessions (`maxDisconnectedBytes`) and its eviction order,
 * broadcasts that share one payload and make no promise per session, writing that stops while
 * a connection has `WRITE_BUFFER_BYTES` buffered, and the reason every `expire` gives. Sessions
 * get fake connections; time is fake.
 */
import { createHook } from 'node:async_hooks'
import { createServer } from 'node:http'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { DeliveryError, OptionError, QueueFullError } from '../../src/errors.js'
import type { ClientFrame } from '../../src/protocol/frames.js'
import { createTetherServer, type ExpireReason, type TetherServer, type TetherServerOptions } from '../../src/server/index.js'
import { SENT_ENTRY_BYTES, SESSION_BYTES, SHARED_ENTRY_BYTES, WRITE_BUFFER_BYTES } from '../../src/server/memory.js'
import type { Session, SessionConnection } from '../../src/server/sessions.js'
import type { ConnectionHooks } from '../../src/server/ws.js'

type Frame = { t: string; s?: number; d?: unknown[] }

/** Lets queued microtasks (coalesced flushes) run. */
async function tick(): Promise<void> {
  for (let i = 0; i < 5; i++) await vi.advanceTimersByTimeAsync(0)
}

/**
 * A fake connection that buffers what is written until `drain()`, as a socket whose peer does
 * not read would: `bufferedAmount()` is what was written and not drained, and each frame's
 * `written` callback runs when it is drained.
 */
function slowConnection() {
  const frames: string[] = []
  let buffered = 0
  let waiting: { bytes: number; written?: (error?: Error) => void }[] = []
  const conn = {
    frames,
    parsed: () => frames.map((frame) => JSON.parse(frame) as Frame),
    /** Sequence numbers of the messages written, in order. */
    seqs: () =>
      frames
        .map((frame) => JSON.parse(frame) as Frame)
        .filter((frame) => frame.t === 'msg')
        .flatMap((frame) => (frame.d ?? []).map((_, i) => (frame.s ?? 0) + i)),
    get buffered() {
      return buffered
    },
    send: vi.fn((frame: string, written?: (error?: Error) => void) => {
      frames.push(frame)
      const bytes = Buffer.byteLength(frame)
      buffered += bytes
      waiting.push({ bytes, written })
    }),
    close: vi.fn(),
    bufferedAmount: () => buffered,
    /** The peer read everything: every pending `written` callback runs, in order. */
    drain() {
      const all = waiting
      waiting = []
      for (const { bytes, written } of all) {
        buffered -= bytes
        written?.()
      }
    },
  } satisfies SessionConnection & Record<string, unknown>
  return conn
}

/** A plain fake connection that hands everything on at once. */
const quickConnection = (): SessionConnection => ({ send: () => {}, close: () => {} })

const servers: TetherServer[] = []

/** A server attached to an HTTP server that never listens: sessions are made through its connection hooks. */
async function server(options: TetherServerOptions = {}) {
  const tether = await createTetherServer({ server: createServer(), heartbeatInterval: 0, ...options })
  servers.push(tether)
  const hooks = (tether as unknown as { hooks: ConnectionHooks }).hooks
  const expired: { id: string; reason: ExpireReason }[] = []
  tether.on('expire', (session, reason) => expired.push({ id: session.id, reason }))
  /** A new session with a connection attached, as a client's first hello makes it. */
  const connect = (connection: SessionConnection = quickConnection()) => {
    const session = hooks.hello({ t: 'hello', sid: null, ack: 0 }, undefined, connection) as Session
    return { session, connection }
  }
  /** A new session whose client went away. */
  const abandoned = () => {
    const { session, connection } = connect()
    session.detach(connection)
    return session
  }
  return { tether, expired, connect, abandoned }
}

/** The server's budget of disconnected sessions (private), to read what it counts. */
const budgetOf = (tether: TetherServer) => (tether as unknown as { budget: { bytes: number; sessions: number } }).budget

const outboxOf = (session: Session): unknown[] => {
  const { outbox } = session as unknown as { outbox: { entries: unknown[]; head: number } }
  return outbox.entries.slice(outbox.head)
}

beforeEach(() => {
  vi.useFakeTimers()
})

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
  vi.useRealTimers()
})

describe('maxQueueBytes: the byte bound of one session', () => {
  it('session.send() beyond it rejects with a QueueFullError naming maxQueueBytes; within it, the message is queued', async () => {
    const { connect } = await server({ maxQueueBytes: 10 * (1000 + SENT_ENTRY_BYTES) + 400 })
    const { session, connection } = connect()
    session.detach(connection) // nothing is acknowledged while away
    const big = 'x'.repeat(998) // 1000 bytes as JSON
    const accepted = Array.from({ length: 10 }, () => session.send(big))
    expect(session.pending).toBe(10)
    expect(session.queuedBytes).toBe(10 * (1000 + SENT_ENTRY_BYTES))
    const refused = session.send(big)
    await expect(refused).rejects.toBeInstanceOf(QueueFullError)
    await expect(refused).rejects.toThrow(/maxQueueBytes/)
    expect(session.pending).toBe(10)
    // A small one still fits in what is left.
    void session.send(1)
    expect(session.pending).toBe(11)
    session.end()
    await Promise.allSettled(accepted)
  })

  it('a broadcast skips a session at its byte bound (no rejection, nothing queued) and reaches the others', async () => {
    const { tether, connect } = await server({ maxQueueBytes: 2000 })
    const full = connect()
    const other = connect()
    full.session.detach(full.connection)
    const held = full.session.send('y'.repeat(1500)) // counts 1502 + SENT_ENTRY_BYTES
    const unhandled = vi.fn()
    process.on('unhandledRejection', unhandled)
    try {
      tether.broadcast('z'.repeat(200)) // counts 202 + SHARED_ENTRY_BYTES: over 2000 for the first only
      expect(full.session.pending).toBe(1)
      expect(other.session.pending).toBe(1)
      tether.broadcast(1)
      expect(full.session.pending).toBe(2)
      expect(other.session.pending).toBe(2)
      full.session.end()
      await expect(held).rejects.toThrow()
      await tick()
      expect(unhandled).not.toHaveBeenCalled()
    } finally {
      process.off('unhandledRejection', unhandled)
    }
  })

  it('acknowledged messages no longer count', async () => {
    const { connect } = await server()
    const { session } = connect()
    const sent = session.send('abc')
    expect(session.queuedBytes).toBe(5 + SENT_ENTRY_BYTES)
    await tick()
    session.receive({ t: 'ack', s: 1 } as ClientFrame, 16)
    await sent
    expect(session.queuedBytes).toBe(0)
  })
})

describe('maxDisconnectedBytes: the budget of disconnected sessions, server-wide', () => {
  it('a resume whose hello acknowledges broadcasts received before the drop lets their payloads go: the count returns to 0, nothing is evicted later', async () => {
    const { tether, expired, connect, abandoned } = await server({ maxDisconnectedBytes: 100_000 })
    const { session } = connect()
    let connection = quickConnection()
    session.attach(connection, { ack: 0, resumed: false })
    for (let i = 1; i <= 10; i++) {
      tether.broadcast('x'.repeat(10_000)) // written; the client has it, but its ack is lost with the connection
      await vi.advanceTimersByTimeAsync(0)
      session.detach(connection)
      expect(budgetOf(tether).bytes).toBe(SESSION_BYTES + SHARED_ENTRY_BYTES + 10_002)
      connection = quickConnection()
      session.attach(connection, { ack: i, resumed: true }) // its hello acknowledges it
      expect(budgetOf(tether).bytes).toBe(0)
    }
    abandoned() // a session that holds nothing fits
    expect(expired).toEqual([])
  })

  it('when broadcasts bring it over, the sessions disconnected longest are ended first, with reason "evicted"; connected ones are never counted', async () => {
    // 8 disconnected sessions, 10 broadcasts of 1,000 bytes (counted once): 3,000 bytes too many.
    const limit = 8 * (SESSION_BYTES + 10 * SHARED_ENTRY_BYTES) + 10 * 1000 - 3000
    const { tether, expired, connect, abandoned } = await server({ maxDisconnectedBytes: limit })
    const connected = connect()
    const order = Array.from({ length: 8 }, () => abandoned())
    expect(expired).toEqual([])
    const payload = 'b'.repeat(998) // 1,000 bytes as JSON
    for (let i = 0; i < 10; i++) tether.broadcast(payload)
    // Each eviction frees a session's share: two are enough, the two that disconnected first, in that order.
    expect(expired).toEqual(order.slice(0, 2).map((s) => ({ id: s.id, reason: 'evicted' })))
    expect([...tether.sessions.values()]).toEqual([connected.session, ...order.slice(2)])
    expect(connected.session.pending).toBe(10)
    for (const session of order.slice(2)) expect(session.pending).toBe(10)
    expect(budgetOf(tether).bytes).toBeLessThanOrEqual(limit)
  })

  it("a broadcast's payload counts once, however many disconnected sessions hold it, until the last of them reconnects", async () => {
    const { tether, connect } = await server()
    const clients = Array.from({ length: 100 }, () => connect())
    for (const { session, connection } of clients) session.detach(connection)
    tether.broadcast('c'.repeat(9998)) // 10,000 bytes as JSON
    const budget = budgetOf(tether)
    expect(budget.bytes).toBe(100 * (SESSION_BYTES + SHARED_ENTRY_BYTES) + 10_000)
    // Each session still counts the payload in full against its own maxQueueBytes.
    expect(clients[0].session.queuedBytes).toBe(10_000 + SHARED_ENTRY_BYTES)
    for (const { session } of clients.slice(1)) session.attach(quickConnection(), { ack: 0, resumed: true })
    expect(budget.bytes).toBe(SESSION_BYTES + SHARED_ENTRY_BYTES + 10_000)
    clients[0].session.end()
    expect(budget.bytes).toBe(0)
    expect(budget.sessions).toBe(0)
  })

  it('a session that reconnects leaves the budget, and joins it again at the end when it disconnects again', async () => {
    const perSession = SESSION_BYTES + 100 + SENT_ENTRY_BYTES
    const { expired, connect } = await server({ maxDisconnectedBytes: 2 * perSession + 10 })
    const a = connect()
    const b = connect()
    a.session.detach(a.connection)
    b.session.detach(b.connection)
    // a comes back and goes again: now b has been disconnected longest.
    const again = quickConnection()
    a.session.attach(again, { ack: 0, resumed: true })
    a.session.detach(again)
    const sends = [a.session.send('p'.repeat(98)), b.session.send('p'.repeat(98))]
    const c = connect()
    c.session.detach(c.connection)
    expect(expired).toEqual([{ id: b.session.id, reason: 'evicted' }])
    // The evicted session's pending send rejects with DeliveryError.
    await expect(sends[1]).rejects.toBeInstanceOf(DeliveryError)
    await expect(sends[1]).rejects.toThrow(/maxDisconnectedBytes/)
    a.session.end()
    await Promise.allSettled(sends)
  })

  it('2,000 abandoned sessions under a stream of broadcasts: what they count stays within the budget', async () => {
    const limit = 1024 * 1024
    const { tether, expired, abandoned } = await server({ maxDisconnectedBytes: limit })
    for (let i = 0; i < 2000; i++) abandoned()
    // 2,000 × SESSION_BYTES alone is over 1 MiB: the oldest went as they disconnected.
    const budget = budgetOf(tether)
    expect(budget.bytes).toBeLessThanOrEqual(limit)
    let payloads = 0
    for (let i = 0; i < 300; i++) {
      const data = { i, text: 'a broadcast of about a hundred bytes, give or take a few of them, here' }
      payloads += JSON.stringify(data).length
      tether.broadcast(data)
    }
    expect(budget.bytes).toBeLessThanOrEqual(limit)
    expect(budget.sessions).toBe(tether.sessions.size)
    let counted = 0
    for (const session of tether.sessions.values()) counted += SESSION_BYTES + session.ownBytes
    // Every kept session has every broadcast (the sessions had gone before them), so each payload counts once.
    for (const session of tether.sessions.values()) expect(session.pending).toBe(300)
    expect(budget.bytes).toBe(counted + payloads)
    expect(expired.length).toBe(2000 - tether.sessions.size)
    expect(new Set(expired.map((e) => e.reason))).toEqual(new Set(['evicted']))
  })
})

describe('broadcast', () => {
  it('every session holds the one encoded payload, and no promise is created per session', async () => {
    const { tether, connect, abandoned } = await server()
    const sessions = [...Array.from({ length: 500 }, () => connect().session), ...Array.from({ length: 500 }, abandoned)]
    let promises = 0
    const hook = createHook({
      init(_id, type) {
        if (type === 'PROMISE') promises++
      },
    }).enable()
    try {
      tether.broadcast({ hello: 'everyone' })
    } finally {
      hook.disable()
    }
    // Before: a promise (and its resolve and reject) per session, 1,000 and more.
    expect(promises).toBeLessThan(10)
    const first = outboxOf(sessions[0])
    expect(first).toHaveLength(1)
    for (const session of sessions) {
      expect(outboxOf(session)).toHaveLength(1)
      expect(outboxOf(session)[0]).toBe(first[0])
    }
    expect(first[0]).toMatchObject({ payload: '{"hello":"everyone"}' })
  })

  it('a broadcast acknowledged by one client is still delivered to the others', async () => {
    const { tether, connect } = await server()
    const a = connect(slowConnection())
    const b = connect(slowConnection())
    tether.broadcast('one')
    tether.broadcast('two')
    await tick()
    a.session.receive({ t: 'ack', s: 2 } as ClientFrame, 16)
    expect(a.session.pending).toBe(0)
    // b's client comes back on a new connection: it is resent both.
    b.session.detach(b.connection)
    const again = slowConnection()
    b.session.attach(again, { ack: 0, resumed: true })
    expect(again.parsed().filter((frame) => frame.t === 'msg')).toEqual([{ t: 'msg', s: 1, d: ['one', 'two'] }])
  })
})

describe('writing to a client that does not read', () => {
  it('stops once WRITE_BUFFER_BYTES are buffered, keeps the rest in the outbox, and writes on when the buffer drained', async () => {
    const { connect } = await server({ maxPayload: 64 * 1024 })
    const conn = slowConnection()
    const { session } = connect(conn)
    conn.frames.length = 0
    const payload = 'd'.repeat(10_000)
    const total = 400 // 4 MB
    for (let i = 0; i < total; i++) void session.send(payload)
    await tick()
    // Up to the bound, plus at most the frame that crossed it.
    expect(conn.buffered).toBeGreaterThanOrEqual(WRITE_BUFFER_BYTES)
    expect(conn.buffered).toBeLessThan(WRITE_BUFFER_BYTES + 64 * 1024)
    const firstRound = conn.seqs()
    expect(firstRound.length).toBeLessThan(total)
    // More sends while blocked are not written either.
    void session.send('late')
    await tick()
    expect(conn.seqs()).toEqual(firstRound)
    // The peer reads: writing goes on, from where it stopped.
    conn.drain()
    await tick()
    const secondRound = conn.seqs()
    expect(secondRound.length).toBeGreaterThan(firstRound.length)
    for (let rounds = 0; rounds < 10 && conn.seqs().length < total + 1; rounds++) {
      conn.drain()
      await tick()
    }
    // Everything written exactly once, in order.
    expect(conn.seqs()).toEqual(Array.from({ length: total + 1 }, (_, i) => i + 1))
    session.end()
  })

  it('on resume, exactly what the client has not acknowledged is written again, whether or not it was written before', async () => {
    const { connect } = await server({ maxPayload: 64 * 1024 })
    const conn = slowConnection()
    const { session } = connect(conn)
    const payload = 'e'.repeat(10_000)
    for (let i = 0; i < 300; i++) void session.send(payload)
    await tick()
    const written = conn.seqs()
    expect(written.length).toBeLessThan(300)
    // The client had the first 50 (acknowledged in its hello), and comes back on a fresh connection.
    session.detach(conn)
    const fresh = slowConnection()
    session.attach(fresh, { ack: 50, resumed: true })
    for (let rounds = 0; rounds < 20 && fresh.seqs().length < 250; rounds++) {
      fresh.drain()
      await tick()
    }
    expect(fresh.seqs()).toEqual(Array.from({ length: 250 }, (_, i) => i + 51))
    // The old connection's late callbacks change nothing.
    conn.drain()
    await tick()
    expect(fresh.seqs()).toHaveLength(250)
    session.end()
  })
})

describe('expire says why', () => {
  it("'ttl' after sessionTtl, 'ended' for session.end(), 'shutdown' for server.close(), 'evicted' over the budget", async () => {
    const { tether, expired, connect, abandoned } = await server({ sessionTtl: 1000, maxDisconnectedBytes: 3 * SESSION_BYTES })
    const ttl = abandoned()
    await vi.advanceTimersByTimeAsync(1000)
    const ended = connect().session
    ended.end()
    const evicted = [abandoned(), abandoned(), abandoned(), abandoned()][0]
    const shutdown = connect().session
    await tether.close()
    expect(expired.find((e) => e.id === ttl.id)?.reason).toBe('ttl')
    expect(expired.find((e) => e.id === ended.id)?.reason).toBe('ended')
    expect(expired.find((e) => e.id === evicted.id)?.reason).toBe('evicted')
    expect(expired.find((e) => e.id === shutdown.id)?.reason).toBe('shutdown')
  })
})

describe('options', () => {
  it('maxQueue defaults to the rate limit burst plus 10 s at its rate; the byte bounds have defaults', async () => {
    const settings = (t: TetherServer) =>
      (t as unknown as { options: { maxQueue: number; maxQueueBytes: number; maxDisconnectedBytes: number } }).options
    expect(settings((await server()).tether)).toMatchObject({
      maxQueue: 20_000,
      maxQueueBytes: 16 * 1024 * 1024,
      maxDisconnectedBytes: 64 * 1024 * 1024,
    })
    expect(settings((await server({ rateLimit: { rate: 50, burst: 1000 } })).tether).maxQueue).toBe(1500)
    expect(settings((await server({ rateLimit: false })).tether).maxQueue).toBe(20_000)
    expect(settings((await server({ maxQueue: 7 })).tether).maxQueue).toBe(7)
  })

  it.each(['maxQueueBytes', 'maxDisconnectedBytes'] as const)('%s must be a positive number: an OptionError names it', async (key) => {
    for (const bad of [0, -1, Number.NaN, '1000' as unknown as number]) {
      const refused = createTetherServer({ server: createServer(), [key]: bad })
      await expect(refused).rejects.toThrow(new RegExp(`options\\.${key} must be a positive number`))
      await expect(refused).rejects.toThrow(OptionError)
    }
  })

  it('names the value given, a string quoted', async () => {
    await expect(createTetherServer({ server: createServer(), maxQueueBytes: '1000' as unknown as number })).rejects.toThrow(
      'createTetherServer: options.maxQueueBytes must be a positive number; got "1000"',
    )
  })
})
