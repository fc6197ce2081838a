// @vitest-environment node
/**
 * Property-based tests of the tether.v1 codec (fast-check): the encoders round-trip any JSON
 * value through decodeFrame, decodeFrame is total over any input (a frame, `undefined`, or a
 * FrameError with 1002/1007, never another exception), what it returns is well-typed as
 * docs/PROTOCOL.md §3 describes, every well-formed frame is accepted whatever unknown members
 * it carries, and nothing pollutes a prototype.
 *
 * frames.test.ts holds the hand-picked cases; this file explores the space around them.
 */
import fc from 'fast-check'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  type ClientFrame,
  decodeFrame,
  encodeFrame,
  encodePayload,
  FrameError,
  missFrame,
  msgFrame,
  reqFrame,
  resFrame,
  type ServerFrame,
} from '../../src/protocol/frames.js'
import { anyString, expectNoPollution, hostileJsonText, prototypeSnapshot, wireData } from '../support/hostile.js'

// Each property runs a few hundred cases: a couple of seconds, more on a loaded machine.
vi.setConfig({ testTimeout: 15_000 })

type Side = 'client' | 'server'

const decode = (data: unknown, from: Side): ClientFrame | ServerFrame | undefined =>
  from === 'client' ? decodeFrame(data, 'client') : decodeFrame(data, 'server')

const side = fc.constantFrom<Side>('client', 'server')
/** Topic names: any non-empty string, unicode and lone surrogates included. */
const topic = anyString.filter((s) => s !== '')
/** Sequence numbers: JSON integers from 1 to 2^53 − 1 (§2), biased to both ends. */
const seq = fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }))
/** Request ids and acks: integers ≥ 0. */
const nat = fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }))
/**
 * JSON values, also with unicode and lone-surrogate strings, and with hostile keys. Passed
 * through JSON once, because -0 (which fast-check may generate) has no JSON text: it is 0 on
 * the wire, as everywhere JSON is used.
 */
const json = fc
  .oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.jsonValue({ stringUnit: 'binary', maxDepth: 3 }),
    fc.object({
      key: fc.constantFrom('__proto__', 'constructor', 'prototype', 't', 's', 'd', 'toString'),
      values: [fc.jsonValue()],
      maxDepth: 2,
    }),
  )
  .map((value) => JSON.parse(JSON.stringify(value)) as unknown)

const snapshot = prototypeSnapshot()
afterEach(() => expectNoPollution(snapshot))

describe('encoders round-trip through decodeFrame', () => {
  it('msgFrame(s, payloads) decodes, on either side, to the same s and the same values in order', () => {
    fc.assert(
      fc.property(seq, fc.array(json, { minLength: 1, maxLength: 5 }), side, (s, values, from) => {
        const payloads = values.map(encodePayload)
        const frame = msgFrame(s, payloads)
        expect(decode(frame, from)).toEqual({ t: 'msg', s, d: values })
        // The frame is exactly the JSON of what it decodes to: nothing was re-encoded or reordered.
        expect(frame).toBe(JSON.stringify({ t: 'msg', s, d: values }))
      }),
      { numRuns: 300 },
    )
  })

  it('msgFrame(s, payloads, topic) decodes, from the server, to the same s, topic and values; missFrame to the same s, topic and count', () => {
    fc.assert(
      fc.property(seq, fc.array(json, { minLength: 1, maxLength: 5 }), topic, seq, (s, values, tp, n) => {
        const frame = msgFrame(s, values.map(encodePayload), tp)
        expect(decodeFrame(frame, 'server')).toEqual({ t: 'msg', s, tp, d: values })
        expect(frame).toBe(JSON.stringify({ t: 'msg', s, tp, d: values }))
        expect(decodeFrame(missFrame(s, tp, n), 'server')).toEqual({ t: 'miss', s, tp, n })
        expect(missFrame(s, tp, n)).toBe(JSON.stringify({ t: 'miss', s, tp, n }))
      }),
      { numRuns: 300 },
    )
  })

  it('reqFrame(s, id, payload) decodes, from the client, to the same s, id and value', () => {
    fc.assert(
      fc.property(seq, nat, json, (s, id, value) => {
        expect(decodeFrame(reqFrame(s, id, encodePayload(value)), 'client')).toEqual({ t: 'req', s, id, d: value })
      }),
      { numRuns: 300 },
    )
  })

  it('resFrame(s, id, payload) decodes, from the server, to the same s, id and value; no payload is null', () => {
    fc.assert(
      fc.property(seq, nat, fc.option(json, { nil: undefined }), (s, id, value) => {
        const payload = value === undefined ? undefined : encodePayload(value)
        expect(decodeFrame(resFrame(s, id, payload), 'server')).toEqual({ t: 'res', s, id, d: value === undefined ? null : value })
      }),
      { numRuns: 300 },
    )
  })

  it('resFrame with an error carries any code and message unchanged, and no d', () => {
    fc.assert(
      fc.property(seq, nat, anyString, anyString, json, (s, id, code, message, ignored) => {
        const frame = decodeFrame(resFrame(s, id, encodePayload(ignored), { code, message }), 'server')
        expect(frame).toEqual({ t: 'res', s, id, err: { code, message } })
        expect(frame).not.toHaveProperty('d')
      }),
      { numRuns: 300 },
    )
  })

  it('encodeFrame writes hello, ack, ping, welcome and pong frames that decode to themselves', () => {
    fc.assert(
      fc.property(fc.option(anyString, { nil: null }), nat, nat, anyString, fc.boolean(), seq, (sid, ack, s, welcomeSid, resumed, max) => {
        const hello = { t: 'hello', sid, ack } as const
        expect(decodeFrame(encodeFrame(hello), 'client')).toEqual(hello)
        expect(decodeFrame(encodeFrame({ t: 'ack', s }), 'client')).toEqual({ t: 'ack', s })
        expect(decodeFrame(encodeFrame({ t: 'ack', s }), 'server')).toEqual({ t: 'ack', s })
        expect(decodeFrame(encodeFrame({ t: 'ping' }), 'client')).toEqual({ t: 'ping' })
        expect(decodeFrame(encodeFrame({ t: 'pong' }), 'server')).toEqual({ t: 'pong' })
        const welcome = { t: 'welcome', sid: `s${welcomeSid}`, resumed, ack, max } as const
        expect(decodeFrame(encodeFrame(welcome), 'server')).toEqual(welcome)
      }),
      { numRuns: 300 },
    )
  })

  it('encodePayload is JSON.stringify for every JSON value, and JSON.parse gives the value back', () => {
    fc.assert(
      fc.property(json, (value) => {
        const text = encodePayload(value)
        expect(text).toBe(JSON.stringify(value))
        expect(JSON.parse(text)).toEqual(value)
      }),
      { numRuns: 300 },
    )
  })
})

// ── decodeFrame over any input ────────────────────────────────────────────────

/** The frame-type grammar of docs/PROTOCOL.md §3, written independently of decodeFrame. */
const isSafeNat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isSeq = (v: unknown) => isSafeNat(v) && v >= 1
const isJson = (v: unknown): boolean => {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true
  if (typeof v === 'number') return Number.isFinite(v)
  if (Array.isArray(v)) return v.every(isJson)
  if (typeof v === 'object') return Object.getPrototypeOf(v) === Object.prototype && Object.values(v as object).every(isJson)
  return false
}

/** Whether `frame`, as returned by decodeFrame, is well-typed for a frame from `from`. */
function wellTyped(frame: Record<string, unknown>, from: Side): boolean {
  if (Object.getPrototypeOf(frame) !== Object.prototype || !isJson(frame)) return false
  switch (frame.t) {
    case 'msg':
      // A server's msg may name its topic (§13); on a client's, tp is an unknown member.
      return (
        isSeq(frame.s) &&
        Array.isArray(frame.d) &&
        frame.d.length > 0 &&
        (from === 'client' || frame.tp === undefined || (typeof frame.tp === 'string' && frame.tp !== ''))
      )
    case 'miss':
      return from === 'server' && isSeq(frame.s) && typeof frame.tp === 'string' && frame.tp !== '' && isSeq(frame.n)
    case 'ack':
      return isSafeNat(frame.s)
    case 'ping':
      return from === 'client'
    case 'pong':
      return from === 'server'
    case 'hello':
      return (
        from === 'client' &&
        (frame.sid === null || typeof frame.sid === 'string') &&
        isSafeNat(frame.ack) &&
        (frame.sent === undefined || isSafeNat(frame.sent))
      )
    case 'req':
      return from === 'client' && isSeq(frame.s) && isSafeNat(frame.id) && Object.hasOwn(frame, 'd')
    case 'welcome':
      return (
        from === 'server' &&
        typeof frame.sid === 'string' &&
        frame.sid !== '' &&
        typeof frame.resumed === 'boolean' &&
        isSafeNat(frame.ack) &&
        isSeq(frame.max) &&
        (frame.reqs === undefined || isSeq(frame.reqs)) &&
        (frame.sent === undefined || isSafeNat(frame.sent))
      )
    case 'res': {
      if (from !== 'server' || !isSeq(frame.s) || !isSafeNat(frame.id)) return false
      const err = frame.err as Record<string, unknown> | undefined
      // Exactly one of a reply and an error (PROTOCOL.md §3.6).
      if (Object.hasOwn(frame, 'd') === (err !== undefined)) return false
      return (
        err === undefined || (typeof err === 'object' && err !== null && typeof err.code === 'string' && typeof err.message === 'string')
      )
    }
    default:
      return false // unknown types are returned as undefined, never as a frame
  }
}

/**
 * What decodeFrame does with `data`: a well-typed frame, `undefined`, or a FrameError whose
 * code is 1007 exactly when the data is not JSON text and 1002 otherwise. Anything else fails.
 */
function checkDecode(data: unknown, from: Side): 'frame' | 'ignored' | 1002 | 1007 {
  let isJsonText = typeof data === 'string'
  if (isJsonText) {
    try {
      JSON.parse(data as string)
    } catch {
      isJsonText = false
    }
  }
  let frame: ClientFrame | ServerFrame | undefined
  try {
    frame = decode(data, from)
  } catch (error) {
    expect(error).toBeInstanceOf(FrameError)
    const { closeCode } = error as FrameError
    expect(closeCode).toBe(isJsonText ? 1002 : 1007)
    return closeCode as 1002 | 1007
  }
  expect(isJsonText).toBe(true)
  if (frame === undefined) {
    // Ignored: a JSON object with a string t whose type is unknown or belongs to the other side.
    const parsed = JSON.parse(data as string)
    expect(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) && typeof parsed.t === 'string').toBe(true)
    return 'ignored'
  }
  expect(wellTyped(frame as unknown as Record<string, unknown>, from), JSON.stringify(frame)).toBe(true)
  return 'frame'
}

/** Values that sit on the edges of the field types. */
const edge = fc.oneof(
  fc.constantFrom(0, 1, -1, 1.5, 2 ** 53, 2 ** 53 - 1, -0, 1e308, null, true, false, '', '1', [], {}, [1], { code: 'E', message: 'm' }),
  fc.integer({ min: -3, max: 5 }),
  anyString,
  fc.jsonValue({ maxDepth: 1 }),
)
/** Often a valid field value, often not. */
const field = (valid: fc.Arbitrary<unknown>) => fc.oneof({ weight: 3, arbitrary: valid }, { weight: 1, arbitrary: edge })
/** Objects shaped like frames: a known (or unknown) `t` and any subset of the fields, each valid or not. */
const frameLike = fc.record(
  {
    t: fc.oneof(
      { weight: 9, arbitrary: fc.constantFrom('hello', 'welcome', 'msg', 'miss', 'req', 'res', 'ack', 'ping', 'pong') },
      { weight: 1, arbitrary: anyString },
    ),
    s: field(fc.integer({ min: 0, max: 5 })),
    d: field(fc.array(fc.jsonValue({ maxDepth: 1 }), { minLength: 1, maxLength: 3 })),
    id: field(fc.integer({ min: 0, max: 5 })),
    sid: field(fc.option(anyString, { nil: null })),
    ack: field(fc.integer({ min: 0, max: 5 })),
    resumed: field(fc.boolean()),
    max: field(fc.integer({ min: 1, max: 2 ** 20 })),
    err: field(fc.record({ code: anyString, message: anyString })),
    sent: field(fc.integer({ min: 0, max: 5 })),
    tp: field(topic),
    n: field(fc.integer({ min: 1, max: 5 })),
    ['__proto__']: edge,
    constructor: edge,
  },
  { requiredKeys: [] },
)

describe('decodeFrame is total', () => {
  it('any string: a well-typed frame, ignored, or a FrameError (1007 iff not JSON, else 1002)', () => {
    fc.assert(
      fc.property(anyString, side, (data, from) => {
        checkDecode(data, from)
      }),
      { numRuns: 500 },
    )
  })

  it('any binary data (ArrayBuffer, typed array, Buffer): a FrameError with 1007', () => {
    fc.assert(
      fc.property(wireData.bytes, side, (bytes, from) => {
        for (const data of [bytes.buffer, bytes, Buffer.from(bytes)]) expect(checkDecode(data, from)).toBe(1007)
      }),
      { numRuns: 200 },
    )
  })

  it('any JSON text (hostile keys included): a well-typed frame, ignored, or 1002', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          json.map((v) => JSON.stringify(v)),
          hostileJsonText,
        ),
        side,
        (data, from) => {
          expect(checkDecode(data, from)).not.toBe(1007)
        },
      ),
      { numRuns: 500 },
    )
  })

  it('any frame-shaped object: a well-typed frame, ignored, or 1002, and a returned frame is the JSON it came from', () => {
    const outcomes: Record<string, number> = {}
    fc.assert(
      fc.property(frameLike, side, (candidate, from) => {
        const text = JSON.stringify(candidate)
        const outcome = checkDecode(text, from)
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
        if (outcome === 'frame') expect(decode(text, from)).toEqual(JSON.parse(text))
      }),
      { numRuns: 500 },
    )
    // The generator reaches all three outcomes, not only the refusals.
    expect(Object.keys(outcomes).sort()).toEqual(['1002', 'frame', 'ignored'])
  })

  it('values that are not text at all (numbers, objects, null, undefined): a FrameError with 1007', () => {
    fc.assert(
      fc.property(
        fc.anything().filter((v) => typeof v !== 'string'),
        side,
        (data, from) => {
          expect(checkDecode(data, from)).toBe(1007)
        },
      ),
      { numRuns: 200 },
    )
  })
})

// ── every well-formed frame is accepted ───────────────────────────────────────

/** Every member name a frame of tether.v1 defines (PROTOCOL.md): an unknown one is none of them. */
const KNOWN_MEMBERS = ['t', 's', 'd', 'id', 'sid', 'ack', 'acked', 'sent', 'resumed', 'max', 'reqs', 'reason', 'err', 'tp', 'n', 'a', 'pa']

/** Members a future minor version might add (§1: receivers MUST ignore members they do not know). */
const extras = fc.dictionary(
  anyString.filter((k) => !KNOWN_MEMBERS.includes(k)),
  json,
  { maxKeys: 3 },
)

const clientFrames: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ t: fc.constant('hello'), sid: fc.option(anyString, { nil: null }), ack: nat }),
  fc.record({ t: fc.constant('msg'), s: seq, d: fc.array(json, { minLength: 1, maxLength: 4 }) }),
  fc.record({ t: fc.constant('req'), s: seq, id: nat, d: json }),
  fc.record({ t: fc.constant('ack'), s: nat }),
  fc.constant({ t: 'ping' }),
)

const serverFrames: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record(
    { t: fc.constant('welcome'), sid: anyString.map((s) => `x${s}`), resumed: fc.boolean(), ack: nat, max: seq, sent: nat },
    { requiredKeys: ['t', 'sid', 'resumed', 'ack', 'max'] },
  ),
  fc.record({ t: fc.constant('msg'), s: seq, d: fc.array(json, { minLength: 1, maxLength: 4 }) }),
  fc.record({ t: fc.constant('msg'), s: seq, tp: topic, d: fc.array(json, { minLength: 1, maxLength: 4 }) }),
  fc.record({ t: fc.constant('miss'), s: seq, tp: topic, n: seq }),
  fc.record({ t: fc.constant('res'), s: seq, id: nat, d: json }),
  fc.record({ t: fc.constant('res'), s: seq, id: nat, err: fc.record({ code: anyString, message: anyString }) }),
  fc.record({ t: fc.constant('ack'), s: nat }),
  fc.constant({ t: 'pong' }),
)

describe('every well-formed frame is accepted, with any unknown members', () => {
  it.each([
    ['client', clientFrames],
    ['server', serverFrames],
  ] as const)('from the %s', (from, frames) => {
    fc.assert(
      fc.property(frames, extras, (frame, extra) => {
        const text = JSON.stringify({ ...extra, ...frame })
        expect(decode(text, from)).toEqual(JSON.parse(text))
        // The same frame from the other side is either accepted too (msg, ack) or ignored, never an error.
        const other: Side = from === 'client' ? 'server' : 'client'
        const there = decode(text, other)
        expect(there === undefined || ['msg', 'ack'].includes(frame.t as string)).toBe(true)
      }),
      { numRuns: 200 },
    )
  })
})
