/**
 * Nothing a client does during the upgrade can stop the server: a raw TCP client sends an
 * upgrade request and resets the connection (RST) while the server refuses it or while
 * `authenticate` still runs. An 'error' event without a listener would throw from the socket
 * (an uncaught exception, which ends a real server process); the server must stay up and go
 * on serving a normal client.
 */
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import * as net from 'node:net'
import type { Duplex } from 'node:stream'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { createTetherServer, type TetherServer } from '../../src/server/index.js'
import { cleanupTether, defer, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(cleanupTether)

// What an unhandled socket 'error' becomes. Vitest also reports it as an unhandled error.
const uncaught: unknown[] = []
const record = (error: unknown) => uncaught.push(error)
beforeAll(() => {
  process.on('uncaughtException', record)
})
afterAll(() => {
  process.off('uncaughtException', record)
})
beforeEach(() => {
  uncaught.length = 0 // each test asserts on its own
})

/** Every TCP socket the HTTP server accepts, and whether it has closed. */
function watchSockets(http: Server): { closed: () => boolean; count: () => number } {
  const sockets: { closed: boolean }[] = []
  http.on('connection', (socket: net.Socket) => {
    const entry = { closed: false }
    sockets.push(entry)
    socket.once('close', () => {
      entry.closed = true
    })
  })
  return { closed: () => sockets.length > 0 && sockets.every((s) => s.closed), count: () => sockets.length }
}

const httpOf = (server: TetherServer) => (server as unknown as { http: Server }).http

/**
 * A raw client that sends a WebSocket upgrade request; once `ready` resolves (for instance when
 * the server answered), it resets the connection.
 */
async function upgradeThenReset(
  port: number,
  options: { path?: string; origin?: string; ready: (client: { response: () => string }) => Promise<unknown> },
) {
  // Half-open: the client does not answer the server's FIN with its own, so the server's end of the
  // connection is still open when the reset arrives, as with a client that resets at once.
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  defer(() => socket.destroy())
  socket.on('error', () => {})
  let response = ''
  socket.on('data', (chunk) => {
    response += String(chunk)
  })
  await withTimeout(once(socket, 'connect'), 3000, 'the raw client connecting')
  socket.write(
    [
      `GET ${options.path ?? '/'} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Protocol: tether.v1',
      ...(options.origin ? [`Origin: ${options.origin}`] : []),
      '',
      '',
    ].join('\r\n'),
  )
  await withTimeout(Promise.resolve(options.ready({ response: () => response })), 3000, 'the server seeing the upgrade')
  const answered = response
  socket.resetAndDestroy()
  return answered
}

/** Waits until the server's end of every raw connection closed, or an uncaught error shows up. */
async function settled(watch: { closed: () => boolean }) {
  await waitFor(() => watch.closed() || uncaught.length > 0, 3000, 'the server closing the reset socket')
  // The socket's 'error' (if unhandled) is thrown on the tick it is emitted: give it that tick.
  await new Promise((resolve) => setImmediate(resolve))
}

/** A normal tether client connects, sends and has its message acknowledged. */
async function stillServes(url: string, options: { origin?: string } = {}) {
  const WS = options.origin
    ? class extends WebSocket {
        constructor(address: string | URL, protocols?: string | string[]) {
          super(address, protocols, { origin: options.origin })
        }
      }
    : WebSocket
  const { sock } = tetherClient(url, { WebSocket: WS as typeof WebSocket })
  await withTimeout(sock.send({ after: 'reset' }), 3000, 'a message acknowledged after the reset')
}

const responseStarted = (client: { response: () => string }) => waitFor(() => client.response().startsWith('HTTP/1.1'), 3000, 'a response')

describe('a client that resets its connection during the upgrade', () => {
  it('does not crash a standalone server that refuses its origin (403)', async () => {
    const server = await startTether({ allowedOrigins: ['https://app.example'] })
    const watch = watchSockets(httpOf(server))
    const answered = await upgradeThenReset(server.port, { origin: 'https://evil.example', ready: responseStarted })
    expect(answered).toMatch(/^HTTP\/1.1 403/)
    await settled(watch)
    expect(uncaught).toEqual([])
    await stillServes(urlOf(server), { origin: 'https://app.example' })
  })

  it('does not crash a standalone server that refuses its path (404)', async () => {
    const server = await startTether({ path: '/live' })
    const watch = watchSockets(httpOf(server))
    const answered = await upgradeThenReset(server.port, { path: '/elsewhere', ready: responseStarted })
    expect(answered).toMatch(/^HTTP\/1.1 404/)
    await settled(watch)
    expect(uncaught).toEqual([])
    await stillServes(urlOf(server, '/live'))
  })

  it('does not crash while an async authenticate is still running, and never upgrades the dead socket', async () => {
    let release: (who: string | false) => void = () => {}
    let calls = 0
    const server = await startTether({
      authenticate: () => {
        calls++
        // The first decision waits until the test releases it; later ones are immediate.
        return calls === 1 ? new Promise<string | false>((resolve) => (release = resolve)) : 'user'
      },
    })
    const watch = watchSockets(httpOf(server))
    const sessions: string[] = []
    server.on('session', (s) => sessions.push(s.id))
    await upgradeThenReset(server.port, { ready: () => waitFor(() => calls === 1, 3000, 'authenticate being called') })
    await settled(watch)
    expect(uncaught).toEqual([])
    release('user') // the client is gone: nothing may be upgraded now
    await new Promise((resolve) => setImmediate(resolve))
    expect(uncaught).toEqual([])
    expect((server as unknown as { sockets: Set<unknown> }).sockets.size).toBe(0)
    await stillServes(urlOf(server))
    expect(sessions).toHaveLength(1)
  })

  describe('attached to a user HTTP server', () => {
    async function attached(options: { allowedOrigins?: string[]; path?: string }) {
      const http = createServer((_req, res) => res.writeHead(200).end('page'))
      await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
      const server = await createTetherServer({ server: http, ...options })
      defer(async () => {
        await server.close()
        http.closeAllConnections()
        await new Promise((resolve) => http.close(resolve))
      })
      const { port } = http.address() as net.AddressInfo
      return { server, http, port, watch: watchSockets(http) }
    }

    it('does not crash when it refuses the origin (403)', async () => {
      const { port, watch } = await attached({ allowedOrigins: ['https://app.example'], path: '/ws' })
      const answered = await upgradeThenReset(port, { path: '/ws', origin: 'https://evil.example', ready: responseStarted })
      expect(answered).toMatch(/^HTTP\/1.1 403/)
      await settled(watch)
      expect(uncaught).toEqual([])
      await stillServes(`ws://127.0.0.1:${port}/ws`, { origin: 'https://app.example' })
    })

    it('does not crash when it refuses another path (404, no other upgrade listener)', async () => {
      const { port, watch } = await attached({ path: '/ws' })
      const answered = await upgradeThenReset(port, { path: '/', ready: responseStarted })
      expect(answered).toMatch(/^HTTP\/1.1 404/)
      await settled(watch)
      expect(uncaught).toEqual([])
      await stillServes(`ws://127.0.0.1:${port}/ws`)
    })
  })
})

describe('an upgrade the server refuses', () => {
  it('is closed by the server once answered, even when the client keeps its side open', async () => {
    const server = await startTether({ path: '/live' })
    const watch = watchSockets(httpOf(server))
    const socket = net.connect({ port: server.port, host: '127.0.0.1', allowHalfOpen: true })
    defer(() => socket.destroy())
    socket.on('error', () => {})
    await withTimeout(once(socket, 'connect'), 3000, 'connecting')
    socket.write('GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
    await waitFor(() => watch.closed(), 3000, "the server closing its end of a refused upgrade's connection")
    expect(socket.destroyed).toBe(false) // the client did nothing: the server let go
  })
})

describe('attached to a user HTTP server, an upgrade on another path', () => {
  async function attachedWith(userUpgrade?: (request: IncomingMessage, socket: Duplex) => void) {
    const http = createServer((_req, res) => res.writeHead(200).end('page'))
    if (userUpgrade) http.on('upgrade', userUpgrade)
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
    const server = await createTetherServer({ server: http, path: '/ws' })
    defer(async () => {
      await server.close()
      http.closeAllConnections()
      await new Promise((resolve) => http.close(resolve))
    })
    return (http.address() as net.AddressInfo).port
  }

  /** How a `ws` client's handshake on `url` ends: the HTTP status of a refusal, or 'open'. */
  function handshake(url: string) {
    return withTimeout(
      new Promise<number | 'open'>((resolve, reject) => {
        const ws = new WebSocket(url, ['tether.v1'])
        defer(() => ws.terminate())
        ws.on('open', () => resolve('open'))
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
        ws.on('error', reject)
      }),
      3000,
      `the handshake on ${url}`,
    )
  }

  it('is refused with 404 at once when no other upgrade listener exists', async () => {
    const port = await attachedWith()
    expect(await handshake(`ws://127.0.0.1:${port}/`)).toBe(404)
    expect(await handshake(`ws://127.0.0.1:${port}/ws`)).toBe('open')
  })

  it('is refused with 404, once, when only tether servers listen and none serves that path', async () => {
    const http = createServer()
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
    const chat = await createTetherServer({ server: http, path: '/chat' })
    const presence = await createTetherServer({ server: http, path: '/presence' })
    defer(async () => {
      await Promise.all([chat.close(), presence.close()])
      http.closeAllConnections()
      await new Promise((resolve) => http.close(resolve))
    })
    const { port } = http.address() as net.AddressInfo
    expect(await handshake(`ws://127.0.0.1:${port}/chat`)).toBe('open')
    expect(await handshake(`ws://127.0.0.1:${port}/presence`)).toBe('open')
    expect(await handshake(`ws://127.0.0.1:${port}/other`)).toBe(404)
    // One answer, not one per tether server.
    const socket = net.connect(port, '127.0.0.1')
    defer(() => socket.destroy())
    socket.on('error', () => {})
    socket.write('GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
    let response = ''
    socket.on('data', (chunk) => {
      response += String(chunk)
    })
    await withTimeout(once(socket, 'close'), 3000, 'the refused connection closing')
    expect(response.match(/HTTP\/1.1 /g)).toEqual(['HTTP/1.1 '])
    expect(response).toMatch(/^HTTP\/1.1 404/)
  })

  it("is left to the user's own upgrade listener", async () => {
    const port = await attachedWith((request, socket) => {
      if (request.url !== '/other') return
      socket.end('HTTP/1.1 418 I am a teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
    })
    expect(await handshake(`ws://127.0.0.1:${port}/other`)).toBe(418)
    expect(await handshake(`ws://127.0.0.1:${port}/ws`)).toBe('open')
  })
})

describe('a client that sends a broken frame right after the upgrade', () => {
  /** Sends an upgrade request followed at once by an unmasked frame, which a server must refuse. */
  async function upgradeWithBrokenFrame(port: number, protocol: string | undefined) {
    const socket = net.connect(port, '127.0.0.1')
    defer(() => socket.destroy())
    socket.on('error', () => {})
    let response = ''
    socket.on('data', (chunk) => {
      response += String(chunk)
    })
    await withTimeout(once(socket, 'connect'), 3000, 'the raw client connecting')
    const request = [
      'GET / HTTP/1.1',
      'Host: 127.0.0.1',
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version: 13',
      ...(protocol ? [`Sec-WebSocket-Protocol: ${protocol}`] : []),
      '',
      '',
    ].join('\r\n')
    socket.write(Buffer.concat([Buffer.from(request), Buffer.from([0x81, 0x02, 0x68, 0x69])])) // "hi", unmasked
    await waitFor(() => socket.destroyed || socket.readableEnded || uncaught.length > 0, 3000, 'the server closing the connection')
    return response
  }

  it('does not crash the server when authenticate refused the client (4401)', async () => {
    const server = await startTether({ authenticate: (request) => request.headers['x-user'] === 'ok' })
    const answered = await upgradeWithBrokenFrame(server.port, 'tether.v1')
    expect(answered).toMatch(/^HTTP\/1.1 101/)
    await new Promise((resolve) => setImmediate(resolve))
    expect(uncaught).toEqual([])
    const WS = class extends WebSocket {
      constructor(address: string | URL, protocols?: string | string[]) {
        super(address, protocols, { headers: { 'x-user': 'ok' } })
      }
    }
    const { sock } = tetherClient(urlOf(server), { WebSocket: WS as typeof WebSocket })
    await withTimeout(sock.send('after'), 3000, 'a message acknowledged after the broken frame')
  })

  it('does not crash the server when the client did not offer tether.v1', async () => {
    const server = await startTether()
    const answered = await upgradeWithBrokenFrame(server.port, undefined)
    expect(answered).toMatch(/^HTTP\/1.1 101/)
    await new Promise((resolve) => setImmediate(resolve))
    expect(uncaught).toEqual([])
    await stillServes(urlOf(server))
  })
})
