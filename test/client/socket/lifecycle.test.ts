/**
 * The connection's life at its edges: close() overtaken by connect(), what a final close
 * event's listeners see, close reasons at the byte limit, what a protocols function may
 * return, how failed attempts are reported and counted, and the wait for the network.
 */
import { WebSocket as MockWebSocket } from 'mock-socket'
import { describe, expect, it, vi } from 'vitest'
import {
  type CloseEventInfo,
  ConnectionError,
  DeliveryError,
  OptionError,
  type ReconnectingInfo,
  type SocketState,
  type TetherError,
} from '../../../src/index.js'
import {
  advanceUntil,
  collect,
  countingWebSocket,
  createDroppingServer,
  createServer,
  flush,
  rawSocket,
  rejection,
  uniqueUrl,
  useMockEnvironment,
} from '../../support/mock.js'

useMockEnvironment()

describe('close() followed by connect() or reconnect()', () => {
  it('close() then connect() in the same tick connects again', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    expect(sock.state).toBe('open')
    const closed = sock.close()
    sock.connect()
    await flush()
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(2)
    expect(server.open()).toHaveLength(1) // the first connection was closed, not forgotten
    await expect(closed).resolves.toBeUndefined()
  })

  it('close() then reconnect() in the same tick connects again', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    void sock.close()
    sock.reconnect()
    await flush()
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(2)
    expect(server.open()).toHaveLength(1)
  })

  it('reports the overtaken close as a final close, with the code and reason close() was given', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    const closes = collect<[CloseEventInfo]>(sock, 'close')
    const states = collect<[SocketState, SocketState]>(sock, 'state')
    void sock.close(4321, 'bye')
    sock.connect()
    expect(closes).toEqual([[{ code: 4321, reason: 'bye', wasClean: false, willReconnect: false }]])
    expect(states.map(([next]) => next)).toEqual(['closing', 'closed', 'connecting'])
    await flush()
    expect(server.closes).toEqual([{ code: 4321, reason: 'bye' }])
  })

  it('connect() from the listener of the final close of close() connects again', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    const seen: SocketState[] = []
    sock.once('close', ({ willReconnect }) => {
      expect(willReconnect).toBe(false)
      seen.push(sock.state)
      sock.connect()
    })
    await Promise.all([sock.close(), flush()])
    await flush()
    expect(seen).toEqual(['closed'])
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(2)
  })

  it('connect() from the listener of the final close after giving up connects again', async () => {
    const server = createDroppingServer(1008) // the default policy does not retry 1008
    const sock = rawSocket(server.url)
    const seen: SocketState[] = []
    sock.once('close', ({ willReconnect }) => {
      seen.push(sock.state)
      if (!willReconnect) sock.connect()
    })
    await flush(50)
    expect(seen).toEqual(['closed'])
    expect(sock.stats.attempts).toBe(2)
    expect(server.connections).toHaveLength(2)
  })

  it('connect() from the listener of the final close with reconnect: false connects again', async () => {
    const server = createDroppingServer(1001)
    const sock = rawSocket(server.url, { reconnect: false })
    const seen: SocketState[] = []
    sock.once('close', () => {
      seen.push(sock.state)
      sock.connect()
    })
    await flush(50)
    expect(seen).toEqual(['closed'])
    expect(server.connections).toHaveLength(2)
  })
})

describe('close reasons', () => {
  it('refuses a reason longer than 123 UTF-8 bytes with OptionError, synchronously, and stays open', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    expect(() => sock.close(1000, 'x'.repeat(124))).toThrow(OptionError)
    expect(() => sock.close(1000, 'é'.repeat(62))).toThrow(/at most 123 UTF-8 bytes.*got 124/)
    expect(sock.state).toBe('open')
    expect(server.open()).toHaveLength(1)
    await Promise.all([sock.close(1000, 'é'.repeat(61)), flush()])
    expect(server.closes).toEqual([{ code: 1000, reason: 'é'.repeat(61) }])
  })

  it('refuses a reason that is not a string', () => {
    const sock = rawSocket(createServer().url)
    expect(() => sock.close(1000, 42 as never)).toThrow(OptionError)
  })

  it('ends a connection whose WebSocket refuses close(code, reason): closed without them', async () => {
    const server = createServer()
    class Strict extends MockWebSocket {
      override close(code?: number, reason?: string): void {
        if (reason) throw new SyntaxError('reason refused')
        super.close(code)
      }
    }
    const sock = rawSocket(server.url, { WebSocket: Strict })
    await flush()
    expect(server.open()).toHaveLength(1)
    const done = sock.close(1000, 'fine by the spec, refused here')
    await flush()
    await expect(done).resolves.toBeUndefined()
    expect(server.open()).toHaveLength(0)
  })

  it('cuts the reason of a failed onOpen hook by UTF-8 bytes, so the connection is closed at the server', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, {
      reconnect: { maxRetries: 2, minDelay: 10, jitter: 0 },
      onOpen: () => {
        throw new Error('ü'.repeat(200))
      },
    })
    sock.on('error', () => {})
    await advanceUntil(() => sock.state === 'closed')
    await flush()
    expect(server.connections).toHaveLength(3)
    expect(server.open()).toHaveLength(0)
    for (const { reason } of server.closes) expect(new TextEncoder().encode(reason).length).toBeLessThanOrEqual(123)
  })
})

describe('a protocols function', () => {
  it('returning an object fails the attempt with a ConnectionError naming options.protocols and the value', async () => {
    const { WebSocket, created } = countingWebSocket()
    const sock = rawSocket(createServer().url, {
      WebSocket,
      protocols: () => ({ headers: { 'x-injected': '1' } }) as never,
      reconnect: { maxRetries: 0 },
    })
    const errors = collect<[TetherError]>(sock, 'error')
    await flush()
    expect(created).toEqual([])
    expect(sock.state).toBe('closed')
    const [[error]] = errors
    expect(error).toBeInstanceOf(ConnectionError)
    expect(error!.message).toMatch(/options\.protocols must be a string or an array of strings/)
    expect(error!.message).toContain('{"headers":{"x-injected":"1"}}')
    expect(error!.cause).toBeInstanceOf(OptionError)
  })

  it('returning an array with a non-string fails the attempt', async () => {
    const { WebSocket, created } = countingWebSocket()
    const sock = rawSocket(createServer().url, { WebSocket, protocols: async () => ['a', 7] as never, reconnect: { maxRetries: 0 } })
    const errors = collect<[TetherError]>(sock, 'error')
    await flush()
    expect(created).toEqual([])
    expect(errors[0]![0].message).toMatch(/options\.protocols .*\["a",7\]/)
  })

  it('returning a string or an array of strings is offered', async () => {
    const server = createServer()
    let call = 0
    const sock = rawSocket(server.url, { protocols: () => (call++ === 0 ? 'one' : ['two', 'three']) })
    await flush()
    sock.reconnect()
    await flush()
    expect(server.offered).toEqual([['one'], ['two', 'three']])
  })
})

describe('maxRetries counts retries after the first attempt', () => {
  it('maxRetries: 3 makes 4 attempts, and the DeliveryError says so', async () => {
    const { WebSocket, created } = countingWebSocket()
    const sock = rawSocket(uniqueUrl('nobody-listens'), { WebSocket, reconnect: { jitter: 0, minDelay: 100, maxRetries: 3 } })
    sock.on('error', () => {})
    const sent = sock.send('x')
    await advanceUntil(() => sock.state === 'closed')
    expect(created).toHaveLength(4)
    const error = await rejection(sent)
    expect(error).toBeInstanceOf(DeliveryError)
    expect((error as Error).message).toMatch(
      /gave up reconnecting after 4 failed attempts in a row \(1 \+ 3 retries, reconnect\.maxRetries\)/,
    )
  })

  it('maxRetries: 0 makes 1 attempt', async () => {
    const { WebSocket, created } = countingWebSocket()
    const sock = rawSocket(uniqueUrl('nobody-listens'), { WebSocket, reconnect: { maxRetries: 0 } })
    sock.on('error', () => {})
    const sent = sock.send('x')
    await advanceUntil(() => sock.state === 'closed')
    expect(created).toHaveLength(1)
    expect(((await rejection(sent)) as Error).message).toMatch(/after 1 failed attempt in a row \(1 \+ 0 retries/)
  })
})

describe('failed attempts say why', () => {
  it('emits one ConnectionError while the same failure repeats, and the DeliveryError carries it as cause', async () => {
    const sock = rawSocket(uniqueUrl('nobody-listens'), { reconnect: { jitter: 0, minDelay: 100, maxRetries: 5 } })
    const errors = collect<[TetherError]>(sock, 'error')
    const sent = sock.send('x')
    await advanceUntil(() => sock.state === 'closed')
    expect(sock.stats.attempts).toBe(6)
    const failures = errors.map(([e]) => e).filter((e) => e instanceof ConnectionError)
    expect(failures).toHaveLength(1)
    expect(failures[0]!.message).toMatch(/^could not connect to ws:\/\/mock\.test\/nobody-listens-\d+: /)
    const given = await rejection(sent)
    expect(given).toBeInstanceOf(DeliveryError)
    // the last failure (the same cause as the one reported) is the give-up's cause
    expect((given as Error).cause).toBeInstanceOf(ConnectionError)
    expect(((given as Error).cause as Error).message).toBe(failures[0]!.message)
  })

  it('reports a failure again when its cause changes, and the first failure after an open', async () => {
    const url = uniqueUrl('comes-and-goes')
    let refuse = true
    const sock = rawSocket(url, {
      reconnect: { jitter: 0, minDelay: 100, maxDelay: 100 },
      onOpen: () => {
        if (refuse) throw new Error('not yet')
      },
    })
    const errors = collect<[TetherError]>(sock, 'error')
    const failures = () => errors.map(([e]) => e.message)
    await advanceUntil(() => sock.stats.attempts === 3) // nobody listens
    expect(failures()).toHaveLength(1)
    // now a server answers, but the onOpen hook fails: a different cause
    const server = createServer({}, url)
    await advanceUntil(() => sock.stats.attempts === 6)
    expect(failures()).toEqual([failures()[0], 'options.onOpen failed: not yet'])
    refuse = false
    await advanceUntil(() => sock.state === 'open')
    for (const client of server.connections) client.close({ code: 1001, reason: '', wasClean: true })
    server.stop()
    await advanceUntil(() => sock.stats.attempts === 9)
    expect(failures()).toHaveLength(3) // nobody listens again: reported, as the first failure after an open
    expect(failures()[2]).toBe(failures()[0])
  })
})

describe('an error without a close event (undici 6, Node 20 and 22)', () => {
  /** A WebSocket that fails its handshake like undici 6: error, readyState stays CONNECTING, no close. */
  function silentFailure() {
    const made: { closed: boolean }[] = []
    class Silent {
      readyState = 0
      protocol = ''
      binaryType = 'blob'
      onopen: (() => void) | null = null
      onmessage: ((event: unknown) => void) | null = null
      onclose: ((event: unknown) => void) | null = null
      onerror: ((event: unknown) => void) | null = null
      private readonly record = { closed: false }
      constructor() {
        made.push(this.record)
        setTimeout(() => this.onerror?.({ message: 'Received network error or non-101 status code.' }), 5)
      }
      send(): void {
        throw new Error('not open')
      }
      close(): void {
        this.record.closed = true
      }
    }
    return { WebSocket: Silent, made }
  }

  it('ends the attempt at once instead of waiting for the connect timeout', async () => {
    const { WebSocket, made } = silentFailure()
    const sock = rawSocket(uniqueUrl(), { WebSocket, reconnect: { jitter: 0, minDelay: 100, connectTimeout: 10_000 } })
    const errors = collect<[TetherError]>(sock, 'error')
    const closes = collect<[CloseEventInfo]>(sock, 'close')
    await flush(100)
    expect(sock.state).toBe('reconnecting')
    expect(closes).toEqual([[{ code: 1006, reason: '', wasClean: false, willReconnect: true }]])
    expect(errors.map(([e]) => e.message)).toEqual([expect.stringContaining('Received network error or non-101 status code.')])
    expect(made[0]!.closed).toBe(true) // released
    await flush(1000)
    expect(made.length).toBeGreaterThanOrEqual(3)
  })
})

describe('waiting for the network', () => {
  it('an offline event during the backoff wait says the socket now waits for the network', async () => {
    const server = createDroppingServer(1001)
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 10_000 } })
    const reconnecting = collect<[ReconnectingInfo]>(sock, 'reconnecting')
    await flush()
    expect(reconnecting).toEqual([[{ attempt: 1, delay: 10_000, waitingFor: 'delay' }]])
    const offline = vi.spyOn(navigator, 'onLine', 'get').mockReturnValue(false)
    window.dispatchEvent(new Event('offline'))
    expect(reconnecting[1]).toEqual([{ attempt: 1, delay: Number.POSITIVE_INFINITY, waitingFor: 'network' }])
    await flush(60_000)
    expect(sock.stats.attempts).toBe(1)
    offline.mockReturnValue(true)
    window.dispatchEvent(new Event('online'))
    expect(sock.stats.attempts).toBe(2)
  })
})
