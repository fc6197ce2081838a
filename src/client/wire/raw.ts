/**
 * Raw mode: plain WebSocket messages to any server. No acknowledgements exist, so an entry
 * is finished the moment it is handed to an open socket; a message written just before a
 * connection dies can be lost (at-most-once for what is in flight, nothing lost while queued).
 * @module
 */
import { DEV } from '../../dev.js'
import { EncodeError, ProtocolError, TetherError } from '../../errors.js'
import type { Payload } from '../outbox.js'
import type { Handover, MessageInfo, Protocol, ProtocolHost, WireData } from './types.js'

/** Binary data as a WebSocket sends it: ArrayBuffer, a view on one, or Blob. */

/** `info` of every message in raw mode: no session, no sequence. */
const RAW_INFO: MessageInfo = Object.freeze({ id: undefined, seq: undefined, redelivered: false, topic: undefined })

export const isBinary = (data: unknown): data is ArrayBuffer | ArrayBufferView | Blob =>
  data instanceof ArrayBuffer || ArrayBuffer.isView(data) || (typeof Blob !== 'undefined' && data instanceof Blob)

/** The result of every message written at once (a settled promise can be shared). */
const WRITTEN: Promise<unknown> = Promise.resolve()

/** The raw-mode protocol: one message per WebSocket frame, nothing added. */
export class RawProtocol<In, Out> implements Protocol<Out> {
  readonly subprotocol = undefined
  readonly requests = false

  constructor(
    private readonly host: ProtocolHost<In>,
    private readonly serialize?: (data: Out) => Payload,
    private readonly deserialize?: (data: WireData) => In,
  ) {}

  /** Encodes, then writes at once when nothing waits, else queues and writes as `handover` allows. */
  queue(data: Out, handover: Handover): Promise<unknown> {
    const payload = this.encode(data)
    if (handover.plain && handover.open && this.writeNow(payload)) return WRITTEN
    const promise = this.host.outbox.add(data, payload, handover)
    if (handover.aheadOfQueue) this.writeAheadOfQueue()
    else if (handover.open) this.flush()
    return promise
  }

  encode(data: Out): Payload {
    let payload: unknown
    try {
      payload = this.serialize ? this.serialize(data) : typeof data === 'string' || isBinary(data) ? data : JSON.stringify(data)
    } catch (cause) {
      throw cause instanceof TetherError
        ? cause
        : new EncodeError(DEV ? `could not encode the message: ${cause instanceof Error ? cause.message : String(cause)}` : '', {
            cause,
            data,
          })
    }
    if (typeof payload !== 'string' && !isBinary(payload)) {
      throw new EncodeError(DEV ? `cannot send ${typeof data}: raw mode sends strings, binary data or JSON-serializable values` : '', {
        data,
      })
    }
    return payload
  }

  attach(): void {
    this.host.ready()
  }

  receive(data: WireData): void {
    let message: In
    try {
      message = this.deserialize ? this.deserialize(data) : (data as In)
    } catch (cause) {
      this.host.report(
        new ProtocolError(DEV ? 'options.deserialize threw on an incoming message; the message was skipped' : '', { cause, data }),
      )
      return
    }
    this.host.deliver(message, RAW_INFO)
  }

  flush(): void {
    this.write(Number.POSITIVE_INFINITY)
  }

  /** Open and nothing queued: a plain `send()` is written at once, with no outbox entry, as raw ws would. */
  private writeNow(payload: Payload): boolean {
    return !this.host.outbox.cursor && this.host.write(payload)
  }

  /** Writes the entry the onOpen hook just put ahead of the queue, and nothing else (the backlog waits for `flush`). */
  writeAheadOfQueue(): void {
    this.write(1)
  }

  /** Writes up to `limit` queued entries, each finished as it is handed over. */
  private write(limit: number): void {
    const { outbox } = this.host
    for (let entry = outbox.cursor; entry && limit-- > 0; entry = outbox.cursor) {
      if (!this.host.write(entry.payload)) return
      outbox.markSent(entry)
      outbox.succeed(entry)
    }
  }

  detach(): void {}
}
