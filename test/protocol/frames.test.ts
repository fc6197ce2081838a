// @vitest-environment node
/**
 * tether.v1 frames: the grammar as decodeFrame enforces it, and the encoders that must
 * produce exactly what it accepts.
 */
import { describe, expect, it } from 'vitest'
import {
  CloseCode,
  decodeFrame,
  encodeFrame,
  encodePayload,
  FrameError,
  MSG_OVERHEAD,
  missFrame,
  missHead,
  missTail,
  msgBatcher,
  msgFrame,
  reqFrame,
  resFrame,
  SUBPROTOCOL,
} from '../../src/protocol/frames.js'

type Side = 'client' | 'server'

const decode = (data: unknown, from: Side) => (from === 'client' ? decodeFrame(data, 'client') : decodeFrame(data, 'server'))

/** The FrameError decodeFrame throws for `data`, or fails the test when it does not throw one. */
function refusal(data: unknown, from: Side): FrameError {
  try {
    decode(data, from)
  } catch (error) {
    expect(error).toBeInstanceOf(FrameError)
    return error as FrameError
  }
  throw new Error(`decodeFrame accepted ${typeof data === 'string' ? data : String(data)} from the ${from}`)
}

const json = (value: unknown) => JSON.stringify(value)

describe('constants', () => {
  it('names the subprotocol tether.v1', () => {
    expect(SUBPROTOCOL).toBe('tether.v1')
  })

  it('uses 1002 for protocol errors and 1007 for invalid data', () => {
    expect(CloseCode.PROTOCOL_ERROR).toBe(1002)
    expect(CloseCode.INVALID_DATA).toBe(1007)
  })
})

describe('decodeFrame: valid frames from the client', () => {
  it.each([
    ['hello, new session', { t: 'hello', sid: null, ack: 0 }],
    ['hello, resuming', { t: 'hello', sid: 'abc_-123', ack: 42 }],
    ['msg with one payload', { t: 'msg', s: 1, d: [{ a: 1 }] }],
    ['msg with several payloads', { t: 'msg', s: 7, d: [1, 'two', null, [3], { four: 4 }, true] }],
    ['req', { t: 'req', s: 3, id: 9, d: { op: 'sum', args: [1, 2] } }],
    ['req with a null payload', { t: 'req', s: 3, id: 9, d: null }],
    ['req with id 0', { t: 'req', s: 1, id: 0, d: 1 }],
    ['ack', { t: 'ack', s: 12 }],
    ['ack of nothing yet', { t: 'ack', s: 0 }],
    ['ping', { t: 'ping' }],
  ])('%s', (_name, frame) => {
    expect(decodeFrame(json(frame), 'client')).toEqual(frame)
  })
})

describe('decodeFrame: valid frames from the server', () => {
  it.each([
    ['welcome, new session', { t: 'welcome', sid: 's1', resumed: false, ack: 0, max: 1048576 }],
    ['welcome, resumed', { t: 'welcome', sid: 's1', resumed: true, ack: 17, max: 1 }],
    ['welcome saying how far the server sent', { t: 'welcome', sid: 's1', resumed: true, ack: 17, max: 1, sent: 9 }],
    ['welcome of a session that sent nothing', { t: 'welcome', sid: 's1', resumed: false, ack: 0, max: 1, sent: 0 }],
    ['msg', { t: 'msg', s: 1, d: ['hi'] }],
    ['msg published to a topic', { t: 'msg', s: 1, tp: 'room:42', d: ['hi', { n: 2 }] }],
    ['miss', { t: 'miss', s: 3, tp: 'room:42', n: 17 }],
    ['miss of one message', { t: 'miss', s: 1, tp: 'x', n: 1 }],
    ['res with a value', { t: 'res', s: 2, id: 1, d: { ok: true } }],
    ['res with a null value', { t: 'res', s: 2, id: 1, d: null }],
    ['res with an error', { t: 'res', s: 2, id: 1, err: { code: 'E_NOPE', message: 'no' } }],
    ['ack', { t: 'ack', s: 5 }],
    ['ack of nothing yet', { t: 'ack', s: 0 }],
    ['pong', { t: 'pong' }],
  ])('%s', (_name, frame) => {
    expect(decodeFrame(json(frame), 'server')).toEqual(frame)
  })

  it('keeps extra fields it does not know (forward compatibility)', () => {
    expect(decodeFrame(json({ t: 'ack', s: 1, future: [1] }), 'server')).toEqual({ t: 'ack', s: 1, future: [1] })
  })
})

describe('decodeFrame: direction', () => {
  it.each([
    ['welcome', 'client', { t: 'welcome', sid: 's1', resumed: false, ack: 0, max: 100 }],
    ['res', 'client', { t: 'res', s: 1, id: 1, d: 1 }],
    ['pong', 'client', { t: 'pong' }],
    ['hello', 'server', { t: 'hello', sid: null, ack: 0 }],
    ['req', 'server', { t: 'req', s: 1, id: 1, d: 1 }],
    ['ping', 'server', { t: 'ping' }],
    ['miss', 'client', { t: 'miss', s: 1, tp: 'room', n: 1 }],
  ] as const)('a "%s" frame from the %s is not theirs to send: ignored (undefined)', (_t, from, frame) => {
    expect(decode(json(frame), from)).toBeUndefined()
  })

  it.each(['client', 'server'] as const)('a frame of an unknown type from the %s is ignored (undefined)', (from) => {
    expect(decode(json({ t: 'subscribe', topic: 'x' }), from)).toBeUndefined()
    expect(decode(json({ t: '' }), from)).toBeUndefined()
    expect(decode(json({ t: 'MSG', s: 'not even checked' }), from)).toBeUndefined()
  })
})

describe('decodeFrame: data that is not JSON text → 1007', () => {
  it.each([
    ['an ArrayBuffer', new ArrayBuffer(4)],
    ['a Uint8Array', new TextEncoder().encode('{"t":"ping"}')],
    ['a Buffer', Buffer.from('{"t":"ping"}')],
    ['a Blob', new Blob(['{"t":"ping"}'])],
  ])('binary: %s', (_name, data) => {
    for (const from of ['client', 'server'] as const) expect(refusal(data, from).closeCode).toBe(1007)
  })

  it.each([
    ['empty text', ''],
    ['truncated JSON', '{"t":"ping"'],
    ['single quotes', "{'t':'ping'}"],
    ['trailing garbage', '{"t":"ping"} x'],
    ['a bare word', 'ping'],
    ['NaN', '{"t":"msg","s":1,"d":[NaN]}'],
  ])('not JSON: %s', (_name, data) => {
    for (const from of ['client', 'server'] as const) expect(refusal(data, from).closeCode).toBe(1007)
  })
})

describe('decodeFrame: structure → 1002', () => {
  it.each([
    ['null', 'null'],
    ['a number', '42'],
    ['a string', '"ping"'],
    ['a boolean', 'true'],
    ['an array', '[{"t":"ping"}]'],
    ['an empty array', '[]'],
    ['an object without t', '{"s":1}'],
    ['t a number', '{"t":1}'],
    ['t null', '{"t":null}'],
    ['t an array', '{"t":["ping"]}'],
    ['t an object', '{"t":{"t":"ping"}}'],
  ])('not an object with a string t: %s', (_name, data) => {
    for (const from of ['client', 'server'] as const) expect(refusal(data, from).closeCode).toBe(1002)
  })

  /** Values of `s` that are never a sequence number. */
  const notASeq: [string, unknown][] = [
    ['missing', undefined],
    ['negative', -1],
    ['fractional', 1.5],
    ['a numeric string', '1'],
    ['null', null],
    ['unsafe (2^53)', 2 ** 53],
    ['an array', [1]],
    ['a boolean', true],
  ]

  describe('s of msg, req and res must be a positive safe integer', () => {
    const frames: [Side, Record<string, unknown>][] = [
      ['client', { t: 'msg', d: [1] }],
      ['server', { t: 'msg', d: [1] }],
      ['client', { t: 'req', id: 1, d: 1 }],
      ['server', { t: 'res', id: 1, d: 1 }],
    ]
    for (const [from, frame] of frames) {
      it.each([...notASeq, ['zero', 0]])(`${frame.t} from the ${from}: s %s`, (_name, s) => {
        const error = refusal(json({ ...frame, s }), from)
        expect(error.closeCode).toBe(1002)
        expect(error.message).toContain('"s"')
      })
    }
  })

  describe('s of ack must be a non-negative safe integer', () => {
    for (const from of ['client', 'server'] as const) {
      it.each(notASeq)(`ack from the ${from}: s %s`, (_name, s) => {
        expect(refusal(json({ t: 'ack', s }), from).closeCode).toBe(1002)
      })
    }
  })

  it.each([
    ['missing', undefined],
    ['empty', []],
    ['an object', { 0: 1 }],
    ['a string', 'x'],
    ['null', null],
  ])('msg d must be a non-empty array: %s', (_name, d) => {
    for (const from of ['client', 'server'] as const) {
      const error = refusal(json({ t: 'msg', s: 1, d }), from)
      expect(error.closeCode).toBe(1002)
      expect(error.message).toContain('"d"')
    }
  })

  it.each([
    ['missing', undefined],
    ['a number', 1],
    ['an object', { id: 'x' }],
    ['a boolean', false],
  ])('hello sid must be null or a string: %s', (_name, sid) => {
    const error = refusal(json({ t: 'hello', sid, ack: 0 }), 'client')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"sid"')
  })

  it.each(notASeq)('hello ack must be a non-negative safe integer: %s', (_name, ack) => {
    const error = refusal(json({ t: 'hello', sid: null, ack }), 'client')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"ack"')
  })

  const welcome = { t: 'welcome', sid: 's1', resumed: false, ack: 0, max: 1000 }

  it.each([
    ['missing', undefined],
    ['null', null],
    ['empty', ''],
    ['a number', 7],
  ])('welcome sid must be a non-empty string: %s', (_name, sid) => {
    const error = refusal(json({ ...welcome, sid }), 'server')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"sid"')
  })

  it.each([
    ['missing', undefined],
    ['a string', 'true'],
    ['a number', 1],
  ])('welcome resumed must be a boolean: %s', (_name, resumed) => {
    expect(refusal(json({ ...welcome, resumed }), 'server').closeCode).toBe(1002)
  })

  it.each(notASeq)('welcome ack must be a non-negative safe integer: %s', (_name, ack) => {
    const error = refusal(json({ ...welcome, ack }), 'server')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"ack"')
  })

  it.each([...notASeq, ['zero', 0]])('welcome max must be a positive safe integer: %s', (_name, max) => {
    const error = refusal(json({ ...welcome, max }), 'server')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"max"')
  })

  it.each(notASeq.filter(([name]) => name !== 'missing'))(
    'welcome sent, when present, must be a non-negative safe integer: %s',
    (_name, sent) => {
      const error = refusal(json({ ...welcome, sent }), 'server')
      expect(error.closeCode).toBe(1002)
      expect(error.message).toContain('"sent"')
    },
  )

  it.each([
    ['missing', undefined],
    ['fractional', 1.5],
    ['negative', -1],
    ['a string', '1'],
    ['null', null],
  ])('req id must be a non-negative integer: %s', (_name, id) => {
    const error = refusal(json({ t: 'req', s: 1, id, d: 1 }), 'client')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"id"')
  })

  it.each([
    ['missing', undefined],
    ['fractional', 2.5],
    ['a string', '2'],
  ])('res id must be a non-negative integer: %s', (_name, id) => {
    const error = refusal(json({ t: 'res', s: 1, id, d: 1 }), 'server')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"id"')
  })

  it('req must carry d', () => {
    const error = refusal(json({ t: 'req', s: 1, id: 1 }), 'client')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"d"')
  })

  it.each([
    ['null', null],
    ['a string', 'E_FAIL'],
    ['an array', ['E_FAIL', 'msg']],
    ['without code', { message: 'm' }],
    ['without message', { code: 'E' }],
    ['a numeric code', { code: 500, message: 'm' }],
    ['a non-string message', { code: 'E', message: { text: 'm' } }],
  ])('res err must be {code: string, message: string}: %s', (_name, err) => {
    const error = refusal(json({ t: 'res', s: 1, id: 1, err }), 'server')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"err"')
  })
})

describe('decodeFrame: topics (PROTOCOL.md §13)', () => {
  /** Values that are never a topic: §13 topics are non-empty strings. */
  const notATopic: [string, unknown][] = [
    ['empty', ''],
    ['a number', 7],
    ['null', null],
    ['an array', ['room']],
    ['an object', { name: 'room' }],
    ['a boolean', true],
  ]

  it.each(notATopic)('a msg from the server with a tp that is not a non-empty string is refused with 1002: %s', (_name, tp) => {
    const error = refusal(json({ t: 'msg', s: 1, tp, d: [1] }), 'server')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"tp"')
  })

  it('a tp on a client msg is a member the server does not know: kept and ignored, as any unknown member (§1.6)', () => {
    expect(decodeFrame(json({ t: 'msg', s: 1, tp: '', d: [1] }), 'client')).toEqual({ t: 'msg', s: 1, tp: '', d: [1] })
  })

  it.each([...notATopic, ['missing', undefined]])('miss tp must be a non-empty string: %s', (_name, tp) => {
    const error = refusal(json({ t: 'miss', s: 1, tp, n: 1 }), 'server')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"tp"')
  })

  it.each([
    ['missing', undefined],
    ['zero', 0],
    ['negative', -1],
    ['fractional', 1.5],
    ['a numeric string', '1'],
    ['null', null],
    ['unsafe (2^53)', 2 ** 53],
  ])('miss n must be a positive safe integer: %s', (_name, n) => {
    const error = refusal(json({ t: 'miss', s: 1, tp: 'room', n }), 'server')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"n"')
  })

  it.each([
    ['missing', undefined],
    ['zero', 0],
    ['fractional', 1.5],
    ['a string', '1'],
  ])('miss s must be a positive safe integer (it is a sequenced item): %s', (_name, s) => {
    const error = refusal(json({ t: 'miss', s, tp: 'room', n: 1 }), 'server')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toContain('"s"')
  })

  it('missFrame encodes any topic as JSON text, and missHead + missTail is the same frame', () => {
    for (const topic of ['room', 'a"b\\c', 'é日🎉', '\u2028\n']) {
      const frame = missFrame(12, topic, 3)
      expect(decodeFrame(frame, 'server')).toEqual({ t: 'miss', s: 12, tp: topic, n: 3 })
      expect(missHead(12) + missTail(topic, 3)).toBe(frame)
    }
  })

  it('msgFrame with a topic writes "tp" between "s" and "d"; without one, the frame is as before', () => {
    expect(msgFrame(5, ['1', '"x"'], 'room "1"')).toBe('{"t":"msg","s":5,"tp":"room \\"1\\"","d":[1,"x"]}')
    expect(msgFrame(5, ['1'])).toBe('{"t":"msg","s":5,"d":[1]}')
  })
})

describe('decodeFrame: acks riding on data frames (PROTOCOL.md §2.9)', () => {
  it('a on msg, req (from the client) and msg, res (from the server) is an ack: a non-negative safe integer', () => {
    expect(decodeFrame('{"t":"msg","s":1,"a":0,"d":[1]}', 'client')).toEqual({ t: 'msg', s: 1, a: 0, d: [1] })
    expect(decodeFrame('{"t":"req","s":2,"a":5,"id":1,"d":1}', 'client')).toEqual({ t: 'req', s: 2, a: 5, id: 1, d: 1 })
    expect(decodeFrame('{"t":"msg","s":1,"a":3,"d":[1]}', 'server')).toEqual({ t: 'msg', s: 1, a: 3, d: [1] })
    expect(decodeFrame('{"t":"res","s":1,"a":3,"id":1,"d":null}', 'server')).toEqual({ t: 'res', s: 1, a: 3, id: 1, d: null })
    for (const a of ['-1', '1.5', '"1"', 'null', '9007199254740992']) {
      expect(refusal(`{"t":"msg","s":1,"a":${a},"d":[1]}`, 'client').message).toBe('"msg" frame has an invalid "a"')
      expect(refusal(`{"t":"req","s":1,"a":${a},"id":1,"d":1}`, 'client').closeCode).toBe(1002)
      expect(refusal(`{"t":"res","s":1,"a":${a},"id":1,"d":1}`, 'server').closeCode).toBe(1002)
    }
  })

  it('pa on hello and welcome is a boolean', () => {
    expect(decodeFrame('{"t":"hello","sid":null,"ack":0,"pa":true}', 'client')).toMatchObject({ pa: true })
    expect(decodeFrame('{"t":"welcome","sid":"x","resumed":false,"ack":0,"max":9,"pa":false}', 'server')).toMatchObject({ pa: false })
    expect(refusal('{"t":"hello","sid":null,"ack":0,"pa":1}', 'client').message).toBe('"hello" frame has an invalid "pa"')
    expect(refusal('{"t":"welcome","sid":"x","resumed":false,"ack":0,"max":9,"pa":"yes"}', 'server').closeCode).toBe(1002)
  })

  it('msgFrame and reqFrame write a right after s; the batcher puts the ack a source gives on its first frame only', () => {
    expect(msgFrame(4, ['1'], 'room', 2)).toBe('{"t":"msg","s":4,"a":2,"tp":"room","d":[1]}')
    expect(reqFrame(4, 9, '"q"', 3)).toBe('{"t":"req","s":4,"a":3,"id":9,"d":"q"}')
    let due: number | undefined = 7
    const acks = {
      takeAck: () => {
        const taken = due
        due = undefined
        return taken
      },
    }
    const frames: string[] = []
    const batcher = msgBatcher(1024, (frame) => frames.push(frame), acks)
    batcher.add(1, '1', 1)
    batcher.add(2, '2', 1, 'a')
    batcher.end()
    expect(frames).toEqual(['{"t":"msg","s":1,"a":7,"d":[1]}', '{"t":"msg","s":2,"tp":"a","d":[2]}'])
  })

  it('a msg frame with both numbers at their largest and its ack fits the room MSG_OVERHEAD keeps', () => {
    const frame = msgFrame(Number.MAX_SAFE_INTEGER, [], undefined, Number.MAX_SAFE_INTEGER)
    expect(frame.length).toBeLessThanOrEqual(MSG_OVERHEAD)
  })
})

describe('msgBatcher', () => {
  /** Batches `items` ([payload, topic?]) numbered from 1 within frames of `max` bytes: the frames written. */
  function batch(max: number, items: [unknown, string?][]): string[] {
    const frames: string[] = []
    const batcher = msgBatcher(max, (frame) => frames.push(frame))
    items.forEach(([value, topic], i) => {
      const payload = encodePayload(value)
      batcher.add(i + 1, payload, new TextEncoder().encode(payload).length, topic)
    })
    batcher.end()
    return frames
  }

  it('puts consecutive messages without a topic into one frame, exactly as msgFrame writes it', () => {
    expect(batch(1024, [[1], ['two'], [{ three: 3 }]])).toEqual([msgFrame(1, ['1', '"two"', '{"three":3}'])])
  })

  it('ends a frame where the topic changes, to a topic, between topics and back to none: one topic per frame', () => {
    const frames = batch(1024, [[1], [2, 'a'], [3, 'a'], [4, 'b'], [5], [6], [7, 'a']])
    expect(frames.map((frame) => decodeFrame(frame, 'server'))).toEqual([
      { t: 'msg', s: 1, d: [1] },
      { t: 'msg', s: 2, tp: 'a', d: [2, 3] },
      { t: 'msg', s: 4, tp: 'b', d: [4] },
      { t: 'msg', s: 5, d: [5, 6] },
      { t: 'msg', s: 7, tp: 'a', d: [7] },
    ])
  })

  it("counts a topic's member, in UTF-8 bytes, in the frame's size: frames fill up to the maximum, never beyond", () => {
    const topic = '日'.repeat(20) // 60 UTF-8 bytes, 20 UTF-16 units
    const member = `,"tp":"${topic}"` // 68 bytes
    const items = Array.from({ length: 10 }, (): [unknown, string] => ['xyz', topic]) // each payload 5 bytes, 1 more for its comma
    const max = 64 + 68 + 3 * 6 // the envelope as MSG_OVERHEAD counts it, the member, three payloads
    expect(new TextEncoder().encode(member).length).toBe(68)
    const frames = batch(max, items).map((frame) => decodeFrame(frame, 'server') as { s: number; tp: string; d: unknown[] })
    expect(frames.map(({ s, d }) => [s, d.length])).toEqual([
      [1, 3],
      [4, 3],
      [7, 3],
      [10, 1],
    ])
    expect(frames.every((frame) => frame.tp === topic)).toBe(true)
  })

  it('writes nothing when nothing was added, and nothing twice', () => {
    const frames: string[] = []
    const batcher = msgBatcher(1024, (frame) => frames.push(frame))
    batcher.end()
    batcher.add(1, '1', 1, 'a')
    batcher.end()
    batcher.end()
    expect(frames).toEqual(['{"t":"msg","s":1,"tp":"a","d":[1]}'])
  })
})

describe('decodeFrame: a res carries exactly one of d and err (PROTOCOL.md §3.6)', () => {
  it.each([
    ['both', { t: 'res', s: 1, id: 1, d: 1, err: { code: 'E', message: 'm' } }],
    ['neither', { t: 'res', s: 1, id: 1 }],
  ])('%s: refused with 1002', (_name, frame) => {
    const error = refusal(json(frame), 'server')
    expect(error.closeCode).toBe(1002)
    expect(error.message).toBe('"res" frame has an invalid "d"')
  })
})

describe('decodeFrame: __proto__ keys', () => {
  it('a "__proto__" key in a frame does not pollute Object.prototype', () => {
    const frame = decodeFrame('{"t":"msg","s":1,"d":[{"__proto__":{"polluted":true}}],"__proto__":{"hacked":1}}', 'client')
    expect(frame?.t).toBe('msg')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(({} as Record<string, unknown>).hacked).toBeUndefined()
    expect(Object.getPrototypeOf(frame)).toBe(Object.prototype)
  })

  it('a payload keeps "__proto__" as plain data, not as its prototype', () => {
    const frame = decodeFrame('{"t":"msg","s":1,"d":[{"__proto__":{"admin":true}}]}', 'server')
    const payload = (frame as { d: Record<string, unknown>[] }).d[0]
    expect(Object.getPrototypeOf(payload)).toBe(Object.prototype)
    expect(payload.admin).toBeUndefined()
    expect(Object.keys(payload)).toEqual(['__proto__'])
  })

  it('a "t" hidden under "__proto__" is not the frame type', () => {
    expect(refusal('{"__proto__":{"t":"ping"}}', 'client').closeCode).toBe(1002)
  })
})

/** Payloads every encoder must carry unchanged. */
const payloads: [string, unknown][] = [
  ['a nested object', { user: { id: 7, tags: ['a', 'b'], profile: { bio: null, active: true } } }],
  ['unicode', 'héllo wörld — 日本語 🎉 \u2028\u2029'],
  ['a lone surrogate', 'broken \ud800 pair'],
  ['quotes and backslashes', 'she said "hi" \\ and \\" left \n\t\r\b\f'],
  ['control characters', '\u0000\u0001\u001f'],
  ['closing brackets in a string', '"]}, {"t":"ack","s":99}'],
  ['an integer', 42],
  ['a negative float', -2.71e-7],
  ['a tiny float', 5e-324],
  ['a huge float', 1.7976931348623157e308],
  ['max safe integer', Number.MAX_SAFE_INTEGER],
  ['zero', 0],
  ['null', null],
  ['an empty string', ''],
  ['an empty object', {}],
  ['an empty array', []],
  ['an array of mixed values', [1, 'two', null, false, { three: [3] }, []]],
  ['true', true],
  ['false', false],
  ['keys needing escapes', { 'a"b': 1, 'c\\d': 2, '': 3, ü: 4 }],
]

describe('encoders round-trip through decodeFrame', () => {
  it.each(payloads)('msgFrame carries %s', (_name, payload) => {
    const frame = msgFrame(3, [encodePayload(payload)])
    expect(decodeFrame(frame, 'client')).toEqual({ t: 'msg', s: 3, d: [payload] })
    expect(decodeFrame(frame, 'server')).toEqual({ t: 'msg', s: 3, d: [payload] })
  })

  it('msgFrame carries many payloads in order', () => {
    const all = payloads.map(([, payload]) => payload)
    const frame = msgFrame(10, all.map(encodePayload))
    expect(decodeFrame(frame, 'server')).toEqual({ t: 'msg', s: 10, d: all })
  })

  it.each(payloads)('reqFrame carries %s', (_name, payload) => {
    expect(decodeFrame(reqFrame(5, 2, encodePayload(payload)), 'client')).toEqual({ t: 'req', s: 5, id: 2, d: payload })
  })

  it.each(payloads)('resFrame carries %s', (_name, payload) => {
    expect(decodeFrame(resFrame(8, 4, encodePayload(payload)), 'server')).toEqual({ t: 'res', s: 8, id: 4, d: payload })
  })

  it('resFrame without a payload answers null', () => {
    expect(decodeFrame(resFrame(1, 1, undefined), 'server')).toEqual({ t: 'res', s: 1, id: 1, d: null })
  })

  it('resFrame with an error carries the error (and no d)', () => {
    const err = { code: 'E_"QUOTED"', message: 'line\nbreak \\ and ünïcode' }
    expect(decodeFrame(resFrame(2, 6, undefined, err), 'server')).toEqual({ t: 'res', s: 2, id: 6, err })
  })

  it('encodeFrame writes control frames that decode to themselves', () => {
    const hello = { t: 'hello', sid: 'x"y', ack: 3 } as const
    const welcome = { t: 'welcome', sid: 's', resumed: true, ack: 1, max: 10 } as const
    expect(decodeFrame(encodeFrame(hello), 'client')).toEqual(hello)
    expect(decodeFrame(encodeFrame({ t: 'ack', s: 4 }), 'client')).toEqual({ t: 'ack', s: 4 })
    expect(decodeFrame(encodeFrame({ t: 'ping' }), 'client')).toEqual({ t: 'ping' })
    expect(decodeFrame(encodeFrame(welcome), 'server')).toEqual(welcome)
    expect(decodeFrame(encodeFrame({ t: 'pong' }), 'server')).toEqual({ t: 'pong' })
  })
})

describe('encodePayload', () => {
  it.each([
    ['undefined', undefined],
    ['a function', () => 1],
    ['a symbol', Symbol('s')],
    ['an object whose toJSON returns undefined', { toJSON: () => undefined }],
  ])('refuses %s with a TypeError', (_name, value) => {
    expect(() => encodePayload(value)).toThrow(TypeError)
  })

  it('refuses a BigInt with a TypeError', () => {
    expect(() => encodePayload(10n)).toThrow(TypeError)
    expect(() => encodePayload({ nested: [1n] })).toThrow(TypeError)
  })

  it('refuses a circular structure with a TypeError', () => {
    const circular: Record<string, unknown> = { a: 1 }
    circular.self = circular
    expect(() => encodePayload(circular)).toThrow(TypeError)
    const list: unknown[] = []
    list.push({ list })
    expect(() => encodePayload(list)).toThrow(TypeError)
  })

  it('is JSON.stringify for JSON values', () => {
    for (const [, payload] of payloads) expect(encodePayload(payload)).toBe(JSON.stringify(payload))
  })
})

// ── randomized round trip ─────────────────────────────────────────────────────

/** mulberry32: a small seeded PRNG, so a failure reproduces. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Characters that stress escaping: quotes, backslashes, controls, non-ASCII, astral, separators. */
const ALPHABET = [
  'a',
  'Z',
  '0',
  ' ',
  '"',
  '\\',
  '/',
  '\n',
  '\t',
  '\u0000',
  '\u001f',
  'é',
  '€',
  '日',
  '🎉',
  '\u2028',
  '{',
  '}',
  '[',
  ']',
  ',',
  ':',
]

function randomString(random: () => number): string {
  let text = ''
  const length = Math.floor(random() * 12)
  for (let i = 0; i < length; i++) text += ALPHABET[Math.floor(random() * ALPHABET.length)]
  return text
}

function randomNumber(random: () => number): number {
  const kind = Math.floor(random() * 4)
  if (kind === 0) return Math.floor(random() * 2000) - 1000
  if (kind === 1) return (random() - 0.5) * 1e6
  if (kind === 2) return Math.floor(random() * Number.MAX_SAFE_INTEGER)
  return random() * 10 ** Math.floor(random() * 600 - 300) || 1 // never -0 (JSON writes it as 0)
}

function randomJson(random: () => number, depth = 0): unknown {
  const kind = Math.floor(random() * (depth > 3 ? 5 : 7))
  switch (kind) {
    case 0:
      return null
    case 1:
      return random() < 0.5
    case 2:
      return randomNumber(random)
    case 3:
    case 4:
      return randomString(random)
    case 5:
      return Array.from({ length: Math.floor(random() * 5) }, () => randomJson(random, depth + 1))
    default: {
      const object: Record<string, unknown> = {}
      const count = Math.floor(random() * 5)
      for (let i = 0; i < count; i++) object[randomString(random)] = randomJson(random, depth + 1)
      return object
    }
  }
}

describe('randomized round trip', () => {
  it('msg, req and res frames carry 500 random JSON values unchanged', () => {
    const random = prng(0x7e7e7)
    for (let i = 0; i < 500; i++) {
      const values = Array.from({ length: 1 + Math.floor(random() * 4) }, () => randomJson(random))
      const seq = 1 + Math.floor(random() * 1e9)
      const id = Math.floor(random() * 1e6)
      const encoded = values.map(encodePayload)
      const context = `case ${i}: ${encoded.join(',')}`
      expect(decodeFrame(msgFrame(seq, encoded), 'client'), context).toEqual({ t: 'msg', s: seq, d: values })
      expect(decodeFrame(msgFrame(seq, encoded), 'server'), context).toEqual({ t: 'msg', s: seq, d: values })
      expect(decodeFrame(reqFrame(seq, id, encoded[0]), 'client'), context).toEqual({ t: 'req', s: seq, id, d: values[0] })
      expect(decodeFrame(resFrame(seq, id, encoded[0]), 'server'), context).toEqual({ t: 'res', s: seq, id, d: values[0] })
      const topic = randomString(random) || 't'
      expect(decodeFrame(msgFrame(seq, encoded, topic), 'server'), context).toEqual({ t: 'msg', s: seq, tp: topic, d: values })
      expect(decodeFrame(missFrame(seq, topic, id + 1), 'server'), context).toEqual({ t: 'miss', s: seq, tp: topic, n: id + 1 })
    }
  })
})
