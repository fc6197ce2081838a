/**
 * The `ws` adapter: one accepted WebSocket, from its first frame (`hello`, which finds or
 * creates the session, and must come within `helloTimeout`) to its close. The hello is decoded
 * here; later frames go to the session as received, which decodes each once the rate limit lets
 * it in. Protocol violations close the connection with the code docs/PROTOCOL.md names. The
 * server's heartbeat asks the connection, every interval, whether its client answered (liveness.ts).
 *
 * Rate-limit backpressure (admission.ts has the rule) uses `ws`'s `pause()`, which only stops
 * reading from the TCP socket: frames of a chunk already read are still emitted, and held.
 * @module
 */
import { cutReason } from '../protocol/close-reason.js'
import { type ClientFrame, CloseCode, decodeFrame, FrameError, SUBPROTOCOL } from '../protocol/frames.js'
import { Liveness } from './liveness.js'
import { type RawData, WebSocket } from './require-ws.js'
import type { SessionConnection } from './seams.js'
import type { Session } from './sessions.js'

/** A `hello` frame. */
export type HelloFrame = Extract<ClientFrame, { t: 'hello' }>

/** What a connection needs from the server. */
export interface ConnectionHooks {
  /**
   * Finds, claims or creates the session a `hello` asks for, attaches `connection` to it (which
   * writes the welcome), and reports it. With a shared store it takes a round trip to the store:
   * frames that arrive meanwhile wait.
   */
  hello(frame: HelloFrame, principal: string | undefined, connection: SessionConnection): Session | Promise<Session>
  /** How long a connection may take to send its `hello`, in ms, before it is closed with 1002. */
  readonly helloTimeout: number
  /** The WebSocket closed (whether it served a session or was refused here). */
  closed?(ws: WebSocket): void
}

/**
 * Each served WebSocket's connection, for the listeners all connections share. One object per
 * connection and shared listeners, rather than a closure per listener and per method: at
 * 10,000 connections those closures were about 1.4 KiB a connection.
 */
const served = new WeakMap<WebSocket, Connection>()

/** Serves tether.v1 on one accepted WebSocket. */
export function attachConnection(ws: WebSocket, principal: string | undefined, hooks: ConnectionHooks): void {
  if (ws.protocol !== SUBPROTOCOL) {
    ws.once('close', () => hooks.closed?.(ws))
    ws.close(CloseCode.PROTOCOL_ERROR, `the ${SUBPROTOCOL} subprotocol is required`)
    return
  }
  served.set(ws, new Connection(ws, principal, hooks))
  ws.on('message', received)
  ws.on('pong', answered)
  // A close event follows an error; ws closes with 1009 on oversized frames itself.
  if (!ws.listeners('error').includes(ignoreError)) ws.on('error', ignoreError)
  ws.on('close', closed)
}

/**
 * The server's heartbeat, every `heartbeatInterval`, for one connection: judges whether its
 * client answered since the last beat (liveness.ts), cuts it if not, and pings it again. A
 * connection whose reading is paused is neither judged nor pinged: the ping out stays outstanding.
 */
export function beat(ws: WebSocket): void {
  served.get(ws)?.beat()
}

/** An `error` listener that does nothing: a socket's errors are followed by its close, handled there. */
export function ignoreError(): void {}

// The listeners every connection shares: `this` is the WebSocket that emitted.
function received(this: WebSocket, data: RawData, isBinary: boolean): void {
  served.get(this)?.received(data, isBinary)
}

function answered(this: WebSocket): void {
  served.get(this)?.answered()
}

function closed(this: WebSocket, code: number): void {
  served.get(this)?.closed(code)
}

/** One accepted WebSocket, as its session sees it (SessionConnection) and as the server's heartbeat does. */
class Connection implements SessionConnection {
  // Every field is set in the constructor (undefined included), so that it has a place in the
  // object itself: one added later may need a separate property array.
  private session: Session | undefined = undefined
  private closing = false
  /** Cleared once the session is attached (or the connection closed): a connection keeps no timer. */
  private helloDeadline: ReturnType<typeof setTimeout> | undefined
  /** While the session a hello asked for is being claimed in a shared store: frames that arrived meanwhile. */
  private early: Buffer[] | undefined = undefined
  private readonly liveness = new Liveness()
  /** A ping went out at the last beat and no pong came since. */
  private pinged = false

  constructor(
    private readonly ws: WebSocket,
    private readonly principal: string | undefined,
    private readonly hooks: ConnectionHooks,
  ) {
    // A connection that never says hello would hold its socket (and be read, frame after frame) forever.
    this.helloDeadline = setTimeout(() => {
      this.helloDeadline = undefined
      if (!this.session && !this.early && !this.closing) this.close(CloseCode.PROTOCOL_ERROR, `no "hello" within ${hooks.helloTimeout} ms`)
    }, hooks.helloTimeout)
  }

  // ws calls `written` once the frame is handed to the operating system, or with an error if it never will be.
  send(frame: string, written?: (error?: Error) => void): void {
    this.ws.send(frame, written)
  }

  close(code: number, reason: string): void {
    this.closing = true
    this.ws.close(code, cutReason(reason)) // close reasons are limited to 123 UTF-8 bytes
    // A paused socket would never read the client's close frame: the handshake would hang.
    this.ws.resume()
  }

  pause(): void {
    this.ws.pause()
  }

  resume(): void {
    this.ws.resume()
  }

  isOpen(): boolean {
    return !this.closing && this.ws.readyState === WebSocket.OPEN
  }

  bufferedAmount(): number {
    return this.ws.bufferedAmount
  }

  /** See {@link beat}. */
  beat(): void {
    const { ws } = this
    if (this.closing || ws.readyState !== WebSocket.OPEN) return
    const verdict = this.liveness.beat({ answered: !this.pinged, paused: ws.isPaused, progress: this.session?.ackProgress(this) })
    if (verdict === 'paused') return
    this.pinged = false
    if (verdict === 'silent') ws.terminate()
    else if (verdict === 'unacknowledged') {
      this.session?.detach(this, CloseCode.TRY_AGAIN_LATER)
      this.close(CloseCode.TRY_AGAIN_LATER, 'messages received but not acknowledged within the heartbeat interval')
    } else {
      this.pinged = true
      ws.ping()
    }
  }

  answered(): void {
    this.pinged = false
  }

  received(data: RawData, isBinary: boolean): void {
    const { ws } = this
    // Frames still arriving on a connection being closed (by us, or by server.close() before its
    // hello) are not processed (nor acknowledged): the client resends them when it resumes.
    if (this.closing || ws.readyState !== WebSocket.OPEN) return
    try {
      if (isBinary) throw new FrameError('binary frame: tether.v1 frames are JSON text', CloseCode.INVALID_DATA)
      const text = asBuffer(data)
      if (this.early) {
        // A client waits for welcome before it sends: what comes meanwhile is held, bounded as
        // frames before a hello are (no rate limit applies yet).
        if (this.early.length >= EARLY_MAX || text.byteLength > PRE_HELLO_MAX) {
          throw new FrameError(
            `more than ${EARLY_MAX} frames, or one over ${PRE_HELLO_MAX} bytes, before "welcome"`,
            CloseCode.PROTOCOL_ERROR,
          )
        }
        this.early.push(text)
        return
      }
      if (this.session) {
        // Not decoded here: the session decodes a frame once the rate limit lets it in.
        this.session.receiveText(text, text.byteLength)
        return
      }
      this.hello(text)
    } catch (error) {
      this.fail(error)
    }
  }

  /** The first frame: decoded here (there is no session, so no rate limit yet), it must be a hello. */
  private hello(text: Buffer): void {
    // Before the hello there is no session, so no rate limit or decoding budget: only small
    // frames are decoded (a hello is about 60 bytes).
    if (text.byteLength > PRE_HELLO_MAX) {
      throw new FrameError(`a frame of ${text.byteLength} bytes before "hello" (at most ${PRE_HELLO_MAX})`, CloseCode.PROTOCOL_ERROR)
    }
    const frame = decodeFrame(text.toString(), 'client')
    if (!frame) return
    if (frame.t !== 'hello') throw new FrameError(`"${frame.t}" frame before "hello"`, CloseCode.PROTOCOL_ERROR)
    const found = this.hooks.hello(frame, this.principal, this)
    if (!(found instanceof Promise)) {
      this.opened(found)
      return
    }
    this.early = []
    found.then(
      (attached) => {
        const waiting = this.early ?? []
        this.early = undefined
        if (this.closing || this.ws.readyState !== WebSocket.OPEN) {
          // The client left while the session was being claimed: it waits for a resume again.
          attached.detach(this, this.closing ? CloseCode.PROTOCOL_ERROR : 1006)
          return
        }
        this.opened(attached)
        try {
          for (const frame of waiting) attached.receiveText(frame, frame.byteLength)
        } catch (error) {
          this.fail(error)
        }
      },
      (error: unknown) => {
        this.early = undefined
        if (error instanceof FrameError) this.close(error.closeCode, error.message)
        else this.close(CloseCode.TRY_AGAIN_LATER, 'the session store is unavailable')
      },
    )
  }

  private opened(attached: Session): void {
    this.session = attached // only once attached: a refused resume must not detach the session's real connection
    clearTimeout(this.helloDeadline)
    this.helloDeadline = undefined
  }

  private fail(error: unknown): void {
    if (!(error instanceof FrameError)) throw error
    // The session is done with this connection now: it acknowledges what it delivered (before the
    // close frame), and nothing it held for the connection is delivered later.
    this.session?.detach(this, error.closeCode)
    this.close(error.closeCode, error.message)
  }

  /** The server forgets the connection; the session reports the disconnect, unless a newer connection of it replaced this one. */
  closed(code: number): void {
    clearTimeout(this.helloDeadline)
    this.helloDeadline = undefined
    this.hooks.closed?.(this.ws)
    this.session?.detach(this, code)
  }
}

/** Frames held while the session of a hello is claimed in a shared store (a client waits for welcome: it sends none). */
const EARLY_MAX = 64

/** The largest frame decoded before the hello (docs/PROTOCOL.md §4): a hello, with room to grow. */
export const PRE_HELLO_MAX = 4096

/** A message's bytes as one Buffer (`ws` hands over a Buffer unless told otherwise). */
const asBuffer = (data: RawData): Buffer => (Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data))
