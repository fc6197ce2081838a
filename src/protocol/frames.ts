/**
 * tether.v1 frames: their types, the encoder, and the decoder that validates every field.
 * Shared by the client (client/wire/tether.ts) and the reference server. `docs/PROTOCOL.md`
 * is the normative description; this file is its executable form.
 *
 * Every frame is one WebSocket text message holding one JSON object with a string `t`.
 * Message payloads (`d`) travel as JSON values and are spliced into frames as the strings
 * `JSON.stringify` made of them once at `send()`, so no payload is serialized twice.
 * @module
 */
import { utf8Length } from './close-reason.js'

/** The WebSocket subprotocol name of this version. */
export const SUBPROTOCOL = 'tether.v1'

/** Close codes of tether.v1 (see docs/PROTOCOL.md). */
export const CloseCode = {
  /** A frame broke the grammar or the sequencing rules. */
  PROTOCOL_ERROR: 1002,
  /** A frame was not valid JSON text. */
  INVALID_DATA: 1007,
  /** A frame exceeded the peer's maximum payload. */
  TOO_BIG: 1009,
  /** The server is overloaded or restarting; come back later (clients back off). */
  TRY_AGAIN_LATER: 1013,
  /** The client dropped the connection (timeout, reconnect(), failed open hook). */
  CLIENT_DROP: 4000,
  /** The client found a protocol error in a server frame. */
  CLIENT_PROTOCOL_ERROR: 4002,
  /** Authentication failed; the client must not retry with the same credentials. */
  UNAUTHORIZED: 4401,
  /** Policy violation; reserved (the reference server uses TRY_AGAIN_LATER for its limits, so clients resume). */
  POLICY: 1008,
} as const

/** The `err` of a `res` frame: the body of an error reply (the client turns it into a `ReplyError`). */
export interface ReplyErrorBody {
  code: string
  message: string
}

/**
 * Why a server did not resume the session a `hello` named: it does not know it (expired, ended,
 * never existed, or someone else's), or it knows less of it than the client does (its store
 * lost acknowledged writes), so resuming would break exactly-once.
 */
export type ResumeRefusal = 'unknown' | 'lost'

/** Frames a client sends. */
export type ClientFrame =
  | {
      t: 'hello'
      sid: string | null
      /** The last server sequence number the client received. */
      ack: number
      /** The last of its own sequence numbers the server acknowledged (optional: older clients leave it out). */
      acked?: number
      /** The last of its own sequence numbers the client has written (optional). */
      sent?: number
      /** The client takes acks on the server's data frames (`a`, PROTOCOL.md §2.9). */
      pa?: boolean
    }
  | { t: 'msg'; s: number; d: unknown[]; a?: number }
  | { t: 'req'; s: number; id: number; d: unknown; a?: number }
  | { t: 'ack'; s: number }
  | { t: 'ping' }

/** Frames a server sends. */
export type ServerFrame =
  | {
      t: 'welcome'
      sid: string
      resumed: boolean
      ack: number
      max: number
      reqs?: number
      /** With `resumed: false` for a `hello` that named a session: why it was not resumed. */
      reason?: ResumeRefusal
      /**
       * The last sequence number the server had given an item of this session when it wrote
       * the welcome (optional: older servers leave it out). Every item it resends after this
       * welcome has a number at most this (PROTOCOL.md §4.10).
       */
      sent?: number
      /** The server takes acks on the client's data frames (`a`, PROTOCOL.md §2.9). */
      pa?: boolean
    }
  | {
      t: 'msg'
      s: number
      d: unknown[]
      /** An ack of the client's items riding on the frame (PROTOCOL.md §2.9). */
      a?: number
      /** The topic every item of this frame was published to (PROTOCOL.md §13); absent for direct messages. */
      tp?: string
    }
  | {
      /**
       * One sequenced item: `n` messages of topic `tp`, published while this session was a
       * member, were dropped by the server's retention before they reached it (PROTOCOL.md §13).
       */
      t: 'miss'
      s: number
      tp: string
      n: number
    }
  | { t: 'res'; s: number; id: number; d?: unknown; err?: ReplyErrorBody; a?: number }
  | { t: 'ack'; s: number }
  | { t: 'pong' }

/** Why a frame was refused, with the close code the receiver should use. */
export class FrameError extends Error {
  constructor(
    message: string,
    readonly closeCode: number,
  ) {
    super(message)
    this.name = 'FrameError'
  }
}

const isSeq = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0

/** A topic name: any non-empty string. */
const isTopic = (value: unknown): value is string => typeof value === 'string' && value !== ''

/**
 * Parses and validates one frame. Returns `undefined` for a well-formed frame of an unknown
 * type (ignored, for forward compatibility). Throws {@link FrameError} otherwise.
 * @param from - whose frames these are: `'client'` frames are parsed by the server
 */
export function decodeFrame(data: unknown, from: 'client'): ClientFrame | undefined
export function decodeFrame(data: unknown, from: 'server'): ServerFrame | undefined
export function decodeFrame(data: unknown, from: 'client' | 'server'): ClientFrame | ServerFrame | undefined {
  if (typeof data !== 'string') throw new FrameError('binary frame: tether.v1 frames are JSON text', CloseCode.INVALID_DATA)
  let frame: Record<string, unknown>
  try {
    frame = JSON.parse(data)
  } catch {
    throw new FrameError('frame is not valid JSON', CloseCode.INVALID_DATA)
  }
  if (typeof frame !== 'object' || frame === null || Array.isArray(frame) || typeof frame.t !== 'string') {
    throw new FrameError('frame is not a JSON object with a string "t"', CloseCode.PROTOCOL_ERROR)
  }
  const bad = (field: string) => new FrameError(`"${frame.t}" frame has an invalid "${field}"`, CloseCode.PROTOCOL_ERROR)
  const seq = () => {
    if (!isSeq(frame.s) || frame.s === 0) throw bad('s')
  }
  // An ack riding on a data frame (§2.9): an ack's `s`, read as if an ack frame came just before.
  const ack = () => {
    if (frame.a !== undefined && !isSeq(frame.a)) throw bad('a')
  }
  const flag = (field: string) => {
    if (frame[field] !== undefined && typeof frame[field] !== 'boolean') throw bad(field)
  }
  switch (frame.t) {
    case 'msg':
      seq()
      ack()
      if (!Array.isArray(frame.d) || frame.d.length === 0) throw bad('d')
      // Only a server publishes to topics: on a client's msg, `tp` is a member it does not know (§1.6).
      if (from === 'server' && frame.tp !== undefined && !isTopic(frame.tp)) throw bad('tp')
      break
    case 'miss':
      if (from !== 'server') return undefined
      seq()
      if (!isTopic(frame.tp)) throw bad('tp')
      if (!isSeq(frame.n) || frame.n === 0) throw bad('n')
      break
    case 'ack':
      if (!isSeq(frame.s)) throw bad('s')
      break
    case 'ping':
    case 'pong':
      if ((frame.t === 'ping') !== (from === 'client')) return undefined
      break
    case 'hello':
      if (from !== 'client') return undefined
      if (frame.sid !== null && typeof frame.sid !== 'string') throw bad('sid')
      if (!isSeq(frame.ack)) throw bad('ack')
      if (frame.acked !== undefined && !isSeq(frame.acked)) throw bad('acked')
      if (frame.sent !== undefined && !isSeq(frame.sent)) throw bad('sent')
      flag('pa')
      break
    case 'req':
      if (from !== 'client') return undefined
      seq()
      ack()
      if (!isSeq(frame.id) || !('d' in frame)) throw bad(isSeq(frame.id) ? 'd' : 'id')
      break
    case 'welcome':
      if (from !== 'server') return undefined
      if (typeof frame.sid !== 'string' || !frame.sid) throw bad('sid')
      if (typeof frame.resumed !== 'boolean') throw bad('resumed')
      if (!isSeq(frame.ack)) throw bad('ack')
      if (!isSeq(frame.max) || frame.max === 0) throw bad('max')
      if (frame.reqs !== undefined && (!isSeq(frame.reqs) || frame.reqs === 0)) throw bad('reqs')
      // Reasons may be added by later servers: an unknown one is kept, never refused.
      if (frame.reason !== undefined && typeof frame.reason !== 'string') throw bad('reason')
      if (frame.sent !== undefined && !isSeq(frame.sent)) throw bad('sent')
      flag('pa')
      break
    case 'res': {
      if (from !== 'server') return undefined
      seq()
      ack()
      if (!isSeq(frame.id)) throw bad('id')
      const err = frame.err as Record<string, unknown> | undefined
      if (
        err !== undefined &&
        (typeof err !== 'object' || err === null || typeof err.code !== 'string' || typeof err.message !== 'string')
      ) {
        throw bad('err')
      }
      // A reply or an error, never both nor neither (PROTOCOL.md §3.6): either reading would be a guess.
      if ('d' in frame !== !err) throw bad('d')
      break
    }
    default:
      return undefined
  }
  return frame as unknown as ClientFrame | ServerFrame
}

/** Encodes a control frame (everything but `msg`, `req` and `res`, which carry pre-encoded payloads). */
export const encodeFrame = (frame: ClientFrame | ServerFrame): string => JSON.stringify(frame)

/**
 * Coalescing, as both sides do it for `msg` batches and `ack`s: the function returned runs
 * `fn` once at the end of the current tick, however often it is called before then.
 */
export function perTick(fn: () => void): () => void {
  let queued = false
  return () => {
    if (queued) return
    queued = true
    queueMicrotask(() => {
      queued = false
      fn()
    })
  }
}

/**
 * Like {@link perTick}, but once the current task is over, after every microtask it left: what
 * the app did in reaction to this task's events has been written by then. For acks that may
 * ride on those frames (PROTOCOL.md §2.9).
 */
export function afterTask(fn: () => void): () => void {
  let queued = false
  const run = () => {
    queued = false
    fn()
  }
  return () => {
    if (queued) return
    queued = true
    nextTask(run)
  }
}

/**
 * `afterTask` for many objects, as {@link perTickEach} is `perTick` for many: one task for all
 * of them (a server's sessions' acks).
 */
export function afterTaskEach<T>(run: (item: T) => void): (item: T) => void {
  let due = new Set<T>()
  const runAll = () => {
    const items = due
    due = new Set()
    for (const each of items) run(each)
  }
  return (item) => {
    if (due.size === 0) nextTask(runAll)
    due.add(item)
  }
}

let channel: { port: MessagePort; due: (() => void)[] } | undefined

/**
 * Runs `fn` in a task of its own, soon: `setImmediate` where there is one (Node), else a
 * MessageChannel message (browsers), which background tabs do not throttle as they do timers.
 */
function nextTask(fn: () => void): void {
  if (typeof setImmediate === 'function') {
    setImmediate(fn)
    return
  }
  if (!channel) {
    const { port1, port2 } = new MessageChannel()
    const due: (() => void)[] = []
    port1.onmessage = () => {
      for (const each of due.splice(0)) each()
    }
    channel = { port: port2, due }
  }
  if (channel.due.push(fn) === 1) channel.port.postMessage(0)
}

/**
 * `perTick` for many objects: `run(item)` once for every item asked for during the tick, in the
 * order first asked, all in one microtask. A broadcast to 10,000 sessions then schedules one
 * microtask, not 10,000, and no object holds a closure of its own for it.
 */
export function perTickEach<T>(run: (item: T) => void): (item: T) => void {
  let due = new Set<T>()
  return (item) => {
    if (due.size === 0) {
      queueMicrotask(() => {
        const items = due
        // What runs may ask again: that goes into the next tick's set.
        due = new Set()
        for (const each of items) run(each)
      })
    }
    due.add(item)
  }
}

/**
 * Room a `msg` frame needs besides its payloads: `{"t":"msg","s":…,"a":…,"d":[…]}`, at most 60
 * bytes with both numbers at 2^53 − 1. A topic's frame needs its `"tp"` member too (see
 * {@link msgBatcher}).
 */
export const MSG_OVERHEAD = 64

/** The `"tp"` member of a topic's `msg` frame, as it goes between `s` and `d` (nothing without a topic). */
const topicMember = (topic: string | undefined): string => (topic === undefined ? '' : `,"tp":${JSON.stringify(topic)}`)

/**
 * Collects consecutive messages into `msg` frames of at most `maxBytes`, for the writer given.
 * `add` takes a payload already JSON-encoded with its sequence number and UTF-8 size, and, for
 * a server's topic message, the topic it was published to: a frame carries one topic or none
 * (PROTOCOL.md §13), so a change of topic ends the frame. `end` writes what is collected (call
 * it before writing any other frame, and when done).
 */
export function msgBatcher(
  maxBytes: number,
  write: (frame: string) => void,
  /** Where an ack due may ride on the next frame (§2.9): taken (so no longer due) when a frame is written. */
  acks?: AckSource,
): { add(seq: number, payload: string, size: number, topic?: string): void; end(): void } {
  let payloads: string[] = []
  let first = 0
  let bytes = 0
  let topic: string | undefined
  const end = () => {
    // MSG_OVERHEAD keeps room for an `a` member too: a frame with its ack stays within maxBytes.
    if (payloads.length) write(msgFrame(first, payloads, topic, acks?.takeAck()))
    payloads = []
  }
  return {
    add(seq, payload, size, tp) {
      if (payloads.length && (tp !== topic || bytes + size + 1 > maxBytes)) end()
      if (!payloads.length) {
        first = seq
        topic = tp
        bytes = tp === undefined ? MSG_OVERHEAD : MSG_OVERHEAD + utf8Length(topicMember(tp))
      }
      payloads.push(payload)
      bytes += size + 1
    },
    end,
  }
}

/**
 * A `msg` frame from payloads already JSON-encoded; with a topic, a server's topic message
 * (PROTOCOL.md §13); with `ack`, carrying that ack (§2.9).
 */
export const msgFrame = (seq: number, payloads: string[], topic?: string, ack?: number): string =>
  `{"t":"msg","s":${seq}${ackMember(ack)}${topicMember(topic)},"d":[${payloads.join(',')}]}`

/** The side whose due ack may ride on a data frame it writes (PROTOCOL.md §2.9). */
export interface AckSource {
  /** The ack due, if one is and it may ride: returned once (it is no longer due after). */
  takeAck(): number | undefined
}

/** The `"a"` member of a data frame carrying an ack (PROTOCOL.md §2.9), as it goes after `s` (nothing without one). */
export const ackMember = (ack: number | undefined): string => (ack === undefined ? '' : `,"a":${ack}`)

/** The start of a `msg` frame, up to its sequence number: `msgHead(seq) + msgTail(…)` is the frame `msgFrame` makes. */
export const msgHead = (seq: number): string => `{"t":"msg","s":${seq}`

/**
 * A `msg` frame without its sequence number, from its payloads already JSON-encoded and joined
 * with commas: what a server writes alike to every member of a topic (or to every session).
 */
export const msgTail = (payloads: string, topic?: string): string => `${topicMember(topic)},"d":[${payloads}]}`

/**
 * A `miss` frame (server only, PROTOCOL.md §13): `count` messages of `topic` were dropped by the
 * retention before this session got them.
 */
export const missFrame = (seq: number, topic: string, count: number): string => missHead(seq) + missTail(topic, count)

/** The start of a `miss` frame, up to its sequence number: `missHead(seq) + missTail(…)` is the frame. */
export const missHead = (seq: number): string => `{"t":"miss","s":${seq}`

/** A `miss` frame without its sequence number (which the server's outbox gives it when it is written). */
export const missTail = (topic: string, count: number): string => `,"tp":${JSON.stringify(topic)},"n":${count}}`

/** A `req` frame from a payload already JSON-encoded; with `ack`, carrying that ack (§2.9). */
export const reqFrame = (seq: number, id: number, payload: string, ack?: number): string =>
  `{"t":"req","s":${seq}${ackMember(ack)},"id":${id},"d":${payload}}`

/** A `res` frame: a reply (payload already JSON-encoded) or an error. */
export const resFrame = (seq: number, id: number, payload: string | undefined, err?: ReplyErrorBody): string =>
  resHead(seq) + resTail(id, payload, err)

/**
 * A `res` frame without its sequence number (which the server's outbox gives it when it is
 * written): `resHead(seq) + resTail(…)` is the frame.
 */
export const resTail = (id: number, payload: string | undefined, err?: ReplyErrorBody): string =>
  err ? `,"id":${id},"err":${JSON.stringify(err)}}` : `,"id":${id},"d":${payload ?? 'null'}}`

/** The start of a `res` frame, up to its sequence number. */
export const resHead = (seq: number): string => `{"t":"res","s":${seq}`

/**
 * Encodes a payload as JSON, refusing values JSON has no text for (undefined, functions,
 * symbols; BigInt and cycles throw in JSON.stringify). As with JSON everywhere, NaN and
 * Infinity become null and undefined object members are left out. Throws TypeError.
 */
export function encodePayload(data: unknown): string {
  const json = JSON.stringify(data)
  if (json === undefined) throw new TypeError(`${typeof data} cannot be sent: tether.v1 carries JSON values`)
  return json
}
