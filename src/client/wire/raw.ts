/**
 * Raw mode: plain WebSocket messages to any server. No acknowledgements exist, so an entry
 * is finished the moment it is handed to an open socket; a message written just before a
 * connection dies can be lost (at-most-once for what is in flight, nothing lost while queued).
 * @module
 */
import { EncodeError, ProtocolError } from '../../errors.js'
import type { Payload } from '../outbox.js'
import type { Protocol, ProtocolHost, WireData } from './types.js'

/** Binary data as a WebSocket sends it: ArrayBuffer, a view on one, or Blob. */
export const isBinary = (data: unknown): data is ArrayBuffer | ArrayBufferView | Blob =>
  data instanceof ArrayBuffer || ArrayBuffer.isView(data) || (typeof Blob !== 'undefined' && data instanceof Blob)

/** The raw-mode protocol: one message per WebSocket frame, nothing added. */
export class RawProtocol<In, Out> implements Protocol<Out> {
  readonly subprotocol = undefined
  readonly requests = false

  constructor(
    private readonly host: ProtocolHost<In>,
    private readonly serialize?: (data: Out) => Payload,
    private readonly deserialize?: (data: WireData) => In,
  ) {}

  encode(data: Out): Payload {
    const payload = this.serialize ? this.serialize(data) : typeof data === 'string' || isBinary(data) ? data : JSON.stringify(data)
    if (typeof payload !== 'string' && !isBinary(payload)) {
      throw new EncodeError(`cannot send ${typeof data}: raw mode sends strings, binary data or JSON-serializable values`, { data })
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
      this.host.report(new ProtocolError('options.deserialize threw on an incoming message; the message was skipped', { cause, data }))
      return
    }
    this.host.deliver(message)
  }

  writeNow(payload: Payload): boolean {
    return this.host.write(payload)
  }

  flush(): void {
    this.write(Number.POSITIVE_INFINITY)
  }

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
