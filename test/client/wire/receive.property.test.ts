// @vitest-environment node
/**
 * Property-based tests (fast-check) of what the client protocol does with whatever a server
 * sends: TetherProtocol.receive driven with a fake host, as in tether.test.ts, in the
 * handshake and in the ready phase. Whatever arrives (any string, any bytes, any JSON, frames
 * that are nearly right), receive never throws, pollutes no prototype, writes only
 * well-formed client frames, and ends in exactly one of: normal processing (as a reference
 * model of docs/PROTOCOL.md §2–§4 predicts: what is delivered, acknowledged and answered),
 * or a drop with 4002 and a ProtocolError (final only when the first frame shows the server
 * does not speak tether.v1), or, before the welcome, nothing at all for a frame of a type
 * tether.v1 does not define.
 */
import fc from 'fast-check'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Outbox, type Payload } from '../../../src/client/outbox.js'
import { type SessionInfo, TetherProtocol } from '../../../src/client/wire/tether.js'
import type { ProtocolHost, WireData } from '../../../src/client/wire/types.js'
import { DeliveryError, ProtocolError, ReplyError, type TetherError } from '../../../src/errors.js'
import { decodeFrame, encodeFrame, type ServerFrame } from '../../../src/protocol/frames.js'
import { anyString, expectNoPollution, hostileJsonText, hostileKeys, prototypeSnapshot, wireData } from '../../support/hostile.js'
import { type Tracked, track } from '../../support/track.js'

// Each property runs a few hundred cases: a couple of seconds, more on a loaded machine.
vi.setConfig({ testTimeout: 15_000 })

const MiB = 1024 * 1024

interface Drop {
  code: number
  error: TetherError | undefined
  final: boolean | undefined
}

/** Lets the protocol's coalesced flushes and acks (microtasks) and promise callbacks run. */
const microtasks = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve()
}

/**
 * A protocol with a fake host that behaves like the socket: `ready` writes the backlog, `drop`
 * detaches and rewinds. Before the first connection the outbox holds m1, r1, m2, r2, m3
 * (messages and requests, interleaved), which get sequence numbers 1–5 once welcomed.
 */
function setup() {
  const written: string[] = []
  const delivered: unknown[] = []
  const drops: Drop[] = []
  const sessions: SessionInfo[] = []
  const failures: TetherError[] = []
  let reports = 0
  let readies = 0
  let protocol!: TetherProtocol<unknown, unknown>
  const outbox = new Outbox({ maxMessages: 1000, maxBytes: MiB, overflow: 'reject' }, (error) => failures.push(error))
  const host: ProtocolHost<unknown> = {
    outbox,
    write: (frame: Payload) => {
      written.push(frame as string)
      return true
    },
    ready: () => {
      readies++
      protocol.flush()
    },
    deliver: (message, info) => delivered.push(info.topic === undefined ? message : { topic: info.topic, message }),
    missed: ({ topic, count, seq }) => delivered.push({ missed: topic, count, seq }),
    report: () => {
      reports++
    },
    drop: (code, _reason, { error, final } = {}) => {
      drops.push({ code, error, final })
      protocol.detach()
      outbox.rewind()
    },
  }
  protocol = new TetherProtocol(host, false, (info) => sessions.push(info))
  const forever = { deadline: Number.POSITIVE_INFINITY, staleAt: Number.POSITIVE_INFINITY }
  const add = (data: unknown, requestId?: number) => track(outbox.add(data, protocol.encode(data), { ...forever, requestId }))
  const messages = new Map<number, Tracked>() // by the seq they get: 1, 3, 5
  const requests = new Map<number, { seq: number; tracked: Tracked }>() // by request id
  messages.set(1, add('m1'))
  requests.set(protocol.nextRequestId(), { seq: 2, tracked: add('r1', 1) })
  messages.set(3, add('m2'))
  requests.set(protocol.nextRequestId(), { seq: 4, tracked: add('r2', 2) })
  messages.set(5, add('m3'))
  return {
    protocol,
    outbox,
    written,
    delivered,
    drops,
    sessions,
    failures,
    messages,
    requests,
    get reports() {
      return reports
    },
    get readies() {
      return readies
    },
  }
}

type Setup = ReturnType<typeof setup>

/** Everything the client wrote is a well-formed client frame (§3). */
function expectWellFormedWrites(t: Setup): void {
  for (const frame of t.written) expect(decodeFrame(frame, 'client'), frame).toBeDefined()
}

/** Hands one frame to receive; it must not throw. Returns the drop it caused, if any. */
function feed(t: Setup, data: WireData): Drop | undefined {
  const before = t.drops.length
  expect(() => t.protocol.receive(data)).not.toThrow()
  expect(t.drops.length - before).toBeLessThanOrEqual(1)
  const drop = t.drops[before]
  if (drop) {
    expect(drop.code).toBe(4002)
    expect(drop.error).toBeInstanceOf(ProtocolError)
  }
  return drop
}

/** The frame types tether.v1 defines, in either direction (§3). */
const V1_TYPES: unknown[] = ['hello', 'welcome', 'msg', 'miss', 'req', 'res', 'ack', 'ping', 'pong']

/** What the server frame `data` is, as the grammar sees it: `null` when it is refused. */
function parse(data: WireData): ServerFrame | undefined | null {
  try {
    return decodeFrame(data, 'server')
  } catch {
    return null
  }
}

// ── what a server may send ────────────────────────────────────────────────────

const small = fc.integer({ min: 0, max: 8 })
const junk = fc.oneof(fc.constantFrom(-1, 1.5, '1', null, true, [], {}, 2 ** 53), anyString, fc.jsonValue({ maxDepth: 1 }))
const maybe = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: junk })

/** Server frames that are right, nearly right, or of another type, as objects. */
const serverFrameLike: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record(
    {
      t: fc.constant('msg'),
      s: maybe(fc.integer({ min: 1, max: 8 })),
      tp: maybe(fc.constantFrom('room', 'other')),
      d: maybe(fc.array(fc.jsonValue(), { minLength: 1, maxLength: 3 })),
    },
    { requiredKeys: ['t', 's', 'd'] },
  ),
  fc.record({
    t: fc.constant('miss'),
    s: maybe(fc.integer({ min: 1, max: 8 })),
    tp: maybe(fc.constantFrom('room', 'other')),
    n: maybe(fc.integer({ min: 1, max: 3 })),
  }),
  fc.record({ t: fc.constant('ack'), s: maybe(small) }),
  fc.record(
    { t: fc.constant('res'), s: maybe(fc.integer({ min: 1, max: 8 })), id: maybe(fc.integer({ min: 0, max: 3 })), d: fc.jsonValue() },
    { requiredKeys: ['t', 's', 'id'] },
  ),
  fc.record({
    t: fc.constant('res'),
    s: maybe(fc.integer({ min: 1, max: 8 })),
    id: maybe(fc.integer({ min: 0, max: 3 })),
    err: maybe(fc.record({ code: anyString, message: anyString })),
  }),
  fc.record({
    t: fc.constant('welcome'),
    sid: maybe(fc.constantFrom('S', 'other')),
    resumed: maybe(fc.boolean()),
    ack: maybe(small),
    max: maybe(fc.constant(MiB)),
  }),
  fc.constantFrom({ t: 'pong' }, { t: 'ping' }, { t: 'hello', sid: null, ack: 0 }, { t: 'req', s: 1, id: 1, d: 1 }, { t: 'future', x: 1 }),
)

/** Anything at all that can arrive on a WebSocket, weighted toward frames that nearly make sense. */
const anyWireData: fc.Arbitrary<WireData> = fc.oneof(
  { weight: 6, arbitrary: serverFrameLike.map((frame) => JSON.stringify(frame)) },
  { weight: 1, arbitrary: anyString },
  { weight: 1, arbitrary: hostileJsonText },
  { weight: 1, arbitrary: fc.object({ key: fc.constantFrom(...hostileKeys), maxDepth: 2 }).map((o) => JSON.stringify(o)) },
  { weight: 1, arbitrary: wireData.arrayBuffer },
  { weight: 1, arbitrary: wireData.bytes.map((bytes) => new Blob([bytes])) },
)

/**
 * One step of a conversation with a ready client. Sequenced frames carry their number relative
 * to what the client has (`rel` 1 is the next one, ≤ 0 a duplicate, ≥ 2 a gap), so that most
 * runs go deep instead of ending at the first frame; `raw` steps are anything at all.
 */
type Step =
  | { kind: 'msg'; rel: number; d: unknown[]; tp?: string }
  | { kind: 'miss'; rel: number; tp: string; n: number }
  | { kind: 'res'; rel: number; id: number; reply: { d: unknown } | { err: { code: string; message: string } } }
  | { kind: 'ack'; s: number }
  | { kind: 'raw'; data: WireData }

const rel = fc.oneof({ weight: 12, arbitrary: fc.integer({ min: -2, max: 1 }) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: 3 }) })
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record(
      {
        kind: fc.constant('msg' as const),
        rel,
        d: fc.array(fc.jsonValue({ maxDepth: 2 }), { minLength: 1, maxLength: 3 }),
        tp: fc.constantFrom('room', 'other'),
      },
      { requiredKeys: ['kind', 'rel', 'd'] },
    ),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('miss' as const),
      rel,
      tp: fc.constantFrom('room', 'other'),
      n: fc.integer({ min: 1, max: 9 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('res' as const),
      rel,
      id: fc.integer({ min: 0, max: 3 }),
      reply: fc.oneof(
        fc.record({ d: fc.jsonValue({ maxDepth: 1 }) }),
        fc.record({ err: fc.record({ code: anyString, message: anyString }) }),
      ),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('ack' as const),
      s: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 5 }) }, { weight: 1, arbitrary: fc.integer({ min: 6, max: 9 }) }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('raw' as const), data: anyWireData }) },
)

/** The wire data of a step, given the last server seq the client delivered. */
function render(item: Step, rxSeq: number): WireData {
  const s = Math.max(1, rxSeq + ('rel' in item ? item.rel : 0))
  switch (item.kind) {
    case 'msg':
      return JSON.stringify({ t: 'msg', s, tp: item.tp, d: item.d })
    case 'miss':
      return JSON.stringify({ t: 'miss', s, tp: item.tp, n: item.n })
    case 'res':
      return JSON.stringify({ t: 'res', s, id: item.id, ...item.reply })
    case 'ack':
      return JSON.stringify({ t: 'ack', s: item.s })
    case 'raw':
      return item.data
  }
}

const snapshot = prototypeSnapshot()
afterEach(() => expectNoPollution(snapshot))

describe('TetherProtocol.receive in the handshake', () => {
  it('a welcome starts the session; a frame of an undefined type is ignored; any other is a final ProtocolError naming raw mode', async () => {
    await fc.assert(
      fc.asyncProperty(anyWireData, async (data) => {
        const t = setup()
        t.protocol.attach('tether.v1')
        expect(t.written).toEqual([encodeFrame({ t: 'hello', sid: null, ack: 0, acked: 0, sent: 0, pa: true })])
        const frame = parse(data)
        const drop = feed(t, data)
        if (frame?.t === 'welcome') {
          expect(drop).toBeUndefined()
          expect(t.readies).toBe(1)
          expect(t.sessions).toEqual([{ id: frame.sid, previous: undefined }])
          expect(t.protocol.sessionId).toBe(frame.sid)
          // Ready: the backlog went out in order, numbered 1–5.
          await microtasks()
          const sent = t.written.slice(1).map((w) => JSON.parse(w) as Record<string, unknown>)
          expect(sent.map((f) => f.s)).toEqual(sent.length ? [1, 2, 3, 4, 5].slice(0, sent.length) : [])
        } else if (frame === undefined && !V1_TYPES.includes(JSON.parse(data as string).t)) {
          // A type tether.v1 does not define (§4.5): ignored, the welcome is still awaited.
          expect(drop).toBeUndefined()
          expect(t.readies).toBe(0)
          expect(t.written).toHaveLength(1)
        } else {
          expect(drop?.final).toBe(true)
          expect(drop?.error?.message).toMatch(/mode: 'raw'/)
          expect(t.readies).toBe(0)
          expect(t.sessions).toEqual([])
          expect(t.written).toHaveLength(1) // nothing after the hello
        }
        expect(t.delivered).toEqual([])
        expect(t.reports).toBe(0)
        expectWellFormedWrites(t)
      }),
      { numRuns: 300 },
    )
  })

  it('on a resume, a welcome naming the session acknowledges; a bogus ack drops (not final); another sid is a new session', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('S', 'other'),
        fc.boolean(),
        small,
        fc.integer({ min: 0, max: 5 }),
        async (sid, resumed, ack, firstAck) => {
          const t = setup()
          t.protocol.attach('tether.v1')
          feed(t, JSON.stringify({ t: 'welcome', sid: 'S', resumed: false, ack: 0, max: MiB }))
          await microtasks()
          feed(t, JSON.stringify({ t: 'ack', s: firstAck }))
          await microtasks()
          // The connection is lost and comes back.
          t.protocol.detach()
          t.outbox.rewind()
          t.written.length = 0
          t.protocol.attach('tether.v1')
          expect(t.written).toEqual([encodeFrame({ t: 'hello', sid: 'S', ack: 0, acked: firstAck, sent: 5, pa: true })])
          const drop = feed(t, JSON.stringify({ t: 'welcome', sid, resumed, ack, max: MiB }))
          await microtasks()
          if (resumed && sid === 'S') {
            if (ack > 5) {
              expect(drop?.final).toBeFalsy()
              expect(drop?.error?.message).toMatch(/never sent/)
              return
            }
            expect(drop).toBeUndefined()
            expect(t.sessions).toHaveLength(1)
            // Exactly what the server does not have is resent, with its original numbers.
            const acked = Math.max(ack, firstAck)
            const resent = t.written.slice(1).flatMap((w) => {
              const f = JSON.parse(w) as { t: string; s: number; d: unknown }
              return f.t === 'msg' ? (f.d as unknown[]).map((_, i) => f.s + i) : [f.s]
            })
            expect(resent).toEqual([1, 2, 3, 4, 5].filter((n) => n > acked))
          } else {
            expect(drop).toBeUndefined()
            expect(t.sessions).toEqual([
              { id: 'S', previous: undefined },
              { id: sid, previous: 'S' },
            ])
            expect(t.protocol.sessionId).toBe(sid)
          }
          expectWellFormedWrites(t)
        },
      ),
      { numRuns: 200 },
    )
  })
})

describe('TetherProtocol.receive when ready', () => {
  it('any conversation: never throws; delivery, acks and replies follow the reference model, or a 4002 drop', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 16 }), async (steps) => {
        const t = setup()
        t.protocol.attach('tether.v1')
        feed(t, JSON.stringify({ t: 'welcome', sid: 'S', resumed: false, ack: 0, max: MiB }))
        await microtasks()
        t.written.length = 0
        // The reference model: the last server seq delivered, the highest ack, the replies.
        const txSeq = 5
        let rxSeq = 0
        let acked = 0
        const expected: unknown[] = []
        const replies = new Map<number, { value: unknown } | { code: string }>()
        let dropped = false
        for (const item of steps) {
          const data = render(item, rxSeq)
          const frame = parse(data)
          let expectDrop = frame === null
          if (frame) {
            switch (frame.t) {
              case 'welcome':
                expectDrop = true
                break
              case 'ack':
                if (frame.s > txSeq) expectDrop = true
                else acked = Math.max(acked, frame.s)
                break
              case 'msg':
                if (frame.s > rxSeq + 1) expectDrop = true
                else {
                  const { tp } = frame
                  expected.push(
                    ...frame.d.slice(rxSeq + 1 - frame.s).map((message) => (tp === undefined ? message : { topic: tp, message })),
                  )
                  rxSeq = Math.max(rxSeq, frame.s + frame.d.length - 1)
                }
                break
              case 'miss':
                // One sequenced item, reported as missed in its place (§13).
                if (frame.s > rxSeq + 1) expectDrop = true
                else if (frame.s === rxSeq + 1) {
                  rxSeq = frame.s
                  expected.push({ missed: frame.tp, count: frame.n, seq: frame.s })
                }
                break
              case 'res':
                if (frame.s > rxSeq + 1) expectDrop = true
                else if (frame.s === rxSeq + 1) {
                  rxSeq = frame.s
                  if (t.requests.has(frame.id) && !replies.has(frame.id)) {
                    replies.set(frame.id, frame.err ? { code: frame.err.code } : { value: frame.d })
                  }
                }
                break
            }
          }
          const drop = feed(t, data)
          expect(drop !== undefined, `${String(data)} → ${drop ? 'dropped' : 'accepted'}`).toBe(expectDrop)
          if (drop) {
            expect(drop.final).toBeFalsy()
            dropped = true
            break // the socket forgets the connection: nothing more arrives on it
          }
        }
        await microtasks()
        expect(t.delivered).toEqual(expected)
        expect(t.reports).toBe(0)
        // Messages resolve once acknowledged (or implied by a later ack), never otherwise.
        for (const [seq, tracked] of t.messages) expect(tracked.status, `message ${seq}`).toBe(seq <= acked ? 'resolved' : 'pending')
        // Requests settle with their reply, whatever the order of ack and reply.
        for (const [id, { tracked }] of t.requests) {
          const reply = replies.get(id)
          if (!reply) expect(tracked.status, `request ${id}`).toBe('pending')
          else if ('value' in reply) expect(tracked).toEqual({ status: 'resolved', value: reply.value })
          else {
            expect(tracked.status).toBe('rejected')
            expect(tracked.error).toBeInstanceOf(ReplyError)
            expect((tracked.error as ReplyError).code).toBe(reply.code)
          }
        }
        // What the client wrote back: acks of what it delivered, nothing else (no sends were made).
        expectWellFormedWrites(t)
        const acks = t.written.map((w) => JSON.parse(w) as { t: string; s: number })
        expect(acks.every((f) => f.t === 'ack')).toBe(true)
        if (!dropped && rxSeq > 0) expect(acks.at(-1)).toEqual({ t: 'ack', s: rxSeq })
        expect(t.failures.every((e) => e instanceof ReplyError)).toBe(true)
      }),
      { numRuns: 300 },
    )
  })

  it('binary data (ArrayBuffer or Blob) never reaches the message listeners: a 4002 drop naming binary frames', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          wireData.arrayBuffer,
          wireData.bytes.map((b) => new Blob([b])),
        ),
        async (data) => {
          const t = setup()
          t.protocol.attach('tether.v1')
          feed(t, JSON.stringify({ t: 'welcome', sid: 'S', resumed: false, ack: 0, max: MiB }))
          const drop = feed(t, data)
          expect(drop?.final).toBeFalsy()
          expect(drop?.error?.message).toMatch(/binary/)
          expect(t.delivered).toEqual([])
        },
      ),
      { numRuns: 100 },
    )
  })

  it('a server announcing a tiny max: messages that cannot fit fail with DeliveryError, the rest go, nothing throws', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 200 }), async (max) => {
        const t = setup()
        t.protocol.attach('tether.v1')
        feed(t, JSON.stringify({ t: 'welcome', sid: 'S', resumed: false, ack: 0, max }))
        await microtasks()
        // Each payload ('"m1"', '"r1"', …) is 4 bytes; a frame needs 64 bytes of room besides.
        const fits = 4 + 64 <= max
        expect(t.failures.length).toBe(fits ? 0 : 5)
        expect(t.failures.every((e) => e instanceof DeliveryError)).toBe(true)
        expect(t.outbox.size).toBe(fits ? 5 : 0)
        expectWellFormedWrites(t)
      }),
      { numRuns: 100 },
    )
  })
})
