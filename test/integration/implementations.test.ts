/**
 * Reconnection with every WebSocket implementation a Node user may pass: `ws`, undici 6 (the
 * WebSocket Node 20 and 22 ship; undici fires `error` and never `close` for a refused
 * connection) and `globalThis.WebSocket` where this Node version has one.
 */
import type { Socket } from 'node:net'
import { WebSocket as UndiciWebSocket } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket as WsWebSocket } from 'ws'
import {
  ConnectionError,
  DeliveryError,
  type ReconnectingInfo,
  type TetherError,
  TetherSocket,
  type TetherSocketOptions,
  type WebSocketConstructor,
} from '../../src/index.js'
import { cleanup, restartServer, startServer, type TestServer, track, waitFor, withTimeout } from '../support/servers.js'
import { cleanupTether, freePort, killConnections, startTether, tetherClient, urlOf } from '../support/tether.js'

const implementations: [string, WebSocketConstructor][] = [
  ['ws', WsWebSocket as unknown as WebSocketConstructor],
  ['undici 6', UndiciWebSocket as unknown as WebSocketConstructor],
]
const builtIn = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
if (builtIn) implementations.push(['globalThis.WebSocket', builtIn])

afterEach(async () => {
  await cleanupTether()
  await cleanup()
})

describe.each(implementations)('with %s', (_name, WebSocket) => {
  function rawSocketAndErrors(url: string, options: TetherSocketOptions<string, string> = {}) {
    const sock = track(
      new TetherSocket<string, string>(url, { mode: 'raw', WebSocket, reconnect: { minDelay: 20, maxDelay: 50 }, ...options }),
    )
    const errors: TetherError[] = []
    sock.on('error', (error) => errors.push(error))
    return { sock, errors }
  }

  it('ends a refused attempt at once, not after the connect timeout, and gives up with the failure as cause', async () => {
    const port = await freePort()
    const { sock, errors } = rawSocketAndErrors(`ws://127.0.0.1:${port}`, {
      reconnect: { minDelay: 20, maxDelay: 20, jitter: 0, maxRetries: 3, connectTimeout: 10_000 },
    })
    const sent = sock.send('never')
    const started = Date.now()
    const outcome = await withTimeout(
      sent.then(
        () => undefined,
        (error: unknown) => error,
      ),
      5000,
      '4 refused attempts took the connect timeout each',
    )
    expect(Date.now() - started).toBeLessThan(3000)
    expect(sock.state).toBe('closed')
    expect(sock.stats.attempts).toBe(4)
    expect(outcome).toBeInstanceOf(DeliveryError)
    const failures = errors.filter((e) => e instanceof ConnectionError)
    expect(failures).toHaveLength(1) // the same cause four times is reported once
    expect(failures[0]!.message).toContain(`could not connect to ws://127.0.0.1:${port}/`)
    expect((outcome as DeliveryError).cause).toBeInstanceOf(ConnectionError)
  })

  it('close() while the handshake hangs resolves at once and leaves nothing open', async () => {
    const server = await startServer()
    server.http.removeAllListeners('upgrade') // the handshake is never answered
    const held: Socket[] = []
    server.http.on('upgrade', (_req, socket: Socket) => held.push(socket))
    const { sock } = rawSocketAndErrors(server.url, { reconnect: { connectTimeout: 10_000 } })
    await waitFor(() => held.length === 1, 3000, 'the upgrade request')
    const started = Date.now()
    await withTimeout(sock.close(), 3000, 'close() of a connecting socket')
    expect(Date.now() - started).toBeLessThan(1000)
    expect(sock.state).toBe('closed')
    await waitFor(() => held[0]!.destroyed || held[0]!.readableEnded, 3000, 'the client to drop the TCP connection')
  })

  it('queues while the server is down and delivers the backlog in order after it restarts', async () => {
    let server: TestServer = await startServer()
    const { sock } = rawSocketAndErrors(server.url)
    const reconnecting: ReconnectingInfo[] = []
    sock.on('reconnecting', (info) => reconnecting.push(info))
    await sock.send('before')
    await waitFor(() => server.messages.length === 1, 3000, 'the first message')

    await server.kill()
    await waitFor(() => sock.state === 'reconnecting' || sock.state === 'connecting', 3000, 'the drop to be noticed')
    const whileDown = Array.from({ length: 20 }, (_, i) => `down-${i}`)
    const sends = whileDown.map((m) => sock.send(m))
    await waitFor(() => reconnecting.length >= 3, 3000, 'failed attempts against the dead port')
    expect(reconnecting.every((r) => r.waitingFor === 'delay' && r.delay <= 50)).toBe(true)

    server = await restartServer(server)
    await withTimeout(Promise.all(sends), 5000, 'the backlog after the restart')
    await waitFor(() => server.messages.length === 20, 3000, 'the backlog at the server')
    expect(server.texts()).toEqual(whileDown)
    expect(sock.state).toBe('open')
  })

  it('tether mode: resumes the session after the connection is cut, exactly once each way', async () => {
    const server = await startTether()
    const received: unknown[] = []
    server.on('message', (data) => received.push(data))
    const { sock, messages, sessions } = tetherClient<string, string>(urlOf(server), { WebSocket })
    await withTimeout(sock.send('one'), 3000, 'the first ack')
    killConnections(server)
    const second = sock.send('two')
    await withTimeout(second, 5000, 'the ack after the resume')
    await waitFor(() => server.sessions.size === 1, 3000, 'one session')
    const [session] = server.sessions.values()
    await withTimeout(session!.send('down'), 3000, 'the server message acknowledged')
    await waitFor(() => messages.length === 1, 3000, 'the server message')
    expect(received).toEqual(['one', 'two'])
    expect(messages).toEqual(['down'])
    expect(sessions).toHaveLength(1)
  })
})
