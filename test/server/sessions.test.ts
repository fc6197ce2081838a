// @vitest-environment node
/**
 * The server half of tether.v1, driven directly: a fake connection records the frames a
 * Session writes, fake events record what it hands to the server, and time is fake.
 */
import { afterEach, beforeEach, describe, expect, expectTypeOf, it, vi } from 'vitest'
import { ClosedError, DeliveryError, EncodeError, QueueFullError } from '../../src/errors.js'
import { type ClientFrame, FrameError } from '../../src/protocol/frames.js'
import { MAX_HOLD, type RateLimit } from '../../src/server/limits.js'
import { RequestError, Session, type SessionConnection, type SessionEvents, type SessionLimits } from '../../src/server/sessions.js'
import { track } from '../support/track.js'

type Frame = Record<string, unknown>

const MiB = 1024 * 1024
const utf8 = new TextEncoder()

/** Lets queued microtasks (coalesced flushes and acks, request handlers) run. */
async function tick(): Promise<void> {
  for (let i = 0; i < 5; i++) await vi.advanceTimersByTimeAsync(0)
}

/** A fake connection: what the session writes to it, parsed, how it was closed, and when reading was paused. */
function connection() {
  const raw: string[] = []
  const conn = {
    raw,
    frames: () => raw.map((frame) => JSON.parse(frame) as Frame),
    clear: () => {
      raw.length = 0
    },
    send: vi.fn((frame: string) => {
      raw.push(frame)
    }),
    close: vi.fn(),
    pause: vi.fn(),
    resume: vi.fn(),
  } satisfies SessionConnection & Record<string, unknown>
  return conn
}

type Handler = (data: unknown, session: Session) => Promise<unknown>

function setup(limits: Partial<SessionLimits> = {}, handler: Handler = async (data) => ({ echo: data })) {
  const events = {
    message: vi.fn<SessionEvents['message']>(),
    request: vi.fn<SessionEvents['request']>(handler),
    expire: vi.fn<SessionEvents['expire']>(),
  }
  const session = new Session(
    undefined,
    {
      maxQueue: 100_000,
      maxQueueBytes: 1024 * MiB,
      maxPayload: MiB,
      sessionTtl: 60_000,
      rateLimit: false,
      maxPendingRequests: 1000,
      ...limits,
    },
    events,
  )
  const messages = () => events.message.mock.calls.map(([data]) => data)
  /** Attaches a fresh connection as a new session would be, and forgets the welcome. */
  const connect = (clientAck = 0, resumed = false) => {
    const conn = connection()
    session.attach(conn, { ack: clientAck, resumed: resumed })
    return conn
  }
  return { session, events, messages, connect }
}

/** The FrameError `fn` throws, or fails the test when it throws none. */
function frameError(fn: () => void): FrameError {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(FrameError)
    return error as FrameError
  }
  throw new Error('no FrameError thrown')
}

/** Hands a frame to the session as ws.ts does, with its size on the wire. */
function receive(session: Session, frame: ClientFrame, size = utf8.encode(JSON.stringify(frame)).byteLength): void {
  session.receive(frame, size)
}

const msg = (s: number, ...d: unknown[]): ClientFrame => ({ t: 'msg', s, d })
const ack = (s: number): ClientFrame => ({ t: 'ack', s })
const req = (s: number, id: number, d: unknown): ClientFrame => ({ t: 'req', s, id, d })

/** The internal array behind the session's outbox (to check that it is compacted). */
const outboxArray = (session: Session): unknown[] => (session as unknown as { outbox: { entries: unknown[] } }).outbox.entries

beforeEach(() => {
  vi.useFakeTimers()
})

afterEach(() => {
  vi.useRealTimers()
})

describe('session identity and welcome', () => {
  it('has an unguessable base64url id of 128 bits', () => {
    const ids = new Set(Array.from({ length: 50 }, () => setup().session.id))
    expect(ids.size).toBe(50)
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/)
  })

  it('attach writes welcome with the session id, the resume flag, the last client seq and the max payload', () => {
    const { session, connect } = setup({ maxPayload: 4096 })
    const conn = connect()
    expect(conn.frames()).toEqual([{ t: 'welcome', sid: session.id, resumed: false, ack: 0, max: 4096, reqs: 1000, sent: 0, pa: true }])
    expect(session.connected).toBe(true)
  })

  it('no limit (Infinity) is announced as such: no reqs, and the largest max JSON integers allow (PROTOCOL.md §3.7, §3.8)', () => {
    // JSON has no Infinity: written as is, it became null, a welcome every client refuses.
    const { session, connect } = setup({ maxPayload: Number.POSITIVE_INFINITY, maxPendingRequests: Number.POSITIVE_INFINITY })
    const conn = connect()
    expect(conn.raw[0]).not.toContain('null')
    expect(conn.frames()).toEqual([
      { t: 'welcome', sid: session.id, resumed: false, ack: 0, max: Number.MAX_SAFE_INTEGER, sent: 0, pa: true },
    ])
  })

  it('the welcome of a resumed connection names the last client seq delivered', () => {
    const { session, connect } = setup()
    const first = connect()
    receive(session, msg(1, 'a', 'b', 'c'))
    session.detach(first)
    const second = connect(0, true)
    expect(second.frames()[0]).toEqual({ t: 'welcome', sid: session.id, resumed: true, ack: 3, max: MiB, reqs: 1000, sent: 0, pa: true })
  })

  it('welcome.sent is the last number given to a server item: 0 for a new session, every message sent before a resume, acknowledged or not (PROTOCOL.md §4.10)', async () => {
    const { session, connect } = setup()
    const first = connect()
    expect(first.frames()[0]).toMatchObject({ t: 'welcome', sent: 0 })
    for (const data of ['a', 'b', 'c', 'd', 'e']) session.send(data)
    await tick()
    receive(session, ack(2))
    session.detach(first)
    session.send('while away')
    const second = connect(2, true)
    await tick()
    expect(second.frames()[0]).toMatchObject({ t: 'welcome', resumed: true, sent: 6 })
    // What the server resends is numbered at most welcome.sent.
    expect(second.frames().slice(1)).toEqual([{ t: 'msg', s: 3, d: ['c', 'd', 'e', 'while away'] }])
    receive(session, ack(6))
    session.detach(second)
    const third = connect(6, true)
    expect(third.frames()).toEqual([{ t: 'welcome', sid: session.id, resumed: true, ack: 0, max: MiB, reqs: 1000, sent: 6, pa: true }])
  })

  it('a hello acknowledging more than was ever sent is a protocol error', () => {
    const { session } = setup()
    const error = frameError(() => session.attach(connection(), { ack: 1, resumed: true }))
    expect(error.closeCode).toBe(1002)
    expect(session.connected).toBe(false)
  })

  it('a second hello on one connection is a protocol error', () => {
    const { session, connect } = setup()
    connect()
    expect(frameError(() => receive(session, { t: 'hello', sid: session.id, ack: 0 })).closeCode).toBe(1002)
  })

  it('ping is answered with pong', () => {
    const { session, connect } = setup()
    const conn = connect()
    conn.clear()
    receive(session, { t: 'ping' })
    expect(conn.raw).toEqual(['{"t":"pong"}'])
  })
})

describe('messages from the client', () => {
  it('are delivered once each, in order, with their session', () => {
    const { session, events, messages, connect } = setup()
    connect()
    receive(session, msg(1, 'a', { b: 2 }))
    receive(session, msg(3, ['c']))
    expect(messages()).toEqual(['a', { b: 2 }, ['c']])
    expect(events.message.mock.calls.every(([, s]) => s === session)).toBe(true)
  })

  it('duplicates are dropped: whole frames and the already-delivered part of overlapping ones', () => {
    const { session, messages, connect } = setup()
    connect()
    receive(session, msg(1, 'a', 'b'))
    receive(session, msg(1, 'a', 'b'))
    receive(session, msg(2, 'b', 'c', 'd'))
    receive(session, msg(3, 'c'))
    receive(session, msg(5, 'e'))
    expect(messages()).toEqual(['a', 'b', 'c', 'd', 'e'])
  })

  it('duplicates resent on a new connection are dropped too', () => {
    const { session, messages, connect } = setup()
    const first = connect()
    receive(session, msg(1, 'a', 'b'))
    session.detach(first)
    connect(0, true)
    receive(session, msg(1, 'a', 'b', 'c'))
    expect(messages()).toEqual(['a', 'b', 'c'])
  })

  it('a gap in the sequence is a FrameError 1002 and nothing of it is delivered', () => {
    const { session, messages, connect } = setup()
    connect()
    receive(session, msg(1, 'a'))
    const error = frameError(() => receive(session, msg(3, 'c')))
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('gap')
    expect(messages()).toEqual(['a'])
  })

  it('acks are coalesced: many frames in one tick get one ack with the highest seq', async () => {
    const { session, connect } = setup()
    const conn = connect()
    conn.clear()
    for (let s = 1; s <= 20; s++) receive(session, msg(s, s))
    expect(conn.raw).toEqual([])
    await tick()
    expect(conn.raw).toEqual(['{"t":"ack","s":20}'])
    receive(session, msg(21, 21, 22))
    await tick()
    expect(conn.frames()).toEqual([
      { t: 'ack', s: 20 },
      { t: 'ack', s: 22 },
    ])
  })

  it('duplicates are acknowledged again (the client may have lost the first ack)', async () => {
    const { session, connect } = setup()
    const conn = connect()
    receive(session, msg(1, 'a'))
    await tick()
    conn.clear()
    receive(session, msg(1, 'a'))
    await tick()
    expect(conn.frames()).toEqual([{ t: 'ack', s: 1 }])
  })
})

describe('send()', () => {
  it('writes one msg frame per tick and resolves when the client acknowledges', async () => {
    const { session, connect } = setup()
    const conn = connect()
    conn.clear()
    const sent = ['a', { b: 1 }, [3]].map((data) => track(session.send(data)))
    expect(conn.raw).toEqual([])
    await tick()
    expect(conn.raw).toEqual(['{"t":"msg","s":1,"d":["a",{"b":1},[3]]}'])
    expect(session.pending).toBe(3)
    receive(session, ack(2))
    await tick()
    expect(sent.map((p) => p.status)).toEqual(['resolved', 'resolved', 'pending'])
    expect(session.pending).toBe(1)
    receive(session, ack(3))
    await tick()
    expect(sent[2].status).toBe('resolved')
    expect(session.pending).toBe(0)
  })

  it('an ack beyond what was sent is a FrameError 1002', async () => {
    const { session, connect } = setup()
    connect()
    session.send('a')
    await tick()
    expect(frameError(() => receive(session, ack(2))).closeCode).toBe(1002)
  })

  it('rejects what JSON cannot carry, at once, with an EncodeError (ERR_ENCODE)', async () => {
    const { session, connect } = setup()
    const conn = connect()
    conn.clear()
    await expect(session.send(undefined)).rejects.toMatchObject({ name: 'EncodeError', code: 'ERR_ENCODE' })
    await expect(session.send(1n)).rejects.toBeInstanceOf(EncodeError)
    await tick()
    expect(conn.raw).toEqual([])
    expect(session.pending).toBe(0)
  })

  it('waits while the client is away and goes out after the welcome on resume', async () => {
    const { session, connect } = setup()
    const first = connect()
    session.detach(first)
    const sent = track(session.send('while away'))
    await tick()
    const second = connect(0, true)
    await tick()
    expect(second.frames()).toEqual([
      { t: 'welcome', sid: session.id, resumed: true, ack: 0, max: MiB, reqs: 1000, sent: 1, pa: true },
      { t: 'msg', s: 1, d: ['while away'] },
    ])
    receive(session, ack(1))
    await tick()
    expect(sent.status).toBe('resolved')
  })

  it('on resume, resends only what the client lacks, with the same seqs', async () => {
    const { session, connect } = setup()
    const first = connect()
    const sent = ['a', 'b', 'c', 'd'].map((data) => track(session.send(data)))
    await tick()
    receive(session, ack(1))
    session.detach(first)
    const second = connect(3, true) // the client got up to 3; our ack for 2 and 3 was lost
    await tick()
    expect(second.frames()).toEqual([
      { t: 'welcome', sid: session.id, resumed: true, ack: 0, max: MiB, reqs: 1000, sent: 4, pa: true },
      { t: 'msg', s: 4, d: ['d'] },
    ])
    expect(sent.map((p) => p.status)).toEqual(['resolved', 'resolved', 'resolved', 'pending'])
    expect(session.pending).toBe(1)
  })

  it('on resume with nothing lost, resends nothing', async () => {
    const { session, connect } = setup()
    const first = connect()
    session.send('a')
    await tick()
    session.detach(first)
    const second = connect(1, true)
    await tick()
    expect(second.frames().map((frame) => frame.t)).toEqual(['welcome'])
    expect(session.pending).toBe(0)
  })

  it('batches are split so that no frame exceeds maxPayload bytes (ASCII)', async () => {
    const maxPayload = 1000
    const { session, connect } = setup({ maxPayload })
    const conn = connect()
    conn.clear()
    const data = Array.from({ length: 30 }, (_, i) => `${i}:${'x'.repeat(90)}`)
    for (const d of data) session.send(d)
    await tick()
    expect(conn.raw.length).toBeGreaterThan(1)
    for (const frame of conn.raw) expect(utf8.encode(frame).byteLength).toBeLessThanOrEqual(maxPayload)
    const frames = conn.frames() as { s: number; d: unknown[] }[]
    let next = 1
    for (const frame of frames) {
      expect(frame.s).toBe(next)
      next += frame.d.length
    }
    expect(frames.flatMap((frame) => frame.d)).toEqual(data)
  })

  it('batches are split so that no frame exceeds maxPayload bytes (non-ASCII counts in UTF-8 bytes)', async () => {
    const maxPayload = 1000
    const { session, connect } = setup({ maxPayload })
    const conn = connect()
    conn.clear()
    const data = Array.from({ length: 10 }, () => '€'.repeat(100)) // 102 characters of JSON, 302 bytes each
    for (const d of data) session.send(d)
    await tick()
    for (const frame of conn.raw) expect(utf8.encode(frame).byteLength).toBeLessThanOrEqual(maxPayload)
    expect((conn.frames() as { d: unknown[] }[]).flatMap((frame) => frame.d)).toEqual(data)
  })
})

describe('limits and lifetime', () => {
  it('maxQueue: a send beyond the unacknowledged limit rejects with QueueFullError; an ack makes room', async () => {
    const { session, connect } = setup({ maxQueue: 3 })
    connect()
    const sent = [1, 2, 3].map((n) => track(session.send(n)))
    const refused = track(session.send(4))
    await tick()
    expect(refused.status).toBe('rejected')
    expect(refused.error).toBeInstanceOf(QueueFullError)
    expect(session.pending).toBe(3)
    receive(session, ack(1))
    const accepted = track(session.send(5))
    await tick()
    expect(accepted.status).toBe('pending')
    expect(session.pending).toBe(3)
    expect(sent.map((p) => p.status)).toEqual(['resolved', 'pending', 'pending'])
  })

  it('maxQueue applies while the client is away', async () => {
    const { session } = setup({ maxQueue: 2 })
    session.send(1)
    session.send(2)
    await expect(session.send(3)).rejects.toBeInstanceOf(QueueFullError)
  })

  it('detach starts the sessionTtl timer; when it runs out, pending sends reject and the session expires', async () => {
    const { session, events, connect } = setup({ sessionTtl: 30_000 })
    const conn = connect()
    const sent = track(session.send('never acked'))
    await tick()
    session.detach(conn)
    expect(session.connected).toBe(false)
    await vi.advanceTimersByTimeAsync(29_999)
    expect(events.expire).not.toHaveBeenCalled()
    expect(sent.status).toBe('pending')
    await vi.advanceTimersByTimeAsync(1)
    expect(events.expire).toHaveBeenCalledExactlyOnceWith(session, 'ttl')
    expect(sent.status).toBe('rejected')
    expect(sent.error).toBeInstanceOf(DeliveryError)
    await expect(session.send('after')).rejects.toBeInstanceOf(ClosedError)
  })

  it('a resume within sessionTtl cancels the expiry', async () => {
    const { session, events, connect } = setup({ sessionTtl: 30_000 })
    session.detach(connect())
    await vi.advanceTimersByTimeAsync(29_000)
    connect(0, true)
    await vi.advanceTimersByTimeAsync(120_000)
    expect(events.expire).not.toHaveBeenCalled()
  })

  it('no expiry timer runs while connected', async () => {
    const { events, connect } = setup({ sessionTtl: 1000 })
    connect()
    await vi.advanceTimersByTimeAsync(10_000)
    expect(events.expire).not.toHaveBeenCalled()
  })

  it('a newer connection replaces the current one, which is closed; the old one detaching later changes nothing', async () => {
    const { session, events, connect } = setup({ sessionTtl: 1000 })
    const first = connect()
    const second = connect(0, true)
    expect(first.close).toHaveBeenCalledWith(1000, expect.any(String))
    session.detach(first)
    expect(session.connected).toBe(true)
    await vi.advanceTimersByTimeAsync(10_000)
    expect(events.expire).not.toHaveBeenCalled()
    second.clear()
    session.send('to the new one')
    await tick()
    expect(second.frames()).toEqual([{ t: 'msg', s: 1, d: ['to the new one'] }])
    expect(first.frames().filter((frame) => frame.t === 'msg')).toEqual([])
  })

  it('end() rejects pending sends, closes the connection and reports the expiry once', async () => {
    const { session, events, connect } = setup()
    const conn = connect()
    const sent = [1, 2].map((n) => track(session.send(n)))
    await tick()
    session.end()
    session.end()
    await tick()
    expect(sent.map((p) => p.status)).toEqual(['rejected', 'rejected'])
    expect(sent[0].error).toBeInstanceOf(ClosedError)
    expect(conn.close).toHaveBeenCalledTimes(1)
    expect(events.expire).toHaveBeenCalledTimes(1)
    expect(session.connected).toBe(false)
    expect(session.pending).toBe(0)
  })

  it('a message handler that ends the session: what was delivered is acknowledged before the close, so it is not sent again', () => {
    const { session, events, connect } = setup()
    events.message.mockImplementation((data) => {
      if (data === 'logout') session.end()
    })
    const conn = connect()
    conn.clear()
    receive(session, msg(1, 'a', 'logout', 'after'))
    // 'after' was never delivered: not acknowledged, and no frame follows the close
    expect(conn.frames()).toEqual([{ t: 'ack', s: 2 }])
    expect(conn.send.mock.invocationCallOrder[0]).toBeLessThan(conn.close.mock.invocationCallOrder[0])
    expect(conn.close).toHaveBeenCalledWith(1000, 'session ended')
    expect(events.message.mock.calls.map(([data]) => data)).toEqual(['a', 'logout'])
  })

  it('a request handler that ends the session: the request is acknowledged before the close', async () => {
    const { session, connect } = setup({}, async (_, s) => {
      s.end()
      return 'bye'
    })
    const conn = connect()
    conn.clear()
    receive(session, req(1, 7, 'logout'))
    await tick()
    expect(conn.frames()).toEqual([{ t: 'ack', s: 1 }])
    expect(conn.close).toHaveBeenCalledTimes(1)
  })

  it('endWith closes with the given code, after acknowledging (the server shutdown uses 1001)', () => {
    const { session, connect } = setup()
    const conn = connect()
    conn.clear()
    receive(session, msg(1, 'a'))
    session.endWith(new ClosedError('the server shut down'), 'shutdown', { code: 1001, reason: 'server shutting down' })
    expect(conn.frames()).toEqual([{ t: 'ack', s: 1 }])
    expect(conn.close).toHaveBeenCalledWith(1001, 'server shutting down')
  })

  it('end(error) rejects pending sends with that error', async () => {
    const { session } = setup()
    const sent = track(session.send(1))
    const error = new DeliveryError('gone')
    session.end(error)
    await tick()
    expect(sent.error).toBe(error)
  })

  it('the outbox is compacted: 5,000 acknowledged sends do not keep growing its array', async () => {
    const { session, connect } = setup()
    const conn = connect()
    let longest = 0
    let acked = 0
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 100; i++) session.send(round * 100 + i)
      await tick()
      acked += 100
      receive(session, ack(acked))
      longest = Math.max(longest, outboxArray(session).length)
    }
    expect(session.pending).toBe(0)
    expect(longest).toBeLessThanOrEqual(2048)
    expect(outboxArray(session).length).toBeLessThanOrEqual(2048)
    const sent = conn.frames().filter((frame) => frame.t === 'msg') as { d: unknown[] }[]
    expect(sent.flatMap((frame) => frame.d)).toEqual(Array.from({ length: 5000 }, (_, i) => i))
  })

  it('the outbox is compacted after one ack of 5,000 sends', async () => {
    const { session, connect } = setup()
    connect()
    const sent = Array.from({ length: 5000 }, (_, i) => session.send(i))
    await tick()
    receive(session, ack(5000))
    await Promise.all(sent)
    expect(session.pending).toBe(0)
    expect(outboxArray(session).length).toBe(0)
  })

  it('sequencing stays right across compactions', async () => {
    const { session, connect } = setup()
    const conn = connect()
    for (let i = 0; i < 3000; i++) session.send(i)
    await tick()
    receive(session, ack(2000)) // compacts with 1,000 still pending
    session.detach(conn)
    const next = connect(2500, true)
    await tick()
    const frames = next.frames().filter((frame) => frame.t === 'msg') as { s: number; d: unknown[] }[]
    expect(frames[0].s).toBe(2501)
    expect(frames.flatMap((frame) => frame.d)).toEqual(Array.from({ length: 500 }, (_, i) => 2500 + i))
    expect(session.pending).toBe(500)
  })
})

describe('requests', () => {
  it('the handler gets the data and its value is the reply, acknowledged like a message', async () => {
    const { session, events, connect } = setup()
    const conn = connect()
    conn.clear()
    receive(session, req(1, 7, { q: 'x' }))
    expect(events.request).toHaveBeenCalledExactlyOnceWith({ q: 'x' }, session, expect.objectContaining({ seq: 1, redelivered: false }))
    expect(events.request.mock.calls[0][2].id).toBe(`${session.id}:1`)
    await tick()
    expect(conn.frames()).toEqual([
      { t: 'ack', s: 1 },
      { t: 'res', s: 1, id: 7, d: { echo: { q: 'x' } } },
    ])
    expect(session.pending).toBe(1) // the reply waits for the client's ack
    receive(session, ack(1))
    expect(session.pending).toBe(0)
  })

  it('a handler returning undefined replies null', async () => {
    const { session, connect } = setup({}, async () => undefined)
    const conn = connect()
    conn.clear()
    receive(session, req(1, 1, 'x'))
    await tick()
    expect(conn.frames()).toContainEqual({ t: 'res', s: 1, id: 1, d: null })
  })

  it('a RequestError passes its code and message to the client', async () => {
    const { session, connect } = setup({}, async () => {
      throw new RequestError('BAD_REQUEST', 'id is required')
    })
    const conn = connect()
    conn.clear()
    receive(session, req(1, 3, {}))
    await tick()
    expect(conn.frames()).toContainEqual({ t: 'res', s: 1, id: 3, err: { code: 'BAD_REQUEST', message: 'id is required' } })
  })

  it('any other error replies ERR_INTERNAL without leaking its message', async () => {
    const { session, connect } = setup({}, async () => {
      throw new Error('password=hunter2 at db.internal:5432')
    })
    const conn = connect()
    conn.clear()
    receive(session, req(1, 4, {}))
    await tick()
    const res = conn.frames().find((frame) => frame.t === 'res') as { err: { code: string; message: string } }
    expect(res.err.code).toBe('ERR_INTERNAL')
    expect(typeof res.err.message).toBe('string')
    expect(conn.raw.join('')).not.toContain('hunter2')
    expect(conn.raw.join('')).not.toContain('db.internal')
  })

  it('a thrown non-Error is ERR_INTERNAL too', async () => {
    const { session, connect } = setup({}, () => Promise.reject('secret string'))
    const conn = connect()
    receive(session, req(1, 5, {}))
    await tick()
    expect(conn.frames()).toContainEqual(
      expect.objectContaining({ t: 'res', id: 5, err: expect.objectContaining({ code: 'ERR_INTERNAL' }) }),
    )
    expect(conn.raw.join('')).not.toContain('secret string')
  })

  it('a reply JSON cannot carry becomes an error reply', async () => {
    const { session, connect } = setup({}, async () => 1n)
    const conn = connect()
    receive(session, req(1, 6, {}))
    await tick()
    const res = conn.frames().find((frame) => frame.t === 'res') as { id: number; err: { code: string } }
    expect(res.id).toBe(6)
    expect(res.err.code).toBe('ERR_REPLY_ENCODING')
  })

  it('requests share the client sequence with messages; a duplicate request is not handled twice', () => {
    const { session, events, messages, connect } = setup()
    connect()
    receive(session, msg(1, 'm1'))
    receive(session, req(2, 1, 'r'))
    receive(session, req(2, 1, 'r'))
    receive(session, msg(2, 'r-as-msg', 'm3'))
    expect(events.request).toHaveBeenCalledTimes(1)
    expect(messages()).toEqual(['m1', 'm3'])
    expect(frameError(() => receive(session, req(5, 2, 'gap'))).closeCode).toBe(1002)
  })

  it('replies share the server sequence with messages and go out in order', async () => {
    let answer!: (value: unknown) => void
    const { session, connect } = setup({}, () => new Promise((resolve) => (answer = resolve)))
    const conn = connect()
    conn.clear()
    session.send('before')
    receive(session, req(1, 9, 'q'))
    await tick()
    answer('reply')
    await tick()
    session.send('after')
    await tick()
    expect(conn.frames().filter((frame) => frame.t !== 'ack')).toEqual([
      { t: 'msg', s: 1, d: ['before'] },
      { t: 'res', s: 2, id: 9, d: 'reply' },
      { t: 'msg', s: 3, d: ['after'] },
    ])
  })

  it('a reply ready while the client is away goes out on resume', async () => {
    let answer!: (value: unknown) => void
    const { session, connect } = setup({}, () => new Promise((resolve) => (answer = resolve)))
    const first = connect()
    receive(session, req(1, 2, 'q'))
    await tick()
    session.detach(first)
    answer('late')
    await tick()
    const second = connect(0, true)
    await tick()
    expect(second.frames()).toEqual([
      { t: 'welcome', sid: session.id, resumed: true, ack: 1, max: MiB, reqs: 1000, sent: 1, pa: true },
      { t: 'res', s: 1, id: 2, d: 'late' },
    ])
  })

  it('a reply after the session ended is dropped', async () => {
    let answer!: (value: unknown) => void
    const { session, connect } = setup({}, () => new Promise((resolve) => (answer = resolve)))
    const conn = connect()
    receive(session, req(1, 2, 'q'))
    await tick()
    session.end()
    conn.clear()
    answer('too late')
    await tick()
    expect(conn.raw).toEqual([])
    expect(session.pending).toBe(0)
  })
})

describe('acks riding on data frames (PROTOCOL.md §2.9)', () => {
  /** Attaches a connection whose hello said it takes acks on data frames (pa), and forgets the welcome. */
  const connectRiding = (session: Session) => {
    const conn = connection()
    session.attach(conn, { ack: 0, resumed: false, pa: true })
    conn.clear()
    return conn
  }

  it("welcome says the server takes acks on the client's data frames (pa)", () => {
    const { session } = setup()
    const conn = connection()
    session.attach(conn, { ack: 0, resumed: false })
    expect(conn.frames()[0]).toMatchObject({ t: 'welcome', pa: true })
  })

  it("a client's msg or req carrying a acknowledges server items as an ack frame just before it would", async () => {
    const { session, connect } = setup()
    connect()
    const first = track(session.send('one'))
    const second = track(session.send('two'))
    await tick()
    receive(session, { t: 'msg', s: 1, a: 1, d: ['x'] })
    await tick()
    expect(first.status).toBe('resolved')
    expect(second.status).toBe('pending')
    receive(session, { t: 'req', s: 2, a: 2, id: 1, d: 'q' })
    await tick()
    expect(second.status).toBe('resolved')
  })

  it('an a above what the server sent closes with 1002, as such an ack does (§2.6)', () => {
    const { session, connect } = setup()
    connect()
    const error = frameError(() => receive(session, { t: 'msg', s: 1, a: 1, d: ['x'] }))
    expect(error.closeCode).toBe(1002)
  })

  it("with hello.pa, a request's reply carries its ack: one frame", async () => {
    const { session } = setup()
    const conn = connectRiding(session)
    receive(session, req(1, 7, 'q'))
    await tick()
    expect(conn.frames()).toEqual([{ t: 'res', s: 1, a: 1, id: 7, d: { echo: 'q' } }])
  })

  it('with hello.pa, what a message listener sends in reaction carries the ack', async () => {
    const { session, events } = setup()
    events.message.mockImplementation((data) => void session.send({ echo: data }))
    const conn = connectRiding(session)
    receive(session, msg(1, 'a', 'b'))
    await tick()
    expect(conn.frames()).toEqual([{ t: 'msg', s: 1, a: 2, d: [{ echo: 'a' }, { echo: 'b' }] }])
  })

  it('with hello.pa and nothing written to carry it, the ack goes alone once the task is over', async () => {
    const { session } = setup()
    const conn = connectRiding(session)
    receive(session, msg(1, 'x'))
    for (let i = 0; i < 10; i++) await Promise.resolve()
    expect(conn.frames()).toEqual([]) // microtasks ran: not yet
    await tick() // the task is over (setImmediate)
    expect(conn.frames()).toEqual([{ t: 'ack', s: 1 }])
  })

  it("with a slow handler, the request's ack goes alone at the end of the task, not with the reply", async () => {
    let answer!: (value: unknown) => void
    const { session } = setup({}, () => new Promise((resolve) => (answer = resolve)))
    const conn = connectRiding(session)
    receive(session, req(1, 7, 'q'))
    await tick()
    expect(conn.frames()).toEqual([{ t: 'ack', s: 1 }])
    answer('late')
    await tick()
    expect(conn.frames()).toEqual([
      { t: 'ack', s: 1 },
      { t: 'res', s: 1, id: 7, d: 'late' },
    ])
  })
})

describe('limits', () => {
  it('more requests awaiting replies than maxPendingRequests (announced in welcome) closes with 1013: come back later', () => {
    const t = setup({ maxPendingRequests: 2 }, () => new Promise(() => {}))
    t.connect()
    receive(t.session, { t: 'req', s: 1, id: 1, d: 'a' })
    receive(t.session, { t: 'req', s: 2, id: 2, d: 'b' })
    let error: unknown
    try {
      receive(t.session, { t: 'req', s: 3, id: 3, d: 'c' })
    } catch (e) {
      error = e
    }
    expect((error as FrameError).closeCode).toBe(1013)
    expect(t.events.request).toHaveBeenCalledTimes(2)
  })
})

describe('limits on what a client can make the server hold', () => {
  const closeCodeOf = (fn: () => void): number | undefined => {
    try {
      fn()
    } catch (error) {
      return (error as FrameError).closeCode
    }
    return undefined
  }

  it('replies count against maxQueue: a client that never acknowledges replies is refused (1013) new requests', async () => {
    const t = setup({ maxQueue: 2 })
    t.connect()
    receive(t.session, { t: 'req', s: 1, id: 1, d: 'a' })
    receive(t.session, { t: 'req', s: 2, id: 2, d: 'b' })
    await Promise.resolve()
    await Promise.resolve()
    expect(t.session.pending).toBe(2) // two replies, never acknowledged
    expect(closeCodeOf(() => receive(t.session, { t: 'req', s: 3, id: 3, d: 'c' }))).toBe(1013)
    expect(t.events.request).toHaveBeenCalledTimes(2)
  })
})

describe('the rate limit slows a client down (backpressure)', () => {
  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

  /** A session over `rateLimit` with a connection whose welcome is forgotten. */
  function limited(rateLimit: RateLimit | false, limits: Partial<SessionLimits> = {}, handler?: Handler) {
    const t = setup({ rateLimit, ...limits }, handler)
    const conn = t.connect()
    conn.clear()
    return { ...t, conn }
  }

  const acks = (conn: ReturnType<typeof connection>) => conn.frames().flatMap((f) => (f.t === 'ack' ? [f.s as number] : []))

  /** What reached the handlers and which pongs were written, in the order it happened. */
  function timeline(t: ReturnType<typeof limited>): string[] {
    const entries: [number, string][] = [
      ...t.events.message.mock.calls.map(([data], i): [number, string] => [t.events.message.mock.invocationCallOrder[i], `msg ${data}`]),
      ...t.events.request.mock.calls.map(([data], i): [number, string] => [t.events.request.mock.invocationCallOrder[i], `req ${data}`]),
      ...t.conn.send.mock.calls.flatMap(([frame], i): [number, string][] =>
        frame === '{"t":"pong"}' ? [[t.conn.send.mock.invocationCallOrder[i], 'pong']] : [],
      ),
    ]
    return entries.sort(([a], [b]) => a - b).map(([, what]) => what)
  }

  it('over the limit, what the bucket allows is delivered and the rest held (reading goes on); it follows as the bucket refills', async () => {
    const t = limited({ rate: 10, burst: 5 })
    receive(t.session, msg(1, ...range(1, 8)))
    expect(t.messages()).toEqual(range(1, 5))
    await tick()
    expect(acks(t.conn)).toEqual([5]) // held messages are not acknowledged
    // 10 per second: one more every 100 ms.
    await vi.advanceTimersByTimeAsync(99)
    expect(t.messages()).toHaveLength(5)
    await vi.advanceTimersByTimeAsync(1)
    expect(t.messages()).toEqual(range(1, 6))
    await vi.advanceTimersByTimeAsync(200)
    expect(t.messages()).toEqual(range(1, 8))
    expect(acks(t.conn)).toEqual([5, 6, 7, 8])
    // A few bytes held: reading never stopped.
    expect(t.conn.pause).not.toHaveBeenCalled()
    expect(t.conn.resume).not.toHaveBeenCalled()
    expect(t.conn.close).not.toHaveBeenCalled()
    expect(vi.getTimerCount()).toBe(0)
  })

  it('frames arriving while work is held (ws still emits what it had read) wait behind it, in order: messages, pings, requests', async () => {
    const t = limited({ rate: 10, burst: 2 })
    receive(t.session, msg(1, 'a', 'b', 'c'))
    receive(t.session, { t: 'ping' })
    receive(t.session, req(4, 1, 'r'))
    receive(t.session, msg(5, 'd'))
    expect(timeline(t)).toEqual(['msg a', 'msg b'])
    await vi.advanceTimersByTimeAsync(1000)
    expect(timeline(t)).toEqual(['msg a', 'msg b', 'msg c', 'pong', 'req r', 'msg d'])
    expect(acks(t.conn).at(-1)).toBe(5)
    expect(t.conn.frames()).toContainEqual({ t: 'res', s: 1, id: 1, d: { echo: 'r' } })
    expect(t.conn.pause).not.toHaveBeenCalled()
  })

  it('one timer at a time, armed for when the next batch is allowed: no timer per message, no polling', async () => {
    const t = limited({ rate: 1000, burst: 10 })
    const start = Date.now()
    receive(t.session, msg(1, ...range(1, 510)))
    expect(t.messages()).toHaveLength(10)
    let fired = 0
    while (t.messages().length < 510 && fired < 1000) {
      expect(vi.getTimerCount()).toBe(1)
      const before = t.messages().length
      await vi.advanceTimersToNextTimerAsync()
      fired++
      expect(t.messages().length).toBeGreaterThan(before) // every wake-up delivers
    }
    // 500 held messages at 1,000/s: 500 ms, in steps of 10 ms (10 messages each).
    expect(t.messages()).toEqual(range(1, 510))
    expect(Date.now() - start).toBe(500)
    expect(fired).toBe(50)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('at a low rate the timer waits for the next token itself', async () => {
    const t = limited({ rate: 1, burst: 1 })
    const start = Date.now()
    receive(t.session, msg(1, 'a', 'b', 'c'))
    expect(t.messages()).toEqual(['a'])
    await vi.advanceTimersToNextTimerAsync()
    expect([Date.now() - start, t.messages()]).toEqual([1000, ['a', 'b']])
    await vi.advanceTimersToNextTimerAsync()
    expect([Date.now() - start, t.messages()]).toEqual([2000, ['a', 'b', 'c']])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('the connection dropping discards held work and its timer; the resumed connection starts clean and gets everything once, in order', async () => {
    const t = limited({ rate: 10, burst: 3 })
    receive(t.session, msg(1, 1, 2, 3, 4, 5))
    await tick()
    t.session.detach(t.conn)
    expect(vi.getTimerCount()).toBe(1) // only the sessionTtl expiry
    await vi.advanceTimersByTimeAsync(1000)
    expect(t.messages()).toEqual([1, 2, 3])
    const again = t.connect(0, true)
    expect(again.frames()[0]).toMatchObject({ t: 'welcome', resumed: true, ack: 3 })
    // The client resends what was not acknowledged, and more; the bucket has refilled meanwhile.
    receive(t.session, msg(4, 4, 5, 6))
    expect(t.messages()).toEqual([1, 2, 3, 4, 5, 6])
    expect(again.pause).not.toHaveBeenCalled()
    expect(t.conn.resume).not.toHaveBeenCalled()
  })

  it('a newer connection replacing one with held work starts clean too', async () => {
    const t = limited({ rate: 10, burst: 2 })
    receive(t.session, msg(1, 'a', 'b', 'c', 'd'))
    const second = t.connect(0, true)
    expect(t.conn.close).toHaveBeenCalledWith(1000, expect.any(String))
    expect(second.frames()[0]).toMatchObject({ t: 'welcome', ack: 2 })
    await vi.advanceTimersByTimeAsync(1000)
    expect(t.messages()).toEqual(['a', 'b'])
    receive(t.session, msg(3, 'c', 'd'))
    expect(t.messages()).toEqual(['a', 'b', 'c', 'd'])
  })

  it('the session ending discards held work and its timer', async () => {
    const t = limited({ rate: 10, burst: 1 })
    receive(t.session, msg(1, 'a', 'b'))
    t.session.end()
    expect(vi.getTimerCount()).toBe(0)
    await vi.advanceTimersByTimeAsync(1000)
    expect(t.messages()).toEqual(['a'])
  })

  it('a handler ending the session while held work is released stops the release', async () => {
    const t = limited({ rate: 10, burst: 1 })
    t.events.message.mockImplementation((data, session) => {
      if (data === 3) session.end()
    })
    receive(t.session, msg(1, 1, 2, 3, 4, 5))
    await vi.advanceTimersByTimeAsync(1000)
    expect(t.messages()).toEqual([1, 2, 3])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('held work is sequenced: a resend overlapping it adds only what is new, and the next frame continues after it', async () => {
    const t = limited({ rate: 10, burst: 2 })
    receive(t.session, msg(1, 'a', 'b', 'c', 'd'))
    receive(t.session, msg(3, 'c', 'd', 'e'))
    receive(t.session, msg(6, 'f'))
    receive(t.session, msg(2, 'b'))
    await vi.advanceTimersByTimeAsync(1000)
    expect(t.messages()).toEqual(['a', 'b', 'c', 'd', 'e', 'f'])
    await tick()
    expect(acks(t.conn).at(-1)).toBe(6)
  })

  it('a protocol error in a frame that waits behind held work closes when its turn comes, after the work before it (and acknowledging it)', async () => {
    const t = limited({ rate: 10, burst: 2 })
    receive(t.session, msg(1, 'a', 'b', 'c', 'd'))
    // Frames are taken in (sequenced) in their turn: the gap is found then, not on arrival.
    receive(t.session, msg(6, 'f'))
    receive(t.session, msg(7, 'g'))
    expect(t.conn.close).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1000)
    expect(t.messages()).toEqual(['a', 'b', 'c', 'd'])
    expect(t.conn.close).toHaveBeenCalledExactlyOnceWith(1002, 'sequence gap: expected 5, got 6')
    expect(t.session.connected).toBe(false)
    await tick()
    expect(acks(t.conn).at(-1)).toBe(4)
    // Only the session's expiry is left: what waited behind the bad frame was discarded.
    expect(vi.getTimerCount()).toBe(1)
  })

  it("reading goes on while work is held, so the client's acks are handled at once: an echo app's outbox does not fill up", async () => {
    const t = limited({ rate: 1, burst: 1 }, { maxQueue: 2 })
    t.events.message.mockImplementation((data, session) => {
      track(session.send(data))
    })
    receive(t.session, msg(1, 'a', 'b', 'c'))
    await tick()
    expect(t.conn.frames()).toContainEqual({ t: 'msg', s: 1, d: ['a'] })
    expect(t.conn.pause).not.toHaveBeenCalled()
    receive(t.session, ack(1))
    expect(t.session.pending).toBe(0)
    // b and c are echoed as they are released: the outbox never holds more than one.
    await vi.advanceTimersByTimeAsync(1000)
    receive(t.session, ack(2))
    await vi.advanceTimersByTimeAsync(1000)
    await tick()
    expect(t.messages()).toEqual(['a', 'b', 'c'])
    expect(t.conn.frames().filter((f) => f.t === 'msg')).toEqual([
      { t: 'msg', s: 1, d: ['a'] },
      { t: 'msg', s: 2, d: ['b'] },
      { t: 'msg', s: 3, d: ['c'] },
    ])
    expect(t.conn.pause).not.toHaveBeenCalled()
  })

  it('pings count against the limit too: over it, pongs come at the rate, and a flood cannot buffer pongs (pings beyond 10 s are refused)', async () => {
    const t = limited({ rate: 1, burst: 3 })
    for (let i = 0; i < 5; i++) receive(t.session, { t: 'ping' })
    const pongs = () => t.conn.raw.filter((frame) => frame === '{"t":"pong"}').length
    expect(pongs()).toBe(3)
    await vi.advanceTimersByTimeAsync(1000)
    expect(pongs()).toBe(4)
    await vi.advanceTimersByTimeAsync(1000)
    expect(pongs()).toBe(5)
    // A flood: 10 s of pings are held, the rest refused.
    for (let i = 0; i < 50; i++) receive(t.session, { t: 'ping' })
    await vi.advanceTimersByTimeAsync(MAX_HOLD)
    expect(pongs()).toBe(5 + 10) // 10 s at 1/s
    expect(t.conn.close).toHaveBeenCalledExactlyOnceWith(1013, expect.stringMatching(/rate limit/))
  })

  it('a held request is checked against maxPendingRequests when released: beyond it the connection is closed with 1013 and what followed is discarded', async () => {
    const t = limited({ rate: 10, burst: 1 }, { maxPendingRequests: 1 }, () => new Promise(() => {}))
    receive(t.session, req(1, 1, 'a'))
    receive(t.session, req(2, 2, 'b'))
    receive(t.session, msg(3, 'm'))
    expect(t.events.request).toHaveBeenCalledTimes(1)
    await vi.advanceTimersByTimeAsync(100)
    expect(t.conn.close).toHaveBeenCalledExactlyOnceWith(1013, expect.stringMatching(/maxPendingRequests/))
    expect(t.events.request).toHaveBeenCalledTimes(1)
    expect(t.session.connected).toBe(false) // done with that connection at once
    expect(vi.getTimerCount()).toBe(1) // only the sessionTtl expiry
    await vi.advanceTimersByTimeAsync(1000)
    expect(t.messages()).toEqual([])
    expect(t.conn.resume).not.toHaveBeenCalled()
  })

  describe('the rule: only what the bucket delivers within MAX_HOLD (10 s) is held; beyond it, 1013 once that is delivered', () => {
    it(`a frame whose excess takes exactly ${MAX_HOLD / 1000} s is held whole`, async () => {
      const t = limited({ rate: 10, burst: 5 })
      receive(t.session, msg(1, ...range(1, 105)))
      expect(t.messages()).toEqual(range(1, 5))
      await vi.advanceTimersByTimeAsync(MAX_HOLD)
      expect(t.messages()).toEqual(range(1, 105))
      expect(t.conn.close).not.toHaveBeenCalled()
      expect(vi.getTimerCount()).toBe(0)
    })

    it('of a frame beyond it, what fits is delivered at the rate, then the connection is closed with 1013; later work is ignored, unacknowledged, and all of it goes through on resume', async () => {
      const t = limited({ rate: 10, burst: 5 })
      // 5 now, 100 within 10 s; the 106th and what follows are refused.
      receive(t.session, msg(1, ...range(1, 110)))
      receive(t.session, msg(111, 111))
      receive(t.session, { t: 'ping' })
      expect(t.messages()).toEqual(range(1, 5))
      await vi.advanceTimersByTimeAsync(MAX_HOLD - 1)
      expect(t.conn.close).not.toHaveBeenCalled()
      await vi.advanceTimersByTimeAsync(1)
      expect(t.messages()).toEqual(range(1, 105))
      expect(t.conn.close).toHaveBeenCalledExactlyOnceWith(1013, expect.stringMatching(/rate limit/))
      expect(t.conn.raw).not.toContain('{"t":"pong"}')
      await tick()
      expect(Math.max(...acks(t.conn))).toBe(105) // what was delivered, nothing refused
      expect(t.session.connected).toBe(false)
      // The client comes back after its busyDelay and resends from 106; the bucket has refilled to its burst.
      await vi.advanceTimersByTimeAsync(5000)
      const again = t.connect(0, true)
      expect(again.frames()[0]).toMatchObject({ ack: 105 })
      receive(t.session, msg(106, ...range(106, 111)))
      expect(t.messages()).toEqual(range(1, 110))
      await vi.advanceTimersByTimeAsync(100)
      expect(t.messages()).toEqual(range(1, 111))
      expect(again.close).not.toHaveBeenCalled()
    })

    it('once refusing, later work is ignored even when the bucket has room again: nothing after the refused message is delivered', async () => {
      const t = limited({ rate: 10, burst: 5 })
      receive(t.session, msg(1, ...range(1, 110)))
      await vi.advanceTimersByTimeAsync(5000)
      expect(t.messages()).toEqual(range(1, 55))
      receive(t.session, msg(111, 111, 112))
      receive(t.session, req(113, 1, 'r'))
      await vi.advanceTimersByTimeAsync(MAX_HOLD)
      expect(t.messages()).toEqual(range(1, 105))
      expect(t.events.request).not.toHaveBeenCalled()
      expect(t.conn.close).toHaveBeenCalledExactlyOnceWith(1013, expect.stringMatching(/rate limit/))
    })

    it('work arriving behind held work beyond it is refused too (here: one message past 10 s)', async () => {
      const t = limited({ rate: 10, burst: 5 })
      receive(t.session, msg(1, ...range(1, 105)))
      receive(t.session, msg(106, 106, 107))
      await vi.advanceTimersByTimeAsync(MAX_HOLD)
      expect(t.messages()).toEqual(range(1, 105))
      expect(t.conn.close).toHaveBeenCalledExactlyOnceWith(1013, expect.stringMatching(/rate limit/))
    })

    it('at a rate of 0.1/s one message over the limit waits 10 s: held', async () => {
      const t = limited({ rate: 0.1, burst: 1 })
      receive(t.session, msg(1, 'a', 'b'))
      await vi.advanceTimersByTimeAsync(9_999)
      expect(t.messages()).toEqual(['a'])
      await vi.advanceTimersByTimeAsync(1)
      expect(t.messages()).toEqual(['a', 'b'])
      expect(t.conn.close).not.toHaveBeenCalled()
    })

    it('below 0.1/s (here one token per 20 s) nothing over a drained bucket can be held: 1013 at once, as for a ping; it goes through once the bucket has refilled', async () => {
      const t = limited({ rate: 0.05, burst: 3 })
      expect(frameError(() => receive(t.session, msg(1, 'a', 'b', 'c', 'd'))).closeCode).toBe(1013)
      expect(t.messages()).toEqual(['a', 'b', 'c'])
      expect(frameError(() => receive(t.session, { t: 'ping' })).closeCode).toBe(1013)
      expect(t.conn.pause).not.toHaveBeenCalled()
      expect(vi.getTimerCount()).toBe(0)
      t.session.detach(t.conn)
      await vi.advanceTimersByTimeAsync(20_000)
      t.connect(0, true)
      receive(t.session, msg(4, 'd'))
      expect(t.messages()).toEqual(['a', 'b', 'c', 'd'])
    })

    it('however small the burst, what is held is delivered within MAX_HOLD: 10 s of work at the rate', async () => {
      // At 5,000/s with a burst of 2: 2 at once, 50,000 within 10 s; the next one is refused.
      const t = limited({ rate: 5000, burst: 2 })
      receive(t.session, msg(1, ...range(1, 50_003)))
      expect(t.messages()).toHaveLength(2)
      await vi.advanceTimersByTimeAsync(MAX_HOLD)
      expect(t.messages()).toHaveLength(50_002)
      expect(t.conn.close).toHaveBeenCalledExactlyOnceWith(1013, expect.stringMatching(/rate limit/))
    })
  })

  describe('reading stops only when maxHeldBytes (max(4 × maxPayload, 1 MiB)) of frames are held', () => {
    it('it stops once they are, resumes once less than half of it is (not at every frame released), and a frame beyond twice it is refused', async () => {
      const t = limited({ rate: 1, burst: 1 }, { maxPayload: MiB })
      receive(t.session, msg(1, 'a', 'b'), MiB) // a now, b held
      for (let i = 0; i < 2; i++) receive(t.session, { t: 'ping' }, MiB)
      expect(t.conn.pause).not.toHaveBeenCalled() // 3 MiB held
      receive(t.session, { t: 'ping' }, MiB)
      expect(t.conn.pause).toHaveBeenCalledTimes(1) // 4 MiB
      // Frames ws had already read still arrive, and are held: up to twice maxHeldBytes.
      for (let i = 0; i < 4; i++) receive(t.session, { t: 'ping' }, MiB) // 8 MiB
      receive(t.session, msg(3, 'c'), 1)
      expect(t.conn.pause).toHaveBeenCalledTimes(1)
      // One a second: b, then the pings, freeing 1 MiB each; reading resumes under 2 MiB.
      await vi.advanceTimersByTimeAsync(6000)
      expect(t.messages()).toEqual(['a', 'b'])
      expect(t.conn.resume).not.toHaveBeenCalled() // 2 MiB held
      await vi.advanceTimersByTimeAsync(1000)
      expect(t.conn.resume).toHaveBeenCalledTimes(1) // 1 MiB
      await vi.advanceTimersByTimeAsync(1000)
      expect(t.conn.raw.filter((frame) => frame === '{"t":"pong"}')).toHaveLength(7)
      // c was refused: 1013 once the held work is delivered; c is resent on resume.
      expect(t.messages()).toEqual(['a', 'b'])
      expect(t.conn.close).toHaveBeenCalledExactlyOnceWith(1013, expect.stringMatching(/rate limit/))
      expect(t.conn.pause).toHaveBeenCalledTimes(1)
      expect(t.conn.resume).toHaveBeenCalledTimes(1)
    })

    it('held work discarded while reading is paused resumes reading: when the connection drops, is replaced, or the session ends', () => {
      const held = (t: ReturnType<typeof limited>, conn = t.conn) => {
        receive(t.session, msg(1, 'a', 'b'), 4 * MiB)
        expect(conn.pause).toHaveBeenCalledTimes(1)
      }
      const dropped = limited({ rate: 1, burst: 1 })
      held(dropped)
      dropped.session.detach(dropped.conn)
      expect(dropped.conn.resume).toHaveBeenCalledTimes(1)
      const replaced = limited({ rate: 1, burst: 1 })
      held(replaced)
      const next = replaced.connect(0, true)
      expect(replaced.conn.resume).toHaveBeenCalledTimes(1)
      expect(next.pause).not.toHaveBeenCalled()
      const ended = limited({ rate: 1, burst: 1 })
      held(ended)
      ended.session.end()
      expect(ended.conn.resume).toHaveBeenCalledTimes(1)
      expect(vi.getTimerCount()).toBe(1) // the expiry of the dropped session only
    })
  })

  it('once the connection is closing (the client closed it), held work is not delivered any more, nor acknowledged', async () => {
    const t = limited({ rate: 10, burst: 5 })
    let open = true
    Object.assign(t.conn, { isOpen: () => open })
    receive(t.session, msg(1, ...range(1, 8)))
    await vi.advanceTimersByTimeAsync(100)
    expect(t.messages()).toEqual(range(1, 6))
    open = false // ws read the client's close frame; its close event comes later
    await vi.advanceTimersByTimeAsync(1000)
    expect(t.messages()).toEqual(range(1, 6))
    expect(acks(t.conn)).toEqual([5, 6])
    expect(vi.getTimerCount()).toBe(0)
    t.session.detach(t.conn)
    const again = t.connect(0, true)
    expect(again.frames()[0]).toMatchObject({ t: 'welcome', ack: 6 })
  })

  describe('what was delivered before the connection is closed is acknowledged first', () => {
    it('when held work was refused: the ack of the last delivered comes before the 1013', async () => {
      const t = limited({ rate: 10, burst: 5 })
      receive(t.session, msg(1, ...range(1, 110)))
      await vi.advanceTimersByTimeAsync(MAX_HOLD)
      expect(t.conn.close).toHaveBeenCalledExactlyOnceWith(1013, expect.stringMatching(/rate limit/))
      const sent = t.conn.send.mock.calls.map(([frame]) => frame)
      const lastAck = sent.map((frame) => frame.startsWith('{"t":"ack"')).lastIndexOf(true)
      expect(sent[lastAck]).toBe('{"t":"ack","s":105}')
      expect(t.conn.send.mock.invocationCallOrder[lastAck]).toBeLessThan(t.conn.close.mock.invocationCallOrder[0])
    })

    it('when a held request is released over a limit, right after a message', async () => {
      // 200/s: two tokens per 10 ms step. The ping waits for one; then b and the request go together.
      const t = limited({ rate: 200, burst: 2 }, { maxPendingRequests: 1 }, () => new Promise(() => {}))
      receive(t.session, msg(1, 'a'))
      receive(t.session, req(2, 1, 'r'))
      receive(t.session, { t: 'ping' })
      receive(t.session, msg(3, 'b'))
      receive(t.session, req(4, 2, 's'))
      await tick()
      expect(acks(t.conn)).toEqual([2])
      await vi.advanceTimersByTimeAsync(5)
      expect(t.conn.raw.at(-1)).toBe('{"t":"pong"}')
      await vi.advanceTimersByTimeAsync(10)
      expect(t.messages()).toEqual(['a', 'b'])
      expect(t.conn.close).toHaveBeenCalledExactlyOnceWith(1013, expect.stringMatching(/maxPendingRequests/))
      expect(acks(t.conn)).toEqual([2, 3])
      expect(t.conn.send.mock.invocationCallOrder.at(-1)).toBeLessThan(t.conn.close.mock.invocationCallOrder[0])
    })

    it('when a frame is refused as it arrives (as ws.ts handles it: detach, then close)', async () => {
      const t = limited(false, { maxPendingRequests: 1 }, () => new Promise(() => {}))
      receive(t.session, msg(1, 'a', 'b'))
      receive(t.session, req(3, 1, 'r'))
      const error = frameError(() => receive(t.session, req(4, 2, 's')))
      t.session.detach(t.conn)
      t.conn.close(error.closeCode, error.message)
      await tick()
      expect(acks(t.conn)).toEqual([3])
      expect(t.conn.send.mock.invocationCallOrder.at(-1)).toBeLessThan(t.conn.close.mock.invocationCallOrder[0])
    })
  })

  describe('held frames keep only what is still to deliver', () => {
    const heldItems = (session: Session) =>
      (session as unknown as { admission: { held: { items?: unknown[]; frame?: { d?: unknown[] } }[] } }).admission.held.map(
        (entry) => entry.items?.length ?? entry.frame?.d?.length,
      )

    it('of a frame mostly refused, only the part that is held', () => {
      const t = limited({ rate: 1000, burst: 10_000 })
      receive(t.session, msg(1, 'x'))
      // 9,999 now, 10,000 within 10 s: held; the other 280,001 are refused.
      receive(t.session, { t: 'msg', s: 2, d: range(2, 300_001) }, 900_000)
      expect(t.messages()).toHaveLength(10_000)
      expect(heldItems(t.session)).toEqual([10_000])
    })

    it('of a frame delivered in part, only the rest', () => {
      const t = limited({ rate: 10, burst: 5 })
      receive(t.session, msg(1, ...range(1, 20)))
      expect(heldItems(t.session)).toEqual([15])
    })
  })

  it('the wall clock set back does not stall held work: the bucket runs on a monotonic clock', async () => {
    const t = limited({ rate: 10, burst: 5 })
    receive(t.session, msg(1, ...range(1, 20)))
    vi.setSystemTime(Date.now() - 3_600_000)
    await vi.advanceTimersByTimeAsync(1500)
    expect(t.messages()).toEqual(range(1, 20))
    expect(vi.getTimerCount()).toBe(0)
  })

  it('a burst below the rate × the release step does not slow delivery down: held work goes at the rate', async () => {
    const t = limited({ rate: 100_000, burst: 1 })
    receive(t.session, msg(1, ...range(1, 20_000)))
    expect(t.messages()).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(200)
    expect(t.messages()).toHaveLength(20_000)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('the size of a frame is not optional (a missing one would not count against maxHeldBytes)', () => {
    expectTypeOf<Parameters<Session['receive']>>().toEqualTypeOf<[frame: ClientFrame | undefined, size: number]>()
  })

  it('without a rate limit nothing is ever held', () => {
    const t = limited(false)
    receive(t.session, msg(1, ...range(1, 50_000)))
    expect(t.messages()).toHaveLength(50_000)
    expect(t.conn.pause).not.toHaveBeenCalled()
    expect(vi.getTimerCount()).toBe(0)
  })
})
