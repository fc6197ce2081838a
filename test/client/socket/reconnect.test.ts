import { describe, expect, it, vi } from 'vitest'
import { type CloseInfo, DeliveryError, type ReconnectingInfo, TetherError, TimeoutError } from '../../../src/index.js'
import {
  advanceUntil,
  collect,
  countingWebSocket,
  createDroppingServer,
  createServer,
  flush,
  hangingWebSocket,
  rawSocket,
  rejection,
  uniqueUrl,
  useMockEnvironment,
} from '../../support/mock.js'

useMockEnvironment()

/** Records `reconnecting` events with the fake time at which each was emitted. */
function recordReconnecting(sock: ReturnType<typeof rawSocket>) {
  const seen: (ReconnectingInfo & { at: number })[] = []
  sock.on('reconnecting', (info) => seen.push({ ...info, at: Date.now() }))
  return seen
}

/** A server that closes connection i after holds[i] ms (0: at once; beyond the list: never). */
function createHoldingServer(holds: number[]) {
  return createServer({
    onConnection: (client, i) => {
      const hold = holds[i]
      if (hold === undefined) return
      if (hold === 0) client.close({ code: 1001, reason: '', wasClean: true })
      else setTimeout(() => client.close({ code: 1001, reason: '', wasClean: true }), hold)
    },
  })
}

describe('backoff delays', () => {
  it('waits minDelay * factor^(n-1), capped at maxDelay, before retry n (jitter: 0), and not a millisecond less', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000, factor: 2, maxDelay: 10_000 } })
    const reconnecting = recordReconnecting(sock)
    const expected = [1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
    await flush()
    for (let i = 0; i < expected.length; i++) {
      expect(reconnecting).toHaveLength(i + 1)
      expect(reconnecting[i]).toMatchObject({ attempt: i + 1, delay: expected[i] })
      const waited = Date.now() - reconnecting[i]!.at
      await vi.advanceTimersByTimeAsync(expected[i]! - waited - 1)
      expect(sock.state).toBe('reconnecting')
      expect(sock.stats.attempts).toBe(i + 1)
      expect(server.connections).toHaveLength(i + 1)
      await vi.advanceTimersByTimeAsync(1)
      expect(sock.stats.attempts).toBe(i + 2)
      await flush()
      expect(server.connections).toHaveLength(i + 2)
    }
  })

  it('uses the documented defaults: 1000 ms doubling per failure (jitter: 0)', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0 } })
    const reconnecting = recordReconnecting(sock)
    await advanceUntil(() => reconnecting.length === 6)
    expect(reconnecting.map((r) => r.delay)).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000])
  })

  it('spreads full jitter (the default) over (0, cap]: delay = cap * (1 - random())', async () => {
    const random = vi.spyOn(Math, 'random').mockReturnValue(0.25)
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { minDelay: 1000, maxDelay: 8000 } })
    const reconnecting = recordReconnecting(sock)
    await advanceUntil(() => reconnecting.length === 5)
    expect(reconnecting.map((r) => r.delay)).toEqual([750, 1500, 3000, 6000, 6000])
    random.mockReturnValue(0)
    await advanceUntil(() => reconnecting.length === 6)
    expect(reconnecting[5]!.delay).toBe(8000)
  })

  it('keeps full-jitter delays within (0, cap] with the real random source, and waits exactly that long', async () => {
    const server = createDroppingServer()
    const { WebSocket, created } = countingWebSocket()
    const sock = rawSocket(server.url, { WebSocket, reconnect: { minDelay: 1000, maxDelay: 16_000 } })
    const reconnecting = recordReconnecting(sock)
    await advanceUntil(() => reconnecting.length === 12)
    expect(created).toHaveLength(12)
    reconnecting.forEach(({ attempt, delay, at }, i) => {
      const cap = Math.min(16_000, 1000 * 2 ** (attempt - 1))
      expect(attempt).toBe(i + 1)
      expect(delay).toBeGreaterThan(0)
      expect(delay).toBeLessThanOrEqual(cap)
      const next = created[i + 1]
      if (next) {
        // the next WebSocket is created once the (fractional) delay has passed: fake timers round it to a whole ms
        expect(next.at - at).toBeGreaterThanOrEqual(Math.floor(delay))
        expect(next.at - at).toBeLessThanOrEqual(Math.ceil(delay))
      }
    })
    expect(new Set(reconnecting.map((r) => r.delay)).size).toBeGreaterThan(1)
  })

  it('randomizes only the jitter share of the delay: jitter 0.5 keeps it in (cap/2, cap]', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.999)
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { minDelay: 1000, jitter: 0.5 } })
    const reconnecting = recordReconnecting(sock)
    await advanceUntil(() => reconnecting.length === 2)
    expect(reconnecting[0]!.delay).toBeCloseTo(500.5, 6)
    expect(reconnecting[1]!.delay).toBeCloseTo(1001, 6)
  })

  it.each([1012, 1013])('waits at least busyDelay after close code %i (the server asked to come back later)', async (code) => {
    vi.spyOn(Math, 'random').mockReturnValue(0)
    const server = createDroppingServer(code)
    const sock = rawSocket(server.url, { reconnect: { minDelay: 1000, busyDelay: 5000 } })
    const reconnecting = recordReconnecting(sock)
    await flush()
    expect(reconnecting).toHaveLength(1)
    expect(reconnecting[0]!.delay).toBe(5000)
    await vi.advanceTimersByTimeAsync(5000 - (Date.now() - reconnecting[0]!.at) - 1)
    expect(server.connections).toHaveLength(1)
    expect(sock.stats.attempts).toBe(1)
    await flush()
    expect(server.connections).toHaveLength(2)
  })

  it('keeps the busy delay in [busyDelay, 2 * busyDelay) with the real random source', async () => {
    const server = createDroppingServer(1013)
    const sock = rawSocket(server.url, { reconnect: { minDelay: 100, maxDelay: 200, busyDelay: 5000 } })
    const reconnecting = recordReconnecting(sock)
    await advanceUntil(() => reconnecting.length === 5)
    for (const { delay } of reconnecting) {
      expect(delay).toBeGreaterThanOrEqual(5000)
      expect(delay).toBeLessThan(10_000)
    }
  })
})

describe('maxRetries', () => {
  it('gives up after maxRetries failed attempts in a row: state closed, no more attempts', async () => {
    const { WebSocket, created } = countingWebSocket()
    const sock = rawSocket(uniqueUrl('nobody-listens'), { WebSocket, reconnect: { jitter: 0, minDelay: 100, maxRetries: 3 } })
    const closes = collect<[{ willReconnect: boolean }]>(sock, 'close')
    const reconnecting = recordReconnecting(sock)
    await advanceUntil(() => sock.state === 'closed')
    expect(created).toHaveLength(4)
    expect(reconnecting.map((r) => r.attempt)).toEqual([1, 2, 3])
    expect(closes.map(([info]) => info.willReconnect)).toEqual([true, true, true, false])
    await flush(600_000)
    expect(created).toHaveLength(4)
    expect(sock.state).toBe('closed')
  })

  it('rejects queued sends with DeliveryError when it gives up', async () => {
    const sock = rawSocket(uniqueUrl('nobody-listens'), { reconnect: { jitter: 0, minDelay: 100, maxRetries: 2 } })
    const errors = collect<[TetherError]>(sock, 'error')
    const first = sock.send('one')
    const second = sock.send('two')
    await advanceUntil(() => sock.state === 'closed')
    const [a, b] = await Promise.all([rejection(first), rejection(second)])
    expect(a).toBeInstanceOf(DeliveryError)
    expect(b).toBeInstanceOf(DeliveryError)
    expect((a as DeliveryError).data).toBe('one')
    expect(errors.map(([e]) => e)).toEqual(expect.arrayContaining([a, b]))
    expect(sock.pending).toBe(0)
  })

  it('never retries with maxRetries: 0', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { maxRetries: 0 } })
    const reconnecting = recordReconnecting(sock)
    await flush(60_000)
    expect(sock.state).toBe('closed')
    expect(reconnecting).toEqual([])
    expect(server.connections).toHaveLength(1)
  })

  it('counts only failures in a row: a connection that stayed up resets the count', async () => {
    // maxRetries 2: connection 0 fails and is retried twice; the third (connection 2) stays up, so its
    // drop starts a new run of failures: retried twice again (connections 3 and 4), then given up
    const server = createHoldingServer([0, 0, 10_000, 0, 0, 0])
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 100, maxRetries: 2, resetAfter: 5000 } })
    await advanceUntil(() => server.connections.length === 3)
    expect(sock.state).toBe('open')
    await advanceUntil(() => sock.state === 'closed')
    expect(server.connections).toHaveLength(5)
  })
})

describe('connectTimeout', () => {
  it('abandons an attempt not open after connectTimeout: TimeoutError event, the WebSocket closed, then a retry', async () => {
    const { WebSocket, instances } = hangingWebSocket()
    const sock = rawSocket(uniqueUrl('never-answers'), { WebSocket, reconnect: { jitter: 0, minDelay: 500, connectTimeout: 2000 } })
    const errors = collect<[TetherError]>(sock, 'error')
    const closes = collect(sock, 'close')
    const reconnecting = recordReconnecting(sock)
    await flush(1999)
    expect(sock.state).toBe('connecting')
    expect(errors).toEqual([])
    await flush(1)
    expect(errors).toHaveLength(1)
    expect(errors[0]![0]).toBeInstanceOf(TimeoutError)
    expect(errors[0]![0].message).toMatch(/connectTimeout/)
    expect(instances[0]!.closed).toHaveLength(1)
    expect(closes).toEqual([[expect.objectContaining({ code: 1006, wasClean: false, willReconnect: true })]])
    expect(reconnecting).toMatchObject([{ attempt: 1, delay: 500 }])
    expect(sock.state).toBe('reconnecting')
    await flush(500)
    expect(instances).toHaveLength(2)
    expect(sock.state).toBe('connecting')
  })

  it('times out with the default 10 s even with reconnect: false, and then ends closed', async () => {
    const { WebSocket, instances } = hangingWebSocket()
    const sock = rawSocket(uniqueUrl('never-answers'), { WebSocket, reconnect: false })
    const errors = collect<[TetherError]>(sock, 'error')
    await flush(9999)
    expect(sock.state).toBe('connecting')
    await flush(1)
    expect(errors.map(([e]) => e.constructor)).toEqual([TimeoutError])
    expect(sock.state).toBe('closed')
    expect(instances).toHaveLength(1)
  })

  it('does not time out a connection that opened in time', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { reconnect: { connectTimeout: 50 } })
    const errors = collect(sock, 'error')
    await flush(10_000)
    expect(sock.state).toBe('open')
    expect(errors).toEqual([])
    expect(server.connections).toHaveLength(1)
  })
})

describe('resetAfter', () => {
  it('keeps growing the delay when the server accepts and drops at once (no tight loop)', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000, resetAfter: 5000 } })
    const reconnecting = recordReconnecting(sock)
    await advanceUntil(() => reconnecting.length === 5)
    expect(server.connections).toHaveLength(5)
    expect(reconnecting.map(({ attempt, delay }) => ({ attempt, delay }))).toEqual([
      { attempt: 1, delay: 1000 },
      { attempt: 2, delay: 2000 },
      { attempt: 3, delay: 4000 },
      { attempt: 4, delay: 8000 },
      { attempt: 5, delay: 16_000 },
    ])
  })

  it('resets the delay to the minDelay range after a connection stayed open at least resetAfter', async () => {
    const server = createHoldingServer([0, 0, 6000])
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000, resetAfter: 5000 } })
    const reconnecting = recordReconnecting(sock)
    await advanceUntil(() => reconnecting.length === 3)
    expect(reconnecting.map(({ attempt, delay }) => ({ attempt, delay }))).toEqual([
      { attempt: 1, delay: 1000 },
      { attempt: 2, delay: 2000 },
      { attempt: 1, delay: 1000 },
    ])
  })

  it('keeps the delay growing after a connection that stayed open less than resetAfter', async () => {
    const server = createHoldingServer([0, 0, 4000])
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000, resetAfter: 5000 } })
    const reconnecting = recordReconnecting(sock)
    await advanceUntil(() => reconnecting.length === 3)
    expect(reconnecting.map((r) => r.delay)).toEqual([1000, 2000, 4000])
  })
})

describe('shouldReconnect', () => {
  it.each([1008, 4401, 4403])('by default does not retry after close code %i: closed, willReconnect false', async (code) => {
    const server = createDroppingServer(code, 'go away')
    const sock = rawSocket(server.url)
    const closes = collect(sock, 'close')
    const reconnecting = recordReconnecting(sock)
    await flush()
    expect(sock.state).toBe('closed')
    expect(closes).toEqual([[expect.objectContaining({ code, reason: 'go away', willReconnect: false })]])
    await flush(600_000)
    expect(reconnecting).toEqual([])
    expect(server.connections).toHaveLength(1)
  })

  it.each([1000, 1001, 1011, 4000, 4500])('by default retries after close code %i', async (code) => {
    const server = createDroppingServer(code)
    const sock = rawSocket(server.url, { reconnect: { jitter: 0 } }) // a delay of exactly 1000 ms: still waiting after flush()
    const closes = collect(sock, 'close')
    await flush()
    expect(sock.state).toBe('reconnecting')
    expect(closes).toEqual([[expect.objectContaining({ code, willReconnect: true })]])
  })

  it('consults a custom shouldReconnect with { code, reason, wasClean } and follows its answer', async () => {
    const server = createDroppingServer(4000, 'bye')
    const shouldReconnect = vi.fn((_close: CloseInfo) => false)
    const sock = rawSocket(server.url, { reconnect: { shouldReconnect } })
    const closes = collect(sock, 'close')
    await flush()
    expect(shouldReconnect).toHaveBeenCalledTimes(1)
    expect(shouldReconnect).toHaveBeenCalledWith({ code: 4000, reason: 'bye', wasClean: false })
    expect(sock.state).toBe('closed')
    expect(closes).toEqual([[expect.objectContaining({ willReconnect: false })]])
  })

  it('lets a custom shouldReconnect retry even on a code the default refuses', async () => {
    const server = createDroppingServer(1008)
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 100, shouldReconnect: () => true } })
    await flush()
    expect(sock.state).toBe('reconnecting')
    await flush(110)
    expect(server.connections).toHaveLength(2)
  })

  it('treats a throwing shouldReconnect as "no": an error event, no reconnect', async () => {
    const server = createDroppingServer(4000)
    const sock = rawSocket(server.url, {
      reconnect: {
        shouldReconnect: () => {
          throw new Error('boom')
        },
      },
    })
    const errors = collect<[TetherError]>(sock, 'error')
    const closes = collect(sock, 'close')
    await flush()
    expect(errors).toHaveLength(1)
    expect(errors[0]![0]).toBeInstanceOf(TetherError)
    expect(errors[0]![0].message).toMatch(/shouldReconnect/)
    expect((errors[0]![0].cause as Error).message).toBe('boom')
    expect(closes).toEqual([[expect.objectContaining({ willReconnect: false })]])
    expect(sock.state).toBe('closed')
    await flush(600_000)
    expect(server.connections).toHaveLength(1)
  })

  it('is not consulted when the user closes the socket', async () => {
    const server = createServer()
    const shouldReconnect = vi.fn(() => true)
    const sock = rawSocket(server.url, { reconnect: { shouldReconnect } })
    await flush()
    await Promise.all([sock.close(), flush()])
    expect(shouldReconnect).not.toHaveBeenCalled()
  })
})

describe('reconnect()', () => {
  it('drops an open connection and connects again at once', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    sock.reconnect()
    expect(sock.state).toBe('connecting')
    expect(sock.stats.attempts).toBe(2)
    await flush()
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(2)
    expect(server.open()).toEqual([server.connections[1]])
    expect(server.closes).toHaveLength(1)
  })

  it('skips the backoff wait while reconnecting, and the old wait causes no extra attempt', async () => {
    const server = createHoldingServer([0])
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 30_000 } })
    await flush()
    expect(sock.state).toBe('reconnecting')
    sock.reconnect()
    await flush()
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(2)
    await flush(120_000)
    expect(server.connections).toHaveLength(2)
    expect(sock.stats.attempts).toBe(2)
  })

  it('resets the backoff: the next failure waits the first delay again', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000 } })
    const reconnecting = recordReconnecting(sock)
    await advanceUntil(() => reconnecting.length === 3)
    expect(reconnecting[2]!.delay).toBe(4000)
    sock.reconnect()
    await flush()
    expect(reconnecting).toHaveLength(4)
    expect(reconnecting[3]).toMatchObject({ attempt: 1, delay: 1000 })
  })

  it('called from a reconnecting listener: one attempt at once, and the new connection stays up', async () => {
    const server = createHoldingServer([0])
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000, connectTimeout: 5000 } })
    const errors = collect<[TetherError]>(sock, 'error')
    sock.once('reconnecting', () => sock.reconnect())
    await flush(20)
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(2)
    await flush(60_000)
    expect(errors).toEqual([])
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(2)
    expect(sock.stats.attempts).toBe(2)
  })

  it('restarts an attempt in progress', async () => {
    const { WebSocket, instances } = hangingWebSocket()
    const sock = rawSocket(uniqueUrl('never-answers'), { WebSocket })
    await flush()
    sock.reconnect()
    await flush()
    expect(instances).toHaveLength(2)
    expect(instances[0]!.closed).toHaveLength(1)
    expect(sock.state).toBe('connecting')
  })

  it('connects a socket that is idle', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { autoConnect: false })
    sock.reconnect()
    await flush()
    expect(sock.state).toBe('open')
  })
})
