/**
 * tether.v1, client side, driven directly: a fake host records what the protocol writes
 * and does, the outbox is the real one, and time is fake.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { HeartbeatOptions } from '../../../src/client/options.js'
import { Outbox, type Payload } from '../../../src/client/outbox.js'
import type { DurableLog, PersistedSession } from '../../../src/client/persist.js'
import { type SessionInfo, TetherProtocol } from '../../../src/client/wire/tether.js'
import type { MessageInfo, MissedInfo, ProtocolHost } from '../../../src/client/wire/types.js'
import { DeliveryError, EncodeError, ProtocolError, ReplyError, TetherError, TimeoutError } from '../../../src/errors.js'
import { track } from '../../support/track.js'

type Frame = Record<string, unknown>

const MiB = 1024 * 1024
const utf8 = new TextEncoder()

/** Lets queued microtasks run (flushes and acks are coalesced per tick). */
const tick = () => vi.advanceTimersByTimeAsync(0)

function setup(heartbeat: Required<HeartbeatOptions> | false = false) {
  /** Everything the protocol did to its host, in order: frames written (parsed) and 'ready'. */
  const log: (Frame | 'ready')[] = []
  const failures: TetherError[] = []
  const outbox = new Outbox({ maxMessages: 100_000, maxBytes: 100 * MiB, overflow: 'reject' }, (error) => failures.push(error))
  const raw: string[] = []
  let protocol!: TetherProtocol<unknown, unknown>
  const host = {
    outbox,
    write: vi.fn((frame: Payload) => {
      raw.push(frame as string)
      log.push(JSON.parse(frame as string))
      return true
    }),
    // As the socket does: once ready (no open hook), it becomes open and flushes the backlog.
    ready: vi.fn(() => {
      log.push('ready')
      protocol.flush()
    }),
    deliver: vi.fn(),
    missed: vi.fn(),
    report: vi.fn(),
    drop: vi.fn(),
  } satisfies ProtocolHost<unknown>
  const onSession = vi.fn<(info: SessionInfo) => void>()
  protocol = new TetherProtocol<unknown, unknown>(host, heartbeat, onSession)

  const add = (data: unknown, options: { timeout?: number; requestId?: number } = {}) => {
    const promise = outbox.add(data, protocol.encode(data), {
      deadline: options.timeout === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.timeout,
      staleAt: Number.POSITIVE_INFINITY,
      requestId: options.requestId,
    })
    protocol.flush()
    return promise
  }

  const t = {
    protocol,
    host,
    outbox,
    log,
    raw,
    failures,
    onSession,
    /** Queues a message as `send()` does. */
    send: (data: unknown, timeout?: number) => track(add(data, { timeout })),
    /** Queues a request as `request()` does. */
    request: (data: unknown, timeout?: number) => track(add(data, { timeout, requestId: protocol.nextRequestId() })),
    /** A frame from the server. */
    server: (frame: Frame) => protocol.receive(JSON.stringify(frame)),
    /** Frames written so far (without 'ready'). */
    frames: () => log.filter((item): item is Frame => item !== 'ready'),
    /** Forgets what was logged so far. */
    clear: () => {
      log.length = 0
      raw.length = 0
    },
    /** Opens a connection: attach, then the server's welcome. */
    connect: async (welcome: Partial<Frame> = {}) => {
      protocol.attach('tether.v1')
      t.server({ t: 'welcome', sid: 's1', resumed: false, ack: 0, max: MiB, ...welcome })
      await tick()
    },
    /** The connection is gone, as the socket handles it. */
    disconnect: () => {
      protocol.detach()
      outbox.rewind()
    },
    /** The error of the last drop, after checking it was a drop with a ProtocolError. */
    droppedWithProtocolError: () => {
      expect(host.drop).toHaveBeenCalledTimes(1)
      const [code, , { error, final } = {}] = host.drop.mock.calls[0]
      expect(code).toBe(4002)
      expect(error).toBeInstanceOf(ProtocolError)
      expect(final).toBeFalsy()
      return error as ProtocolError
    },
  }
  return t
}

/**
 * Gives the protocol a journal (as `persist` does) whose commits the test makes: `commit()`
 * records the protocol's state as durable and runs what waited for it.
 */
function withJournal(t: ReturnType<typeof setup>) {
  let durable: PersistedSession | undefined
  const waiting: (() => void)[] = []
  t.protocol.journal = {
    active: true,
    get durable() {
      return durable
    },
    added: () => {},
    removed: () => {},
    numbered: () => {},
    keep: () => {},
    touch: () => {},
    afterDurable: (then: () => void) => waiting.push(then),
    end: async () => {},
    leave: () => {},
  } satisfies DurableLog
  return {
    commit: () => {
      durable = t.protocol.snapshot()
      for (const then of waiting.splice(0)) then()
    },
    durable: () => durable,
  }
}

beforeEach(() => {
  vi.useFakeTimers()
})

afterEach(() => {
  vi.useRealTimers()
})

describe('handshake', () => {
  it.each([
    ['no subprotocol', ''],
    ['another subprotocol', 'chat.v2'],
  ])('a server that selected %s is dropped for good, pointing at mode "raw"', (_name, selected) => {
    const t = setup()
    t.protocol.attach(selected)
    expect(t.host.drop).toHaveBeenCalledTimes(1)
    const [code, , { error, final } = {}] = t.host.drop.mock.calls[0]
    expect(code).toBe(4002)
    expect(final).toBe(true)
    expect(error).toBeInstanceOf(ProtocolError)
    expect((error as Error).message).toContain("mode: 'raw'")
    expect(t.log).toEqual([])
  })

  it('attach sends hello with no session and nothing received', () => {
    const t = setup()
    t.protocol.attach('tether.v1')
    expect(t.raw).toEqual(['{"t":"hello","sid":null,"ack":0,"acked":0,"sent":0,"pa":true}'])
    expect(t.host.ready).not.toHaveBeenCalled()
  })

  it('welcome makes the protocol ready and starts a session', async () => {
    const t = setup()
    await t.connect({ sid: 'abc' })
    expect(t.host.ready).toHaveBeenCalledTimes(1)
    expect(t.protocol.sessionId).toBe('abc')
    expect(t.onSession).toHaveBeenCalledExactlyOnceWith({ id: 'abc', previous: undefined })
    expect(t.host.drop).not.toHaveBeenCalled()
  })

  it('nothing is written before the welcome; what was queued goes right after it', async () => {
    const t = setup()
    const a = t.send('a')
    t.protocol.attach('tether.v1')
    await tick()
    expect(t.frames()).toEqual([{ t: 'hello', sid: null, ack: 0, acked: 0, sent: 0, pa: true }])
    t.server({ t: 'welcome', sid: 's1', resumed: false, ack: 0, max: MiB })
    await tick()
    expect(t.log.slice(1)).toEqual(['ready', { t: 'msg', s: 1, d: ['a'] }])
    expect(a.status).toBe('pending')
  })

  it.each([
    ['a msg frame', '{"t":"msg","s":1,"d":["early"]}'],
    ['an echo of the hello (an echo server)', '{"t":"hello","sid":null,"ack":0}'],
    ['JSON without "t"', '{"type":"greeting"}'],
    ['text that is not JSON', 'Welcome to the chat!'],
  ])('a first frame that is not a welcome (%s) means the server does not speak tether.v1: final ProtocolError', (_, frame) => {
    const t = setup()
    t.protocol.attach('tether.v1')
    t.protocol.receive(frame)
    expect(t.host.drop).toHaveBeenCalledTimes(1)
    const [code, , { error, final } = {}] = t.host.drop.mock.calls[0]
    expect(code).toBe(4002)
    expect(error).toBeInstanceOf(ProtocolError)
    expect((error as ProtocolError).message).toMatch(/mode: 'raw'/)
    expect(final).toBe(true)
    expect(t.host.deliver).not.toHaveBeenCalled()
    expect(t.host.ready).not.toHaveBeenCalled()
  })

  it.each([
    ['an ack', '{"t":"ack","s":0}'],
    ['a pong', '{"t":"pong"}'],
    ['an echoed ping (a client type)', '{"t":"ping"}'],
    ['a client type with invalid fields', '{"t":"req","s":0}'],
  ])('before the welcome, a frame of a tether.v1 type other than welcome (%s) is final too (§4.5)', (_, frame) => {
    const t = setup()
    t.protocol.attach('tether.v1')
    t.protocol.receive(frame)
    expect(t.host.drop).toHaveBeenCalledTimes(1)
    expect(t.host.drop.mock.calls[0][2]?.final).toBe(true)
  })

  it('before the welcome, frames of types tether.v1 does not define are ignored; the welcome then opens (§4.5)', async () => {
    const t = setup()
    t.protocol.attach('tether.v1')
    t.server({ t: 'notice', text: 'a later server may say something first' })
    t.server({ t: 'Welcome', sid: 'names are case-sensitive' })
    expect(t.host.drop).not.toHaveBeenCalled()
    t.server({ t: 'welcome', sid: 's1', resumed: false, ack: 0, max: MiB })
    await tick()
    expect(t.host.ready).toHaveBeenCalledTimes(1)
    expect(t.protocol.sessionId).toBe('s1')
    expect(t.host.drop).not.toHaveBeenCalled()
  })

  it('a second welcome is a protocol error', async () => {
    const t = setup()
    await t.connect()
    t.server({ t: 'welcome', sid: 's1', resumed: true, ack: 0, max: MiB })
    t.droppedWithProtocolError()
    expect(t.host.ready).toHaveBeenCalledTimes(1)
  })

  it('a malformed frame drops the connection with a ProtocolError (to reconnect)', async () => {
    const t = setup()
    await t.connect()
    t.protocol.receive('{"t":"msg","s":0,"d":[1]}')
    t.droppedWithProtocolError()
  })

  it('binary data is a protocol error', async () => {
    const t = setup()
    await t.connect()
    t.protocol.receive(new ArrayBuffer(2))
    t.droppedWithProtocolError()
  })

  it('frames of unknown types are ignored', async () => {
    const t = setup()
    await t.connect()
    t.server({ t: 'presence', who: ['x'] })
    t.server({ t: 'ping' }) // a client-only frame from the server
    expect(t.host.drop).not.toHaveBeenCalled()
    expect(t.host.deliver).not.toHaveBeenCalled()
  })
})

describe('encode', () => {
  it('encodes JSON values once, as JSON text', () => {
    const t = setup()
    expect(t.protocol.encode({ a: [1, 'é'] })).toBe('{"a":[1,"é"]}')
  })

  it.each([
    ['undefined', undefined],
    ['a function', () => 1],
    ['a BigInt', 1n],
    ['an ArrayBuffer', new ArrayBuffer(1)],
    ['a Uint8Array', new Uint8Array(1)],
  ])('refuses %s with an EncodeError (ERR_ENCODE)', (_name, data) => {
    const t = setup()
    let thrown: unknown
    try {
      t.protocol.encode(data)
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(EncodeError)
    expect(thrown).toBeInstanceOf(TetherError)
    expect((thrown as TetherError).code).toBe('ERR_ENCODE')
    expect((thrown as TetherError).data).toBe(data)
  })
})

describe('sending', () => {
  it('entries flushed within one tick go out as one msg frame with consecutive seqs', async () => {
    const t = setup()
    await t.connect()
    t.clear()
    t.send({ n: 1 })
    t.send('two')
    t.send([3])
    expect(t.log).toEqual([]) // flushing waits for the end of the tick
    await tick()
    expect(t.raw).toEqual(['{"t":"msg","s":1,"d":[{"n":1},"two",[3]]}'])
    t.send(4)
    t.send(5)
    await tick()
    expect(t.frames()).toEqual([
      { t: 'msg', s: 1, d: [{ n: 1 }, 'two', [3]] },
      { t: 'msg', s: 4, d: [4, 5] },
    ])
  })

  it("writeAheadOfQueue() writes at once the one entry ahead of the queue (the open hook's message), flush() the rest", async () => {
    const t = setup()
    await t.connect()
    t.clear()
    t.outbox.add('later', '"later"', { deadline: Number.POSITIVE_INFINITY, staleAt: Number.POSITIVE_INFINITY })
    t.outbox.add('first', '"first"', { deadline: Number.POSITIVE_INFINITY, staleAt: Number.POSITIVE_INFINITY, aheadOfQueue: true })
    t.protocol.writeAheadOfQueue()
    expect(t.frames()).toEqual([{ t: 'msg', s: 1, d: ['first'] }])
    t.protocol.flush()
    await tick()
    expect(t.frames()).toEqual([
      { t: 'msg', s: 1, d: ['first'] },
      { t: 'msg', s: 2, d: ['later'] },
    ])
  })

  it('a cumulative ack settles every entry up to s and leaves later ones pending', async () => {
    const t = setup()
    await t.connect()
    const sent = [1, 2, 3, 4, 5].map((n) => t.send(n))
    await tick()
    t.server({ t: 'ack', s: 3 })
    await tick()
    expect(sent.map((p) => p.status)).toEqual(['resolved', 'resolved', 'resolved', 'pending', 'pending'])
    expect(sent[0].value).toBeUndefined()
    expect(t.outbox.size).toBe(2)
    t.server({ t: 'ack', s: 5 })
    await tick()
    expect(sent.map((p) => p.status)).toEqual(['resolved', 'resolved', 'resolved', 'resolved', 'resolved'])
    expect(t.outbox.size).toBe(0)
  })

  it('a repeated or older ack changes nothing', async () => {
    const t = setup()
    await t.connect()
    const sent = [1, 2, 3].map((n) => t.send(n))
    await tick()
    t.server({ t: 'ack', s: 2 })
    t.server({ t: 'ack', s: 2 })
    t.server({ t: 'ack', s: 1 })
    t.server({ t: 'ack', s: 0 })
    await tick()
    expect(sent.map((p) => p.status)).toEqual(['resolved', 'resolved', 'pending'])
    expect(t.host.drop).not.toHaveBeenCalled()
  })

  it('an ack beyond what was sent is a protocol error and settles nothing', async () => {
    const t = setup()
    await t.connect()
    const sent = [1, 2].map((n) => t.send(n))
    await tick()
    t.server({ t: 'ack', s: 3 })
    await tick()
    expect(t.droppedWithProtocolError().message).toContain('ack 3')
    expect(sent.map((p) => p.status)).toEqual(['pending', 'pending'])
  })

  it('an ack for an entry queued but not yet written is a protocol error', async () => {
    const t = setup()
    await t.connect()
    t.send(1)
    t.server({ t: 'ack', s: 1 }) // before the flush: nothing was sent yet
    t.droppedWithProtocolError()
  })
})

describe('receiving', () => {
  it("each message's info names it by session id and sequence number (the server's numbering, the same on a resend)", async () => {
    const t = setup()
    await t.connect()
    t.server({ t: 'msg', s: 1, d: ['a', 'b'] })
    await tick()
    const infos = t.host.deliver.mock.calls.map(([, info]) => ({ id: info.id, seq: info.seq, redelivered: info.redelivered }))
    expect(infos).toEqual([
      { id: 's1:1', seq: 1, redelivered: false },
      { id: 's1:2', seq: 2, redelivered: false },
    ])
  })

  it('delivers messages in order, frame by frame and item by item', async () => {
    const t = setup()
    await t.connect()
    t.server({ t: 'msg', s: 1, d: ['a', 'b'] })
    t.server({ t: 'msg', s: 3, d: [{ c: 3 }] })
    expect(t.host.deliver.mock.calls.map(([m]) => m)).toEqual(['a', 'b', { c: 3 }])
  })

  it('drops what it already has: whole duplicate frames and the old part of overlapping ones', async () => {
    const t = setup()
    await t.connect()
    t.server({ t: 'msg', s: 1, d: ['a', 'b'] })
    t.server({ t: 'msg', s: 1, d: ['a', 'b'] })
    t.server({ t: 'msg', s: 2, d: ['b', 'c', 'd'] })
    t.server({ t: 'msg', s: 4, d: ['d'] })
    t.server({ t: 'msg', s: 3, d: ['c'] })
    t.server({ t: 'msg', s: 5, d: ['e'] })
    expect(t.host.deliver.mock.calls.map(([m]) => m)).toEqual(['a', 'b', 'c', 'd', 'e'])
    expect(t.host.drop).not.toHaveBeenCalled()
  })

  it('a gap in the sequence is a protocol error; nothing of it is delivered', async () => {
    const t = setup()
    await t.connect()
    t.server({ t: 'msg', s: 1, d: ['a'] })
    t.server({ t: 'msg', s: 3, d: ['c'] })
    expect(t.droppedWithProtocolError().message).toContain('gap')
    expect(t.host.deliver.mock.calls.map(([m]) => m)).toEqual(['a'])
  })

  it('a gap before the first message is a protocol error too', async () => {
    const t = setup()
    await t.connect()
    t.server({ t: 'msg', s: 2, d: ['b'] })
    t.droppedWithProtocolError()
    expect(t.host.deliver).not.toHaveBeenCalled()
  })

  it('a listener that drops the connection mid-frame gets the rest after the resume, once', async () => {
    const t = setup()
    await t.connect()
    t.host.deliver.mockImplementationOnce(() => {}).mockImplementationOnce(() => t.disconnect())
    t.server({ t: 'msg', s: 1, d: ['a', 'b', 'c'] })
    expect(t.host.deliver.mock.calls.map(([m]) => m)).toEqual(['a', 'b'])
    t.clear()
    t.protocol.attach('tether.v1')
    expect(t.frames()).toEqual([{ t: 'hello', sid: 's1', ack: 2, acked: 0, sent: 0, pa: true }])
    t.server({ t: 'welcome', sid: 's1', resumed: true, ack: 0, max: MiB })
    t.server({ t: 'msg', s: 3, d: ['c'] })
    expect(t.host.deliver.mock.calls.map(([m]) => m)).toEqual(['a', 'b', 'c'])
  })

  it('acks are coalesced: many frames in one tick get one ack with the highest seq', async () => {
    const t = setup()
    await t.connect()
    t.clear()
    for (let s = 1; s <= 10; s++) t.server({ t: 'msg', s, d: [s] })
    expect(t.log).toEqual([])
    await tick()
    expect(t.raw).toEqual(['{"t":"ack","s":10}'])
    t.server({ t: 'msg', s: 11, d: [11, 12] })
    await tick()
    expect(t.frames()).toEqual([
      { t: 'ack', s: 10 },
      { t: 'ack', s: 12 },
    ])
  })

  it('duplicates are acknowledged again (the server resent what its ack was lost for)', async () => {
    const t = setup()
    await t.connect()
    t.server({ t: 'msg', s: 1, d: ['a'] })
    await tick()
    t.clear()
    t.server({ t: 'msg', s: 1, d: ['a'] })
    await tick()
    expect(t.frames()).toEqual([{ t: 'ack', s: 1 }])
    expect(t.host.deliver).toHaveBeenCalledTimes(1)
  })

  it('no ack is written once the connection is gone', async () => {
    const t = setup()
    await t.connect()
    t.clear()
    t.server({ t: 'msg', s: 1, d: ['a'] })
    t.disconnect()
    await tick()
    expect(t.frames()).toEqual([])
  })
})

describe('topics (PROTOCOL.md §13)', () => {
  /** What reached the listeners, in order: messages with their topic, and missed reports. */
  function stream(t: ReturnType<typeof setup>) {
    const seen: unknown[] = []
    t.host.deliver.mockImplementation((data: unknown, info: MessageInfo) => seen.push({ seq: info.seq, data, topic: info.topic }))
    t.host.missed.mockImplementation((info: MissedInfo) => seen.push({ seq: info.seq, missed: info.topic, count: info.count }))
    return seen
  }

  it("a msg frame's tp is each of its messages' info.topic; a direct message's is undefined", async () => {
    const t = setup()
    await t.connect()
    const seen = stream(t)
    t.server({ t: 'msg', s: 1, d: ['direct'] })
    t.server({ t: 'msg', s: 2, tp: 'room:1', d: ['a', 'b'] })
    t.server({ t: 'msg', s: 4, tp: 'room:2', d: ['c'] })
    expect(seen).toEqual([
      { seq: 1, data: 'direct', topic: undefined },
      { seq: 2, data: 'a', topic: 'room:1' },
      { seq: 3, data: 'b', topic: 'room:1' },
      { seq: 4, data: 'c', topic: 'room:2' },
    ])
  })

  it('a miss is reported in its place in the stream, once, with its topic, count, id and seq', async () => {
    const t = setup()
    await t.connect({ sid: 'S' })
    const seen = stream(t)
    t.server({ t: 'msg', s: 1, tp: 'room', d: ['a'] })
    t.server({ t: 'miss', s: 2, tp: 'room', n: 40 })
    t.server({ t: 'msg', s: 3, tp: 'room', d: ['z'] })
    expect(seen).toEqual([
      { seq: 1, data: 'a', topic: 'room' },
      { seq: 2, missed: 'room', count: 40 },
      { seq: 3, data: 'z', topic: 'room' },
    ])
    const [info] = t.host.missed.mock.calls[0] as [MissedInfo]
    const { topic, count, id, seq, redelivered } = info
    expect({ topic, count, id, seq, redelivered }).toEqual({ topic: 'room', count: 40, id: 'S:2', seq: 2, redelivered: false })
  })

  it('a miss is acknowledged like a message, a resent one is dropped (and acknowledged again), a gap before one is a protocol error', async () => {
    const t = setup()
    await t.connect()
    t.clear()
    t.server({ t: 'miss', s: 1, tp: 'room', n: 2 })
    await tick()
    expect(t.frames()).toEqual([{ t: 'ack', s: 1 }])
    t.server({ t: 'miss', s: 1, tp: 'room', n: 2 }) // resent: its ack was lost
    await tick()
    expect(t.frames()).toEqual([
      { t: 'ack', s: 1 },
      { t: 'ack', s: 1 },
    ])
    expect(t.host.missed).toHaveBeenCalledTimes(1)
    t.server({ t: 'miss', s: 3, tp: 'room', n: 1 })
    expect(t.droppedWithProtocolError().message).toContain('sequence gap: expected 2, got 3')
    expect(t.host.missed).toHaveBeenCalledTimes(1)
  })

  it('a malformed miss (no topic, a count of 0) is a protocol error and reports nothing', async () => {
    for (const frame of [
      { t: 'miss', s: 1, n: 1 },
      { t: 'miss', s: 1, tp: 'room', n: 0 },
      { t: 'msg', s: 1, tp: '', d: [1] },
    ]) {
      const t = setup()
      await t.connect()
      t.server(frame)
      expect(t.droppedWithProtocolError().message).toMatch(/invalid "(tp|n)"/)
      expect(t.host.missed).not.toHaveBeenCalled()
      expect(t.host.deliver).not.toHaveBeenCalled()
    }
  })

  it('a miss before the welcome shows a server that does not speak tether.v1 as this client does (§4.5)', () => {
    const t = setup()
    t.protocol.attach('tether.v1')
    t.server({ t: 'miss', s: 1, tp: 'room', n: 1 })
    expect(t.host.drop.mock.calls[0]?.[2]?.final).toBe(true)
    expect(t.host.missed).not.toHaveBeenCalled()
  })

  it('after a reload, a miss the previous page may have had is marked redelivered, as a message is', async () => {
    const t = setup()
    t.protocol.resume({ id: 'S', delivered: 1, sent: 0, acked: 0 })
    await t.connect({ sid: 'S', resumed: true, sent: 3 })
    const infos: (MessageInfo | MissedInfo)[] = []
    t.host.deliver.mockImplementation((_data: unknown, info: MessageInfo) => infos.push(info))
    t.host.missed.mockImplementation((info: MissedInfo) => infos.push(info))
    t.server({ t: 'msg', s: 2, tp: 'room', d: ['b'] })
    t.server({ t: 'miss', s: 3, tp: 'room', n: 5 })
    t.server({ t: 'miss', s: 4, tp: 'other', n: 1 })
    expect(infos.map(({ id, redelivered }) => ({ id, redelivered }))).toEqual([
      { id: 'S:2', redelivered: true },
      { id: 'S:3', redelivered: true },
      { id: 'S:4', redelivered: false },
    ])
  })

  it("with persist, the ack of a miss waits until its delivery is durable, as a message's does", async () => {
    const t = setup()
    const { commit, durable } = withJournal(t)
    t.protocol.attach('tether.v1')
    t.server({ t: 'welcome', sid: 'S', resumed: false, ack: 0, max: MiB })
    commit()
    await tick()
    t.clear()
    t.server({ t: 'msg', s: 1, tp: 'room', d: ['a'] })
    t.server({ t: 'miss', s: 2, tp: 'room', n: 3 })
    await tick()
    expect(t.frames()).toEqual([]) // delivered, not yet durable: no ack
    commit()
    expect(durable()?.delivered).toBe(2)
    expect(t.frames()).toEqual([{ t: 'ack', s: 2 }])
  })
})

describe('requests', () => {
  it('beyond the server limit announced in welcome (reqs) wait, in order, until a reply frees a place', async () => {
    const t = setup()
    await t.connect({ reqs: 2 })
    t.clear()
    const replies = [t.request('q1'), t.request('q2'), t.request('q3')]
    t.send('after')
    await tick()
    expect(t.frames()).toEqual([
      { t: 'req', s: 1, id: 1, d: 'q1' },
      { t: 'req', s: 2, id: 2, d: 'q2' },
    ])
    t.clear()
    t.server({ t: 'res', s: 1, id: 1, d: 'a1' })
    await tick()
    expect(replies[0]).toEqual({ status: 'resolved', value: 'a1' })
    // q3 goes now, and the message queued behind it keeps its place.
    expect(t.frames().filter((f) => f.t !== 'ack')).toEqual([
      { t: 'req', s: 3, id: 3, d: 'q3' },
      { t: 'msg', s: 4, d: ['after'] },
    ])
  })

  it('are written as req frames in sequence with the messages around them', async () => {
    const t = setup()
    await t.connect()
    t.clear()
    t.send('before')
    t.request({ op: 'get' })
    t.send('after-1')
    t.send('after-2')
    await tick()
    expect(t.frames()).toEqual([
      { t: 'msg', s: 1, d: ['before'] },
      { t: 'req', s: 2, id: 1, d: { op: 'get' } },
      { t: 'msg', s: 3, d: ['after-1', 'after-2'] },
    ])
  })

  it('stay pending after their ack and resolve with the reply', async () => {
    const t = setup()
    await t.connect()
    const reply = t.request('question')
    await tick()
    t.server({ t: 'ack', s: 1 })
    await tick()
    expect(reply.status).toBe('pending')
    expect(t.outbox.size).toBe(0) // acknowledged: the outbox is done with it
    t.server({ t: 'res', s: 1, id: 1, d: { answer: 42 } })
    await tick()
    expect(reply).toEqual({ status: 'resolved', value: { answer: 42 } })
  })

  it('a reply that arrives before the ack settles the request too', async () => {
    const t = setup()
    await t.connect()
    const reply = t.request('q')
    const later = t.send('m')
    await tick()
    t.server({ t: 'res', s: 1, id: 1, d: 'r' })
    t.server({ t: 'ack', s: 2 })
    await tick()
    expect(reply).toEqual({ status: 'resolved', value: 'r' })
    expect(later.status).toBe('resolved')
    expect(t.outbox.size).toBe(0)
  })

  it('replies are matched by id, whatever their order', async () => {
    const t = setup()
    await t.connect()
    const first = t.request('one')
    const second = t.request('two')
    await tick()
    t.server({ t: 'ack', s: 2 })
    t.server({ t: 'res', s: 1, id: 2, d: 'for two' })
    t.server({ t: 'res', s: 2, id: 1, d: 'for one' })
    await tick()
    expect(first.value).toBe('for one')
    expect(second.value).toBe('for two')
  })

  it('a res with err rejects with a ReplyError carrying the server code', async () => {
    const t = setup()
    await t.connect()
    const reply = t.request({ op: 'delete' })
    await tick()
    t.server({ t: 'ack', s: 1 })
    t.server({ t: 'res', s: 1, id: 1, err: { code: 'E_FORBIDDEN', message: 'not yours' } })
    await tick()
    expect(reply.status).toBe('rejected')
    expect(reply.error).toBeInstanceOf(ReplyError)
    expect(reply.error).toBeInstanceOf(TetherError)
    expect((reply.error as ReplyError).code).toBe('E_FORBIDDEN')
    expect((reply.error as ReplyError).message).toContain('not yours')
    expect((reply.error as ReplyError).data).toEqual({ op: 'delete' })
  })

  it.each([
    ['both d and err', { d: 'value', err: { code: 'E', message: 'm' } }],
    ['neither d nor err', {}],
  ])('a res with %s is a protocol error (§3.6): the request stays pending, to be answered after the resume', async (_, body) => {
    const t = setup()
    await t.connect()
    const reply = t.request('q')
    await tick()
    t.server({ t: 'res', s: 1, id: 1, ...body })
    expect(t.droppedWithProtocolError().message).toMatch(/"res" frame has an invalid "d"/)
    await tick()
    expect(reply.status).toBe('pending')
  })

  it('a res counts in the server sequence: acknowledged, deduplicated, and gaps refused', async () => {
    const t = setup()
    await t.connect()
    const reply = t.request('q')
    await tick()
    t.server({ t: 'ack', s: 1 })
    t.server({ t: 'msg', s: 1, d: ['m'] })
    t.server({ t: 'res', s: 2, id: 1, d: 'r' })
    t.server({ t: 'res', s: 2, id: 1, d: 'r again' })
    t.clear()
    await tick()
    expect(reply.value).toBe('r')
    expect(t.frames()).toEqual([{ t: 'ack', s: 2 }])
    t.server({ t: 'res', s: 4, id: 9, d: null })
    t.droppedWithProtocolError()
  })

  it('a reply that does not come within the timeout after the ack rejects with TimeoutError', async () => {
    const t = setup()
    await t.connect()
    const reply = t.request('slow', 1000)
    await tick()
    await vi.advanceTimersByTimeAsync(100)
    t.server({ t: 'ack', s: 1 })
    await vi.advanceTimersByTimeAsync(899)
    expect(reply.status).toBe('pending')
    await vi.advanceTimersByTimeAsync(1)
    expect(reply.status).toBe('rejected')
    expect(reply.error).toBeInstanceOf(TimeoutError)
    expect(t.failures).toEqual([reply.error])
    // a reply after the timeout changes nothing
    t.server({ t: 'res', s: 1, id: 1, d: 'late' })
    await tick()
    expect(reply.status).toBe('rejected')
    expect(t.host.drop).not.toHaveBeenCalled()
  })

  it('a reply in time cancels the timeout', async () => {
    const t = setup()
    await t.connect()
    const reply = t.request('quick', 1000)
    await tick()
    t.server({ t: 'ack', s: 1 })
    t.server({ t: 'res', s: 1, id: 1, d: 'ok' })
    await vi.advanceTimersByTimeAsync(5000)
    expect(reply).toEqual({ status: 'resolved', value: 'ok' })
    expect(t.failures).toEqual([])
  })
})

describe('resume', () => {
  it('hello names the session and the last server seq received', async () => {
    const t = setup()
    await t.connect({ sid: 'sess' })
    t.server({ t: 'msg', s: 1, d: ['a', 'b'] })
    await tick()
    t.disconnect()
    t.clear()
    t.protocol.attach('tether.v1')
    expect(t.raw).toEqual(['{"t":"hello","sid":"sess","ack":2,"acked":0,"sent":0,"pa":true}'])
  })

  it('hello says how far the server acknowledged our items and how far we wrote, so a server that knows less can tell', async () => {
    const t = setup()
    await t.connect({ sid: 'sess' })
    for (const m of ['a', 'b', 'c']) t.send(m)
    await tick()
    t.server({ t: 'ack', s: 2 })
    t.disconnect()
    t.clear()
    t.protocol.attach('tether.v1')
    expect(t.frames()).toEqual([{ t: 'hello', sid: 'sess', ack: 0, acked: 2, sent: 3, pa: true }])
  })

  it('a welcome that refuses the resume with a reason reports it with the session change', async () => {
    const t = setup()
    await t.connect({ sid: 'old' })
    t.disconnect()
    t.protocol.attach('tether.v1')
    t.server({ t: 'welcome', sid: 'new', resumed: false, ack: 0, max: MiB, reason: 'lost' })
    await tick()
    expect(t.onSession).toHaveBeenLastCalledWith({ id: 'new', previous: 'old', reason: 'lost' })
  })

  it('resends what the server lacks with the SAME seqs, before ready() and before anything new', async () => {
    const t = setup()
    await t.connect()
    const sent = ['a', 'b', 'c', 'd'].map((m) => t.send(m))
    await tick()
    t.server({ t: 'ack', s: 1 })
    t.disconnect()
    const queued = t.send('e') // while disconnected: after the in-flight ones
    await tick()
    t.clear()
    t.protocol.attach('tether.v1')
    t.server({ t: 'welcome', sid: 's1', resumed: true, ack: 2, max: MiB })
    await tick()
    expect(t.log).toEqual([
      { t: 'hello', sid: 's1', ack: 0, acked: 1, sent: 4, pa: true },
      { t: 'msg', s: 3, d: ['c', 'd'] },
      'ready',
      { t: 'msg', s: 5, d: ['e'] },
    ])
    expect(t.onSession).toHaveBeenCalledTimes(1) // still the first session
    expect(sent.map((p) => p.status)).toEqual(['resolved', 'resolved', 'pending', 'pending'])
    t.server({ t: 'ack', s: 5 })
    await tick()
    expect([...sent, queued].map((p) => p.status)).toEqual(['resolved', 'resolved', 'resolved', 'resolved', 'resolved'])
  })

  it('a request resent on resume keeps its seq and id', async () => {
    const t = setup()
    await t.connect()
    t.send('m')
    const reply = t.request('q')
    await tick()
    t.disconnect()
    t.clear()
    t.protocol.attach('tether.v1')
    t.server({ t: 'welcome', sid: 's1', resumed: true, ack: 0, max: MiB })
    await tick()
    expect(t.log).toEqual([
      { t: 'hello', sid: 's1', ack: 0, acked: 0, sent: 2, pa: true },
      { t: 'msg', s: 1, d: ['m'] },
      { t: 'req', s: 2, id: 1, d: 'q' },
      'ready',
    ])
    t.server({ t: 'ack', s: 2 })
    t.server({ t: 'res', s: 1, id: 1, d: 'a' })
    await tick()
    expect(reply.value).toBe('a')
  })

  it('a request acknowledged but unanswered waits across a resume for its reply', async () => {
    const t = setup()
    await t.connect()
    const reply = t.request('q')
    await tick()
    t.server({ t: 'ack', s: 1 })
    t.disconnect()
    t.protocol.attach('tether.v1')
    t.server({ t: 'welcome', sid: 's1', resumed: true, ack: 1, max: MiB })
    await tick()
    expect(reply.status).toBe('pending')
    t.server({ t: 'res', s: 1, id: 1, d: 'kept' })
    await tick()
    expect(reply.value).toBe('kept')
  })

  it('a resumed welcome acknowledging more than was sent is a protocol error', async () => {
    const t = setup()
    await t.connect()
    t.send('a')
    await tick()
    t.disconnect()
    t.protocol.attach('tether.v1')
    t.server({ t: 'welcome', sid: 's1', resumed: true, ack: 2, max: MiB })
    t.droppedWithProtocolError()
    expect(t.host.ready).toHaveBeenCalledTimes(1)
  })
})

describe('a new session (the old one expired)', () => {
  it('renumbers unacknowledged entries from 1, resends them, and reports the session change', async () => {
    const t = setup()
    await t.connect({ sid: 'old' })
    const sent = ['a', 'b', 'c'].map((m) => t.send(m))
    await tick()
    t.server({ t: 'ack', s: 1 })
    t.server({ t: 'msg', s: 1, d: ['x', 'y'] })
    await tick()
    t.disconnect()
    t.clear()
    t.protocol.attach('tether.v1')
    t.server({ t: 'welcome', sid: 'new', resumed: false, ack: 0, max: MiB })
    await tick()
    expect(t.onSession).toHaveBeenLastCalledWith({ id: 'new', previous: 'old' })
    expect(t.protocol.sessionId).toBe('new')
    expect(t.log).toEqual([{ t: 'hello', sid: 'old', ack: 2, acked: 1, sent: 3, pa: true }, 'ready', { t: 'msg', s: 1, d: ['b', 'c'] }])
    t.send('d')
    await tick()
    expect(t.frames().at(-1)).toEqual({ t: 'msg', s: 3, d: ['d'] })
    t.server({ t: 'ack', s: 2 })
    await tick()
    expect(sent.map((p) => p.status)).toEqual(['resolved', 'resolved', 'resolved'])
  })

  it('resets the receive counter: the new session counts from 1 again', async () => {
    const t = setup()
    await t.connect({ sid: 'old' })
    t.server({ t: 'msg', s: 1, d: ['x', 'y', 'z'] })
    await tick()
    t.disconnect()
    t.protocol.attach('tether.v1')
    t.server({ t: 'welcome', sid: 'new', resumed: false, ack: 0, max: MiB })
    await tick()
    t.clear()
    t.server({ t: 'msg', s: 1, d: ['fresh'] })
    await tick()
    expect(t.host.deliver).toHaveBeenLastCalledWith('fresh', expect.objectContaining({ id: 'new:1', seq: 1, redelivered: false }))
    expect(t.frames()).toEqual([{ t: 'ack', s: 1 }])
    expect(t.host.drop).not.toHaveBeenCalled()
  })

  it('a welcome claiming to resume another session is a new session', async () => {
    const t = setup()
    await t.connect({ sid: 'old' })
    t.send('a')
    await tick()
    t.disconnect()
    t.clear()
    t.protocol.attach('tether.v1')
    t.server({ t: 'welcome', sid: 'other', resumed: true, ack: 0, max: MiB })
    await tick()
    expect(t.onSession).toHaveBeenLastCalledWith({ id: 'other', previous: 'old' })
    expect(t.frames().at(-1)).toEqual({ t: 'msg', s: 1, d: ['a'] })
  })

  it('requests acknowledged but unanswered reject with DeliveryError; unacknowledged ones are resent', async () => {
    const t = setup()
    await t.connect({ sid: 'old' })
    const answered = t.request('lost')
    const unacked = t.request('again')
    await tick()
    t.server({ t: 'ack', s: 1 })
    t.disconnect()
    t.clear()
    t.protocol.attach('tether.v1')
    t.server({ t: 'welcome', sid: 'new', resumed: false, ack: 0, max: MiB })
    await tick()
    expect(answered.status).toBe('rejected')
    expect(answered.error).toBeInstanceOf(DeliveryError)
    expect((answered.error as DeliveryError).data).toBe('lost')
    expect(unacked.status).toBe('pending')
    expect(t.frames().at(-1)).toEqual({ t: 'req', s: 1, id: 2, d: 'again' })
    t.server({ t: 'ack', s: 1 })
    t.server({ t: 'res', s: 1, id: 2, d: 'done' })
    await tick()
    expect(unacked.value).toBe('done')
  })
})

describe('writing a burst', () => {
  const handover = {
    deadline: Number.POSITIVE_INFINITY,
    staleAt: Number.POSITIVE_INFINITY,
    timeout: Number.POSITIVE_INFINITY,
    ttl: Number.POSITIVE_INFINITY,
    open: true,
  }

  it('past 64 KiB queued within one tick, what is queued goes at once; the rest at the end of the tick', async () => {
    const t = setup()
    await t.connect()
    t.clear()
    const text = 'x'.repeat(1022) // 1,024 characters of JSON each
    for (let i = 0; i < 100; i++) t.protocol.queue(`${text}${i % 10}`, handover)
    // Still in the tick that queued them: the first 64 went out as they reached 64 KiB.
    expect(t.frames().map((frame) => (frame.d as unknown[]).length)).toEqual([64])
    await tick()
    expect(t.frames().map((frame) => [frame.s, (frame.d as unknown[]).length])).toEqual([
      [1, 64],
      [65, 36],
    ])
  })

  it('below 64 KiB in a tick, everything goes in one frame at the end of the tick', async () => {
    const t = setup()
    await t.connect()
    t.clear()
    for (let i = 0; i < 60; i++) t.protocol.queue('x'.repeat(1022), handover)
    expect(t.frames()).toEqual([])
    await tick()
    expect(t.frames().map((frame) => (frame.d as unknown[]).length)).toEqual([60])
  })
})

describe('acks riding on data frames (PROTOCOL.md §2.9)', () => {
  it("hello says the client takes acks on the server's data frames (pa)", () => {
    const t = setup()
    t.protocol.attach('tether.v1')
    expect(t.frames()[0]).toMatchObject({ t: 'hello', pa: true })
  })

  it('with welcome.pa, the ack of a reply rides on the request the app makes in reaction: one frame, no ack of its own', async () => {
    const t = setup()
    await t.connect({ pa: true })
    const first = t.request('q1')
    await tick()
    t.clear()
    t.server({ t: 'res', s: 1, id: 1, d: 'r1' })
    // The app reacts within the task (before the end-of-task ack): its request carries the ack.
    await Promise.resolve()
    expect(first.status).toBe('resolved')
    t.request('q2')
    await tick()
    expect(t.frames()).toEqual([{ t: 'req', s: 2, a: 1, id: 2, d: 'q2' }])
  })

  it('with welcome.pa, messages written in the task carry the ack in their first frame', async () => {
    const t = setup()
    await t.connect({ pa: true })
    t.clear()
    t.server({ t: 'msg', s: 1, d: ['x', 'y'] })
    t.send('echo')
    await tick()
    expect(t.frames()).toEqual([{ t: 'msg', s: 1, a: 2, d: ['echo'] }])
  })

  it('with welcome.pa and nothing written to carry it, the ack goes alone once the task is over', async () => {
    const t = setup()
    await t.connect({ pa: true })
    t.clear()
    t.server({ t: 'msg', s: 1, d: ['x'] })
    for (let i = 0; i < 10; i++) await Promise.resolve()
    expect(t.frames()).toEqual([]) // microtasks ran: not yet
    await tick() // the task is over (setImmediate)
    expect(t.frames()).toEqual([{ t: 'ack', s: 1 }])
  })

  it('without welcome.pa, the ack goes alone at the end of the tick and no frame carries one', async () => {
    const t = setup()
    await t.connect()
    t.clear()
    t.server({ t: 'msg', s: 1, d: ['x'] })
    t.send('echo')
    await tick()
    expect(t.frames()).toEqual([
      { t: 'ack', s: 1 },
      { t: 'msg', s: 1, d: ['echo'] },
    ])
  })

  it("a server frame's a acknowledges as an ack frame just before it would: a send resolves with the reply's frame", async () => {
    const t = setup()
    await t.connect({ pa: true })
    const sent = t.send('m')
    const asked = t.request('q')
    await tick()
    expect(t.frames().slice(-2)).toEqual([
      { t: 'msg', s: 1, d: ['m'] },
      { t: 'req', s: 2, id: 1, d: 'q' },
    ])
    t.server({ t: 'res', s: 1, a: 2, id: 1, d: 'r' })
    await tick()
    expect(sent.status).toBe('resolved')
    expect(asked).toMatchObject({ status: 'resolved', value: 'r' })
    expect(t.outbox.size).toBe(0)
    const more = t.send('n')
    await tick()
    t.server({ t: 'msg', s: 2, a: 3, d: ['z'] })
    await tick()
    expect(more.status).toBe('resolved')
  })

  it('an a above what the client sent is a protocol error, as such an ack frame is (§2.6)', async () => {
    const t = setup()
    await t.connect({ pa: true })
    t.server({ t: 'msg', s: 1, a: 1, d: ['x'] })
    expect(t.droppedWithProtocolError().message).toContain('ack 1 for a message never sent')
    expect(t.host.deliver).not.toHaveBeenCalled()
  })

  it('a request whose frame would outgrow welcome.max with the ack goes without it; the ack goes alone', async () => {
    const t = setup()
    const big = 9_007_199_254_740_000
    t.protocol.resume({ id: 'S', delivered: big, sent: big, acked: big })
    t.protocol.reserveRequestIds(big)
    // Room for the payload and the 64-byte envelope the client counts on, not for 20 more.
    const max = utf8.encode(JSON.stringify('q')).byteLength + 64
    await t.connect({ sid: 'S', resumed: true, ack: big, max, pa: true })
    t.clear()
    t.server({ t: 'msg', s: big + 1, d: ['x'] })
    t.request('q')
    await tick()
    const frames = t.frames()
    expect(frames).toEqual([
      { t: 'req', s: big + 1, id: big + 1, d: 'q' },
      { t: 'ack', s: big + 1 },
    ])
    expect(t.raw.every((frame) => utf8.encode(frame).byteLength <= max)).toBe(true)
  })

  it('with persist, no ack rides on a frame: it names only what is durable, once the commit is done', async () => {
    const t = setup()
    const { commit } = withJournal(t)
    t.protocol.attach('tether.v1')
    t.server({ t: 'welcome', sid: 'S', resumed: false, ack: 0, max: MiB, pa: true })
    commit()
    await tick()
    t.clear()
    t.server({ t: 'msg', s: 1, d: ['x'] })
    t.send('echo')
    await tick()
    commit()
    await tick()
    // Both waited for the commit (the message's number is written ahead too): the ack alone.
    expect(t.frames()).toEqual([
      { t: 'ack', s: 1 },
      { t: 'msg', s: 1, d: ['echo'] },
    ])
  })
})

describe("the server's maximum frame size", () => {
  it('a message bigger than the maximum rejects with DeliveryError and is not written; the next one goes', async () => {
    const t = setup()
    await t.connect({ max: 200 })
    t.clear()
    const big = t.send('x'.repeat(300))
    const small = t.send('ok')
    await tick()
    expect(big.status).toBe('rejected')
    expect(big.error).toBeInstanceOf(DeliveryError)
    expect((big.error as DeliveryError).message).toContain('200')
    expect(t.failures).toEqual([big.error])
    expect(t.frames()).toEqual([{ t: 'msg', s: 1, d: ['ok'] }])
    expect(t.outbox.size).toBe(1)
    t.server({ t: 'ack', s: 1 })
    await tick()
    expect(small.status).toBe('resolved')
  })

  it('the size is counted in UTF-8 bytes', async () => {
    const t = setup()
    await t.connect({ max: 200 })
    t.clear()
    const big = t.send('€'.repeat(60)) // 62 characters of JSON, 182 bytes
    await tick()
    expect(big.error).toBeInstanceOf(DeliveryError)
    expect(t.frames()).toEqual([])
  })

  it('a request bigger than the maximum is refused too', async () => {
    const t = setup()
    await t.connect({ max: 100 })
    t.clear()
    const big = t.request('y'.repeat(100))
    await tick()
    expect(big.error).toBeInstanceOf(DeliveryError)
    expect(t.frames()).toEqual([])
  })

  it('batches are split so that no frame exceeds the maximum, keeping seqs contiguous', async () => {
    const t = setup()
    const max = 300
    await t.connect({ max })
    t.clear()
    const messages = Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? `€${i}`.repeat(8) : { i, pad: 'p'.repeat(i) }))
    for (const m of messages) t.send(m)
    await tick()
    expect(t.raw.length).toBeGreaterThan(1)
    for (const frame of t.raw) expect(utf8.encode(frame).byteLength).toBeLessThanOrEqual(max)
    const frames = t.frames() as { t: string; s: number; d: unknown[] }[]
    let next = 1
    for (const frame of frames) {
      expect(frame.t).toBe('msg')
      expect(frame.s).toBe(next)
      next += frame.d.length
    }
    expect(frames.flatMap((frame) => frame.d)).toEqual(messages)
  })
})

describe('heartbeat', () => {
  const heartbeat = { interval: 1000, timeout: 500 }
  const pings = (t: ReturnType<typeof setup>) => t.frames().filter((frame) => frame.t === 'ping').length

  it('with no traffic: a ping after interval, a drop with TimeoutError after interval + timeout', async () => {
    const t = setup(heartbeat)
    await t.connect()
    await vi.advanceTimersByTimeAsync(999)
    expect(pings(t)).toBe(0)
    await vi.advanceTimersByTimeAsync(1)
    expect(pings(t)).toBe(1)
    await vi.advanceTimersByTimeAsync(499)
    expect(t.host.drop).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1)
    expect(t.host.drop).toHaveBeenCalledTimes(1)
    const [code, , { error, final } = {}] = t.host.drop.mock.calls[0]
    expect(code).toBe(4000)
    expect(error).toBeInstanceOf(TimeoutError)
    expect(final).toBeFalsy()
  })

  it('any frame arriving after the ping keeps the connection', async () => {
    const t = setup(heartbeat)
    await t.connect()
    await vi.advanceTimersByTimeAsync(1200)
    expect(pings(t)).toBe(1)
    t.server({ t: 'pong' })
    await vi.advanceTimersByTimeAsync(300) // past the ping's timeout
    expect(t.host.drop).not.toHaveBeenCalled()
    expect(pings(t)).toBe(1)
    await vi.advanceTimersByTimeAsync(700) // interval of silence since the pong: ping again
    expect(pings(t)).toBe(2)
    expect(t.host.drop).not.toHaveBeenCalled()
  })

  it('any frame, not only pong, counts as life', async () => {
    const t = setup(heartbeat)
    await t.connect()
    await vi.advanceTimersByTimeAsync(1100)
    t.server({ t: 'msg', s: 1, d: ['alive'] })
    await vi.advanceTimersByTimeAsync(600)
    expect(t.host.drop).not.toHaveBeenCalled()
  })

  it('traffic postpones the ping: it comes after interval of silence', async () => {
    const t = setup(heartbeat)
    await t.connect()
    await vi.advanceTimersByTimeAsync(600)
    t.server({ t: 'ack', s: 0 })
    await vi.advanceTimersByTimeAsync(999)
    expect(pings(t)).toBe(0)
    await vi.advanceTimersByTimeAsync(1)
    expect(pings(t)).toBe(1)
  })

  it('a timer that fires late (throttled background tab) sends a fresh ping instead of dropping', async () => {
    const t = setup(heartbeat)
    await t.connect()
    await vi.advanceTimersByTimeAsync(1000)
    expect(pings(t)).toBe(1)
    vi.setSystemTime(Date.now() + 60_000) // the tab slept; the timer has not fired yet
    await vi.advanceTimersByTimeAsync(500)
    expect(t.host.drop).not.toHaveBeenCalled()
    expect(pings(t)).toBe(2)
    // the fresh ping gets the full timeout
    await vi.advanceTimersByTimeAsync(499)
    expect(t.host.drop).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1)
    expect(t.host.drop).toHaveBeenCalledTimes(1)
    expect(t.host.drop.mock.calls[0][2]?.error).toBeInstanceOf(TimeoutError)
  })

  it('probe() pings at once, then applies the timeout', async () => {
    const t = setup(heartbeat)
    await t.connect()
    await vi.advanceTimersByTimeAsync(100)
    t.clear()
    t.protocol.probe()
    expect(t.frames()).toEqual([{ t: 'ping' }])
    t.protocol.probe() // a ping is already out: no second one
    expect(pings(t)).toBe(1)
    await vi.advanceTimersByTimeAsync(499)
    expect(t.host.drop).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1)
    expect(t.host.drop).toHaveBeenCalledTimes(1)
  })

  it('probe() does nothing before the welcome or without a heartbeat', async () => {
    const withHeartbeat = setup(heartbeat)
    withHeartbeat.protocol.attach('tether.v1')
    withHeartbeat.protocol.probe()
    expect(pings(withHeartbeat)).toBe(0)
    const without = setup(false)
    await without.connect()
    without.protocol.probe()
    expect(pings(without)).toBe(0)
  })

  it('detach stops the heartbeat', async () => {
    const t = setup(heartbeat)
    await t.connect()
    await vi.advanceTimersByTimeAsync(1000)
    t.disconnect()
    t.clear()
    await vi.advanceTimersByTimeAsync(10_000)
    expect(t.log).toEqual([])
    expect(t.host.drop).not.toHaveBeenCalled()
  })

  it('heartbeat: false never pings nor drops', async () => {
    const t = setup(false)
    await t.connect()
    await vi.advanceTimersByTimeAsync(600_000)
    expect(pings(t)).toBe(0)
    expect(t.host.drop).not.toHaveBeenCalled()
  })
})

describe('failAwaiting', () => {
  it('fails requests waiting for a reply outside the outbox', async () => {
    const t = setup()
    await t.connect()
    const reply = t.request('q')
    await tick()
    t.server({ t: 'ack', s: 1 })
    t.protocol.failAwaiting(() => new DeliveryError('closed'))
    await tick()
    expect(reply.status).toBe('rejected')
    expect(reply.error).toBeInstanceOf(DeliveryError)
  })
})
