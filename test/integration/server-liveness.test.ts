/**
 * The reference server's heartbeat against real clients: only answers count as life (a pong to
 * its protocol ping, or acks that keep up), never frames the client merely sends.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { type ClientOptions, WebSocket } from 'ws'
import type { Session, TetherServer } from '../../src/server/index.js'
import { cleanupTether, defer, sleep, startTether, tcpSocketOf, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(cleanupTether)

/** Server-side disconnects, with when they happened. */
function disconnects(server: TetherServer) {
  const seen: { code: number; at: number; session: Session }[] = []
  server.on('disconnect', (session, code) => seen.push({ code, at: Date.now(), session }))
  return seen
}

/** A raw tether.v1 client that says hello and never acknowledges anything; resolves once welcomed. */
async function rawClient(server: TetherServer, options: ClientOptions = {}) {
  const ws = new WebSocket(urlOf(server), ['tether.v1'], options)
  defer(() => ws.terminate())
  ws.on('error', () => {})
  const frames: { t: string }[] = []
  let closed: number | undefined
  ws.on('close', (code) => {
    closed = code
  })
  ws.on('message', (data) => frames.push(JSON.parse(String(data))))
  await withTimeout(new Promise((resolve) => ws.once('open', resolve)), 3000, 'open')
  ws.send(JSON.stringify({ t: 'hello', sid: null, ack: 0 }))
  await waitFor(() => frames.some((f) => f.t === 'welcome'), 3000, 'welcome')
  return { ws, frames, closed: () => closed }
}

describe('server heartbeat', () => {
  it('terminates a client that sends a frame every interval but never reads, within two intervals', async () => {
    const interval = 150
    const server = await startTether({ heartbeatInterval: interval })
    const seen = disconnects(server)
    const { ws } = await rawClient(server)
    const session = [...server.sessions.values()][0]
    // It stops reading (its TCP socket is paused) and goes on sending, faster than the heartbeat.
    tcpSocketOf(ws).pause()
    const stoppedAt = Date.now()
    let s = 0
    const chatter = setInterval(() => ws.send(JSON.stringify({ t: 'msg', s: ++s, d: [s] })), interval / 3)
    defer(() => clearInterval(chatter))
    for (let i = 0; i < 20; i++) session.send({ i }) // written, never read
    await waitFor(() => seen.length > 0, interval * 6, 'the mute client to be terminated')
    clearInterval(chatter)
    expect(seen[0].code).toBe(1006) // terminated: no close handshake with a client that does not read
    expect(seen[0].at - stoppedAt).toBeLessThanOrEqual(2 * interval + 100)
  })

  it('terminates a client that reads but neither pongs nor acknowledges, although it sends frames', async () => {
    const interval = 150
    const server = await startTether({ heartbeatInterval: interval })
    const seen = disconnects(server)
    const { ws } = await rawClient(server, { autoPong: false })
    const startedAt = Date.now()
    const chatter = setInterval(() => ws.send('{"t":"ack","s":0}'), interval / 3)
    defer(() => clearInterval(chatter))
    await waitFor(() => seen.length > 0, interval * 6, 'the client to be terminated')
    clearInterval(chatter)
    expect(seen[0].code).toBe(1006)
    expect(seen[0].at - startedAt).toBeLessThanOrEqual(2 * interval + 100)
  })

  it('never terminates healthy clients, with messages flowing both ways', async () => {
    const interval = 40
    const server = await startTether({ heartbeatInterval: interval })
    const seen = disconnects(server)
    server.on('message', (data, session) => void session.send({ echo: data }).catch(() => {}))
    const a = tetherClient<unknown, number>(urlOf(server))
    const b = tetherClient<unknown, number>(urlOf(server))
    await waitFor(() => a.sock.state === 'open' && b.sock.state === 'open', 3000, 'both open')
    // A client that only reads and pongs (it is sent nothing, so it owes no acks) is alive too.
    const quiet = await rawClient(server)
    for (let i = 0; i < 30; i++) {
      await withTimeout(Promise.all([a.sock.send(i), b.sock.send(i)]), 2000, 'sends acknowledged')
      void server.sessions.get(a.sock.sessionId ?? '')?.send({ push: i })
      await sleep(interval / 2)
    }
    await sleep(interval * 3)
    expect(seen).toEqual([])
    expect(a.closes).toEqual([])
    expect(b.closes).toEqual([])
    expect(quiet.closed()).toBeUndefined()
    expect(a.messages).toHaveLength(60)
  })

  it('closes with 1013 a client that reads and pongs but never acknowledges what it was sent (it resumes later)', async () => {
    const interval = 100
    const server = await startTether({ heartbeatInterval: interval })
    const seen = disconnects(server)
    const client = await rawClient(server)
    const session = [...server.sessions.values()][0]
    const sentAt = Date.now()
    const delivery = session.send('never acknowledged')
    await waitFor(() => client.frames.some((f) => f.t === 'msg'), 2000, 'the message to arrive')
    await waitFor(() => client.closed() !== undefined, interval * 8, 'the close')
    expect(client.closed()).toBe(1013)
    expect(seen.map((d) => d.code)).toEqual([1013])
    // At least one interval to acknowledge, at most three (written just after a beat, judged two beats later).
    expect(seen[0].at - sentAt).toBeGreaterThanOrEqual(interval - 20)
    expect(seen[0].at - sentAt).toBeLessThanOrEqual(3 * interval + 60)
    // The message waits for the resume: nothing is lost.
    expect(session.pending).toBe(1)
    expect(server.sessions.has(session.id)).toBe(true)
    void delivery.catch(() => {})
  })
})
