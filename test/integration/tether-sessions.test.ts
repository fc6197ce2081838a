/**
 * Sessions and the reference server's own API against real connections: resume vs new
 * session, expiry, broadcast, close(), and attaching to an existing HTTP server.
 */
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { ClosedError, DeliveryError, QueueFullError } from '../../src/errors.js'
import { createTetherServer, type Session, type TetherServer } from '../../src/server/index.js'
import {
  cleanupTether,
  defer,
  freePort,
  killConnections,
  sleep,
  startProxy,
  startTether,
  tcpSocketOf,
  tetherClient,
  urlOf,
  waitFor,
  withTimeout,
} from '../support/tether.js'

afterEach(cleanupTether)

/** Records the server's session lifecycle events. */
function watch(server: TetherServer) {
  const log = { created: [] as Session[], resumed: [] as Session[], expired: [] as string[], disconnects: [] as number[] }
  server.on('session', (s) => log.created.push(s))
  server.on('resume', (s) => log.resumed.push(s))
  server.on('expire', (s) => log.expired.push(s.id))
  server.on('disconnect', (_s, code) => log.disconnects.push(code))
  return log
}

describe('sessions', () => {
  it("emits 'session' for new sessions only and 'resume' when a client comes back; the id is stable", async () => {
    const server = await startTether()
    expect(server.port).toBeGreaterThan(0)
    const log = watch(server)
    const a = tetherClient(urlOf(server))
    await waitFor(() => a.sock.state === 'open', 3000, 'open')
    expect(log.created).toHaveLength(1)
    const id = log.created[0].id
    expect(a.sock.sessionId).toBe(id)
    expect(a.sessions).toEqual([{ id, previous: undefined }])

    a.sock.reconnect()
    await waitFor(() => log.resumed.length === 1 && a.sock.state === 'open', 3000, 'a resume after reconnect()')
    killConnections(server)
    await waitFor(() => log.resumed.length === 2 && a.sock.state === 'open', 3000, 'a resume after a dropped connection')
    expect(log.resumed.every((s) => s.id === id)).toBe(true)
    expect(log.created).toHaveLength(1)
    expect(a.sock.sessionId).toBe(id)
    expect(a.sessions).toHaveLength(1) // no client 'session' event for a resume
    expect(log.disconnects).toHaveLength(2)

    const b = tetherClient(urlOf(server))
    await waitFor(() => b.sock.state === 'open', 3000, 'second client')
    expect(log.created).toHaveLength(2)
    expect(b.sock.sessionId).not.toBe(id)
    expect(server.sessions.size).toBe(2)
  })

  it('after the session expired, the client gets a new session and resends what was not acknowledged', async () => {
    const server = await startTether({ sessionTtl: 100 })
    const log = watch(server)
    const received: [unknown, string][] = []
    server.on('message', (data, s) => received.push([data, s.id]))
    const deadPort = await freePort()
    const proxy = await startProxy(server.port)
    let target = urlOf(proxy)
    const { sock, sessions, messages } = tetherClient<unknown, number>(() => target)
    await waitFor(() => sock.state === 'open', 3000, 'open')
    await sock.send(1)
    const first = sock.sessionId!
    expect(sessions).toEqual([{ id: first, previous: undefined }])
    const oldSession = log.created[0]

    // 2 and 3 are written but never reach the server: in flight, unacknowledged.
    proxy.freeze()
    const inFlight = [sock.send(2), sock.send(3)]
    await sleep(30)
    // The client is kept away (its URL provider points at a closed port) for longer than sessionTtl.
    target = `ws://127.0.0.1:${deadPort}`
    proxy.cutAll()
    await waitFor(() => sock.state !== 'open', 2000, 'the client to notice the drop')
    const queued = [sock.send(4), sock.send(5)]
    const lostOnServer = oldSession.send('for the old session')
    await waitFor(() => log.expired.includes(first), 2000, 'the old session to expire')
    await expect(lostOnServer).rejects.toBeInstanceOf(DeliveryError)
    expect(server.sessions.has(first)).toBe(false)
    target = urlOf(server)

    await waitFor(() => sessions.length === 2 && sock.state === 'open', 3000, 'a new session')
    const second = sock.sessionId!
    expect(second).not.toBe(first)
    expect(sessions[1]).toEqual({ id: second, previous: first, reason: 'unknown' })
    await withTimeout(Promise.all([...inFlight, ...queued]), 3000, 'the unacknowledged sends')
    expect(received).toEqual([
      [1, first],
      [2, second],
      [3, second],
      [4, second],
      [5, second],
    ])
    expect(log.created.map((s) => s.id)).toEqual([first, second])
    expect(log.resumed).toHaveLength(0)
    expect(messages).toEqual([]) // the old session's message is gone with it, not delivered to the new one
    // The new session numbers from 1 again in both directions.
    await log.created[1].send('fresh')
    expect(messages).toEqual(['fresh'])
    expect(sock.pending).toBe(0)
  })

  it('fails a request whose reply was lost with its expired session, with DeliveryError', async () => {
    const server = await startTether({ sessionTtl: 100 })
    const log = watch(server)
    let calls = 0
    server.onRequest(() => {
      calls++
      return new Promise(() => {})
    })
    const deadPort = await freePort()
    let target = urlOf(server)
    const { sock, sessions } = tetherClient(() => target)
    const reply = sock.request('never answered', { timeout: 5000 })
    let outcome: unknown
    reply.catch((e: unknown) => {
      outcome = e
    })
    await waitFor(() => calls === 1, 3000, 'the request at the server')
    await sleep(30) // its ack reaches the client
    target = `ws://127.0.0.1:${deadPort}`
    killConnections(server)
    await waitFor(() => log.expired.length === 1, 2000, 'expiry')
    target = urlOf(server)
    await waitFor(() => sessions.length === 2, 3000, 'a new session')
    await waitFor(() => outcome !== undefined, 1000, 'the request to fail')
    expect(outcome).toBeInstanceOf(DeliveryError)
    expect(calls).toBe(1) // not re-run in the new session: the server acknowledged it
  })

  it('keeps a disconnected session for sessionTtl: a client back in time resumes it', async () => {
    const server = await startTether({ sessionTtl: 1000 })
    const log = watch(server)
    const deadPort = await freePort()
    let target = urlOf(server)
    const { sock, sessions } = tetherClient(() => target)
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const id = sock.sessionId
    target = `ws://127.0.0.1:${deadPort}`
    killConnections(server)
    await sleep(300)
    expect(log.expired).toEqual([])
    const whileAway = log.created[0].send('kept for you')
    target = urlOf(server)
    await waitFor(() => log.resumed.length === 1, 3000, 'resume')
    await withTimeout(whileAway, 2000, 'delivery after resume')
    expect(sock.sessionId).toBe(id)
    expect(sessions).toHaveLength(1)
  })
})

describe('server API', () => {
  it('broadcast() reaches every session once, including one that is away and resumes later', async () => {
    const server = await startTether()
    const log = watch(server)
    const deadPort = await freePort()
    const proxy = await startProxy(server.port)
    let awayTarget = urlOf(proxy)
    const clients = [tetherClient(urlOf(server)), tetherClient(urlOf(server)), tetherClient(() => awayTarget)]
    await waitFor(() => clients.every((c) => c.sock.state === 'open'), 3000, 'three clients')
    expect(log.created).toHaveLength(3)
    // The third client goes away (its connection cut, its URL pointing at a closed port).
    awayTarget = `ws://127.0.0.1:${deadPort}`
    proxy.cutAll()
    await waitFor(() => clients[2].sock.state !== 'open', 2000, 'the third client to be away')

    server.broadcast({ news: 1 })
    server.broadcast({ news: 2 })
    await waitFor(() => clients[0].messages.length === 2 && clients[1].messages.length === 2, 3000, 'broadcasts')
    expect(clients[2].messages).toEqual([])
    awayTarget = urlOf(server)
    await waitFor(() => clients[2].messages.length === 2, 3000, 'the away client to get the broadcasts')
    await sleep(50)
    for (const c of clients) expect(c.messages).toEqual([{ news: 1 }, { news: 2 }])
  })

  it('session.send() rejects with QueueFullError beyond maxQueue unacknowledged messages', async () => {
    const server = await startTether({ maxQueue: 3 })
    const log = watch(server)
    const proxy = await startProxy(server.port)
    const { sock, messages } = tetherClient(urlOf(proxy))
    await waitFor(() => sock.state === 'open' && log.created.length === 1, 3000, 'open')
    proxy.freeze() // nothing gets acknowledged
    const session = log.created[0]
    const accepted = [session.send(1), session.send(2), session.send(3)]
    await expect(session.send(4)).rejects.toBeInstanceOf(QueueFullError)
    expect(session.pending).toBe(3)
    proxy.thaw()
    await withTimeout(Promise.all(accepted), 3000, 'the first three')
    expect(messages).toEqual([1, 2, 3])
    await withTimeout(session.send(5), 3000, 'room again')
    expect(messages).toEqual([1, 2, 3, 5])
  })

  it('the server heartbeat terminates a connection that stops answering WebSocket pings, and keeps live ones', async () => {
    const server = await startTether({ heartbeatInterval: 80 })
    const log = watch(server)
    const { sock } = tetherClient(urlOf(server))
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const mute = new WebSocket(urlOf(server), ['tether.v1'], { autoPong: false })
    defer(() => mute.terminate())
    mute.on('error', () => {})
    let muteClose: number | undefined
    mute.on('close', (code) => {
      muteClose = code
    })
    await new Promise<void>((resolve) => mute.on('open', () => resolve()))
    mute.send(JSON.stringify({ t: 'hello', sid: null, ack: 0 }))
    await waitFor(() => muteClose !== undefined, 1500, 'the mute connection to be terminated')
    expect(muteClose).toBe(1006) // terminated, no close frame
    // The live client answered every ping: never dropped.
    expect(log.disconnects).toEqual([1006])
    expect(sock.state).toBe('open')
    await withTimeout(sock.send('still here'), 2000, 'send on the live connection')
  })

  it('close() closes clients with 1001, ends every session and resolves', async () => {
    const server = await startTether()
    const log = watch(server)
    const deadPort = await freePort()
    const proxy = await startProxy(server.port)
    let awayTarget = urlOf(proxy)
    const a = tetherClient(urlOf(server))
    const b = tetherClient(urlOf(server))
    const away = tetherClient(() => awayTarget)
    await waitFor(() => [a, b, away].every((c) => c.sock.state === 'open'), 3000, 'three clients')
    // One client is away: its session waits for a resume, with a send it cannot acknowledge.
    const awaySession = log.created.find((s) => s.id === away.sock.sessionId)!
    awayTarget = `ws://127.0.0.1:${deadPort}`
    proxy.cutAll()
    await waitFor(() => !awaySession.connected, 2000, 'the away session to be disconnected')
    const unacked = awaySession.send('late')
    await withTimeout(server.close(), 3000, 'server.close()')
    await waitFor(() => a.closes.length > 0 && b.closes.length > 0, 2000, 'clients to see the close')
    expect(a.closes[0].code).toBe(1001)
    expect(b.closes[0].code).toBe(1001)
    expect(server.sessions.size).toBe(0)
    expect(log.expired).toHaveLength(3)
    await expect(unacked).rejects.toBeInstanceOf(ClosedError)
    // Nothing listens any more.
    const refused = await new Promise<string>((resolve) => {
      const ws = new WebSocket(urlOf(server), 'tether.v1')
      ws.on('open', () => resolve('open'))
      ws.on('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? 'error'))
    })
    expect(refused).not.toBe('open')
  })

  it('a handler that ends the session gets its message once: it is acknowledged before the close, not resent to a new session', async () => {
    const server = await startTether()
    const log = watch(server)
    const received: unknown[] = []
    server.on('message', (data, session) => {
      received.push(data)
      if (data === 'logout') session.end()
    })
    const client = tetherClient(urlOf(server))
    await withTimeout(client.sock.send('logout'), 3000, 'the logout send')
    // The client reconnects after the server's 1000 and gets a new session; nothing is resent.
    await waitFor(() => log.created.length === 2 && client.sock.state === 'open', 3000, 'a new session')
    await sleep(200)
    expect(received).toEqual(['logout'])
    expect(client.errors).toEqual([])
  })

  it('close() acknowledges what the handlers got before it closes the connections', async () => {
    const server = await startTether()
    let sent: Promise<void> | undefined
    server.on('message', () => {
      sent ??= withTimeout(server.close(), 3000, 'server.close()')
    })
    const client = tetherClient(urlOf(server), { reconnect: false })
    await waitFor(() => client.sock.state === 'open', 3000, 'open')
    // Delivered in the tick in which the server shuts down: acknowledged, so it resolves.
    await withTimeout(client.sock.send('last words'), 3000, 'the send to resolve')
    await sent
    await waitFor(() => client.closes.length > 0, 2000, 'the close')
    expect(client.closes[0].code).toBe(1001)
  })

  it('close() resolves promptly even when a client never answers the close handshake', async () => {
    const server = await startTether()
    const client = new WebSocket(urlOf(server), 'tether.v1')
    defer(() => client.terminate())
    client.on('error', () => {})
    await new Promise<void>((resolve) => client.on('open', () => resolve()))
    client.send(JSON.stringify({ t: 'hello', sid: null, ack: 0 }))
    await waitFor(() => server.sessions.size === 1, 2000, 'a session')
    tcpSocketOf(client).pause() // hung peer: it will never read the close frame
    const started = Date.now()
    await withTimeout(server.close(), 4000, 'server.close() with a hung client')
    expect(Date.now() - started).toBeLessThan(2500)
  })

  it("attaches to an existing HTTP server on path '/ws' and leaves other paths and plain requests alone", async () => {
    const http = createServer((_req, res) => res.end('plain http'))
    const other = new WebSocketServer({ noServer: true })
    other.on('connection', (ws) => ws.send('other endpoint'))
    http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (req.url === '/other') other.handleUpgrade(req, socket, head, (ws) => other.emit('connection', ws, req))
    })
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
    defer(async () => {
      for (const ws of other.clients) ws.terminate()
      other.close()
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    })
    const server = await createTetherServer({ server: http, path: '/ws' })
    defer(() => server.close())
    expect(server.port).toBe((http.address() as { port: number }).port)
    const received: unknown[] = []
    server.on('message', (data) => received.push(data))
    server.onRequest((data) => ({ echo: data }))

    const { sock } = tetherClient(urlOf(server, '/ws?token=1'))
    await withTimeout(sock.send('over /ws'), 3000, 'send over /ws')
    await expect(withTimeout(sock.request(7), 3000, 'request')).resolves.toEqual({ echo: 7 })
    expect(received).toEqual(['over /ws'])

    // Another upgrade handler's path still works, untouched by the tether server.
    const otherClient = new WebSocket(urlOf(server, '/other'))
    defer(() => otherClient.terminate())
    const first = await withTimeout(
      new Promise<string>((resolve, reject) => {
        otherClient.on('message', (data) => resolve(String(data)))
        otherClient.on('error', reject)
      }),
      3000,
      'the other endpoint',
    )
    expect(first).toBe('other endpoint')
    expect(otherClient.protocol).toBe('')

    // Plain HTTP requests still reach the user's handler.
    const body = await withTimeout(
      new Promise<string>((resolve, reject) => {
        httpRequest(`http://127.0.0.1:${server.port}/`, (res) => {
          let text = ''
          res.on('data', (chunk) => {
            text += chunk
          })
          res.on('end', () => resolve(text))
        })
          .on('error', reject)
          .end()
      }),
      3000,
      'plain http',
    )
    expect(body).toBe('plain http')

    // close() of an attached tether server leaves the user's HTTP server listening.
    await withTimeout(server.close(), 3000, 'close')
    expect(http.listening).toBe(true)
  })
})
