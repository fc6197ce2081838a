import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { type Entry, type EntryOptions, Outbox, type Payload, payloadSize, type QueueLimits } from '../../src/client/outbox.js'
import { AbortError, QueueFullError, type TetherError, TimeoutError } from '../../src/errors.js'

// ── helpers ──────────────────────────────────────────────────────────────────

const roomy: QueueLimits = { maxMessages: 1000, maxBytes: 1_000_000, overflow: 'reject' }

function setup(limits: Partial<QueueLimits> = {}) {
  const failures: TetherError[] = []
  const outbox = new Outbox({ ...roomy, ...limits }, (error) => failures.push(error))
  return { outbox, failures }
}

/** Adds `data` (its payload is the string itself, so its size is its length for ASCII). */
function add(outbox: Outbox, data: string, options: Partial<EntryOptions> = {}): Promise<unknown> {
  return outbox.add(data, data, { deadline: Number.POSITIVE_INFINITY, staleAt: Number.POSITIVE_INFINITY, ...options })
}

function entries(outbox: Outbox): Entry[] {
  const all: Entry[] = []
  for (let entry = outbox.head; entry; entry = entry.next) all.push(entry)
  return all
}

const order = (outbox: Outbox) => entries(outbox).map((entry) => entry.data)

function entryOf(outbox: Outbox, data: unknown): Entry {
  const entry = entries(outbox).find((e) => e.data === data)
  if (!entry) throw new Error(`${String(data)} is not in the outbox`)
  return entry
}

/** Writes the entry at the cursor, as a protocol does: numbers it on first transmission. */
let nextSeq = 1
function transmit(outbox: Outbox, withSeq = true): Entry {
  const entry = outbox.cursor
  if (!entry) throw new Error('nothing queued')
  if (withSeq && entry.seq === 0) entry.seq = nextSeq++
  outbox.markSent(entry)
  return entry
}

/** The counters and links agree with the list itself. */
function expectConsistent(outbox: Outbox): void {
  const all = entries(outbox)
  let prev: Entry | undefined
  for (const entry of all) {
    expect(entry.prev).toBe(prev)
    prev = entry
  }
  expect(outbox.tail).toBe(prev)
  expect(outbox.size).toBe(all.length)
  expect(outbox.bytes).toBe(all.reduce((sum, e) => sum + e.size, 0))
  expect(outbox.queued).toBe(all.filter((e) => !e.sent).length)
  const firstUnsent = all.findIndex((e) => !e.sent)
  expect(outbox.cursor).toBe(firstUnsent === -1 ? undefined : all[firstUnsent])
  if (firstUnsent !== -1) for (const e of all.slice(firstUnsent)) expect(e.sent).toBe(false)
  // a finished entry stays only while it may be at the server (it was numbered and written once)
  for (const e of all) if (e.settled) expect(e.seq).toBeGreaterThan(0)
}

type Outcome = { state: 'pending' } | { state: 'fulfilled'; value: unknown } | { state: 'rejected'; error: unknown }

/** The state of a promise once pending reactions (chains of a few `then`s) have run. */
async function outcome(promise: Promise<unknown>): Promise<Outcome> {
  const pending = Symbol('pending')
  for (let i = 0; i < 10; i++) await Promise.resolve()
  try {
    const value = await Promise.race([promise, Promise.resolve().then(() => pending)])
    return value === pending ? { state: 'pending' } : { state: 'fulfilled', value }
  } catch (error) {
    return { state: 'rejected', error }
  }
}

async function rejection(promise: Promise<unknown>): Promise<TetherError> {
  const result = await outcome(promise)
  if (result.state !== 'rejected') throw new Error(`expected a rejection, got ${result.state}`)
  return result.error as TetherError
}

/** Counts the abort listeners a signal currently holds (added minus removed). */
function trackAbortListeners(signal: AbortSignal): () => number {
  const listeners = new Set<unknown>()
  const addListener = signal.addEventListener.bind(signal)
  const removeListener = signal.removeEventListener.bind(signal)
  vi.spyOn(signal, 'addEventListener').mockImplementation((type: string, listener: unknown, options?: unknown) => {
    if (type === 'abort') listeners.add(listener)
    addListener(type, listener as EventListener, options as AddEventListenerOptions)
  })
  vi.spyOn(signal, 'removeEventListener').mockImplementation((type: string, listener: unknown, options?: unknown) => {
    if (type === 'abort') listeners.delete(listener)
    removeListener(type, listener as EventListener, options as EventListenerOptions)
  })
  return () => listeners.size
}

/** mulberry32: a reproducible pseudo-random source. */
function seeded(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

afterEach(() => {
  // restore spies first: a spy on the fake setTimeout would otherwise outlive the fake clock
  vi.restoreAllMocks()
  vi.useRealTimers()
})

// ── payloadSize ──────────────────────────────────────────────────────────────

describe('payloadSize: the UTF-8 byte length of what the wire carries', () => {
  const utf8 = (s: string) => new TextEncoder().encode(s).length

  it.each([
    ['', 0],
    ['a', 1],
    ['hello, world', 12],
    ['\u0000\u007f', 2],
  ])('ASCII %j counts one byte per character (%i)', (s, bytes) => {
    expect(payloadSize(s)).toBe(bytes)
    expect(payloadSize(s)).toBe(utf8(s))
  })

  it.each(['\u0080', 'é', 'ñ', 'ß', 'Ω', 'Жж', '\u07ff', 'café'])('2-byte characters: %j', (s) => {
    expect(payloadSize(s)).toBe(utf8(s))
  })

  it('counts 2 bytes for U+0080..U+07FF', () => {
    expect(payloadSize('\u0080')).toBe(2)
    expect(payloadSize('\u07ff')).toBe(2)
  })

  it.each(['\u0800', '€', '中文', 'こんにちは', '\ufffd', '\uffff', '\ue000'])('3-byte characters: %j', (s) => {
    expect(payloadSize(s)).toBe(utf8(s))
  })

  it('counts 3 bytes for U+0800..U+FFFF outside the surrogates', () => {
    expect(payloadSize('\u0800')).toBe(3)
    expect(payloadSize('\uffff')).toBe(3)
  })

  it.each(['😀', '𝄞', '\u{10000}', '\u{10ffff}', '👍🏽', '👨‍👩‍👧'])('surrogate pairs (4 bytes each): %j', (s) => {
    expect(payloadSize(s)).toBe(utf8(s))
  })

  it('counts 4 bytes for one astral character (two UTF-16 units)', () => {
    expect(payloadSize('😀')).toBe(4)
  })

  it('matches TextEncoder on mixed text', () => {
    const s = 'a é € 😀 中 ß 𝄞 z\n\t{"k":"ü"}'
    expect(payloadSize(s)).toBe(utf8(s))
    expect(payloadSize(s.repeat(100))).toBe(utf8(s.repeat(100)))
  })

  it('counts a lone surrogate as the 3 bytes of U+FFFD it is sent as', () => {
    for (const s of ['\ud800', '\udfff', 'a\udc00b', '\ud83d', '😀\ud83d']) expect(payloadSize(s)).toBe(utf8(s))
  })

  it('an ArrayBuffer counts its byteLength', () => {
    expect(payloadSize(new ArrayBuffer(0))).toBe(0)
    expect(payloadSize(new ArrayBuffer(13))).toBe(13)
  })

  it('a typed array counts its bytes, not its elements', () => {
    expect(payloadSize(new Uint8Array(7))).toBe(7)
    expect(payloadSize(new Uint16Array(4))).toBe(8)
    expect(payloadSize(new Float64Array(3))).toBe(24)
  })

  it('a view counts only its window of the buffer', () => {
    const buffer = new ArrayBuffer(64)
    expect(payloadSize(new Uint8Array(buffer, 4, 6))).toBe(6)
    expect(payloadSize(new Uint32Array(buffer, 8, 2))).toBe(8)
    expect(payloadSize(new DataView(buffer, 10, 5))).toBe(5)
  })

  it('a Blob counts its size', () => {
    expect(payloadSize(new Blob([]))).toBe(0)
    expect(payloadSize(new Blob([new Uint8Array(10)]))).toBe(10)
    expect(payloadSize(new Blob(['héllo']))).toBe(6)
  })
})

// ── order and the cursor ─────────────────────────────────────────────────────

describe('Outbox: order and the cursor', () => {
  it('starts empty', () => {
    const { outbox } = setup()
    expect(outbox.head).toBeUndefined()
    expect(outbox.tail).toBeUndefined()
    expect(outbox.cursor).toBeUndefined()
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([0, 0, 0])
  })

  it('keeps messages in the order they were added, all queued, the cursor on the oldest', () => {
    const { outbox } = setup()
    for (const data of ['a', 'bb', 'ccc']) add(outbox, data)
    expect(order(outbox)).toEqual(['a', 'bb', 'ccc'])
    expect(outbox.cursor?.data).toBe('a')
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([3, 3, 6])
    expectConsistent(outbox)
  })

  it('records the entry as given: data, payload, size, key, requestId, deadline, staleAt, unsent', () => {
    const { outbox } = setup()
    const data = { text: 'hé' }
    const payload: Payload = JSON.stringify(data)
    outbox.add(data, payload, { deadline: 123, staleAt: 45, key: 'k', requestId: 9 })
    const entry = outbox.head!
    expect(entry.data).toBe(data)
    expect(entry.payload).toBe(payload)
    expect(entry.size).toBe(payloadSize(payload))
    expect(entry).toMatchObject({ key: 'k', requestId: 9, deadline: 123, staleAt: 45, seq: 0, sent: false, settled: false })
  })

  it('markSent moves the cursor past the entry: in flight, no longer queued, still held', () => {
    const { outbox } = setup()
    add(outbox, 'a')
    add(outbox, 'b')
    const a = transmit(outbox)
    expect(a.data).toBe('a')
    expect(a.sent).toBe(true)
    expect(outbox.cursor?.data).toBe('b')
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([2, 1, 2])
    transmit(outbox)
    expect(outbox.cursor).toBeUndefined()
    expect([outbox.size, outbox.queued]).toEqual([2, 0])
    expectConsistent(outbox)
  })

  it('succeed resolves the promise with the given value (a reply) and removes the entry', async () => {
    const { outbox, failures } = setup()
    const p = add(outbox, 'a')
    add(outbox, 'b')
    const a = transmit(outbox)
    outbox.succeed(a, { reply: 42 })
    expect(await outcome(p)).toEqual({ state: 'fulfilled', value: { reply: 42 } })
    expect(order(outbox)).toEqual(['b'])
    expect(failures).toEqual([])
    expectConsistent(outbox)
  })

  it('succeed of an entry in the middle keeps the others in order', () => {
    const { outbox } = setup()
    for (const data of ['a', 'b', 'c', 'd']) add(outbox, data)
    transmit(outbox)
    transmit(outbox)
    outbox.succeed(entryOf(outbox, 'b'))
    expect(order(outbox)).toEqual(['a', 'c', 'd'])
    outbox.succeed(entryOf(outbox, 'c'))
    expect(order(outbox)).toEqual(['a', 'd'])
    expect(outbox.cursor?.data).toBe('d')
    expectConsistent(outbox)
  })

  it('a queued entry can be finished directly (raw mode writes and succeeds at once)', async () => {
    const { outbox } = setup()
    const p = add(outbox, 'a')
    outbox.succeed(outbox.head!)
    expect((await outcome(p)).state).toBe('fulfilled')
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([0, 0, 0])
    expect(outbox.cursor).toBeUndefined()
  })

  it('rewind queues everything in flight again, in the original order, ahead of what was queued', () => {
    const { outbox } = setup()
    for (const data of ['a', 'b', 'c']) add(outbox, data)
    transmit(outbox)
    transmit(outbox)
    outbox.rewind()
    expect(order(outbox)).toEqual(['a', 'b', 'c'])
    expect(outbox.cursor?.data).toBe('a')
    expect(entries(outbox).map((e) => e.sent)).toEqual([false, false, false])
    expect([outbox.size, outbox.queued]).toEqual([3, 3])
    expectConsistent(outbox)
  })

  it('rewind keeps sequence numbers, so a resent entry is recognised by the server', () => {
    const { outbox } = setup()
    add(outbox, 'a')
    const a = transmit(outbox)
    const seq = a.seq
    outbox.rewind()
    expect(a.seq).toBe(seq)
  })

  it('rewind of an empty outbox leaves it empty', () => {
    const { outbox } = setup()
    outbox.rewind()
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([0, 0, 0])
    expect(outbox.cursor).toBeUndefined()
  })

  it('a `first` message goes before the cursor: behind what is in flight, ahead of everything queued', () => {
    const { outbox } = setup()
    for (const data of ['a', 'b', 'c']) add(outbox, data)
    transmit(outbox)
    add(outbox, 'hello', { aheadOfQueue: true })
    expect(order(outbox)).toEqual(['a', 'hello', 'b', 'c'])
    expect(outbox.cursor?.data).toBe('hello')
    expectConsistent(outbox)
  })

  it('a `first` message with nothing queued goes to the end and becomes the cursor', () => {
    const { outbox } = setup()
    add(outbox, 'a')
    transmit(outbox)
    add(outbox, 'hello', { aheadOfQueue: true })
    expect(order(outbox)).toEqual(['a', 'hello'])
    expect(outbox.cursor?.data).toBe('hello')
    expectConsistent(outbox)
  })

  it('a `first` message into an empty outbox is the only entry', () => {
    const { outbox } = setup()
    add(outbox, 'hello', { aheadOfQueue: true })
    expect(order(outbox)).toEqual(['hello'])
    expect(outbox.head).toBe(outbox.cursor)
    expectConsistent(outbox)
  })

  it('after a rewind, a `first` message goes ahead of resent ones never numbered, behind numbered ones', () => {
    const { outbox } = setup()
    add(outbox, 'a')
    transmit(outbox, false)
    outbox.rewind()
    add(outbox, 'hello', { aheadOfQueue: true })
    expect(order(outbox)).toEqual(['hello', 'a'])
    expect(outbox.head?.data).toBe('hello')
    expectConsistent(outbox)
  })

  it('a `first` message never goes ahead of a numbered entry: numbers go out in order', () => {
    // With persist, numbered entries can wait at the cursor for their commit when the hook runs.
    const { outbox } = setup()
    add(outbox, 'a')
    add(outbox, 'b')
    transmit(outbox)
    outbox.rewind()
    add(outbox, 'hello', { aheadOfQueue: true })
    expect(order(outbox)).toEqual(['a', 'hello', 'b'])
    expectConsistent(outbox)
  })

  it('successive `first` messages keep their call order among themselves (hello, then auth)', () => {
    const { outbox } = setup()
    add(outbox, 'queued')
    add(outbox, 'hello', { aheadOfQueue: true })
    add(outbox, 'auth', { aheadOfQueue: true })
    expect(order(outbox)).toEqual(['hello', 'auth', 'queued'])
    expectConsistent(outbox)
  })

  it('fail of a queued entry rejects it with the error, reports it to onFail and removes it', async () => {
    const { outbox, failures } = setup()
    add(outbox, 'a')
    const p = add(outbox, 'b')
    const error = new TimeoutError('late', { data: 'b' })
    outbox.fail(entryOf(outbox, 'b'), error)
    expect(await rejection(p)).toBe(error)
    expect(failures).toEqual([error])
    expect(order(outbox)).toEqual(['a'])
    expectConsistent(outbox)
  })

  it('fail of an entry in flight (seq > 0) rejects it but keeps it until acknowledged', async () => {
    const { outbox, failures } = setup()
    const p = add(outbox, 'a')
    const a = transmit(outbox)
    outbox.fail(a, new TimeoutError('late'))
    expect((await rejection(p)).code).toBe('ERR_TIMEOUT')
    expect(order(outbox)).toEqual(['a'])
    expect(outbox.size).toBe(1)
    expectConsistent(outbox)
    // the late ack removes it without touching the settled promise
    outbox.succeed(a, 'too late')
    expect(await rejection(p)).toBeInstanceOf(TimeoutError)
    expect(outbox.size).toBe(0)
    expect(failures).toHaveLength(1)
    expectConsistent(outbox)
  })

  it('remove takes an entry out without settling its promise or reporting anything', async () => {
    const { outbox, failures } = setup()
    add(outbox, 'a')
    const p = add(outbox, 'b')
    add(outbox, 'c')
    transmit(outbox)
    const b = transmit(outbox)
    outbox.remove(b)
    expect(order(outbox)).toEqual(['a', 'c'])
    expect(b.prev).toBeUndefined()
    expect(b.next).toBeUndefined()
    expect((await outcome(p)).state).toBe('pending')
    expect(failures).toEqual([])
    expectConsistent(outbox)
    // finishing it later settles the promise and leaves the outbox alone
    outbox.succeed(b, 'reply')
    expect(await outcome(p)).toEqual({ state: 'fulfilled', value: 'reply' })
    expect(order(outbox)).toEqual(['a', 'c'])
    expectConsistent(outbox)
  })

  it('remove of a queued entry (at the cursor) moves the cursor on', () => {
    const { outbox } = setup()
    for (const data of ['a', 'b', 'c']) add(outbox, data)
    transmit(outbox)
    outbox.remove(entryOf(outbox, 'b'))
    expect(outbox.cursor?.data).toBe('c')
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([2, 1, 2])
    expectConsistent(outbox)
  })

  it('remove of an entry not in the outbox (removed already, or the only one twice) is a no-op', () => {
    const { outbox } = setup()
    add(outbox, 'a')
    add(outbox, 'b')
    const a = outbox.head!
    outbox.remove(a)
    outbox.remove(a)
    outbox.fail(a, new TimeoutError('late'))
    expect(order(outbox)).toEqual(['b'])
    const b = outbox.head!
    outbox.remove(b)
    outbox.remove(b)
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([0, 0, 0])
    expectConsistent(outbox)
  })

  it('an entry settles once: a second succeed or fail changes neither the promise nor onFail', async () => {
    const { outbox, failures } = setup()
    const p = add(outbox, 'a')
    const a = outbox.head!
    outbox.succeed(a, 1)
    outbox.succeed(a, 2)
    outbox.fail(a, new TimeoutError('x'))
    expect(await outcome(p)).toEqual({ state: 'fulfilled', value: 1 })
    expect(failures).toEqual([])
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([0, 0, 0])

    const q = add(outbox, 'b')
    const b = outbox.head!
    const first = new TimeoutError('first')
    outbox.fail(b, first)
    outbox.fail(b, new TimeoutError('second'))
    outbox.succeed(b)
    expect(await rejection(q)).toBe(first)
    expect(failures).toEqual([first])
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([0, 0, 0])
  })
})

// ── bounds ───────────────────────────────────────────────────────────────────

describe("Outbox bounds with overflow 'reject'", () => {
  it('rejects a message beyond maxMessages with QueueFullError (carrying its data), reported to onFail', async () => {
    const { outbox, failures } = setup({ maxMessages: 2 })
    const a = add(outbox, 'a')
    add(outbox, 'b')
    const c = add(outbox, 'c')
    const error = await rejection(c)
    expect(error).toBeInstanceOf(QueueFullError)
    expect(error.data).toBe('c')
    expect(error.message).toContain('queue.maxMessages')
    expect(failures).toEqual([error])
    expect(order(outbox)).toEqual(['a', 'b'])
    expect((await outcome(a)).state).toBe('pending')
    expectConsistent(outbox)
  })

  it('counts messages in flight towards maxMessages', async () => {
    const { outbox } = setup({ maxMessages: 2 })
    add(outbox, 'a')
    add(outbox, 'b')
    transmit(outbox)
    transmit(outbox)
    expect(await rejection(add(outbox, 'c'))).toBeInstanceOf(QueueFullError)
    expect(outbox.size).toBe(2)
  })

  it('rejects a message that would take the bytes beyond maxBytes; exactly maxBytes fits', async () => {
    const { outbox, failures } = setup({ maxBytes: 10 })
    add(outbox, 'aaaa')
    add(outbox, 'bbbbbb') // 10 bytes: exactly full
    expect(outbox.bytes).toBe(10)
    const error = await rejection(add(outbox, 'c'))
    expect(error).toBeInstanceOf(QueueFullError)
    expect(error.message).toContain('queue.maxBytes')
    expect(failures).toHaveLength(1)
    expect(order(outbox)).toEqual(['aaaa', 'bbbbbb'])
    expectConsistent(outbox)
  })

  it('counts bytes as UTF-8, not as string length', async () => {
    const { outbox } = setup({ maxBytes: 4 })
    add(outbox, '€') // 3 bytes
    expect(outbox.bytes).toBe(3)
    expect(await rejection(add(outbox, 'é'))).toBeInstanceOf(QueueFullError) // 2 more: 5 > 4
  })

  it('accepts again once an entry left', async () => {
    const { outbox } = setup({ maxMessages: 1 })
    const a = add(outbox, 'a')
    expect(await rejection(add(outbox, 'b'))).toBeInstanceOf(QueueFullError)
    outbox.succeed(outbox.head!)
    expect((await outcome(a)).state).toBe('fulfilled')
    const c = add(outbox, 'c')
    expect((await outcome(c)).state).toBe('pending')
    expect(order(outbox)).toEqual(['c'])
  })

  it('a `first` message obeys the bounds too', async () => {
    const { outbox } = setup({ maxMessages: 1 })
    add(outbox, 'a')
    expect(await rejection(add(outbox, 'hello', { aheadOfQueue: true }))).toBeInstanceOf(QueueFullError)
    expect(order(outbox)).toEqual(['a'])
  })
})

describe('Outbox: a message larger than maxBytes', () => {
  it.each(['reject', 'drop-oldest'] as const)(
    'is rejected with QueueFullError naming its size, dropping nothing (overflow %s)',
    async (overflow) => {
      const { outbox, failures } = setup({ maxBytes: 5, overflow })
      const a = add(outbox, 'a')
      const error = await rejection(add(outbox, 'abcdef'))
      expect(error).toBeInstanceOf(QueueFullError)
      expect(error.data).toBe('abcdef')
      expect(error.message).toContain('6 bytes')
      expect(error.message).toContain('queue.maxBytes')
      expect(failures).toEqual([error])
      expect(order(outbox)).toEqual(['a'])
      expect((await outcome(a)).state).toBe('pending')
      expectConsistent(outbox)
    },
  )

  it('is rejected even when the outbox is empty', async () => {
    const { outbox } = setup({ maxBytes: 5 })
    expect(await rejection(add(outbox, 'abcdef'))).toBeInstanceOf(QueueFullError)
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([0, 0, 0])
  })
})

describe("Outbox bounds with overflow 'drop-oldest'", () => {
  it('drops the oldest queued message to make room; it rejects with QueueFullError and is reported to onFail', async () => {
    const { outbox, failures } = setup({ maxMessages: 2, overflow: 'drop-oldest' })
    const a = add(outbox, 'a')
    const b = add(outbox, 'b')
    const c = add(outbox, 'c')
    const error = await rejection(a)
    expect(error).toBeInstanceOf(QueueFullError)
    expect(error.data).toBe('a')
    expect(error.message).toContain('drop-oldest')
    expect(failures).toEqual([error])
    expect(order(outbox)).toEqual(['b', 'c'])
    expect((await outcome(b)).state).toBe('pending')
    expect((await outcome(c)).state).toBe('pending')
    expectConsistent(outbox)
  })

  it('drops only as many as needed to fit the new message in maxBytes', async () => {
    const { outbox, failures } = setup({ maxBytes: 10, overflow: 'drop-oldest' })
    const a = add(outbox, 'aaa')
    const b = add(outbox, 'bbb')
    add(outbox, 'ccc')
    add(outbox, 'dddddd') // 9 + 6 = 15: dropping aaa (12) is not enough, bbb too (9) fits
    expect(order(outbox)).toEqual(['ccc', 'dddddd'])
    expect((await rejection(a)).data).toBe('aaa')
    expect((await rejection(b)).data).toBe('bbb')
    expect(failures.map((e) => e.data)).toEqual(['aaa', 'bbb'])
    expect(outbox.bytes).toBe(9)
    expectConsistent(outbox)
  })

  it('never drops a message in flight: the oldest queued one goes instead', async () => {
    const { outbox } = setup({ maxMessages: 2, overflow: 'drop-oldest' })
    const a = add(outbox, 'a')
    const b = add(outbox, 'b')
    transmit(outbox)
    add(outbox, 'c')
    expect(order(outbox)).toEqual(['a', 'c'])
    expect((await outcome(a)).state).toBe('pending')
    expect(await rejection(b)).toBeInstanceOf(QueueFullError)
    expectConsistent(outbox)
  })

  it('never drops a message that was transmitted once (seq > 0), even when queued again after a rewind', async () => {
    const { outbox } = setup({ maxMessages: 2, overflow: 'drop-oldest' })
    const a = add(outbox, 'a')
    const b = add(outbox, 'b')
    transmit(outbox)
    outbox.rewind()
    add(outbox, 'c')
    expect(order(outbox)).toEqual(['a', 'c'])
    expect((await outcome(a)).state).toBe('pending')
    expect(await rejection(b)).toBeInstanceOf(QueueFullError)
    expectConsistent(outbox)
  })

  it('rejects the new message when only messages in flight fill the outbox', async () => {
    const { outbox, failures } = setup({ maxMessages: 2, overflow: 'drop-oldest' })
    const a = add(outbox, 'a')
    const b = add(outbox, 'b')
    transmit(outbox)
    transmit(outbox)
    const error = await rejection(add(outbox, 'c'))
    expect(error).toBeInstanceOf(QueueFullError)
    expect(error.data).toBe('c')
    expect(failures).toEqual([error])
    expect(order(outbox)).toEqual(['a', 'b'])
    expect((await outcome(a)).state).toBe('pending')
    expect((await outcome(b)).state).toBe('pending')
    expectConsistent(outbox)
  })

  it('keeps accepting new messages while dropping old ones, one for one', async () => {
    const { outbox, failures } = setup({ maxMessages: 3, overflow: 'drop-oldest' })
    for (let i = 0; i < 10; i++) add(outbox, `m${i}`)
    expect(order(outbox)).toEqual(['m7', 'm8', 'm9'])
    expect(failures.map((e) => e.data)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6'])
    expectConsistent(outbox)
  })
})

// ── keys ─────────────────────────────────────────────────────────────────────

describe('Outbox: `key` ("latest value wins")', () => {
  it('a newer message with the key of a queued one replaces it: the older leaves, the newer goes to the end', async () => {
    const { outbox, failures } = setup()
    add(outbox, 'pos1', { key: 'position' })
    add(outbox, 'chat')
    add(outbox, 'pos2', { key: 'position' })
    expect(order(outbox)).toEqual(['chat', 'pos2'])
    expect(failures).toEqual([])
    expectConsistent(outbox)
  })

  it('the older promise settles with the newer one’s value', async () => {
    const { outbox } = setup()
    const older = add(outbox, 'pos1', { key: 'position' })
    const newer = add(outbox, 'pos2', { key: 'position' })
    expect((await outcome(older)).state).toBe('pending')
    outbox.succeed(entryOf(outbox, 'pos2'), 'acked')
    expect(await outcome(newer)).toEqual({ state: 'fulfilled', value: 'acked' })
    expect(await outcome(older)).toEqual({ state: 'fulfilled', value: 'acked' })
  })

  it('the older promise rejects with the newer one’s error', async () => {
    const { outbox, failures } = setup()
    const older = add(outbox, 'pos1', { key: 'position' })
    const newer = add(outbox, 'pos2', { key: 'position' })
    const error = new TimeoutError('late')
    outbox.fail(entryOf(outbox, 'pos2'), error)
    expect(await rejection(newer)).toBe(error)
    expect(await rejection(older)).toBe(error)
    expect(failures).toEqual([error])
  })

  it('a chain of replacements settles every older promise with the latest outcome', async () => {
    const { outbox } = setup()
    const promises = ['v1', 'v2', 'v3', 'v4'].map((v) => add(outbox, v, { key: 'k' }))
    expect(order(outbox)).toEqual(['v4'])
    outbox.succeed(outbox.head!, 'done')
    for (const p of promises) expect(await outcome(p)).toEqual({ state: 'fulfilled', value: 'done' })
  })

  it('an entry already sent is not replaced: both stay and settle on their own', async () => {
    const { outbox } = setup()
    const older = add(outbox, 'pos1', { key: 'position' })
    const sent = transmit(outbox)
    const newer = add(outbox, 'pos2', { key: 'position' })
    expect(order(outbox)).toEqual(['pos1', 'pos2'])
    outbox.succeed(entryOf(outbox, 'pos2'), 'second')
    expect((await outcome(newer)).state).toBe('fulfilled')
    expect((await outcome(older)).state).toBe('pending')
    outbox.succeed(sent, 'first')
    expect(await outcome(older)).toEqual({ state: 'fulfilled', value: 'first' })
    expectConsistent(outbox)
  })

  it('different keys and unkeyed messages are independent', () => {
    const { outbox } = setup()
    add(outbox, 'a1', { key: 'a' })
    add(outbox, 'b1', { key: 'b' })
    add(outbox, 'plain')
    add(outbox, 'plain')
    add(outbox, 'a2', { key: 'a' })
    expect(order(outbox)).toEqual(['b1', 'plain', 'plain', 'a2'])
    expectConsistent(outbox)
  })

  it('a replacement needs no extra room: it succeeds in a full outbox', async () => {
    const { outbox, failures } = setup({ maxMessages: 2 })
    add(outbox, 'chat')
    const older = add(outbox, 'pos1', { key: 'position' })
    const newer = add(outbox, 'pos2', { key: 'position' })
    expect((await outcome(newer)).state).toBe('pending')
    expect((await outcome(older)).state).toBe('pending')
    expect(order(outbox)).toEqual(['chat', 'pos2'])
    expect(failures).toEqual([])
  })

  it('after the keyed entry finished, a message with the same key is simply added', async () => {
    const { outbox } = setup()
    const first = add(outbox, 'pos1', { key: 'position' })
    outbox.succeed(outbox.head!, 'ok')
    const second = add(outbox, 'pos2', { key: 'position' })
    expect(await outcome(first)).toEqual({ state: 'fulfilled', value: 'ok' })
    expect((await outcome(second)).state).toBe('pending')
    expect(order(outbox)).toEqual(['pos2'])
  })

  it('the replaced entry no longer listens to its signal', () => {
    const { outbox } = setup()
    const controller = new AbortController()
    const listening = trackAbortListeners(controller.signal)
    add(outbox, 'pos1', { key: 'position', signal: controller.signal })
    expect(listening()).toBe(1)
    add(outbox, 'pos2', { key: 'position' })
    expect(listening()).toBe(0)
  })
})

// ── abort ────────────────────────────────────────────────────────────────────

describe('Outbox: AbortSignal', () => {
  it('an already aborted signal rejects with AbortError (reason as cause, data) without queuing', async () => {
    const { outbox, failures } = setup()
    const controller = new AbortController()
    const reason = new Error('user left')
    controller.abort(reason)
    const listening = trackAbortListeners(controller.signal)
    const error = await rejection(add(outbox, 'a', { signal: controller.signal }))
    expect(error).toBeInstanceOf(AbortError)
    expect(error.name).toBe('AbortError')
    expect(error.cause).toBe(reason)
    expect(error.data).toBe('a')
    expect(failures).toEqual([error])
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([0, 0, 0])
    expect(listening()).toBe(0)
  })

  it('an already aborted signal does not replace a queued message with the same key', async () => {
    const { outbox } = setup()
    const older = add(outbox, 'pos1', { key: 'position' })
    add(outbox, 'pos2', { key: 'position', signal: AbortSignal.abort() })
    expect(order(outbox)).toEqual(['pos1'])
    expect((await outcome(older)).state).toBe('pending')
  })

  it('aborting while queued removes the message and rejects it with AbortError', async () => {
    const { outbox, failures } = setup()
    const controller = new AbortController()
    add(outbox, 'a')
    const p = add(outbox, 'b', { signal: controller.signal })
    add(outbox, 'c')
    controller.abort('changed my mind')
    const error = await rejection(p)
    expect(error).toBeInstanceOf(AbortError)
    expect(error.cause).toBe('changed my mind')
    expect(error.data).toBe('b')
    expect(failures).toEqual([error])
    expect(order(outbox)).toEqual(['a', 'c'])
    expectConsistent(outbox)
  })

  it('aborting the message at the cursor moves the cursor to the next one', () => {
    const { outbox } = setup()
    const controller = new AbortController()
    add(outbox, 'a')
    add(outbox, 'b', { signal: controller.signal })
    add(outbox, 'c')
    transmit(outbox)
    controller.abort()
    expect(outbox.cursor?.data).toBe('c')
    expectConsistent(outbox)
  })

  it('aborting a message in flight (seq > 0) rejects it but keeps it until acknowledged', async () => {
    const { outbox } = setup()
    const controller = new AbortController()
    const p = add(outbox, 'a', { signal: controller.signal })
    transmit(outbox)
    controller.abort()
    expect(await rejection(p)).toBeInstanceOf(AbortError)
    expect(order(outbox)).toEqual(['a'])
    expectConsistent(outbox)
  })

  it('one signal can abort several messages', async () => {
    const { outbox, failures } = setup()
    const controller = new AbortController()
    const ps = ['a', 'b', 'c'].map((d) => add(outbox, d, { signal: controller.signal }))
    add(outbox, 'd')
    controller.abort()
    for (const p of ps) expect(await rejection(p)).toBeInstanceOf(AbortError)
    expect(failures).toHaveLength(3)
    expect(order(outbox)).toEqual(['d'])
    expectConsistent(outbox)
  })

  it.each([
    ['succeeds', (outbox: Outbox, entry: Entry) => outbox.succeed(entry)],
    ['fails', (outbox: Outbox, entry: Entry) => outbox.fail(entry, new TimeoutError('x'))],
    [
      'fails in flight',
      (outbox: Outbox, entry: Entry) => {
        transmit(outbox)
        outbox.fail(entry, new TimeoutError('x'))
      },
    ],
    ['is failed by failAll', (outbox: Outbox) => outbox.failAll(() => new TimeoutError('x'))],
  ])('the abort listener is removed once the message %s', (_, finish) => {
    const { outbox } = setup()
    const controller = new AbortController()
    const listening = trackAbortListeners(controller.signal)
    add(outbox, 'a', { signal: controller.signal })
    expect(listening()).toBe(1)
    finish(outbox, outbox.head!)
    expect(listening()).toBe(0)
  })

  it('aborting after the message succeeded changes nothing', async () => {
    const { outbox, failures } = setup()
    const controller = new AbortController()
    const p = add(outbox, 'a', { signal: controller.signal })
    add(outbox, 'b')
    outbox.succeed(outbox.head!, 'ok')
    controller.abort()
    expect(await outcome(p)).toEqual({ state: 'fulfilled', value: 'ok' })
    expect(failures).toEqual([])
    expect(order(outbox)).toEqual(['b'])
    expectConsistent(outbox)
  })
})

// ── deadlines ────────────────────────────────────────────────────────────────

describe('Outbox: `ttl` (staleAt) and `deadline` expiry', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })

  it('a message still unsent at its staleAt is dropped with TimeoutError, reported to onFail', async () => {
    const { outbox, failures } = setup()
    const now = Date.now()
    add(outbox, 'a')
    const p = add(outbox, 'b', { staleAt: now + 100 })
    vi.advanceTimersByTime(99)
    expect((await outcome(p)).state).toBe('pending')
    vi.advanceTimersByTime(1)
    const error = await rejection(p)
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error.data).toBe('b')
    expect(error.message).toContain('ttl')
    expect(failures).toEqual([error])
    expect(order(outbox)).toEqual(['a'])
    expectConsistent(outbox)
  })

  it('ttl does not drop a message in flight (seq > 0): it waits for its ack', async () => {
    const { outbox, failures } = setup()
    const p = add(outbox, 'a', { staleAt: Date.now() + 100 })
    const a = transmit(outbox)
    vi.advanceTimersByTime(1000)
    expect((await outcome(p)).state).toBe('pending')
    expect(failures).toEqual([])
    outbox.succeed(a)
    expect((await outcome(p)).state).toBe('fulfilled')
  })

  it('ttl does not drop a message transmitted once and queued again after a rewind', async () => {
    const { outbox } = setup()
    const p = add(outbox, 'a', { staleAt: Date.now() + 100 })
    transmit(outbox)
    outbox.rewind()
    vi.advanceTimersByTime(1000)
    expect((await outcome(p)).state).toBe('pending')
    expect(order(outbox)).toEqual(['a'])
  })

  it('a queued message not finished by its deadline is removed with TimeoutError', async () => {
    const { outbox, failures } = setup()
    const p = add(outbox, 'a', { deadline: Date.now() + 500 })
    vi.advanceTimersByTime(499)
    expect((await outcome(p)).state).toBe('pending')
    vi.advanceTimersByTime(1)
    const error = await rejection(p)
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error.data).toBe('a')
    expect(failures).toEqual([error])
    expect(outbox.size).toBe(0)
  })

  it('a message in flight past its deadline rejects with TimeoutError but stays until acknowledged', async () => {
    const { outbox, failures } = setup()
    const p = add(outbox, 'a', { deadline: Date.now() + 500 })
    const a = transmit(outbox)
    vi.advanceTimersByTime(500)
    expect(await rejection(p)).toBeInstanceOf(TimeoutError)
    expect(order(outbox)).toEqual(['a'])
    expectConsistent(outbox)
    outbox.succeed(a)
    expect(outbox.size).toBe(0)
    expect(failures).toHaveLength(1)
  })

  it('each message expires at its own deadline, whatever order they were added in', async () => {
    const { outbox, failures } = setup()
    const now = Date.now()
    const p300 = add(outbox, 'c', { deadline: now + 300 })
    const p100 = add(outbox, 'a', { deadline: now + 100 })
    const p200 = add(outbox, 'b', { staleAt: now + 200 })
    const never = add(outbox, 'd')
    vi.advanceTimersByTime(100)
    expect(failures.map((e) => e.data)).toEqual(['a'])
    vi.advanceTimersByTime(100)
    expect(failures.map((e) => e.data)).toEqual(['a', 'b'])
    vi.advanceTimersByTime(100)
    expect(failures.map((e) => e.data)).toEqual(['a', 'b', 'c'])
    for (const p of [p100, p200, p300]) expect(await rejection(p)).toBeInstanceOf(TimeoutError)
    vi.advanceTimersByTime(1_000_000)
    expect((await outcome(never)).state).toBe('pending')
    expect(order(outbox)).toEqual(['d'])
    expectConsistent(outbox)
  })

  it('a deadline already past when added expires on the next timer turn', async () => {
    const { outbox } = setup()
    const p = add(outbox, 'a', { deadline: Date.now() - 10 })
    expect(outbox.size).toBe(1)
    vi.advanceTimersByTime(0)
    expect(await rejection(p)).toBeInstanceOf(TimeoutError)
    expect(outbox.size).toBe(0)
  })

  it('messages without deadline or ttl arm no timer', () => {
    const { outbox } = setup()
    for (let i = 0; i < 10; i++) add(outbox, `m${i}`)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('one timer serves 100 deadlines (added in increasing order): a single setTimeout', () => {
    const { outbox } = setup()
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout')
    const now = Date.now()
    for (let i = 0; i < 100; i++) add(outbox, `m${i}`, { deadline: now + 1000 + i * 10 })
    expect(vi.getTimerCount()).toBe(1)
    expect(setTimeoutSpy).toHaveBeenCalledTimes(1)
  })

  it('one timer serves 100 deadlines (added in decreasing order): never more than one pending', () => {
    const { outbox } = setup()
    const now = Date.now()
    for (let i = 0; i < 100; i++) {
      add(outbox, `m${i}`, { deadline: now + 2000 - i * 10, staleAt: now + 5000 - i })
      expect(vi.getTimerCount()).toBe(1)
    }
  })

  it('the single timer walks through all 100 deadlines, each message failing on time', () => {
    const { outbox, failures } = setup()
    const now = Date.now()
    for (let i = 0; i < 100; i++) add(outbox, `m${i}`, { deadline: now + 1000 + i * 10 })
    for (let i = 0; i < 100; i++) {
      vi.advanceTimersByTime(i === 0 ? 1000 : 10)
      expect(failures).toHaveLength(i + 1)
      expect(failures[i]!.data).toBe(`m${i}`)
      expect(vi.getTimerCount()).toBe(i === 99 ? 0 : 1)
    }
    expect(outbox.size).toBe(0)
  })

  it('no timer is left once the outbox is empty', () => {
    const { outbox } = setup()
    add(outbox, 'a', { deadline: Date.now() + 1000 })
    add(outbox, 'b', { staleAt: Date.now() + 2000 })
    outbox.succeed(outbox.head!)
    outbox.succeed(outbox.head!)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('an in-flight message whose ttl passed does not keep the timer firing', () => {
    const { outbox } = setup()
    add(outbox, 'a', { staleAt: Date.now() + 100, deadline: Date.now() + 10_000 })
    transmit(outbox)
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout')
    vi.advanceTimersByTime(5000)
    // at most one re-arm (for the deadline at 10 s), not one per millisecond
    expect(setTimeoutSpy.mock.calls.length).toBeLessThanOrEqual(1)
    expect(vi.getTimerCount()).toBe(1)
  })

  it('a deadline beyond the platform timer limit (2^31 - 1 ms) neither fires early nor spins the timer', async () => {
    const { outbox } = setup()
    const p = add(outbox, 'a', { deadline: Date.now() + 2 ** 31 + 60_000 })
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout')
    vi.advanceTimersByTime(1000)
    expect((await outcome(p)).state).toBe('pending')
    expect(setTimeoutSpy.mock.calls.length).toBeLessThanOrEqual(1)
  })

  it('a message added by an onFail listener during expiry still expires at its own deadline', () => {
    const failures: TetherError[] = []
    let resent = false
    const outbox = new Outbox(roomy, (error) => {
      failures.push(error)
      if (!resent) {
        resent = true
        add(outbox, 'retry', { deadline: Date.now() + 50 })
      }
    })
    const now = Date.now()
    add(outbox, 'slow', { deadline: now + 1000 })
    add(outbox, 'fast', { deadline: now + 100 })
    vi.advanceTimersByTime(100)
    expect(failures.map((e) => e.data)).toEqual(['fast'])
    vi.advanceTimersByTime(50)
    expect(failures.map((e) => e.data)).toEqual(['fast', 'retry'])
  })
})

// ── failAll ──────────────────────────────────────────────────────────────────

describe('Outbox: failAll', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })

  it('rejects every unfinished message with the error made for it, in order, each reported to onFail', async () => {
    const { outbox, failures } = setup()
    const ps = ['a', 'b', 'c'].map((d) => add(outbox, d, { deadline: Date.now() + 1000 }))
    transmit(outbox)
    outbox.failAll((entry) => new TimeoutError(`gave up on ${String(entry.data)}`, { data: entry.data }))
    expect(failures.map((e) => e.message)).toEqual(['gave up on a', 'gave up on b', 'gave up on c'])
    for (const [i, p] of ps.entries()) expect(await rejection(p)).toBe(failures[i])
  })

  it('empties the outbox (in flight included) and disarms the timer', () => {
    const { outbox } = setup()
    add(outbox, 'a', { deadline: Date.now() + 1000 })
    add(outbox, 'b', { staleAt: Date.now() + 1000 })
    transmit(outbox)
    expect(vi.getTimerCount()).toBe(1)
    outbox.failAll(() => new TimeoutError('x'))
    expect(outbox.head).toBeUndefined()
    expect(outbox.tail).toBeUndefined()
    expect(outbox.cursor).toBeUndefined()
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([0, 0, 0])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('does not report again a message already failed while in flight', () => {
    const { outbox, failures } = setup()
    add(outbox, 'a')
    add(outbox, 'b')
    outbox.fail(transmit(outbox), new TimeoutError('late'))
    const makeError = vi.fn((entry: Entry) => new TimeoutError('closed', { data: entry.data }))
    outbox.failAll(makeError)
    expect(failures.map((e) => e.message)).toEqual(['late', 'closed'])
    expect(failures[1]!.data).toBe('b')
  })

  it('leaves the outbox usable: later messages queue normally and old keys are forgotten', async () => {
    const { outbox } = setup()
    add(outbox, 'chat')
    const old = add(outbox, 'pos1', { key: 'position' })
    outbox.failAll(() => new TimeoutError('closed'))
    const fresh = add(outbox, 'pos2', { key: 'position', deadline: Date.now() + 100 })
    expect(order(outbox)).toEqual(['pos2'])
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([1, 1, 4])
    expect(vi.getTimerCount()).toBe(1)
    expect((await rejection(old)).message).toBe('closed')
    expect((await outcome(fresh)).state).toBe('pending')
    expectConsistent(outbox)
    vi.advanceTimersByTime(100)
    expect(await rejection(fresh)).toBeInstanceOf(TimeoutError)
  })

  it('a late succeed, fail or remove of a former entry changes nothing (its links are gone)', async () => {
    const { outbox } = setup()
    for (const d of ['a', 'b', 'c']) add(outbox, d)
    transmit(outbox)
    const former = entries(outbox)
    outbox.failAll(() => new TimeoutError('closed'))
    outbox.succeed(former[1]!)
    outbox.fail(former[2]!, new TimeoutError('late'))
    outbox.remove(former[2]!)
    outbox.succeed(former[0]!)
    expect([outbox.size, outbox.queued, outbox.bytes]).toEqual([0, 0, 0])
    expect(outbox.head).toBeUndefined()
    expect(outbox.tail).toBeUndefined()
    add(outbox, 'next')
    expect(order(outbox)).toEqual(['next'])
    expectConsistent(outbox)
  })

  it('of an empty outbox does nothing', () => {
    const { outbox, failures } = setup()
    const makeError = vi.fn(() => new TimeoutError('x'))
    outbox.failAll(makeError)
    expect(makeError).not.toHaveBeenCalled()
    expect(failures).toEqual([])
  })
})

// ── unhandled rejections ─────────────────────────────────────────────────────

describe('Outbox: promises nobody awaits', () => {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown) => unhandled.push(reason)
  beforeEach(() => {
    unhandled.length = 0
    process.on('unhandledRejection', onUnhandled)
  })
  afterEach(() => {
    process.off('unhandledRejection', onUnhandled)
  })

  it('never cause an unhandled rejection, whatever makes them fail', async () => {
    vi.useFakeTimers()
    const { outbox, failures } = setup({ maxMessages: 3, maxBytes: 100, overflow: 'drop-oldest' })
    outbox.add('aborted before', 'x', { deadline: Infinity, staleAt: Infinity, signal: AbortSignal.abort() })
    outbox.add('too big', 'x'.repeat(101), { deadline: Infinity, staleAt: Infinity })
    const controller = new AbortController()
    add(outbox, 'aborted', { signal: controller.signal })
    controller.abort()
    add(outbox, 'dropped1')
    add(outbox, 'k1', { key: 'k' })
    add(outbox, 'k2', { key: 'k', deadline: Date.now() + 10 }) // k1 follows k2, which times out
    add(outbox, 'queued')
    add(outbox, 'ttl', { staleAt: Date.now() + 20 }) // drops dropped1
    vi.advanceTimersByTime(20)
    add(outbox, 'failed')
    outbox.fail(outbox.tail!, new TimeoutError('x'))
    outbox.fail(transmit(outbox), new TimeoutError('in flight'))
    add(outbox, 'closed')
    outbox.failAll(() => new TimeoutError('closed'))

    const rejectOnly = setup({ maxMessages: 1 })
    add(rejectOnly.outbox, 'a')
    add(rejectOnly.outbox, 'rejected')

    expect(failures.length).toBeGreaterThanOrEqual(9)
    vi.useRealTimers()
    // unhandled rejections are reported after the microtask queue drains
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setTimeout(resolve, 0))
    expect(unhandled).toEqual([])
  })
})

describe('Outbox: what an entry holds (a queue can hold many)', () => {
  it('a plain message carries no per-message options object; one with options does', () => {
    const { outbox } = setup()
    add(outbox, 'plain')
    add(outbox, 'keyed', { key: 'k' })
    add(outbox, 'timed', { deadline: Date.now() + 1000 })
    add(outbox, 'hook', { aheadOfQueue: true })
    expect(entryOf(outbox, 'plain').extras).toBeUndefined()
    expect(entryOf(outbox, 'plain').deadline).toBe(Number.POSITIVE_INFINITY)
    expect(entryOf(outbox, 'keyed').key).toBe('k')
    expect(entryOf(outbox, 'timed').deadline).toBeLessThan(Number.POSITIVE_INFINITY)
    expect(entryOf(outbox, 'hook').aheadOfQueue).toBe(true)
  })

  it('an entry that stays in flight after its promise settled no longer holds the promise or its resolver', async () => {
    const { outbox } = setup()
    const promise = add(outbox, 'a')
    const entry = transmit(outbox)
    outbox.fail(entry, new TimeoutError('gave up waiting'))
    expect(entries(outbox)).toEqual([entry]) // still in flight: the server may have it
    expect(entry.settled).toBe(true)
    expect(entry.promise).toBeUndefined()
    expect(entry.resolve).toBeUndefined()
    expect((await rejection(promise)).message).toBe('gave up waiting')
  })

  it('a settled message stops listening to its signal', () => {
    const { outbox } = setup()
    const controller = new AbortController()
    const removed = vi.spyOn(controller.signal, 'removeEventListener')
    add(outbox, 'a', { signal: controller.signal })
    outbox.succeed(transmit(outbox))
    expect(removed).toHaveBeenCalledWith('abort', expect.any(Function))
  })

  it('a rejection carries the very error reported, and a success the value given', async () => {
    const { outbox, failures } = setup()
    const failed = add(outbox, 'a')
    const succeeded = add(outbox, 'b')
    const error = new TimeoutError('x')
    outbox.fail(entryOf(outbox, 'a'), error)
    outbox.succeed(entryOf(outbox, 'b'), 42)
    expect(await rejection(failed)).toBe(error)
    expect(failures).toEqual([error])
    expect(await succeeded).toBe(42)
  })
})

// ── consistency under any sequence of operations ─────────────────────────────

describe('Outbox: counters and links stay consistent through every operation', () => {
  it.each([
    ['reject', 1],
    ['reject', 2],
    ['drop-oldest', 3],
    ['drop-oldest', 4],
  ] as const)("a random sequence of 3000 operations (overflow '%s', seed %i)", async (overflow, seed) => {
    vi.useFakeTimers()
    const random = seeded(seed)
    const { outbox } = setup({ maxMessages: 8, maxBytes: 60, overflow })
    const signals = new Map<Entry, AbortController>()
    const promises: Promise<unknown>[] = []
    const pick = () => {
      const all = entries(outbox)
      return all[Math.floor(random() * all.length)]
    }
    for (let step = 0; step < 3000; step++) {
      const op = Math.floor(random() * 10)
      if (op <= 2) {
        const data = `m${step}`.padEnd(3 + Math.floor(random() * 15), '.')
        const controller = random() < 0.3 ? new AbortController() : undefined
        const now = Date.now()
        promises.push(
          add(outbox, data, {
            key: random() < 0.3 ? ['a', 'b', 'c'][Math.floor(random() * 3)] : undefined,
            signal: controller?.signal,
            deadline: random() < 0.3 ? now + Math.floor(random() * 300) : Number.POSITIVE_INFINITY,
            staleAt: random() < 0.3 ? now + Math.floor(random() * 300) : Number.POSITIVE_INFINITY,
            aheadOfQueue: random() < 0.1,
          }),
        )
        const entry = entries(outbox).find((e) => e.data === data)
        if (entry && controller) signals.set(entry, controller)
      } else if (op === 3) {
        if (outbox.cursor) transmit(outbox, random() < 0.9)
      } else if (op === 4) {
        const entry = pick()
        if (entry?.sent) outbox.succeed(entry, step)
      } else if (op === 5) {
        const entry = pick()
        if (entry) outbox.fail(entry, new TimeoutError('random failure'))
      } else if (op === 6) {
        const entry = pick()
        if (entry) signals.get(entry)?.abort()
      } else if (op === 7) {
        if (random() < 0.3) outbox.rewind()
      } else if (op === 8) {
        vi.advanceTimersByTime(Math.floor(random() * 100))
      } else if (random() < 0.05) {
        outbox.failAll(() => new TimeoutError('closed'))
      }
      expectConsistent(outbox)
      expect(outbox.size).toBeLessThanOrEqual(8)
      expect(outbox.bytes).toBeLessThanOrEqual(60)
      expect(vi.getTimerCount()).toBeLessThanOrEqual(1)
    }
    outbox.failAll(() => new TimeoutError('closed'))
    // every promise handed out has settled
    for (const p of promises) expect((await outcome(p)).state).not.toBe('pending')
  })
})
