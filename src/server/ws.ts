/**
 * The `ws` adapter: one accepted WebSocket, from its first frame (`hello`, which finds or
 * creates the session) to its close. Frames are decoded and validated here; protocol
 * violations close the connection with the code docs/PROTOCOL.md names.
 * @module
 */
import type { RawData, WebSocket } from 'ws'
import { CloseCode, decodeFrame, FrameError, SUBPROTOCOL } from '../protocol/frames.js'
import type { Session, SessionConnection } from './sessions.js'

/** What a connection needs from the server. */
export interface ConnectionHooks {
  /** The session `id` if it exists and belongs to `principal`. */
  findSession(id: string, principal: string | undefined): Session | undefined
  newSession(principal: string | undefined): Session
  opened(session: Session, resumed: boolean): void
  closed(session: Session, code: number): void
}

/** Serves tether.v1 on one accepted WebSocket. */
export function attachConnection(ws: WebSocket, principal: string | undefined, hooks: ConnectionHooks): void {
  if (ws.protocol !== SUBPROTOCOL) {
    ws.close(CloseCode.PROTOCOL_ERROR, `the ${SUBPROTOCOL} subprotocol is required`)
    return
  }
  let session: Session | undefined
  const connection: SessionConnection = {
    send: (frame) => ws.send(frame),
    close: (code, reason) => ws.close(code, reason),
  }
  ws.on('message', (data: RawData, isBinary: boolean) => {
    try {
      const frame = decodeFrame(isBinary ? data : data.toString(), 'client')
      if (!frame) return
      if (session) {
        session.receive(frame)
        return
      }
      if (frame.t !== 'hello') throw new FrameError(`"${frame.t}" frame before "hello"`, CloseCode.PROTOCOL_ERROR)
      const found = frame.sid === null ? undefined : hooks.findSession(frame.sid, principal)
      const target = found ?? hooks.newSession(principal)
      // A client whose session is gone acknowledges sequence numbers of the old one: they mean nothing here.
      target.attach(connection, found ? frame.ack : 0, found !== undefined)
      session = target // only once attached: a refused resume must not detach the session's real connection
      hooks.opened(session, found !== undefined)
    } catch (error) {
      if (!(error instanceof FrameError)) throw error
      // Close reasons are limited to 123 bytes.
      ws.close(error.closeCode, error.message.slice(0, 120))
    }
  })
  ws.on('error', () => {}) // a close event follows; ws closes with 1009 on oversized frames itself
  ws.once('close', (code: number) => {
    if (!session) return
    session.detach(connection)
    hooks.closed(session, code)
  })
}
