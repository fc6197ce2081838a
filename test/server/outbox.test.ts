// @vitest-environment node
/**
 * A session's outbox on its own: numbering, the client's ack, the bounds, the server-wide
 * budget's view of shared entries, and writing until the connection's buffer is full. What the
 * session store will rely on (what is recorded, read back and trimmed) is what these pin down.
 */
import fc from 'fast-check'
import { describe, expect, it, vi } from 'vitest'
import { ClosedError, QueueFullError } from '../../src/errors.js'
import { missFrame, msgBatcher, resHead } from '../../src/protocol/frames.js'
import { SENT_ENTRY_BYTES, SHARED_ENTRY_BYTES, WRITE_BUFFER_BYTES } from '../../src/server/memory.js'
import { type Outgoing, SessionOutbox, sharedMessage } from '../../src/server/outbox.js'
import type { SessionConnection } from '../../src/server/seams.js'

const limits = { maxQueue: 3, maxQueueBytes: 10_000, maxPayload: 1024 * 1024 }

/** A `session.send()` entry, with its promise. */
function sent(payload: string): Outgoing & { promise: Promise<void> } {
  let resolve = () => {}
  let reject = (_: Error) => {}
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { payload, size: Buffer.byteLength(payload), promise, resolve, reject }
}

/** A connection that records what is written, with a buffer the test fills and empties. */
function connection() {
  const frames: string[] = []
  const callbacks: ((error?: Error) => void)[] = []
  let buffered = 0
  const conn = {
    frames,
    setBuffered: (bytes: number) => {
      buffered = bytes
    },
    /** Hands on every frame written so far. */
    drain: () => {
      for (const written of callbacks.splice(0)) written()
    },
    send: (frame: string, written?: (error?: Error) => void) => {
      frames.push(frame)
      if (written) callbacks.push(written)
    },
    close: vi.fn(),
    bufferedAmount: () => buffered,
  } satisfies SessionConnection & Record<string, unknown>
  return conn
}

describe('SessionOutbox', () => {
  it('numbers entries consecutively and writes the unacknowledged ones, batched, from the client ack on', () => {
    const outbox = new SessionOutbox(limits)
    for (const payload of ['"a"', '"b"', '"c"']) outbox.push(sent(payload))
    expect(outbox.last).toBe(3)
    outbox.acknowledge(1)
    const conn = connection()
    outbox.rewind()
    outbox.flush(conn)
    expect(conn.frames).toEqual(['{"t":"msg","s":2,"d":["b","c"]}'])
    expect(outbox.progress).toEqual({ acked: 1, written: 3 })
  })

  it('trims what the client acknowledges, resolving those sends, and numbers on where it stopped', async () => {
    const outbox = new SessionOutbox(limits)
    const first = sent('"a"')
    outbox.push(first)
    outbox.push(sent('"b"'))
    outbox.acknowledge(1)
    await expect(first.promise).resolves.toBeUndefined()
    expect(outbox.pending).toBe(1)
    expect(outbox.bytes).toBe(3 + SENT_ENTRY_BYTES)
    outbox.push(sent('"c"'))
    expect(outbox.last).toBe(3)
  })

  it('keeps no slot of what was acknowledged once everything is: a client that keeps up costs nothing per message sent', () => {
    const outbox = new SessionOutbox(limits)
    const slots = () => (outbox as unknown as { entries: unknown[] }).entries.length
    for (let i = 0; i < 500; i++) outbox.push(sent('"x"'))
    outbox.acknowledge(499)
    expect(slots()).toBe(500) // one still pending: compacted only now and then
    outbox.acknowledge(500)
    expect(slots()).toBe(0)
    outbox.push(sent('"y"'))
    expect(outbox.last).toBe(501)
    const conn = connection()
    outbox.rewind()
    outbox.flush(conn)
    expect(conn.frames).toEqual(['{"t":"msg","s":501,"d":["y"]}'])
  })

  it('refuses beyond maxQueue and maxQueueBytes with a QueueFullError naming the session and the limit', () => {
    const outbox = new SessionOutbox(limits)
    for (const payload of ['"a"', '"b"', '"c"']) outbox.push(sent(payload))
    expect(outbox.refusal(10, 'S1')).toBeInstanceOf(QueueFullError)
    expect(outbox.refusal(10, 'S1')?.message).toMatch(/session S1 has 3 unacknowledged messages \(maxQueue 3\)/)
    const small = new SessionOutbox({ ...limits, maxQueueBytes: 100 })
    expect(small.refusal(101, 'S2')?.message).toMatch(/this one counts 101 \(maxQueueBytes 100\)/)
    expect(small.refusal(100, 'S2')).toBeUndefined()
  })

  it('counts a shared payload once for the budget: when the first parked holder takes it, and when the last lets go', () => {
    const a = new SessionOutbox(limits)
    const b = new SessionOutbox(limits)
    const message = sharedMessage('"news"')
    expect(a.park()).toBe(0)
    expect(a.push(message)).toBe(6)
    expect(b.push(message)).toBe(0) // connected: not counted by the budget
    expect(b.park()).toBe(0) // a parked holder already counts it
    expect(a.ownBytes).toBe(SHARED_ENTRY_BYTES)
    expect(a.unpark()).toBe(0)
    expect(b.unpark()).toBe(-6)
  })

  it('stops writing once the connection has WRITE_BUFFER_BYTES buffered, and goes on once they were handed on', () => {
    const outbox = new SessionOutbox({ ...limits, maxQueue: 100, maxPayload: 20 })
    for (let i = 0; i < 4; i++) outbox.push(sent(`"${'x'.repeat(8)}"`))
    const conn = connection()
    conn.setBuffered(WRITE_BUFFER_BYTES)
    outbox.flush(conn)
    // The frame being batched when the buffer filled goes out too (memory.ts: the bound is passed by up to one frame).
    expect(conn.frames).toHaveLength(2)
    outbox.flush(conn) // still blocked
    expect(conn.frames).toHaveLength(2)
    conn.setBuffered(0)
    conn.drain()
    expect(conn.frames).toHaveLength(4)
  })

  it('asks to be told a frame was handed on only where the buffer may fill (each callback costs the write a nextTick)', () => {
    const outbox = new SessionOutbox(limits)
    const conn = connection()
    const counted = () => {
      let told = 0
      const send = conn.send
      conn.send = (frame, written) => {
        if (written) told++
        send(frame, written)
      }
      return () => told
    }
    const told = counted()
    outbox.push(sent('"a"'))
    outbox.flush(conn)
    expect(told()).toBe(0) // nothing buffered: a client that keeps up
    conn.setBuffered(WRITE_BUFFER_BYTES - 10)
    outbox.push(sent('"b"'))
    outbox.flush(conn)
    expect(told()).toBe(1) // it might fill the buffer: watched
  })

  it("rejects every unacknowledged send when closed, and lets go of a parked holder's shared payloads", async () => {
    const outbox = new SessionOutbox(limits)
    const entry = sent('"a"')
    outbox.push(entry)
    outbox.push(sharedMessage('"b"'))
    outbox.park()
    const error = new ClosedError('session closed by the server')
    expect(outbox.close(error)).toBe(-3)
    await expect(entry.promise).rejects.toBe(error)
    expect(outbox.pending).toBe(0)
    expect(outbox.bytes).toBe(0)
  })

  it("writes the frames the protocol's batcher would: runs of one topic within maxPayload, replies and misses alone, a shared tail built once (property)", () => {
    /** The frames of `entries` numbered from 1, as frames.ts's msgBatcher batches them, until the buffer is full after `room` frames. */
    function reference(entries: Outgoing[], maxPayload: number, room: number): string[] {
      const frames: string[] = []
      const write = (frame: string) => frames.push(frame)
      const batch = msgBatcher(maxPayload, write)
      for (let i = 0; i < entries.length && frames.length < room; i++) {
        const entry = entries[i]
        if (entry.reply) {
          batch.end()
          write(resHead(i + 1) + entry.payload)
        } else if (entry.missed !== undefined) {
          batch.end()
          write(missFrame(i + 1, entry.topic as string, entry.missed))
        } else batch.add(i + 1, entry.payload, entry.size, entry.topic)
      }
      batch.end()
      return frames
    }
    const topic = fc.constantFrom(undefined, 'a', 'tópic "b"')
    const payload = fc.string({ maxLength: 40 }).map((text) => JSON.stringify(text))
    const entry = fc.oneof(
      { weight: 6, arbitrary: fc.tuple(payload, topic, fc.boolean()) },
      { weight: 1, arbitrary: fc.constant('reply' as const) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom('a', 'c'), fc.integer({ min: 1, max: 9 })) },
    )
    fc.assert(
      fc.property(
        fc.array(entry, { maxLength: 30 }),
        fc.integer({ min: 20, max: 200 }),
        fc.integer({ min: 1, max: 40 }),
        (specs, maxPayload, room) => {
          const shared = new Map<string, Outgoing>()
          const entries: Outgoing[] = specs.map((spec) => {
            if (spec === 'reply') return { payload: ',"id":1,"d":null}', size: 17, reply: true }
            if (typeof spec[1] === 'number') return { payload: '', size: 0, topic: spec[0], missed: spec[1] }
            const [text, tp, isShared] = spec as [string, string | undefined, boolean]
            if (!isShared) return { payload: text, size: Buffer.byteLength(text), ...(tp === undefined ? {} : { topic: tp }) }
            // One object for every session that holds it, as a broadcast's or a topic's message is.
            const key = `${tp}|${text}`
            if (!shared.has(key)) shared.set(key, tp === undefined ? sharedMessage(text) : { ...sharedMessage(text), topic: tp })
            return shared.get(key) as Outgoing
          })
          const outbox = new SessionOutbox({ maxQueue: 1000, maxQueueBytes: 1_000_000, maxPayload })
          for (const each of entries) outbox.push(each)
          const conn = connection()
          // The buffer is full once `room` frames were written.
          conn.send = (frame) => {
            conn.frames.push(frame)
            if (conn.frames.length >= room) conn.setBuffered(WRITE_BUFFER_BYTES)
          }
          outbox.flush(conn)
          expect(conn.frames).toEqual(reference(entries, maxPayload, room))
        },
      ),
      { numRuns: 500 },
    )
  })
})
