import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import {
  ConnectionError,
  DeliveryError,
  type ReconnectingInfo,
  type SocketState,
  TetherError,
  TetherSocket,
  type TetherSocketOptions,
} from '../../src/index.js'
import { cleanup, restartServer, startServer, type TestServer, track, waitFor } from '../support/servers.js'

type In = string | ArrayBuffer
const fast = { minDelay: 20, maxDelay: 200 }

/** A raw-mode socket with `ws`, small delays, tracked for cleanup; records states and errors. */
function rawSocketAndRecords(
  url: ConstructorParameters<typeof TetherSocket>[0],
  options: TetherSocketOptions<In, string | Uint8Array> = {},
) {
  const sock = track(new TetherSocket<In, string | Uint8Array>(url, { mode: 'raw', WebSocket, reconnect: fast, ...options }))
  const states: SocketState[] = [sock.state] // 'connecting' already: autoConnect starts in the constructor
  const errors: TetherError[] = []
  sock.on('state', (next) => states.push(next))
  sock.on('error', (error) => errors.push(error))
  return { sock, states, errors }
}

/** Resolves on the next `event` from `sock`; rejects after `timeoutMs`. */
function nextEvent<E extends 'close' | 'open' | 'reconnecting'>(sock: TetherSocket<In, never>, event: E, timeoutMs = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sock.off(event, done)
      reject(new Error(`no '${event}' event within ${timeoutMs} ms`))
    }, timeoutMs)
    const done = () => {
      clearTimeout(timer)
      resolve()
    }
    sock.once(event, done)
  })
}

/** Drops repeated failed attempts (`connecting → reconnecting → connecting`) from a state log. */
function collapseRetries(states: SocketState[]): SocketState[] {
  const out: SocketState[] = []
  for (const s of states) {
    const n = out.length
    if (s === 'reconnecting' && out[n - 1] === 'connecting' && out[n - 2] === 'reconnecting') {
      out.pop() // connecting (failed) → reconnecting again: same as still reconnecting
      continue
    }
    out.push(s)
  }
  return out
}

afterEach(cleanup)

describe('raw mode against a real ws server', () => {
  it('connects, sends text and binary, and receives text and binary (as ArrayBuffer)', async () => {
    const server = await startServer({
      onConnection: ({ socket }) => {
        socket.send('welcome')
        socket.send(Buffer.from([1, 2, 3, 255]))
      },
    })
    const { sock, states, errors } = rawSocketAndRecords(server.url)
    const received: In[] = []
    sock.on('message', (m) => received.push(m))

    await sock.send('hello')
    await sock.send(new Uint8Array([9, 8, 7]))
    expect(sock.state).toBe('open')
    expect(sock.pending).toBe(0)

    await waitFor(() => server.messages.length === 2, 3000, 'the server to receive 2 messages')
    expect(server.messages[0]).toMatchObject({ data: 'hello', isBinary: false })
    expect(server.messages[1].isBinary).toBe(true)
    expect([...(server.messages[1].data as Buffer)]).toEqual([9, 8, 7])

    await waitFor(() => received.length === 2, 3000, 'the client to receive 2 messages')
    expect(received[0]).toBe('welcome')
    expect(received[1]).toBeInstanceOf(ArrayBuffer)
    expect([...new Uint8Array(received[1] as ArrayBuffer)]).toEqual([1, 2, 3, 255])

    expect(states).toEqual(['connecting', 'open'])
    expect(server.connections).toHaveLength(1)
    expect(errors).toEqual([])
  })

  it('queues while the server is down and delivers the backlog exactly once, in order, after a restart on the same port', async () => {
    let server: TestServer = await startServer()
    const { sock, states } = rawSocketAndRecords(server.url)
    const reconnecting: ReconnectingInfo[] = []
    sock.on('reconnecting', (info) => reconnecting.push(info))
    await sock.send('before')
    await waitFor(() => server.messages.length === 1, 3000, 'the first message')

    const lost = nextEvent(sock, 'close')
    await server.kill()
    await lost
    expect(sock.state).toBe('reconnecting')

    const whileDown = Array.from({ length: 200 }, (_, i) => `down-${i}`)
    const downPromises = whileDown.map((m) => sock.send(m))
    const settled: string[] = []
    for (const [i, p] of downPromises.entries()) p.then(() => settled.push(whileDown[i]))
    expect(sock.pending).toBe(200)
    // let a few attempts fail against the dead port
    await waitFor(() => reconnecting.length >= 2, 3000, 'at least two failed reconnect attempts')
    expect(sock.state).not.toBe('open')
    expect(settled).toEqual([])

    server = await restartServer(server)
    await waitFor(() => sock.state === 'open', 5000, 'the client to reconnect to the restarted server')
    const after = Array.from({ length: 20 }, (_, i) => `after-${i}`)
    const afterPromises = after.map((m) => sock.send(m))

    await Promise.all([...downPromises, ...afterPromises])
    expect(settled).toEqual(whileDown) // resolved in send order
    await waitFor(() => server.messages.length >= 220, 5000, 'the restarted server to receive 220 messages')
    expect(server.texts()).toEqual([...whileDown, ...after])
    expect(server.connections).toHaveLength(1)
    expect(sock.pending).toBe(0)

    expect(states.slice(0, 2)).toEqual(['connecting', 'open'])
    expect(collapseRetries(states.slice(1))).toEqual(['open', 'reconnecting', 'connecting', 'open'])
    expect(reconnecting[0].attempt).toBe(1)
  })

  it('retries a server that refuses the handshake with growing delays, then gives up: queued sends reject with DeliveryError', async () => {
    const server = await startServer({ verifyClient: (_info, done) => done(false, 401, 'Unauthorized') })
    const { sock, states, errors } = rawSocketAndRecords(server.url, {
      reconnect: { minDelay: 20, maxDelay: 1000, factor: 2, jitter: 0, maxRetries: 3 },
    })
    const reconnecting: ReconnectingInfo[] = []
    const closes: { code: number; willReconnect: boolean }[] = []
    sock.on('reconnecting', (info) => reconnecting.push(info))
    sock.on('close', ({ code, willReconnect }) => closes.push({ code, willReconnect }))

    const sends = [sock.send('one'), sock.send('two')]
    const outcomes = await Promise.allSettled(sends)

    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected')
      const reason = (outcome as PromiseRejectedResult).reason
      expect(reason).toBeInstanceOf(DeliveryError)
      expect(reason).toBeInstanceOf(TetherError)
    }
    expect(((outcomes[0] as PromiseRejectedResult).reason as DeliveryError).data).toBe('one')
    expect(sock.state).toBe('closed')
    expect(sock.pending).toBe(0)

    // the first attempt and 3 retries, with delays 20, 40, 80
    expect(reconnecting).toEqual([
      { attempt: 1, delay: 20, waitingFor: 'delay' },
      { attempt: 2, delay: 40, waitingFor: 'delay' },
      { attempt: 3, delay: 80, waitingFor: 'delay' },
    ])
    expect(server.upgrades).toHaveLength(4)
    expect(server.connections).toHaveLength(0)
    const gaps = server.upgrades.slice(1).map((u, i) => u.at - server.upgrades[i].at)
    for (const [i, gap] of gaps.entries()) expect(gap).toBeGreaterThanOrEqual(reconnecting[i].delay - 2)
    expect(closes.map((c) => c.willReconnect)).toEqual([true, true, true, false])
    expect(states.at(-1)).toBe('closed')
    expect(errors.filter((e) => e instanceof DeliveryError)).toHaveLength(2)
    // the refusal is reported once (the same cause four times), and is the give-up's cause
    const refused = errors.filter((e) => e instanceof ConnectionError)
    expect(refused.map((e) => e.message)).toEqual([expect.stringMatching(/: HTTP 401: unauthorized/)])
    expect(((outcomes[0] as PromiseRejectedResult).reason as DeliveryError).cause).toBeInstanceOf(ConnectionError)
  })

  it('calls the URL provider before every attempt, and the server sees each fresh token', async () => {
    const server = await startServer()
    let calls = 0
    const { sock } = rawSocketAndRecords(async () => `${server.url}/live?token=t${++calls}`)

    for (let n = 1; n <= 3; n++) {
      await waitFor(() => sock.state === 'open' && server.openConnections().length === 1, 3000, `connection ${n}`)
      await sock.send(`on-${n}`)
      // raw mode has no acks: a frame in flight when the connection dies may be lost, so drop only once it arrived
      await waitFor(() => server.messages.length === n, 3000, `message ${n} to arrive`)
      const lost = nextEvent(sock, 'close')
      server.terminateClients()
      await lost
    }
    await waitFor(() => sock.state === 'open' && server.openConnections().length === 1, 3000, 'connection 4')

    expect(server.connections.map((c) => c.url)).toEqual(['/live?token=t1', '/live?token=t2', '/live?token=t3', '/live?token=t4'])
    expect(calls).toBe(4)
    expect(server.messages.map((m) => [m.connection, m.data])).toEqual([
      [0, 'on-1'],
      [1, 'on-2'],
      [2, 'on-3'],
    ])
  })

  it('close() during an active stream resolves, sends close code 1000 and leaves nothing open', async () => {
    const clients: WebSocket[] = []
    class TrackedWebSocket extends WebSocket {
      constructor(...args: ConstructorParameters<typeof WebSocket>) {
        super(...args)
        clients.push(this)
      }
    }
    let streaming: ReturnType<typeof setInterval> | undefined
    let streamed = 0
    const server = await startServer({
      onConnection: ({ socket }) => {
        streaming = setInterval(() => {
          if (socket.readyState === WebSocket.OPEN) socket.send(`tick-${streamed++}`)
        }, 1)
        socket.on('close', () => clearInterval(streaming))
      },
    })
    try {
      const { sock, states } = rawSocketAndRecords(server.url, { WebSocket: TrackedWebSocket })
      const received: In[] = []
      sock.on('message', (m) => received.push(m))
      const closes: { code: number; willReconnect: boolean }[] = []
      sock.on('close', ({ code, willReconnect }) => closes.push({ code, willReconnect }))

      await waitFor(() => received.length >= 20, 3000, 'the stream to flow')
      let sent = 0
      const pumping = setInterval(() => {
        sock.send(`up-${sent++}`).catch(() => {})
      }, 1)
      await waitFor(() => server.messages.length >= 10, 3000, 'client messages to flow')
      clearInterval(pumping)

      await sock.close()
      expect(sock.state).toBe('closed')
      expect(states.slice(-2)).toEqual(['closing', 'closed'])
      expect(closes).toEqual([{ code: 1000, willReconnect: false }])

      await waitFor(() => server.connections[0].closed, 3000, 'the server to see the close')
      expect(server.connections[0].closed?.code).toBe(1000)
      expect(server.connections).toHaveLength(1)
      expect(clients).toHaveLength(1)
      expect(clients[0].readyState).toBe(WebSocket.CLOSED)

      // nothing reconnects, nothing more arrives
      const count = received.length
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect(received.length).toBe(count)
      expect(server.connections).toHaveLength(1)
      expect(sock.state).toBe('closed')
    } finally {
      clearInterval(streaming)
    }
  })

  it('close() releases its timers and TCP sockets (no open handles remain)', async () => {
    const server = await startServer()
    const count = (type: string) => process.getActiveResourcesInfo().filter((r) => r === type).length
    const baseline = { tcp: count('TCPSocketWrap'), timers: count('Timeout') }

    const { sock } = rawSocketAndRecords(server.url, { reconnect: { ...fast, connectTimeout: 60000 } })
    await sock.send('x')
    server.broadcast('y')
    // an open client adds two TCP sockets (its own and the server's side)
    expect(count('TCPSocketWrap')).toBe(baseline.tcp + 2)

    await sock.close()
    await waitFor(() => server.connections[0]?.closed, 3000, 'the server side to close')
    await waitFor(
      () => count('TCPSocketWrap') === baseline.tcp && count('Timeout') <= baseline.timers,
      3000,
      `TCP sockets and timers back to the baseline ${JSON.stringify(baseline)}; now ${JSON.stringify(process.getActiveResourcesInfo())}`,
    )
  })

  it('the onOpen hook message arrives first on every connection', async () => {
    const server = await startServer()
    const { sock } = rawSocketAndRecords(server.url, {
      onOpen: async ({ send, connection }) => {
        await send(`hello-${connection}`)
      },
    })
    await sock.send('a1')
    await sock.send('a2')
    let expected = 3

    for (let n = 2; n <= 3; n++) {
      // raw mode has no acks: drop the connection only once what was written has arrived
      await waitFor(() => server.messages.length === expected, 3000, `${expected} messages before drop ${n - 1}`)
      expected += 4
      const lost = nextEvent(sock, 'close')
      server.terminateClients()
      await lost
      expect(sock.state).toBe('reconnecting')
      const queued = [sock.send(`q${n}-1`), sock.send(`q${n}-2`)]
      await waitFor(() => sock.state === 'open', 3000, `connection ${n}`)
      await Promise.all(queued)
      await sock.send(`later-${n}`)
    }
    await waitFor(() => server.messages.length === expected, 3000, `${expected} messages`)

    const byConnection = server.connections.map((c) => server.messages.filter((m) => m.connection === c.index).map((m) => m.data))
    expect(byConnection).toEqual([
      ['hello-1', 'a1', 'a2'],
      ['hello-2', 'q2-1', 'q2-2', 'later-2'],
      ['hello-3', 'q3-1', 'q3-2', 'later-3'],
    ])
  })
})
