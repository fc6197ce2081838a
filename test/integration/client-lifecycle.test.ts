/**
 * The client's lifecycle against real `ws` servers: every connection it gives up is closed at
 * the server, close() and connect() may follow each other at once, and a failed attempt says
 * why (dead port, wrong path, refused upgrade).
 */
import { createServer as createHttpServer } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { ConnectionError, DeliveryError, OptionError, type TetherError, TetherSocket, type TetherSocketOptions } from '../../src/index.js'
import { cleanup, listen, startServer, track, waitFor, withTimeout } from '../support/servers.js'
import { cleanupTether, defer, freePort, sleep, startTether, tetherClient, urlOf } from '../support/tether.js'

afterEach(cleanup)
afterEach(cleanupTether)

function rawSocketAndErrors(url: string, options: TetherSocketOptions<string, string> = {}) {
  const sock = track(
    new TetherSocket<string, string>(url, { mode: 'raw', WebSocket, reconnect: { minDelay: 10, maxDelay: 20 }, ...options }),
  )
  const errors: TetherError[] = []
  sock.on('error', (error) => errors.push(error))
  return { sock, errors }
}

/** Resolves with the rejection of a send that is expected to fail (bounded). */
const failure = (promise: Promise<unknown>, what: string) =>
  withTimeout(
    promise.then(
      () => {
        throw new Error(`${what}: the send resolved`)
      },
      (error: unknown) => error as TetherError,
    ),
    5000,
    what,
  )

describe('no connection is left open at the server', () => {
  it('an onOpen hook failing with a long non-ASCII message: every connection is closed, up to the give-up', async () => {
    const server = await startServer()
    const { sock } = rawSocketAndErrors(server.url, {
      reconnect: { minDelay: 10, maxDelay: 20, maxRetries: 4 },
      onOpen: () => {
        throw new Error(`Anmeldung fehlgeschlagen: ${'ungültig '.repeat(30)}`)
      },
    })
    await waitFor(() => sock.state === 'closed', 5000, 'the give-up')
    expect(server.connections).toHaveLength(5)
    // Every close handshake done (openConnections() also drops those still closing).
    await waitFor(() => server.connections.every((c) => c.closed), 3000, 'every connection closed at the server')
    for (const c of server.connections) {
      expect(c.closed?.code).toBe(4000)
      expect(Buffer.byteLength(c.closed?.reason ?? '')).toBeLessThanOrEqual(123)
      expect(c.closed?.reason).toMatch(/^options\.onOpen failed: Anmeldung fehlgeschlagen: ungültig/)
    }
  })

  it('close() with a reason over 123 UTF-8 bytes throws OptionError and leaves the connection open and usable', async () => {
    const server = await startServer()
    const { sock } = rawSocketAndErrors(server.url)
    await waitFor(() => sock.state === 'open', 3000, 'open')
    expect(() => sock.close(1000, 'é'.repeat(62))).toThrow(OptionError)
    expect(sock.state).toBe('open')
    await sock.send('still here')
    await waitFor(() => server.messages.length === 1, 3000, 'the message')
    await sock.close(4001, 'é'.repeat(61))
    await waitFor(() => server.connections[0]!.closed, 3000, 'the close at the server')
    expect(server.connections[0]!.closed).toEqual({ code: 4001, reason: 'é'.repeat(61) })
  })
})

describe('a protocols function', () => {
  it('returning an object: the attempt fails naming options.protocols, and nothing of it reaches the server', async () => {
    const headers: string[] = []
    const server = await startServer({ onConnection: (_c, request) => headers.push(String(request.headers['x-injected'])) })
    server.http.on('upgrade', (request) => headers.push(String(request.headers['x-injected'])))
    const { sock, errors } = rawSocketAndErrors(server.url, {
      protocols: () => ({ headers: { 'x-injected': 'yes' } }) as never,
      reconnect: { maxRetries: 1, minDelay: 10 },
    })
    const given = await failure(sock.send('x'), 'the give-up')
    expect(given).toBeInstanceOf(DeliveryError)
    const [reported] = errors.filter((e) => e instanceof ConnectionError)
    expect(reported!.message).toMatch(/options\.protocols must be a string or an array of strings.*\{"headers":\{"x-injected":"yes"\}\}/)
    expect(server.upgrades).toEqual([])
    expect(headers).toEqual([])
  })
})

describe('close() then connect()', () => {
  it('in the same tick: connected again, the first connection closed at the server', async () => {
    const server = await startServer()
    const { sock } = rawSocketAndErrors(server.url)
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const closed = sock.close()
    sock.connect()
    await withTimeout(closed, 3000, 'close() to resolve')
    await waitFor(() => sock.state === 'open' && server.connections.length === 2, 3000, 'the second connection')
    await waitFor(() => server.connections[0]!.closed, 3000, 'the first connection closed at the server')
    expect(server.connections[0]!.closed?.code).toBe(1000)
    expect(server.openConnections()).toHaveLength(1)
  })
})

describe('a failed attempt says why', () => {
  it('dead port: connection refused', async () => {
    const port = await freePort()
    const { sock, errors } = rawSocketAndErrors(`ws://127.0.0.1:${port}/live`, { reconnect: { minDelay: 10, maxDelay: 20, maxRetries: 2 } })
    const given = await failure(sock.send('x'), 'the give-up')
    const reported = errors.filter((e) => e instanceof ConnectionError)
    expect(reported).toHaveLength(1)
    expect(reported[0]!.message).toMatch(
      new RegExp(
        `^could not connect to ws://127\\.0\\.0\\.1:${port}/live: connection refused \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\)$`,
      ),
    )
    expect((reported[0]!.cause as NodeJS.ErrnoException).code).toBe('ECONNREFUSED')
    expect(given).toBeInstanceOf(DeliveryError)
    expect(given.message).toMatch(/after 3 failed attempts in a row \(1 \+ 2 retries/)
    expect((given.cause as Error).message).toBe(reported[0]!.message)
  })

  it('wrong path on a server that answers 404: says there is no WebSocket endpoint there', async () => {
    const http = createHttpServer()
    http.on('upgrade', (_req, socket) => {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
    })
    await listen(http, 0)
    try {
      const { port } = http.address() as { port: number }
      const { sock, errors } = rawSocketAndErrors(`ws://127.0.0.1:${port}/wrong?token=secret`, {
        reconnect: { maxRetries: 1, minDelay: 10 },
      })
      await failure(sock.send('x'), 'the give-up')
      const [reported] = errors.filter((e) => e instanceof ConnectionError)
      expect(reported!.message).toBe(
        `could not connect to ws://127.0.0.1:${port}/wrong?…: HTTP 404: no WebSocket endpoint at this path (Unexpected server response: 404)`,
      )
    } finally {
      http.closeAllConnections()
      await new Promise((resolve) => http.close(resolve))
    }
  })

  it('wrong path on a ws server with a path (ws answers 400)', async () => {
    const http = createHttpServer()
    const wss = new WebSocketServer({ server: http, path: '/live' })
    await listen(http, 0)
    try {
      const { port } = http.address() as { port: number }
      const { sock, errors } = rawSocketAndErrors(`ws://127.0.0.1:${port}/elsewhere`, { reconnect: { maxRetries: 0 } })
      await failure(sock.send('x'), 'the give-up')
      const [reported] = errors.filter((e) => e instanceof ConnectionError)
      expect(reported!.message).toMatch(/: HTTP 400: .*path it does not serve/)
    } finally {
      wss.close()
      http.closeAllConnections()
      await new Promise((resolve) => http.close(resolve))
    }
  })

  it('403 (origin or credentials refused) and 401', async () => {
    for (const status of [403, 401]) {
      const server = await startServer({ verifyClient: (_info, done) => done(false, status) })
      const { sock, errors } = rawSocketAndErrors(server.url, { reconnect: { maxRetries: 0 } })
      await failure(sock.send('x'), 'the give-up')
      const [reported] = errors.filter((e) => e instanceof ConnectionError)
      expect(reported!.message).toMatch(
        status === 403
          ? /: HTTP 403: forbidden: origin or credentials refused/
          : /: HTTP 401: unauthorized: credentials refused or missing/,
      )
      await server.kill()
    }
  })
})

describe('a listener that closes the socket while a new session is being welcomed', () => {
  it('close() from the error listener of a request failed by the lost session: the socket closes, close() resolves', async () => {
    const first = await startTether()
    const port = first.port
    first.onRequest(() => new Promise(() => {})) // never answers: the request waits for its reply
    const { sock } = tetherClient(urlOf(first), { requestTimeout: 60_000, reconnect: { minDelay: 10, maxDelay: 20 } })
    await waitFor(() => sock.state === 'open', 3000, 'open')
    sock.request({ q: 1 }).catch(() => {})
    await waitFor(() => first.sessions.size === 1 && [...first.sessions.values()][0].pending === 0, 3000, 'the request to reach the server')
    await sleep(50)
    const uncaught: unknown[] = []
    const onUncaught = (error: unknown) => uncaught.push(error)
    process.on('uncaughtException', onUncaught)
    defer(() => process.off('uncaughtException', onUncaught))
    let closing: Promise<void> | undefined
    sock.on('error', (error) => {
      if (error instanceof DeliveryError) closing ??= sock.close()
    })
    await first.close()
    await startTether({ port }) // the session is gone: the client is welcomed as a new one
    await waitFor(() => closing !== undefined, 5000, 'the request to fail with the session')
    await withTimeout(closing!, 3000, 'close() to resolve')
    expect(sock.state).toBe('closed')
    expect(uncaught).toEqual([])
  })
})
