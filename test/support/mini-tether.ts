/**
 * A small tether.v1 server in echo mode (docs/PROTOCOL.md §12.2), written from the document
 * alone and independent of src/server/, with switches that break one rule each: the conformance
 * kit's tests run the kit against it, whole and broken. One item per frame, sessions in memory
 * that never expire, `max` 64 KiB, `reqs` 4.
 */
import { WebSocket, WebSocketServer } from 'ws'

/** Rules the server breaks on purpose. */
export interface Faults {
  /** Delivers (and so echoes) items it already delivered: no duplicate check (§2.4). */
  duplicates?: boolean
  /** Closes with this code where 1007 is due: text that is not JSON, binary messages (§1.5). */
  notJsonCode?: number
  /** Closes with 1002 on frames of unknown types instead of ignoring them (§3.4, §4.1). */
  strictTypes?: boolean
  /** Says in welcome.sent how far the client acknowledged (hello.ack), not how far it sent: too small (§4.10). */
  sentAcked?: boolean
  /** Says pa in its welcome but ignores the acks riding on the client's frames (§2.9). */
  paIgnored?: boolean
}

/** A running mini server. */
export interface MiniTether {
  readonly url: string
  close(): Promise<void>
}

const MAX = 64 * 1024
const REQS = 4
const SERVER_TYPES = new Set(['welcome', 'res', 'pong'])
const CLIENT_TYPES = new Set(['hello', 'msg', 'req', 'ack', 'ping'])

type Frame = Record<string, unknown> & { t: string }

interface Session {
  readonly sid: string
  rx: number
  tx: number
  /** Items sent and not acknowledged, in order: resent on resume. */
  outbox: { seq: number; frame: Frame }[]
  pendingRequests: number
  connection: WebSocket | undefined
}

class Refusal extends Error {
  constructor(readonly code: number) {
    super(`close ${code}`)
  }
}

const isInt = (value: unknown, min = 0): value is number => Number.isSafeInteger(value) && (value as number) >= min

/** Starts the server on a free port of 127.0.0.1. */
export async function startMiniTether(faults: Faults = {}): Promise<MiniTether> {
  const sessions = new Map<string, Session>()
  let nextSid = 0
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    maxPayload: MAX,
    handleProtocols: (offered) => (offered.has('tether.v1') ? 'tether.v1' : false),
  })
  await new Promise<void>((resolve) => wss.once('listening', resolve))

  const send = (session: Session, frame: Frame) => {
    if (session.connection?.readyState === WebSocket.OPEN) session.connection.send(JSON.stringify(frame))
  }
  const item = (session: Session, body: Frame) => {
    const seq = ++session.tx
    const frame: Frame = { ...body, s: seq }
    session.outbox.push({ seq, frame })
    send(session, frame)
  }

  wss.on('connection', (ws) => {
    ws.on('error', () => {})
    if (ws.protocol !== 'tether.v1') {
      ws.close(1002, 'tether.v1 required')
      return
    }
    let session: Session | undefined
    let gone = false
    let ackDue = false
    const ackSoon = () => {
      if (ackDue) return
      ackDue = true
      queueMicrotask(() => {
        ackDue = false
        if (session && !gone) send(session, { t: 'ack', s: session.rx })
      })
    }
    const refuse = (code: number) => {
      throw new Refusal(code)
    }

    const hello = (frame: Frame) => {
      const { sid, ack, acked, sent } = frame
      if ((sid !== null && typeof sid !== 'string') || !isInt(ack)) refuse(1002)
      if ((acked !== undefined && !isInt(acked)) || (sent !== undefined && !isInt(sent))) refuse(1002)
      const known = typeof sid === 'string' ? sessions.get(sid) : undefined
      const lost = known !== undefined && ((ack as number) > known.tx || ((acked ?? 0) as number) > known.rx)
      if (known && !lost) {
        known.connection?.close(1000, 'replaced')
        known.connection = ws
        known.outbox = known.outbox.filter((entry) => entry.seq > (ack as number))
        session = known
        const sent = faults.sentAcked ? ack : known.tx
        send(known, { t: 'welcome', sid: known.sid, resumed: true, ack: known.rx, max: MAX, reqs: REQS, sent })
        for (const entry of known.outbox) send(known, entry.frame)
        return
      }
      const fresh: Session = {
        sid: `mini-${++nextSid}-${Math.random().toString(36).slice(2)}`,
        rx: 0,
        tx: 0,
        outbox: [],
        pendingRequests: 0,
        connection: ws,
      }
      sessions.set(fresh.sid, fresh)
      session = fresh
      const reason = sid === null ? undefined : lost ? 'lost' : 'unknown'
      send(fresh, {
        t: 'welcome',
        sid: fresh.sid,
        resumed: false,
        ack: 0,
        max: MAX,
        reqs: REQS,
        sent: 0,
        ...(reason && { reason }),
        ...(faults.paIgnored && { pa: true }),
      })
    }

    /** §2.4: whether item `n` is new (delivered), a duplicate (false), or a gap (refused). */
    const sequenced = (s: Session, n: number): boolean => {
      if (n > s.rx + 1) refuse(1002)
      ackSoon()
      if (n <= s.rx && !faults.duplicates) return false
      s.rx = Math.max(s.rx, n)
      return true
    }

    const request = (s: Session, id: number, data: unknown) => {
      const fields = typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : {}
      const delay = typeof fields.delay === 'number' ? fields.delay : 0
      s.pendingRequests++
      setTimeout(() => {
        s.pendingRequests--
        item(
          s,
          typeof fields.fail === 'string'
            ? { t: 'res', id, err: { code: fields.fail, message: 'failed' } }
            : { t: 'res', id, d: { echo: data } },
        )
      }, delay)
    }

    const handle = (frame: Frame) => {
      if (!CLIENT_TYPES.has(frame.t)) {
        // Unknown types and the server's own are ignored, before the hello too (§3.4, §4.1).
        if (faults.strictTypes && !SERVER_TYPES.has(frame.t)) refuse(1002)
        return
      }
      if (!session) {
        if (frame.t !== 'hello') refuse(1002)
        hello(frame)
        return
      }
      const s = session
      switch (frame.t) {
        case 'hello':
          return refuse(1002)
        case 'ping':
          return send(s, { t: 'pong' })
        case 'ack':
          if (!isInt(frame.s) || frame.s > s.tx) return refuse(1002)
          s.outbox = s.outbox.filter((entry) => entry.seq > (frame.s as number))
          return
        case 'msg': {
          const items = frame.d
          if (!isInt(frame.s, 1) || !Array.isArray(items) || items.length === 0) return refuse(1002)
          items.forEach((data, i) => {
            if (sequenced(s, (frame.s as number) + i)) item(s, { t: 'msg', d: [data] })
          })
          return
        }
        case 'req': {
          if (!isInt(frame.s, 1) || !isInt(frame.id) || !('d' in frame)) return refuse(1002)
          if (frame.s === s.rx + 1 && s.pendingRequests >= REQS) {
            send(s, { t: 'ack', s: s.rx })
            return refuse(1013)
          }
          if (sequenced(s, frame.s)) request(s, frame.id, frame.d)
          return
        }
      }
    }

    ws.on('message', (data, isBinary) => {
      // Frames on a connection replaced by a resume touch nothing (§4.9).
      if (gone || (session && session.connection !== ws)) return
      try {
        if (isBinary) refuse(faults.notJsonCode ?? 1007)
        let value: unknown
        try {
          value = JSON.parse(data.toString())
        } catch {
          refuse(faults.notJsonCode ?? 1007)
        }
        if (typeof value !== 'object' || value === null || Array.isArray(value) || typeof (value as Frame).t !== 'string') refuse(1002)
        handle(value as Frame)
      } catch (error) {
        if (!(error instanceof Refusal)) throw error
        gone = true
        ws.close(error.code, 'refused')
      }
    })
    ws.on('close', () => {
      gone = true
      if (session?.connection === ws) session.connection = undefined
    })
  })

  const { port } = wss.address() as { port: number }
  return {
    url: `ws://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate()
        wss.close(() => resolve())
      }),
  }
}
