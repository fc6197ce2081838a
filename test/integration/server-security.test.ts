/**
 * The reference server's hardening against real connections: the origin allowlist,
 * authentication (and the client's reaction to 4401), sessions bound to their principal,
 * and unguessable session ids.
 */
import type { IncomingMessage } from 'node:http'
import * as net from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { WebSocket } from 'ws'
import { DeliveryError } from '../../src/index.js'
import type { Session, TetherServerOptions } from '../../src/server/index.js'
import {
  cleanupTether,
  defer,
  fast,
  serverSockets,
  sleep,
  startTether,
  tetherClient,
  urlOf,
  waitFor,
  withTimeout,
} from '../support/tether.js'

afterEach(cleanupTether)

/** Opens a raw `ws` client offering tether.v1; resolves with how the handshake ended. */
function tryConnect(url: string, options: { origin?: string } = {}) {
  return withTimeout(
    new Promise<{ outcome: 'open'; ws: WebSocket } | { outcome: 'refused'; status: number } | { outcome: 'error'; message: string }>(
      (resolve) => {
        const ws = new WebSocket(url, ['tether.v1'], options)
        defer(() => ws.terminate())
        ws.on('open', () => resolve({ outcome: 'open', ws }))
        ws.on('unexpected-response', (_req, res) => {
          resolve({ outcome: 'refused', status: res.statusCode ?? 0 })
          ws.terminate()
        })
        ws.on('error', (e) => resolve({ outcome: 'error', message: e.message }))
      },
    ),
    3000,
    `connecting to ${url}`,
  )
}

/** A raw tether.v1 client: sends `hello`, resolves with the `welcome` (or the close). */
async function rawHello(url: string, sid: string | null) {
  const ws = new WebSocket(url, ['tether.v1'])
  defer(() => ws.terminate())
  ws.on('error', () => {})
  return withTimeout(
    new Promise<{ welcome?: { sid: string; resumed: boolean }; close?: number }>((resolve) => {
      ws.on('open', () => ws.send(JSON.stringify({ t: 'hello', sid, ack: 0 })))
      ws.on('message', (data) => {
        const frame = JSON.parse(String(data))
        if (frame.t === 'welcome') resolve({ welcome: frame })
      })
      ws.on('close', (code) => resolve({ close: code }))
    }),
    3000,
    'a welcome',
  )
}

describe('allowedOrigins', () => {
  it('accepts listed origins and refuses others (and a missing Origin) with HTTP 403', async () => {
    const server = await startTether({ allowedOrigins: ['https://app.example'] })
    const good = await tryConnect(urlOf(server), { origin: 'https://app.example' })
    expect(good.outcome).toBe('open')
    if (good.outcome === 'open') expect(good.ws.protocol).toBe('tether.v1')
    expect(await tryConnect(urlOf(server), { origin: 'https://evil.example' })).toEqual({ outcome: 'refused', status: 403 })
    expect(await tryConnect(urlOf(server), { origin: 'https://app.example.evil.example' })).toEqual({ outcome: 'refused', status: 403 })
    expect(await tryConnect(urlOf(server))).toEqual({ outcome: 'refused', status: 403 })
    expect(server.sessions.size).toBe(0) // the accepted raw client never said hello
  })

  it('accepts a predicate', async () => {
    const seen: (string | undefined)[] = []
    const server = await startTether({
      allowedOrigins: (origin) => {
        seen.push(origin)
        return origin?.endsWith('.trusted.example') ?? false
      },
    })
    expect((await tryConnect(urlOf(server), { origin: 'https://a.trusted.example' })).outcome).toBe('open')
    expect(await tryConnect(urlOf(server), { origin: 'https://trusted.example.evil' })).toEqual({ outcome: 'refused', status: 403 })
    expect(seen).toEqual(['https://a.trusted.example', 'https://trusted.example.evil'])
  })

  it('a refused TetherSocket sends nothing to the handlers', async () => {
    const server = await startTether({ allowedOrigins: ['https://app.example'] })
    const handled: unknown[] = []
    server.on('message', (data) => handled.push(data))
    const { sock } = tetherClient(urlOf(server), { reconnect: { minDelay: 10, maxDelay: 50, maxRetries: 2 } })
    const sent = sock.send('sneaky')
    sent.catch(() => {})
    await waitFor(() => sock.state === 'closed', 3000, 'giving up')
    await expect(sent).rejects.toBeInstanceOf(DeliveryError)
    expect(handled).toEqual([])
    expect(server.sessions.size).toBe(0)
  })
})

describe('authenticate', () => {
  const refusals: [string, TetherServerOptions['authenticate']][] = [
    ['returns false', () => false],
    ['returns nothing', () => undefined],
    ['resolves false', async () => false],
  ]

  it.each(refusals)('%s: close 4401, and a default TetherSocket stops in state closed without retrying', async (_name, authenticate) => {
    let calls = 0
    const server = await startTether({
      authenticate: (request) => {
        calls++
        return authenticate!(request)
      },
    })
    const handled: unknown[] = []
    server.on('message', (data) => handled.push(data))
    const { sock, closes } = tetherClient(urlOf(server))
    const sent = sock.send('hello?')
    sent.catch(() => {})
    await waitFor(() => sock.state === 'closed', 3000, "state 'closed'")
    await sleep(300)
    expect(calls).toBe(1)
    expect(sock.state).toBe('closed')
    expect(closes.map((c) => c.code)).toEqual([4401])
    expect(closes[0].willReconnect).toBe(false)
    await expect(sent).rejects.toBeInstanceOf(DeliveryError)
    expect(handled).toEqual([])
    expect(server.sessions.size).toBe(0)
  })

  it.each([
    [
      'throws',
      () => {
        throw new Error('auth backend unreachable')
      },
    ],
    ['rejects', async () => Promise.reject(new Error('auth backend unreachable'))],
  ] as [string, TetherServerOptions['authenticate']][])(
    '%s: not a refusal but a failure to decide: close 1013, and the client tries again later',
    async (_name, authenticate) => {
      let calls = 0
      const server = await startTether({
        authenticate: (request) => {
          calls++
          return authenticate!(request)
        },
      })
      server.on('error', () => {})
      const { sock, closes } = tetherClient(urlOf(server), { reconnect: { minDelay: 10, maxDelay: 50, busyDelay: 20 } })
      await waitFor(() => calls >= 2, 3000, 'a second attempt')
      expect(closes[0]).toMatchObject({ code: 1013, willReconnect: true })
      expect(sock.state).not.toBe('closed')
    },
  )

  it('gets the upgrade request, and a session belongs to the principal that created it', async () => {
    const userOf = (request: IncomingMessage) => new URL(request.url ?? '/', 'http://x').searchParams.get('user') ?? false
    const server = await startTether({ authenticate: userOf })
    const created: Session[] = []
    const resumed: Session[] = []
    server.on('session', (s) => created.push(s))
    server.on('resume', (s) => resumed.push(s))
    const alice = tetherClient(urlOf(server, '/?user=alice'))
    await waitFor(() => alice.sock.state === 'open', 3000, 'alice open')
    const aliceSid = alice.sock.sessionId!
    expect(created.map((s) => s.principal)).toEqual(['alice'])

    // Mallory knows Alice's session id, but is authenticated as someone else.
    const mallory = await rawHello(urlOf(server, '/?user=mallory'), aliceSid)
    expect(mallory.welcome).toBeDefined()
    expect(mallory.welcome!.resumed).toBe(false)
    expect(mallory.welcome!.sid).not.toBe(aliceSid)
    expect(resumed).toHaveLength(0)
    expect(created.map((s) => s.principal)).toEqual(['alice', 'mallory'])
    // Alice's connection was not disturbed.
    await sleep(50)
    expect(alice.closes).toEqual([])
    expect(alice.sock.state).toBe('open')

    // Without credentials: refused.
    expect((await rawHello(urlOf(server, '/'), aliceSid)).close).toBe(4401)

    // Alice herself resumes it.
    alice.sock.reconnect()
    await waitFor(() => resumed.length === 1 && alice.sock.state === 'open', 3000, 'alice resumes')
    expect(resumed[0].id).toBe(aliceSid)
    expect(alice.sock.sessionId).toBe(aliceSid)
    expect(alice.sessions).toHaveLength(1)
  })

  it("messages of one principal never reach another principal's session", async () => {
    const server = await startTether({
      authenticate: (request) => new URL(request.url ?? '/', 'http://x').searchParams.get('user') ?? false,
    })
    const received: [unknown, string | undefined][] = []
    server.on('message', (data, s) => received.push([data, s.principal]))
    const alice = tetherClient(urlOf(server, '/?user=alice'))
    await waitFor(() => alice.sock.state === 'open', 3000, 'alice open')
    // Mallory presents Alice's session id and sends: it lands in Mallory's own new session.
    const ws = new WebSocket(urlOf(server, '/?user=mallory'), ['tether.v1'])
    defer(() => ws.terminate())
    ws.on('error', () => {})
    await new Promise<void>((resolve) => ws.on('open', () => resolve()))
    ws.send(JSON.stringify({ t: 'hello', sid: alice.sock.sessionId, ack: 0 }))
    ws.send('{"t":"msg","s":1,"d":["from mallory"]}')
    await alice.sock.send('from alice')
    await waitFor(() => received.length === 2, 2000, 'both messages')
    expect(received).toContainEqual(['from mallory', 'mallory'])
    expect(received).toContainEqual(['from alice', 'alice'])
  })
})

describe('resume attempts that fail', () => {
  it('a refused resume (bogus ack) gets a new session, told the old one was lost, and does not disturb the session nor report it disconnected', async () => {
    const server = await startTether()
    const disconnects: [string, number][] = []
    server.on('disconnect', (s, code) => disconnects.push([s.id, code]))
    const { sock, closes } = tetherClient(urlOf(server))
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const sid = sock.sessionId!
    const ws = new WebSocket(urlOf(server), ['tether.v1'])
    defer(() => ws.terminate())
    ws.on('error', () => {})
    const welcome = await withTimeout(
      new Promise<Record<string, unknown>>((resolve) => {
        ws.on('open', () => ws.send(JSON.stringify({ t: 'hello', sid, ack: 999 })))
        ws.on('message', (data) => resolve(JSON.parse(String(data))))
      }),
      3000,
      'the refusal',
    )
    expect(welcome).toMatchObject({ t: 'welcome', resumed: false, reason: 'lost' })
    expect(welcome.sid).not.toBe(sid)
    await sleep(50)
    expect(server.sessions.get(sid)?.connected).toBe(true)
    expect(closes).toEqual([])
    expect(disconnects).toEqual([]) // the session's own connection never dropped
    await withTimeout(sock.send('still fine'), 2000, 'send')
  })
})

describe('session ids', () => {
  it('are 22-character base64url strings (128 bits), distinct per session', async () => {
    const server = await startTether()
    const clients = Array.from({ length: 12 }, () => tetherClient(urlOf(server)))
    await waitFor(() => clients.every((c) => c.sock.state === 'open'), 3000, 'all open')
    const ids = clients.map((c) => c.sock.sessionId!)
    for (const id of ids) {
      expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/)
      expect(Buffer.from(id, 'base64url')).toHaveLength(16)
    }
    expect(new Set(ids).size).toBe(ids.length)
    expect(new Set(server.sessions.keys())).toEqual(new Set(ids))
  })

  it('an unknown session id gets a new session, not an error', async () => {
    const server = await startTether()
    const result = await rawHello(urlOf(server), 'AAAAAAAAAAAAAAAAAAAAAA')
    expect(result.welcome?.resumed).toBe(false)
    expect(result.welcome?.sid).not.toBe('AAAAAAAAAAAAAAAAAAAAAA')
  })
})

describe('hostile upgrade requests cannot crash the server', () => {
  const rawUpgrade = (port: number, target: string, headers = '') =>
    withTimeout(
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () =>
          socket.write(
            `GET ${target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
              `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tether.v1\r\n${headers}\r\n`,
          ),
        )
        socket.once('data', (data) => {
          resolve(String(data).split('\r\n')[0])
          socket.destroy()
        })
        socket.once('error', reject)
      }),
      3000,
      'an answer to the upgrade',
    )

  it('a request target that is no URL path (GET //) is refused, and the server goes on', async () => {
    const server = await startTether({ path: '/ws' })
    expect(await rawUpgrade(server.port, '//')).toMatch(/^HTTP\/1.1 404/)
    expect(await rawUpgrade(server.port, '/ws')).toMatch(/^HTTP\/1.1 101/)
  })

  it('an allowedOrigins predicate that throws refuses with 403 instead of crashing', async () => {
    const server = await startTether({ allowedOrigins: (origin) => new URL(origin ?? '').hostname === 'app.example' })
    expect(await rawUpgrade(server.port, '/', 'Origin: null\r\n')).toMatch(/^HTTP\/1.1 403/)
    expect(await rawUpgrade(server.port, '/', 'Origin: https://app.example\r\n')).toMatch(/^HTTP\/1.1 101/)
  })

  it('an authenticate hook that throws (backend down) closes with 1013, so clients come back later, and is reported', async () => {
    const server = await startTether({
      authenticate: () => {
        throw new Error('auth backend unreachable')
      },
    })
    const errors: Error[] = []
    server.on('error', (error) => errors.push(error))
    const ws = new WebSocket(urlOf(server), ['tether.v1'])
    defer(() => ws.terminate())
    const code = await withTimeout(new Promise<number>((resolve) => ws.once('close', resolve)), 3000, 'close')
    expect(code).toBe(1013)
    expect(errors.map((e) => e.message)).toEqual(['auth backend unreachable'])
  })

  it('broadcast to a session whose outbox is full raises no unhandled rejection', async () => {
    const server = await startTether({ maxQueue: 2 })
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    defer(() => process.off('unhandledRejection', onUnhandled))
    const { sock } = tetherClient(urlOf(server))
    await waitFor(() => server.sessions.size === 1 && sock.state === 'open', 3000, 'a session')
    await sock.close()
    for (let i = 0; i < 3; i++) server.broadcast({ i })
    await sleep(50)
    expect(unhandled).toEqual([])
  })

  it('a client sending far more than the rate-limit burst is slowed down, not disconnected: every message arrives once, in order, on one connection', async () => {
    const rate = 2000
    const burst = 50
    // The server's heartbeat is faster than the hold: a connection with work held is not taken for dead.
    const server = await startTether({ rateLimit: { rate, burst }, heartbeatInterval: 200, maxPayload: 4096 })
    const received: unknown[] = []
    server.on('message', (data) => received.push(data))
    const disconnects: number[] = []
    server.on('disconnect', (_session, code) => disconnects.push(code))
    const { sock, closes } = tetherClient<unknown, number>(urlOf(server), { reconnect: { ...fast, busyDelay: 20 } })
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const [ws] = serverSockets(server)
    const pause = vi.spyOn(ws, 'pause')
    const total = 4000
    const started = Date.now()
    const sends = Array.from({ length: total }, (_, i) => sock.send(i))
    await withTimeout(Promise.all(sends), 10_000, 'all sends acknowledged')
    const elapsed = Date.now() - started
    expect(received).toEqual(Array.from({ length: total }, (_, i) => i))
    // One connection throughout.
    expect(closes).toEqual([])
    expect(disconnects).toEqual([])
    expect(sock.stats.attempts).toBe(1)
    expect(serverSockets(server)).toEqual([ws])
    // Reading went on: what was held (a few dozen KiB) stayed far below maxHeldBytes.
    expect(pause).not.toHaveBeenCalled()
    expect(ws.isPaused).toBe(false)
    // At the rate: what the burst did not cover took (total - burst) / rate seconds.
    expect(elapsed).toBeGreaterThanOrEqual(((total - burst) / rate) * 1000 - 50)
  })

  it('an echo app under the default rate limit, sent a burst well above it: no session.send() is refused, every echo arrives once, in order, on one connection', async () => {
    // The client's acks of the echoes are read while its messages are held, so the server's
    // outbox empties as fast as the client acknowledges: it never holds more than the burst
    // (delivered at once) and what the client has not acknowledged yet. maxQueue is its default
    // (the burst plus 10 s at the rate): server-echo-defaults.test.ts has the arithmetic.
    const server = await startTether()
    const refused: Error[] = []
    server.on('message', (data, session) => {
      session.send(data).catch((error: Error) => refused.push(error))
    })
    const disconnects: number[] = []
    server.on('disconnect', (_session, code) => disconnects.push(code))
    const total = 15_000
    const { sock, closes, messages } = tetherClient<number, number>(urlOf(server), { queue: { maxMessages: 20_000 } })
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const started = Date.now()
    await withTimeout(Promise.all(Array.from({ length: total }, (_, i) => sock.send(i))), 15_000, 'all sends acknowledged')
    // 10,000 at once (the burst), the rest at 1,000/s.
    expect(Date.now() - started).toBeGreaterThanOrEqual(((total - 10_000) / 1000) * 1000 - 100)
    await waitFor(() => messages.length >= total || refused.length > 0, 5000, 'every echo')
    await sleep(100)
    expect(refused).toEqual([])
    expect(messages).toEqual(Array.from({ length: total }, (_, i) => i))
    expect(closes).toEqual([])
    expect(disconnects).toEqual([])
    expect(sock.stats.attempts).toBe(1)
  }, 30_000)

  it("a client closing while the server holds its work closes at once, and the server delivers nothing after the client's close", async () => {
    const server = await startTether({ rateLimit: { rate: 100, burst: 10 } })
    const delivered: unknown[] = []
    server.on('message', (data) => delivered.push(data))
    const disconnects: number[] = []
    server.on('disconnect', (_session, code) => disconnects.push(code))
    const { sock } = tetherClient<unknown, number>(urlOf(server))
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const sends = Array.from({ length: 800 }, (_, i) =>
      sock.send(i).then(
        () => 'ok' as const,
        () => 'rejected' as const,
      ),
    )
    // 10 at once, then 100/s: 7.9 s of work is held.
    await waitFor(() => delivered.length >= 20, 3000, 'some held work delivered')
    const started = Date.now()
    await withTimeout(sock.close(), 2000, 'sock.close()')
    expect(Date.now() - started).toBeLessThan(1000)
    const atClose = delivered.length
    await waitFor(() => disconnects.length > 0, 1000, 'the server saw the close')
    await sleep(300)
    expect(delivered).toHaveLength(atClose)
    expect(delivered.length).toBeLessThan(800)
    const outcomes = await Promise.all(sends)
    // Every send the client saw acknowledged was delivered; the rest were not delivered after the close.
    expect(outcomes.filter((outcome) => outcome === 'ok').length).toBeLessThanOrEqual(atClose)
    expect(delivered).toEqual(Array.from({ length: atClose }, (_, i) => i))
  })

  it('requests under a small rate limit and maxQueue: a client that acknowledges the replies is never closed with 1013', async () => {
    // Replies count against maxQueue until acknowledged; the acks are read while requests are held.
    const server = await startTether({ rateLimit: { rate: 20, burst: 5 }, maxQueue: 10, heartbeatInterval: 0 })
    server.onRequest((data) => data)
    const disconnects: number[] = []
    server.on('disconnect', (_session, code) => disconnects.push(code))
    const { sock, closes } = tetherClient<unknown, number>(urlOf(server), { reconnect: { ...fast, busyDelay: 20 } })
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const total = 30
    const replies = await withTimeout(Promise.all(Array.from({ length: total }, (_, i) => sock.request<number>(i))), 10_000, 'every reply')
    expect(replies).toEqual(Array.from({ length: total }, (_, i) => i))
    expect(closes).toEqual([])
    expect(disconnects).toEqual([])
    expect(sock.stats.attempts).toBe(1)
  })

  it('a connection closed with 1013 while its reading is paused still completes the close handshake at once', async () => {
    // Reading stops once maxHeldBytes (1 MiB at this maxPayload) are held: five big frames behind
    // a held request, released over maxPendingRequests: the server closes a connection it had paused.
    const maxPayload = 256 * 1024
    const server = await startTether({ rateLimit: { rate: 1, burst: 1 }, maxPendingRequests: 1, maxPayload })
    server.onRequest(() => new Promise(() => {}))
    const ws = new WebSocket(urlOf(server), ['tether.v1'])
    defer(() => ws.terminate())
    ws.on('error', () => {})
    await withTimeout(new Promise((resolve) => ws.once('open', resolve)), 3000, 'open')
    ws.send(JSON.stringify({ t: 'hello', sid: null, ack: 0 }))
    ws.send(JSON.stringify({ t: 'req', s: 1, id: 1, d: 'a' }))
    ws.send(JSON.stringify({ t: 'req', s: 2, id: 2, d: 'b' }))
    for (let s = 3; s <= 7; s++) ws.send(JSON.stringify({ t: 'msg', s, d: ['x'.repeat(maxPayload - 100)] }))
    await waitFor(() => serverSockets(server)[0]?.isPaused, 3000, 'reading paused')
    const [paused] = serverSockets(server)
    const closed = new Promise<number>((resolve) => ws.once('close', resolve))
    // Without reading the client's close frame the server would wait 30 s for it (ws's close timeout).
    expect(await withTimeout(closed, 3000, 'the close handshake')).toBe(1013)
    await waitFor(() => paused.readyState === WebSocket.CLOSED, 1000, 'the server side closed')
  })
})
