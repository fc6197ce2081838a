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
  /** Registers the connection's heartbeat check (see {@link HeartbeatCheck}); called once, before any frame. */
  watch(ws: WebSocket, check: HeartbeatCheck): void
}

/**
 * Run by the server's heartbeat every `heartbeatInterval`, with whether the previous ping was
 * answered: judges the connection (liveness.ts), cuts it if the client is not answering, and
 * says what next: `'ping'` it again, `'wait'` (its reading is paused: the ping out stays
 * outstanding, and no other is sent), or `'done'` (it is closing).
 */
export type HeartbeatCheck = (answered: boolean) => 'ping' | 'wait' | 'done'

/** Serves tether.v1 on one accepted WebSocket. */
export function attachConnection(ws: WebSocket, principal: string | undefined, hooks: ConnectionHooks): void {
  if (ws.protocol !== SUBPROTOCOL) {
    ws.close(CloseCode.PROTOCOL_ERROR, `the ${SUBPROTOCOL} subprotocol is required`)
    return
  }
  let session: Session | undefined
  let closing = false
  const close = (code: number, reason: string) => {
    closing = true
    ws.close(code, cutReason(reason)) // close reasons are limited to 123 UTF-8 bytes
    // A paused socket would never read the client's close frame: the handshake would hang.
    ws.resume()
  }
  const connection: SessionConnection = {
    // ws calls `written` once the frame is handed to the operating system, or with an error if it never will be.
    send: (frame, written) => ws.send(frame, written),
    close,
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    isOpen: () => !closing && ws.readyState === WebSocket.OPEN,
    bufferedAmount: () => ws.bufferedAmount,
  }
  const liveness = new Liveness()
  hooks.watch(ws, (answered) => {
    if (closing || ws.readyState !== WebSocket.OPEN) return 'done'
    const verdict = liveness.beat({ answered, paused: ws.isPaused, progress: session?.ackProgress(connection) })
    if (verdict === 'silent') ws.terminate()
    else if (verdict === 'unacknowledged') {
      session?.detach(connection, CloseCode.TRY_AGAIN_LATER)
      close(CloseCode.TRY_AGAIN_LATER, 'messages received but not acknowledged within the heartbeat interval')
    }
    return verdict === 'ping' ? 'ping' : verdict === 'paused' ? 'wait' : 'done'
  })
  // A connection that never says hello would hold its socket (and be read, frame after frame) forever.
  const helloDeadline = setTimeout(() => {
    if (!session && !early && !closing) close(CloseCode.PROTOCOL_ERROR, `no "hello" within ${hooks.helloTimeout} ms`)
  }, hooks.helloTimeout)
  /** While the session a hello asked for is being claimed in a shared store: frames that arrived meanwhile. */
  let early: Buffer[] | undefined
  const fail = (error: unknown) => {
    if (!(error instanceof FrameError)) throw error
    // The session is done with this connection now: it acknowledges what it delivered (before the
    // close frame), and nothing it held for the connection is delivered later.
    session?.detach(connection, error.closeCode)
    close(error.closeCode, error.message)
  }
  const opened = (attached: Session) => {
    session = attached // only once attached: a refused resume must not detach the session's real connection
    clearTimeout(helloDeadline)
  }
  ws.on('message', (data: RawData, isBinary: boolean) => {
    // Frames still arriving on a connection being closed (by us, or by server.close() before its
    // hello) are not processed (nor acknowledged): the client resends them when it resumes.
    if (closing || ws.readyState !== WebSocket.OPEN) return
    try {
      if (isBinary) throw new FrameError('binary frame: tether.v1 frames are JSON text', CloseCode.INVALID_DATA)
      const text = asBuffer(data)
      if (early) {
        // A client waits for welcome before it sends: what comes meanwhile is held, bounded as
        // frames before a hello are (no rate limit applies yet).
        if (early.length >= EARLY_MAX || text.byteLength > PRE_HELLO_MAX) {
          throw new FrameError(
            `more than ${EARLY_MAX} frames, or one over ${PRE_HELLO_MAX} bytes, before "welcome"`,
            CloseCode.PROTOCOL_ERROR,
          )
        }
        early.push(text)
        return
      }
      if (session) {
        // Not decoded here: the session decodes a frame once the rate limit lets it in.
        session.receiveText(text, text.byteLength)
        return
      }
      // Before the hello there is no session, so no rate limit or decoding budget: only small
      // frames are decoded (a hello is about 60 bytes).
      if (text.byteLength > PRE_HELLO_MAX) {
        throw new FrameError(`a frame of ${text.byteLength} bytes before "hello" (at most ${PRE_HELLO_MAX})`, CloseCode.PROTOCOL_ERROR)
      }
      const frame = decodeFrame(text.toString(), 'client')
      if (!frame) return
      if (frame.t !== 'hello') throw new FrameError(`"${frame.t}" frame before "hello"`, CloseCode.PROTOCOL_ERROR)
      const found = hooks.hello(frame, principal, connection)
      if (!(found instanceof Promise)) {
        opened(found)
        return
      }
      early = []
      found.then(
        (attached) => {
          const waiting = early ?? []
          early = undefined
          if (closing || ws.readyState !== WebSocket.OPEN) {
            // The client left while the session was being claimed: it waits for a resume again.
            attached.detach(connection, closing ? CloseCode.PROTOCOL_ERROR : 1006)
            return
          }
          opened(attached)
          try {
            for (const frame of waiting) attached.receiveText(frame, frame.byteLength)
          } catch (error) {
            fail(error)
          }
        },
        (error: unknown) => {
          early = undefined
          if (error instanceof FrameError) close(error.closeCode, error.message)
          else close(CloseCode.TRY_AGAIN_LATER, 'the session store is unavailable')
        },
      )
    } catch (error) {
      fail(error)
    }
  })
  ws.on('error', () => {}) // a close event follows; ws closes with 1009 on oversized frames itself
  // The session reports the disconnect, unless a newer connection of it replaced this one.
  ws.once('close', (code: number) => {
    clearTimeout(helloDeadline)
    session?.detach(connection, code)
  })
}

/** Frames held while the session of a hello is claimed in a shared store (a client waits for welcome: it sends none). */
const EARLY_MAX = 64

/** The largest frame decoded before the hello (docs/PROTOCOL.md §4): a hello, with room to grow. */
export const PRE_HELLO_MAX = 4096

/** A message's bytes as one Buffer (`ws` hands over a Buffer unless told otherwise). */
const asBuffer = (data: RawData): Buffer => (Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data))
