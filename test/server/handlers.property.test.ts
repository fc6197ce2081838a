// @vitest-environment node
/**
 * Property-based tests (fast-check) of the reference server's per-connection handler:
 * `attachConnection` (src/server/ws.ts) on a fake `ws` socket, wired to the hooks of a real
 * TetherServer (sessions, principal binding, handler error wrapping), fed whatever a client
 * could send. For any input the handler never throws, pollutes no prototype, writes only
 * well-formed server frames, and ends in exactly one of: normal processing (as a reference
 * model of docs/PROTOCOL.md §2–§5 predicts: what reaches `message`, acks, pongs, replies), or
 * a close with the documented code (1002 protocol error, 1007 not JSON text, 1013 for work over
 * the rate limit that could not be delivered within MAX_HOLD, or over the pending-request limit
 * the welcome announced).
 *
 * Every frame costs a token of the rate limit, charged before it is decoded. Over the limit the
 * server holds frames (backpressure), decoding each in its turn: a second model, on fake time,
 * predicts what is delivered at once, what is held, that reading goes on (acks applied at once,
 * their token owed) and is paused exactly once maxHeldBytes of frames are held (until under half
 * of it) or, refusing, were ignored, what follows as the bucket refills (a held frame that breaks
 * the protocol closing then), that nothing more is delivered once the client's close frame was
 * read, and when holding is refused.
 */
import { EventEmitter } from 'node:events'
import { createServer } from 'node:http'
import fc from 'fast-check'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import type { WebSocket } from 'ws'
import { type ClientFrame, decodeFrame } from '../../src/protocol/frames.js'
import { DECODE_AT_ONCE } from '../../src/server/admission.js'
import { createTetherServer, RequestError, type Session, type TetherServer } from '../../src/server/index.js'
import { MAX_HOLD, maxHeldBytes } from '../../src/server/limits.js'
import { attachConnection, type ConnectionHooks } from '../../src/server/ws.js'
import { anyString, expectNoPollution, hostileJsonText, hostileKeys, prototypeSnapshot, wireData } from '../support/hostile.js'

// Each property runs a few hundred cases: a couple of seconds, more on a loaded machine.
vi.setConfig({ testTimeout: 15_000 })

/** Close codes attachConnection may use (1009 is sent by `ws` itself, before a frame reaches it). */
const DOCUMENTED = [1002, 1007, 1013]
const BURST = 12
const MAX_PENDING = 2

let server: TetherServer
let hooks: ConnectionHooks
/** Per session id: what the server's `message` event delivered. */
const delivered = new Map<string, unknown[]>()
const serverErrors: Error[] = []

beforeAll(async () => {
  // Attached to an HTTP server that never listens: the hooks are real, no network is involved.
  server = await createTetherServer({
    server: createServer(),
    heartbeatInterval: 0,
    sessionTtl: 60_000,
    // Refills by a token per 1000 s: within a run the bucket is exactly BURST minus what was taken.
    rateLimit: { rate: 0.001, burst: BURST },
    maxPendingRequests: MAX_PENDING,
  })
  hooks = (server as unknown as { hooks: ConnectionHooks }).hooks
  server.on('message', (data, session) => {
    const list = delivered.get(session.id) ?? []
    list.push(data)
    delivered.set(session.id, list)
    if (data === 'boom') throw new Error('a message handler that throws')
  })
  server.on('error', (error) => serverErrors.push(error))
  server.onRequest(async (data) => {
    if (data === 'bad') throw new RequestError('E_BAD', 'refused on purpose')
    if (data === 'crash') throw new Error('secret internal detail')
    return { echo: data }
  })
})

afterAll(async () => {
  await server.close()
})

const snapshot = prototypeSnapshot()
afterEach(() => {
  expectNoPollution(snapshot)
  serverErrors.length = 0
})

/**
 * A fake `ws` WebSocket: an EventEmitter that records what is sent, how it was closed, and
 * whether reading is paused; `readyState` is OPEN until it is closed (by either side).
 */
function fakeSocket(protocol = 'tether.v1') {
  const emitter = new EventEmitter()
  const sent: string[] = []
  const closes: { code: number; reason: string }[] = []
  const reading = { paused: false, pauses: 0 }
  const ws = Object.assign(emitter, {
    protocol,
    readyState: 1 as number,
    send: (frame: string) => {
      sent.push(frame)
    },
    close: (code: number, reason: string) => {
      closes.push({ code, reason })
      ws.readyState = 2 // CLOSING
    },
    pause: () => {
      reading.paused = true
      reading.pauses++
    },
    resume: () => {
      reading.paused = false
    },
  })
  return { ws: ws as unknown as WebSocket, emitter, sent, closes, reading }
}

type Fake = ReturnType<typeof fakeSocket>

/** What can arrive in a `message` event: text or binary, as `ws` hands it over (a Buffer and a flag). */
type Incoming = { text: string } | { bytes: Uint8Array; binary: boolean }

/** The string the handler decodes (text frames are UTF-8, as `ws` delivers them), or the Buffer of a binary one. */
const asReceived = (input: Incoming): string | Buffer =>
  'text' in input ? Buffer.from(input.text).toString() : input.binary ? Buffer.from(input.bytes) : Buffer.from(input.bytes).toString()

/** Emits one message; the handler must not throw. Returns the close it caused, if any. */
function feed(fake: Fake, input: Incoming): { code: number; reason: string } | undefined {
  const before = fake.closes.length
  const [data, binary] = 'text' in input ? [Buffer.from(input.text), false] : [Buffer.from(input.bytes), input.binary]
  expect(() => fake.emitter.emit('message', data, binary)).not.toThrow()
  const close = fake.closes[before]
  if (close) {
    expect(DOCUMENTED).toContain(close.code)
    expect(Buffer.byteLength(close.reason)).toBeLessThanOrEqual(123)
  }
  return close
}

/** The bytes of a frame on the wire (what counts against maxHeldBytes, and decides when it is decoded). */
const sizeOf = (input: Incoming): number => ('text' in input ? Buffer.byteLength(input.text) : input.bytes.byteLength)

/** How the grammar sees what the handler receives: the frame, undefined (ignored), or the close code. */
function parse(input: Incoming): ClientFrame | undefined | number {
  try {
    return decodeFrame(asReceived(input), 'client')
  } catch (error) {
    return (error as { closeCode: number }).closeCode
  }
}

function expectWellFormed(sent: string[]): void {
  for (const frame of sent) expect(decodeFrame(frame, 'server'), frame).toBeDefined()
}

/** Lets every queued microtask run (coalesced flushes and acks, request handlers and their replies). */
const microtasks = () => new Promise<void>((resolve) => setImmediate(resolve))

// ── inputs ────────────────────────────────────────────────────────────────────

const hostileObjects = fc.object({ key: fc.constantFrom(...hostileKeys), maxDepth: 2 }).map((o) => JSON.stringify(o))

/** Anything a client could send, as text or binary. */
const anyIncoming: fc.Arbitrary<Incoming> = fc.oneof(
  fc.record({ text: anyString }),
  fc.record({ text: hostileJsonText }),
  fc.record({ text: hostileObjects }),
  fc.record({ text: fc.jsonValue().map((v) => JSON.stringify(v)) }),
  fc.record({ bytes: wireData.bytes, binary: fc.boolean() }),
  fc.record({
    text: fc
      .record(
        {
          t: fc.constantFrom('hello', 'msg', 'req', 'ack', 'ping', 'welcome', 'res', 'pong'),
          sid: fc.oneof(fc.constant(null), anyString, fc.constantFrom(...hostileKeys)),
          ack: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constantFrom(-1, 1.5, '0', null)),
          s: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constantFrom(-1, 1.5, '1', null)),
          id: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constantFrom(-1, 'x')),
          d: fc.oneof(fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }), fc.jsonValue({ maxDepth: 1 })),
        },
        { requiredKeys: ['t'] },
      )
      .map((frame) => JSON.stringify(frame)),
  }),
)

/**
 * One step of a conversation after the hello. Sequenced frames carry their number relative to
 * what the server has (`rel` 1 is the next one, ≤ 0 a duplicate, ≥ 2 a gap).
 */
type Step =
  | { kind: 'msg'; rel: number; d: unknown[] }
  | { kind: 'req'; rel: number; d: unknown }
  | { kind: 'ack'; s: number }
  | { kind: 'ping' }
  | { kind: 'raw'; input: Incoming }

const rel = fc.oneof(
  { weight: 12, arbitrary: fc.constant(1) },
  { weight: 6, arbitrary: fc.integer({ min: -2, max: 0 }) },
  { weight: 1, arbitrary: fc.integer({ min: 2, max: 3 }) },
)
const payload = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 1, arbitrary: fc.constantFrom('boom', 'bad', 'crash') },
)
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('msg' as const), rel, d: fc.array(payload, { minLength: 1, maxLength: 6 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('req' as const), rel, d: payload }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('ack' as const),
      s: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 3 }) }, { weight: 1, arbitrary: fc.integer({ min: 4, max: 6 }) }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'ping' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('raw' as const), input: anyIncoming }) },
)

/** The data of a step, given the last client seq the server has; request ids are the step's index. */
function render(item: Step, rxSeq: number, index: number): Incoming {
  const s = Math.max(1, rxSeq + ('rel' in item ? item.rel : 0))
  switch (item.kind) {
    case 'msg':
      return { text: JSON.stringify({ t: 'msg', s, d: item.d }) }
    case 'req':
      return { text: JSON.stringify({ t: 'req', s, id: index, d: item.d }) }
    case 'ack':
      return { text: JSON.stringify({ t: 'ack', s: item.s }) }
    case 'ping':
      return { text: '{"t":"ping"}' }
    case 'raw':
      return item.input
  }
}

/** Opens a connection on a fake socket and says hello; returns the new session. */
function connect(principal?: string, target: { server: TetherServer; hooks: ConnectionHooks } = { server, hooks }) {
  const fake = fakeSocket()
  attachConnection(fake.ws, principal, target.hooks)
  let session: Session | undefined
  const onSession = (s: Session) => {
    session = s
  }
  target.server.once('session', onSession)
  feed(fake, { text: '{"t":"hello","sid":null,"ack":0}' })
  target.server.off('session', onSession)
  expect(session).toBeDefined()
  return { fake, session: session! }
}

describe('the first frame of a connection', () => {
  it('a hello opens a session; anything else is ignored (unknown type) or closes with its documented code', () => {
    fc.assert(
      fc.property(anyIncoming, (input) => {
        const fake = fakeSocket()
        attachConnection(fake.ws, undefined, hooks)
        const sessionsBefore = server.sessions.size
        const frame = parse(input)
        const close = feed(fake, input)
        if (typeof frame === 'number') {
          expect(close?.code).toBe(frame)
        } else if (frame === undefined) {
          expect(close).toBeUndefined()
        } else if (frame.t === 'hello') {
          // Any sid a stranger can name (unknown, '__proto__', 'constructor', …) gets a new session; its ack is ignored.
          expect(close).toBeUndefined()
          expect(server.sessions.size).toBe(sessionsBefore + 1)
          const welcome = JSON.parse(fake.sent[0])
          expect(welcome).toMatchObject({ t: 'welcome', resumed: false, ack: 0 })
          expect(welcome.sid).not.toBe(frame.sid)
          server.sessions.get(welcome.sid)?.end()
        } else {
          expect(close?.code).toBe(1002)
          expect(close?.reason).toMatch(/before "hello"/)
        }
        if (!(typeof frame === 'object' && frame.t === 'hello')) {
          expect(fake.sent).toEqual([])
          expect(server.sessions.size).toBe(sessionsBefore)
        }
        expectWellFormed(fake.sent)
        fake.emitter.emit('close', 1006)
      }),
      { numRuns: 400 },
    )
  })

  it("a hello naming another principal's session gets a new session and leaves the owner's connection alone", () => {
    fc.assert(
      fc.property(fc.nat(5), fc.constantFrom('mallory', undefined), (ack, principal) => {
        const alice = connect('alice')
        const sends = alice.fake.sent.length
        const mallory = fakeSocket()
        attachConnection(mallory.ws, principal, hooks)
        const close = feed(mallory, { text: JSON.stringify({ t: 'hello', sid: alice.session.id, ack }) })
        expect(close).toBeUndefined()
        const welcome = JSON.parse(mallory.sent[0])
        expect(welcome).toMatchObject({ t: 'welcome', resumed: false, ack: 0 })
        expect(welcome.sid).not.toBe(alice.session.id)
        expect(alice.fake.closes).toEqual([])
        expect(alice.fake.sent).toHaveLength(sends)
        expect(server.sessions.get(welcome.sid)?.principal).toBe(principal)
        server.sessions.get(welcome.sid)?.end()
        alice.session.end()
      }),
      { numRuns: 50 },
    )
  })

  it('a resume by the owner replaces the old connection (1000); a hello that knows more than the server gets a new session, told it was lost', () => {
    fc.assert(
      fc.property(fc.nat(3), fc.nat(6), (sent, ack) => {
        const owner = connect('alice')
        for (let i = 0; i < sent; i++) owner.session.send(i)
        const again = fakeSocket()
        attachConnection(again.ws, 'alice', hooks)
        const close = feed(again, { text: JSON.stringify({ t: 'hello', sid: owner.session.id, ack }) })
        if (ack > sent) {
          // Resuming would skip what the client says it has: never a protocol error (a reconnect loop).
          expect(close).toBeUndefined()
          const welcome = JSON.parse(again.sent[0])
          expect(welcome).toMatchObject({ t: 'welcome', resumed: false, reason: 'lost', ack: 0 })
          expect(welcome.sid).not.toBe(owner.session.id)
          expect(owner.fake.closes).toEqual([])
          expect(owner.session.connected).toBe(true)
          server.sessions.get(welcome.sid)?.end()
        } else {
          expect(close).toBeUndefined()
          expect(JSON.parse(again.sent[0])).toMatchObject({ t: 'welcome', sid: owner.session.id, resumed: true, ack: 0, max: 1024 * 1024 })
          expect(owner.fake.closes).toEqual([{ code: 1000, reason: 'replaced by a newer connection of the same session' }])
          expect(owner.session.pending).toBe(sent - ack)
        }
        owner.session.end()
      }),
      { numRuns: 50 },
    )
  })
})

describe('after the hello', () => {
  it('any conversation: never throws; delivery, acks, pongs and replies follow the reference model, or a documented close', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 16 }), async (steps) => {
        const { fake, session } = connect()
        // Three messages the client has not acknowledged: acks up to 3 are valid.
        const txSeq = 3
        for (let i = 1; i <= txSeq; i++) session.send(`to client ${i}`)
        await microtasks()
        fake.sent.length = 0
        // The reference model.
        let rxSeq = 0
        let acked = 0 // the client's last cumulative ack
        let tokens = BURST
        let pendingRequests = 0
        let pongs = 0
        const expected: unknown[] = []
        const requests: { id: number; d: unknown }[] = []
        let closed: number | undefined
        for (const [index, item] of steps.entries()) {
          const input = render(item, rxSeq, index)
          let expectClose: number | undefined
          let because: RegExp | undefined
          // Every frame costs a token, taken before it is decoded. At this rate the next token is
          // 1000 s away, beyond MAX_HOLD: a frame that finds no token is refused (1013), not held.
          // Small frames are decoded on arrival (a bad one closes with its code first), and acks
          // among them applied at once.
          const refused = () => {
            ;[expectClose, because] = [1013, /rate limit/]
          }
          const binary = 'bytes' in input && input.binary // refused unread (1007)
          const undecoded = !binary && sizeOf(input) > DECODE_AT_ONCE && tokens < 1
          const frame = undecoded ? undefined : parse(input)
          if (undecoded) refused()
          else if (typeof frame === 'number') expectClose = frame
          else if (frame?.t === 'hello') expectClose = 1002
          else if (frame?.t === 'ack' && frame.s > txSeq) expectClose = 1002
          // An ack that moves the acknowledged sequence is free, when it is decoded on arrival; a
          // bigger frame is charged its token before anyone knows it is an ack.
          else if (frame?.t === 'ack' && frame.s > acked && sizeOf(input) <= DECODE_AT_ONCE) acked = frame.s
          else if (tokens < 1) refused()
          else if (!frame || frame.t === 'ack') {
            tokens-- // a frame of an unknown type, an ack that moves nothing, or a big one: its token
            if (frame?.t === 'ack' && frame.s > acked) acked = frame.s
          } else {
            switch (frame.t) {
              case 'ping':
                tokens--
                pongs++
                break
              case 'msg': {
                if (frame.s > rxSeq + 1) {
                  expectClose = 1002
                  break
                }
                const fresh = frame.d.slice(rxSeq + 1 - frame.s)
                // What the bucket allows is delivered; the rest could not be within MAX_HOLD, so it is refused with 1013 (resent later).
                // A frame with nothing new still costs its token.
                const allowed = Math.min(fresh.length, Math.floor(tokens))
                tokens -= Math.max(1, allowed)
                expected.push(...fresh.slice(0, allowed))
                rxSeq += allowed
                if (allowed < fresh.length) refused()
                break
              }
              case 'req':
                if (frame.s > rxSeq + 1) expectClose = 1002
                else if (frame.s <= rxSeq)
                  tokens-- // a resend: its token, nothing more
                else {
                  // The token is taken before the pending-request limit is checked; both ask the client to come back later.
                  tokens--
                  if (pendingRequests >= MAX_PENDING) [expectClose, because] = [1013, /maxPendingRequests/]
                  else {
                    rxSeq = frame.s
                    pendingRequests++
                    requests.push({ id: frame.id, d: frame.d })
                  }
                }
                break
            }
          }
          const close = feed(fake, input)
          expect(close?.code, `${JSON.stringify(asReceived(input))}`).toBe(expectClose)
          if (close) {
            if (because) expect(close.reason).toMatch(because)
            closed = close.code
            break // the connection is closing: the test stops here
          }
        }
        const pongsSent = fake.sent.filter((f) => f === '{"t":"pong"}').length
        expect(pongsSent).toBe(pongs)
        await microtasks()
        expect(delivered.get(session.id) ?? []).toEqual(expected)
        // A throwing message handler is reported as a server error, never to the client.
        const internal = serverErrors.filter((e) => e.message === 'a message handler that throws' || e.message === 'secret internal detail')
        expect(internal).toHaveLength(serverErrors.length)
        expectWellFormed(fake.sent)
        const frames = fake.sent.map((f) => JSON.parse(f) as Record<string, unknown>)
        expect(frames.some((f) => f.t === 'welcome')).toBe(false)
        if (closed === undefined) {
          // The last ack names the last item delivered; each accepted request got exactly one reply.
          const acks = frames.filter((f) => f.t === 'ack')
          if (rxSeq > 0) expect(acks.at(-1)).toEqual({ t: 'ack', s: rxSeq })
          const replies = frames.filter((f) => f.t === 'res')
          expect(replies.map((r) => r.s)).toEqual(replies.map((_, i) => txSeq + 1 + i))
          expect(replies.map((r) => r.id).sort()).toEqual(requests.map((r) => r.id).sort())
          for (const reply of replies) {
            const request = requests.find((r) => r.id === reply.id)!
            if (request.d === 'bad')
              expect(reply).toEqual({ t: 'res', s: reply.s, id: reply.id, err: { code: 'E_BAD', message: 'refused on purpose' } })
            else if (request.d === 'crash') {
              expect(reply).toEqual({
                t: 'res',
                s: reply.s,
                id: reply.id,
                err: { code: 'ERR_INTERNAL', message: 'the request handler failed' },
              })
            } else expect(reply).toEqual({ t: 'res', s: reply.s, id: reply.id, d: { echo: request.d } })
          }
          // No internals reach the client.
          expect(fake.sent.join('\n')).not.toMatch(/secret internal detail|at .*\.ts:\d+/)
        }
        fake.emitter.emit('close', closed ?? 1000)
        expect(session.connected).toBe(false)
        session.end()
      }),
      {
        numRuns: 250,
        // Found by a run: an ack padded over DECODE_AT_ONCE bytes is charged before it is decoded.
        examples: [
          [
            [
              { kind: 'raw', input: { text: '{"t":"ack","sid":"  ","s":1,"id":0,"d":[1.0000048525436371e-307]}' } },
              { kind: 'msg', rel: 1, d: [0, false, null, 'boom', []] },
              { kind: 'msg', rel: 1, d: ['', {}] },
              { kind: 'msg', rel: 1, d: [[], 'boom', [], []] },
              { kind: 'ack', s: 0 },
            ],
          ],
        ] as never,
      },
    )
  })

  it('after a close, frames that still arrive (ws delivers until the close frame) neither throw nor use undocumented codes', () => {
    fc.assert(
      fc.property(fc.array(anyIncoming, { minLength: 1, maxLength: 10 }), (inputs) => {
        const { fake, session } = connect()
        for (const input of inputs) feed(fake, input)
        fake.emitter.emit('close', 1002)
        expect(session.connected).toBe(false)
        expectWellFormed(fake.sent)
        session.end()
      }),
      { numRuns: 200 },
    )
  })
})

describe('backpressure over the rate limit', () => {
  /** Tokens per second, and at once. */
  const RATE = 2
  const BP_BURST = 6
  /** Most items held at once: what RATE releases within MAX_HOLD (from a drained bucket). */
  const HOLD_CAP = (RATE * MAX_HOLD) / 1000
  /** Small enough that a few big frames reach maxHeldBytes (1 MiB, its floor). */
  const BP_MAX_PAYLOAD = 256 * 1024
  /** Reading stops once this many bytes of frames are held, and resumes under half of it. */
  const HELD_BYTES = maxHeldBytes(BP_MAX_PAYLOAD)
  /** Time enough to release everything held and refill the bucket to its burst. */
  const DRAIN = MAX_HOLD + (BP_BURST * 1000) / RATE + 1000

  let bp: TetherServer
  let bpHooks: ConnectionHooks
  /** Per session id: what reached the handlers, in order. */
  const handled = new Map<string, [string, unknown][]>()
  const record = (session: Session, entry: [string, unknown]) => {
    const list = handled.get(session.id) ?? []
    list.push(entry)
    handled.set(session.id, list)
  }

  beforeAll(async () => {
    bp = await createTetherServer({
      server: createServer(),
      heartbeatInterval: 0,
      sessionTtl: 60_000,
      rateLimit: { rate: RATE, burst: BP_BURST },
      maxPayload: BP_MAX_PAYLOAD,
      // Out of the way: the release of held requests is what is under test here.
      maxPendingRequests: 1000,
    })
    bpHooks = (bp as unknown as { hooks: ConnectionHooks }).hooks
    bp.on('message', (data, session) => {
      record(session, ['msg', data])
      if (data === 'boom') throw new Error('a message handler that throws')
    })
    bp.on('error', () => {})
    bp.onRequest(async (data, session) => {
      record(session, ['req', data])
      if (data === 'bad') throw new RequestError('E_BAD', 'refused on purpose')
      if (data === 'crash') throw new Error('secret internal detail')
      return { echo: data }
    })
  })

  afterAll(async () => {
    await bp.close()
  })

  type Wait = { kind: 'wait' }
  /** Time for one token (1000 / RATE ms): one held item is released, or the bucket gains a token. */
  type Tick = { kind: 'tick' }
  /** A message frame of `n` items, 250 KiB in all (maxPayload is 256): five of them reach maxHeldBytes. */
  type Big = { kind: 'big'; n: number }
  const PAD = ' '.repeat(250 * 1024)
  /** The client closes: its close frame is read (the socket is CLOSING), the `close` event comes later. */
  type Bye = { kind: 'bye' }
  /**
   * An entry of the held queue, and the frame (step index) it came in, whose bytes are held as long
   * as any of its entries is: a frame not yet taken in (with what it decodes to), work, or an owed token.
   */
  type Entry = (
    | { kind: 'frame'; decoded: ClientFrame | undefined | number }
    | { kind: 'owed' }
    | { kind: 'msg'; s: number; d: unknown }
    | { kind: 'req'; s: number; id: number; d: unknown }
    | { kind: 'ping' }
  ) & { frame: number }
  const wait = fc.constant<Wait>({ kind: 'wait' })
  const tick = fc.constant<Tick>({ kind: 'tick' })
  const bye = fc.constant<Bye>({ kind: 'bye' })
  const big = fc.record<Big>({ kind: fc.constant('big'), n: fc.integer({ min: 1, max: 2 }) })
  type Item = Step | Wait | Tick | Big | Bye
  /** Anything a client could send, now and then a big frame. */
  const steps: fc.Arbitrary<Item[]> = fc.array(
    fc.oneof(
      { weight: 10, arbitrary: step },
      { weight: 1, arbitrary: wait },
      { weight: 2, arbitrary: tick },
      { weight: 3, arbitrary: big },
      { weight: 1, arbitrary: bye },
    ),
    { minLength: 1, maxLength: 24 },
  )
  /**
   * A well-behaved client flooding the server with big frames, so that the held bytes reach
   * maxHeldBytes (and beyond), then time passing, so that they fall under half of it again.
   */
  const flood: fc.Arbitrary<Item[]> = fc
    .tuple(
      fc.array(
        fc.oneof(
          { weight: 6, arbitrary: big },
          {
            weight: 1,
            arbitrary: fc.record({
              kind: fc.constant('msg' as const),
              rel: fc.constant(1),
              d: fc.array(payload, { minLength: 1, maxLength: 4 }),
            }),
          },
          { weight: 1, arbitrary: fc.record({ kind: fc.constant('ack' as const), s: fc.integer({ min: 0, max: 3 }) }) },
          { weight: 1, arbitrary: fc.constant({ kind: 'ping' as const }) },
          { weight: 1, arbitrary: tick },
        ),
        { minLength: 8, maxLength: 20 },
      ),
      fc.array(fc.oneof({ weight: 8, arbitrary: tick }, { weight: 1, arbitrary: big }), { maxLength: 24 }),
      fc.constantFrom<Item[]>([], [{ kind: 'bye' }], [{ kind: 'wait' }]),
    )
    .map(([flooding, draining, end]) => [...flooding, ...draining, ...end])
  const heldItemsOf = (session: Session) => (session as unknown as { admission: { heldItems: number } }).admission.heldItems

  /**
   * Plays a conversation against the model: what reaches the handlers, pongs, acks and replies,
   * what is held and whether reading is paused after every step; then a resume.
   */
  const follows = async (conversation: Item[]) => {
    // The bucket's clock is performance.now(): fake too, so time stands still between waits.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] })
    try {
      const { fake, session } = connect(undefined, { server: bp, hooks: bpHooks })
      const txSeq = 3
      for (let i = 1; i <= txSeq; i++) session.send(`to client ${i}`)
      await microtasks()
      fake.sent.length = 0
      // The model. Time stands still between waits, so the bucket holds whole tokens.
      let arrived = 0 // last client seq the client has sent (what the next frame follows)
      let accepted = 0 // last client seq taken in: delivered or held
      let rxSeq = 0 // last client seq delivered
      let sentSeq = txSeq // last server seq (messages, then replies)
      let acked = 0 // the client's last cumulative ack
      let tokens = BP_BURST
      /**
       * The held queue, in arrival order, one token each: frames not yet taken in (decoded only
       * when their turn comes and a token is there; small ones were decoded on arrival), the work
       * of frames taken in, and the tokens owed by frames without work (acks among them).
       */
      let held: Entry[] = []
      /** Bytes of each frame (by step index) held: as long as any of its entries is. */
      const frameBytes = new Map<number, number>()
      const heldBytes = () => [...new Set(held.map((entry) => entry.frame))].reduce((total, frame) => total + frameBytes.get(frame)!, 0)
      /** Reading is paused: HELD_BYTES were held, and not yet under half of it again. */
      let paused = false
      /** Work beyond what may be held arrived: later work is ignored, and 1013 follows once the held work is delivered. */
      let refusing = false
      /** Bytes of frames ignored while refusing: reading stops once they reach HELD_BYTES (until the 1013). */
      let refusedBytes = 0
      const overBytes = () => heldBytes() >= HELD_BYTES || refusedBytes >= HELD_BYTES
      /** The close the model expects next (a frame taken in that breaks the protocol, or a refusal), if any. */
      let closing: number | undefined
      let pongs = 0
      const expected: [string, unknown][] = []
      const requests: number[] = []
      const deliver = (entry: Entry) => {
        if (entry.kind === 'ping') pongs++
        else if (entry.kind === 'msg' || entry.kind === 'req') {
          rxSeq = entry.s
          expected.push([entry.kind, entry.d])
          if (entry.kind === 'req') requests.push(entry.id)
        }
      }
      /**
       * Takes in the frame at the front: decodes and sequences it (a protocol error closes), puts
       * its work or its owed token in its place; a message frame carrying more than the tokens
       * there and those of MAX_HOLD is cut there, and what was held after it let go.
       */
      const takeIn = () => {
        const entry = held[0]
        if (entry.kind !== 'frame') return
        const frame = entry.decoded
        const bad = (code: number) => {
          closing = code
          held = []
        }
        const owe = () => {
          held[0] = { kind: 'owed', frame: entry.frame }
        }
        if (typeof frame === 'number') return bad(frame)
        if (!frame) return owe()
        switch (frame.t) {
          case 'hello':
            return bad(1002)
          case 'ack':
            if (frame.s > sentSeq) return bad(1002)
            acked = Math.max(acked, frame.s) // a big ack paid its token as a frame
            return owe()
          case 'ping':
            held[0] = { kind: 'ping', frame: entry.frame }
            return
          case 'req':
            if (frame.s > accepted + 1) return bad(1002)
            if (frame.s <= accepted) return owe()
            accepted = frame.s
            held[0] = { kind: 'req', s: frame.s, id: frame.id, d: frame.d, frame: entry.frame }
            return
          case 'msg': {
            if (frame.s > accepted + 1) return bad(1002)
            let fresh = frame.d.slice(accepted + 1 - frame.s)
            if (fresh.length === 0) return owe()
            const room = tokens + HOLD_CAP
            if (fresh.length > room) {
              refusing = true
              fresh = fresh.slice(0, room)
              held.length = 1
            }
            const work = fresh.map((d, i): Entry => ({ kind: 'msg', s: accepted + 1 + i, d, frame: entry.frame }))
            accepted += fresh.length
            held.splice(0, 1, ...work)
          }
        }
      }
      /** The release: takes in the front (if a token is there for it), then delivers as many as the tokens allow, in order. */
      const release = () => {
        if (held.length === 0 || tokens < 1) return
        takeIn()
        let budget = Math.min(tokens, held.length)
        tokens -= budget
        while (budget > 0 && held.length > 0 && closing === undefined) {
          if (held[0].kind === 'frame') {
            tokens += budget // the tokens in hand count for the room of what is taken in
            takeIn()
            tokens -= budget
            continue
          }
          budget--
          deliver(held.shift()!)
        }
        if (closing === undefined && refusing && held.length === 0) closing = 1013
      }
      /**
       * Takes a frame (or an ack's owed token) in arrival order: done at once if nothing waits and
       * a token is there; held if the bucket delivers it within MAX_HOLD (and the held bytes stay
       * within twice HELD_BYTES); refused otherwise.
       */
      const admit = (entry: Entry, size: number) => {
        const idle = held.length === 0
        const room = heldBytes() + size > 2 * HELD_BYTES ? 0 : tokens + HOLD_CAP - held.length
        if (room < 1) {
          refusing = true
          refusedBytes += size
        } else {
          frameBytes.set(entry.frame, size)
          held.push(entry)
          if (idle) release()
        }
        if (closing === undefined && refusing && held.length === 0) closing = 1013
        if (!paused && overBytes()) paused = true
      }
      /** Refusing: a frame is ignored (never acknowledged), the client resends it after the 1013 that is coming. */
      const ignore = (size: number) => {
        refusedBytes += size
        if (!paused && overBytes()) paused = true
      }
      const pongsSent = () => fake.sent.filter((f) => f === '{"t":"pong"}').length
      let closed: { code: number; reason: string } | undefined
      /** What the model expects of a timer step: the close it causes, if any (then the connection's held work is gone). */
      const expectCloses = (before: number) => {
        const code = closing
        expect(fake.closes.slice(before).map((c) => c.code)).toEqual(code === undefined ? [] : [code])
        if (code === 1013) expect(fake.closes[before].reason).toMatch(/rate limit/)
        closed = fake.closes[before]
      }
      /** One token's time: the release timer fires exactly then (every step and timer is at a multiple of it). */
      const tickOnce = async () => {
        const before = fake.closes.length
        await vi.advanceTimersByTimeAsync(1000 / RATE)
        await microtasks()
        if (held.length > 0) {
          // Owed to the held work, whatever the burst.
          tokens++
          release()
        } else tokens = Math.min(BP_BURST, tokens + 1)
        if (paused && heldBytes() < HELD_BYTES / 2 && refusedBytes < HELD_BYTES) paused = false
        sentSeq = txSeq + requests.length
        expectCloses(before)
      }
      /** A long wait: held work is released as tokens accrue, the bucket refills, replies go out; then a refusal closes. */
      const wait = async () => {
        const before = fake.closes.length
        await vi.advanceTimersByTimeAsync(DRAIN)
        await microtasks()
        for (let t = 0; t < DRAIN / (1000 / RATE) && closing === undefined; t++) {
          if (held.length > 0) {
            tokens++
            release()
          } else tokens = Math.min(BP_BURST, tokens + 1)
          sentSeq = txSeq + requests.length
        }
        if (closing === undefined) paused = false
        expectCloses(before)
      }
      /** The client closed: its close frame was read. */
      let bye = false
      for (const [index, item] of conversation.entries()) {
        if (item.kind === 'bye') {
          // ws emits nothing more once it has read the close frame; the close event comes later.
          ;(fake.ws as unknown as { readyState: number }).readyState = 2 // CLOSING
          bye = true
          held = [] // never delivered (the client resends it if it resumes)
          break
        }
        if (item.kind === 'wait') await wait()
        else if (item.kind === 'tick') await tickOnce()
        else {
          const bigFrame: ClientFrame | undefined =
            item.kind === 'big' ? { t: 'msg', s: arrived + 1, d: Array.from({ length: item.n }, (_, i) => `big ${index}.${i}`) } : undefined
          // A big frame's bytes are whitespace, which costs JSON.parse next to nothing.
          const input: Incoming = bigFrame ? { text: `${JSON.stringify(bigFrame)}${PAD}` } : render(item as Step, arrived, index)
          const size = sizeOf(input)
          const frame = bigFrame ?? parse(input)
          // The client numbers what it sends after what it sent before.
          if (typeof frame === 'object' && (frame.t === 'msg' || frame.t === 'req') && frame.s <= arrived + 1) {
            arrived = Math.max(arrived, frame.s + (frame.t === 'msg' ? frame.d.length : 1) - 1)
          }
          const binary = 'bytes' in input && input.binary
          if (binary) closing = 1007
          else if (size <= DECODE_AT_ONCE) {
            // Decoded on arrival: a bad frame or a second hello closes now; an ack is applied now, its token owed.
            if (typeof frame === 'number') closing = frame
            else if (frame?.t === 'hello') closing = 1002
            else if (frame?.t === 'ack') {
              if (frame.s > sentSeq) closing = 1002
              // An ack that moves the acknowledged sequence is free.
              else if (frame.s > acked) acked = frame.s
              else if (!refusing) admit({ kind: 'owed', frame: index }, size)
            } else if (refusing) ignore(size)
            else admit({ kind: 'frame', decoded: frame, frame: index }, size)
          } else if (refusing) ignore(size)
          else admit({ kind: 'frame', decoded: frame, frame: index }, size)
          const before = fake.closes.length
          feed(fake, input)
          expectCloses(before)
        }
        // A closed connection's held work is discarded, never delivered.
        if (closed) held = []
        // After every step: what the handlers got, the pongs, what is held (bounded), and whether reading is paused.
        expect(handled.get(session.id) ?? []).toEqual(expected)
        expect(pongsSent()).toBe(pongs)
        expect(heldItemsOf(session)).toBe(held.length)
        expect(heldItemsOf(session)).toBeLessThanOrEqual(HOLD_CAP)
        if (closed) break
        expect(fake.reading.paused).toBe(paused)
      }
      if (!closed && !bye) await wait()
      else {
        // Time passing changes nothing for a closed connection, nor for one the client is closing.
        const before = fake.closes.length
        await vi.advanceTimersByTimeAsync(DRAIN)
        await microtasks()
        expect(handled.get(session.id) ?? []).toEqual(expected)
        expect(pongsSent()).toBe(pongs)
        expect(fake.closes.length).toBe(before)
      }
      expect(heldItemsOf(session)).toBe(0)
      expect(fake.reading.paused).toBe(false)
      // No release timer is left behind; a session whose connection was closed waits for a resume (sessionTtl).
      expect(session.connected).toBe(!closed)
      expect(vi.getTimerCount()).toBe(closed ? 1 : 0)
      expectWellFormed(fake.sent)
      const frames = fake.sent.map((f) => JSON.parse(f) as Record<string, unknown>)
      const acks = frames.filter((f) => f.t === 'ack').map((f) => f.s as number)
      // What was delivered is acknowledged, before any close; nothing more.
      expect(Math.max(0, ...acks)).toBe(rxSeq)
      if (!closed && !bye) {
        expect(Math.max(0, ...acks)).toBe(rxSeq)
        // Every request delivered got exactly one reply, in the server sequence.
        const replies = frames.filter((f) => f.t === 'res')
        expect(replies.map((r) => r.s)).toEqual(replies.map((_, i) => txSeq + 1 + i))
        expect(replies.map((r) => r.id as number).sort()).toEqual([...requests].sort())
      }
      fake.emitter.emit('close', closed?.code ?? 1000)
      expect(session.connected).toBe(false)
      // Resuming, the client learns exactly what was delivered and resends from there: nothing
      // held and dropped is lost, nothing delivered is delivered twice, and the new connection starts clean.
      const again = fakeSocket()
      attachConnection(again.ws, undefined, bpHooks)
      feed(again, { text: JSON.stringify({ t: 'hello', sid: session.id, ack: 0 }) })
      expect(JSON.parse(again.sent[0])).toMatchObject({ t: 'welcome', sid: session.id, resumed: true, ack: rxSeq })
      expect(feed(again, { text: JSON.stringify({ t: 'msg', s: rxSeq + 1, d: ['resent'] }) })).toBeUndefined()
      expect(handled.get(session.id)?.at(-1)).toEqual(['msg', 'resent'])
      expect(again.reading.paused).toBe(false)
      session.end()
    } finally {
      vi.useRealTimers()
    }
  }

  it('delivered at once up to the bucket, the rest held in order and released as it refills, or refused beyond MAX_HOLD; nothing after the client closed; exactly once, in order, bounded', async () => {
    await fc.assert(fc.asyncProperty(steps, follows), { numRuns: 200 })
  })

  it('reading goes on while work is held, stops once maxHeldBytes are held and resumes under half of it; a frame beyond twice that is refused', async () => {
    await fc.assert(fc.asyncProperty(flood, follows), { numRuns: 50 })
  })
})
