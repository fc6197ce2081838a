/**
 * One WebSocket connection of the conformance kit to the server under test: what it received,
 * in order, how it closed, and bounded waits on both. It knows nothing of sessions (session.ts
 * does); it only tells frames (JSON objects with a string `t`, PROTOCOL.md §1.5) from anything
 * else the server sends.
 * @module
 */
import { WebSocket } from 'ws'

/** A tether frame as received: a JSON object with a string `t`. */
export type Frame = { readonly t: string } & Readonly<Record<string, unknown>>

/** One message received from the server. */
export interface Received {
  /** The message as text (binary messages are decoded as UTF-8, for the report). */
  readonly text: string
  /** Its size in bytes on the wire. */
  readonly bytes: number
  readonly binary: boolean
  /** The frame it holds, when it is one (§1.5). */
  readonly frame: Frame | undefined
}

/** How the connection closed: the close frame's code and reason (1006 when there was none). */
export interface Closed {
  readonly code: number
  readonly reason: string
}

/**
 * A rule the server broke, with the section of PROTOCOL.md it breaks when that is not the one
 * the check is about (a check of resume may find a sequence gap, §2.4).
 */
export class Violation extends Error {
  constructor(
    message: string,
    readonly section?: string,
  ) {
    super(message)
    this.name = 'Violation'
  }
}

/** An upgrade the server answered with an HTTP status instead of switching protocols. */
export interface Refusal {
  readonly refused: number
}

/** Short, one-line form of what was received, for reports. */
export const shown = (text: string, max = 120): string => {
  const line = text.replace(/\s+/g, ' ')
  return line.length > max ? `${line.slice(0, max)}… (${Buffer.byteLength(text)} bytes)` : line
}

/** One connection to the server under test. */
export class Peer {
  /** Everything received, in order. */
  readonly received: Received[] = []
  /** Set once the connection closed. */
  closed: Closed | undefined
  private readonly wakers = new Set<() => void>()

  private constructor(
    private readonly ws: WebSocket,
    private readonly timeout: number,
  ) {
    ws.on('message', (data: Buffer, binary: boolean) => {
      const text = data.toString('utf8')
      this.received.push({ text, bytes: data.byteLength, binary, frame: binary ? undefined : asFrame(text) })
      this.wake()
    })
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString('utf8') }
      this.wake()
    })
    // A close event follows every error of an open connection.
    ws.on('error', () => {})
  }

  /**
   * Opens a connection offering `protocols`. Resolves with the peer once open, or with the
   * HTTP status of a refused upgrade; rejects with a Violation when the connection fails
   * otherwise (including a server that selects a subprotocol that was not offered).
   */
  static open(url: string, protocols: string[], timeout: number): Promise<Peer | Refusal> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols, { handshakeTimeout: timeout })
      const fail = (error: Error) => {
        ws.terminate()
        reject(new Violation(`the WebSocket upgrade failed: ${error.message}`))
      }
      ws.once('unexpected-response', (request, response) => {
        ws.off('error', fail)
        ws.on('error', () => {})
        request.destroy()
        resolve({ refused: response.statusCode ?? 0 })
      })
      ws.once('error', fail)
      ws.once('open', () => {
        ws.off('error', fail)
        resolve(new Peer(ws, timeout))
      })
    })
  }

  /** The subprotocol the server selected ('' for none). */
  get protocol(): string {
    return this.ws.protocol
  }

  /** Sends a frame (an object, written as JSON), or text as it is. */
  send(frame: object | string): void {
    if (this.ws.readyState !== WebSocket.OPEN) return // the server closed it: what the check waits for will say so
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame))
  }

  /** Sends a binary message. */
  sendBinary(data: Buffer): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data, { binary: true })
  }

  /**
   * Waits until `check` returns something other than undefined, re-run on every message and on
   * the close. Throws a Violation naming `what` when the connection closes first, or when
   * `timeout` ms (the kit's timeout by default) pass.
   */
  until<T>(check: () => T | undefined, what: string, timeout = this.timeout): Promise<T> {
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined
      const attempt = (): boolean => {
        let value: T | undefined
        try {
          value = check()
        } catch (error) {
          finish()
          reject(error)
          return true
        }
        if (value !== undefined) {
          finish()
          resolve(value)
          return true
        }
        if (this.closed) {
          finish()
          reject(new Violation(`the server closed the connection (${describeClose(this.closed)}) before ${what}`))
          return true
        }
        return false
      }
      const finish = () => {
        clearTimeout(timer)
        this.wakers.delete(waker)
      }
      const waker = () => {
        attempt()
      }
      if (attempt()) return
      this.wakers.add(waker)
      timer = setTimeout(() => {
        finish()
        reject(new Violation(`waited ${timeout} ms for ${what}${this.lastSeen()}`))
      }, timeout)
    })
  }

  /** Waits for the connection to close; a Violation when it stays open `timeout` ms. */
  async whenClosed(what: string, timeout = this.timeout): Promise<Closed> {
    if (this.closed) return this.closed
    return new Promise((resolve, reject) => {
      const waker = () => {
        if (!this.closed) return
        clearTimeout(timer)
        this.wakers.delete(waker)
        resolve(this.closed)
      }
      const timer = setTimeout(() => {
        this.wakers.delete(waker)
        reject(new Violation(`the connection stayed open ${timeout} ms after ${what}${this.lastSeen()}`))
      }, timeout)
      this.wakers.add(waker)
    })
  }

  /**
   * Expects the server to close the connection with `code` after `what` (the kit's timeout).
   * The Violation says what came instead.
   */
  async expectClose(code: number, what: string): Promise<void> {
    const closed = await this.whenClosed(what)
    if (closed.code !== code) throw new Violation(`after ${what}, the server closed with ${describeClose(closed)}; expected ${code}`)
  }

  /** Closes from the kit's side (1000), waiting for the close handshake a while, then cuts the socket. */
  async close(): Promise<void> {
    if (this.closed) return
    this.ws.close(1000, 'conformance kit')
    await this.whenClosed('the kit closed it', 1000).catch(() => this.ws.terminate())
  }

  /** Cuts the TCP connection at once, with no close frame (a network failure, to the server). */
  terminate(): void {
    this.ws.terminate()
  }

  /** What was received last, for a timeout's message. */
  private lastSeen(): string {
    const last = this.received.at(-1)
    return last ? ` (the last message received was ${shown(last.text)})` : ' (nothing was received)'
  }

  private wake(): void {
    for (const waker of [...this.wakers]) waker()
  }
}

/** A close as a report shows it: `1002 "reason"`, or 1006 with no close frame. */
export function describeClose(closed: Closed): string {
  if (closed.code === 1006) return '1006, no close frame'
  return closed.reason ? `${closed.code} "${shown(closed.reason, 60)}"` : String(closed.code)
}

function asFrame(text: string): Frame | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  return typeof (value as { t?: unknown }).t === 'string' ? (value as Frame) : undefined
}
