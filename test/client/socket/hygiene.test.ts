import { describe, expect, it, vi } from 'vitest'
import type { TetherSocket } from '../../../src/index.js'
import {
  advanceUntil,
  countingWebSocket,
  createDroppingServer,
  createServer,
  flush,
  hangingWebSocket,
  rawSocket,
  uniqueUrl,
  useMockEnvironment,
} from '../../support/mock.js'

useMockEnvironment()

const watched = ['online', 'offline', 'visibilitychange'] as const

/** Net listeners (added minus removed) per event type on window and document, from now on. */
function trackListeners() {
  const net = { window: new Map<string, number>(), document: new Map<string, number>() }
  for (const [name, target] of [
    ['window', window],
    ['document', document],
  ] as const) {
    const add = target.addEventListener.bind(target)
    const remove = target.removeEventListener.bind(target)
    const count = (type: string, delta: number) => net[name].set(type, (net[name].get(type) ?? 0) + delta)
    vi.spyOn(target, 'addEventListener').mockImplementation((type: string, listener: any, options?: any) => {
      count(type, 1)
      add(type, listener, options)
    })
    vi.spyOn(target, 'removeEventListener').mockImplementation((type: string, listener: any, options?: any) => {
      count(type, -1)
      remove(type, listener, options)
    })
  }
  return {
    window: (type: string) => net.window.get(type) ?? 0,
    document: (type: string) => net.document.get(type) ?? 0,
    total: () => watched.reduce((sum, type) => sum + (net.window.get(type) ?? 0) + (net.document.get(type) ?? 0), 0),
  }
}

function listenerCounts(sock: TetherSocket<any, any>) {
  return Object.fromEntries(['open', 'message', 'close', 'reconnecting', 'state', 'error'].map((e) => [e, sock.listenerCount(e as 'open')]))
}

describe('after close(), nothing is left running', () => {
  it('leaves no timer after closing an open socket that had timed messages', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { queue: { ttl: 60_000 }, ackTimeout: 60_000 })
    await flush()
    sock.send('a', { timeout: 5000 })
    sock.send('b', { ttl: 5000 })
    await Promise.all([sock.close(), flush()])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('leaves no timer after closing with messages still queued under ttl and timeout', async () => {
    const sock = rawSocket(uniqueUrl(), { autoConnect: false })
    sock.send('a', { timeout: 5000 })
    sock.send('b', { ttl: 5000 })
    expect(vi.getTimerCount()).toBe(1)
    await sock.close()
    expect(vi.getTimerCount()).toBe(0)
  })

  it('leaves no timer after closing while reconnecting (the backoff wait is cancelled)', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 60_000 } })
    await flush()
    expect(sock.state).toBe('reconnecting')
    expect(vi.getTimerCount()).toBe(1)
    await sock.close()
    expect(vi.getTimerCount()).toBe(0)
  })

  it('leaves no timer after closing while connecting (the connect timeout is cancelled)', async () => {
    const { WebSocket } = hangingWebSocket()
    const sock = rawSocket(uniqueUrl(), { WebSocket })
    await flush()
    expect(vi.getTimerCount()).toBe(1)
    await Promise.all([sock.close(), flush()])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('leaves no timer after giving up reconnecting', async () => {
    const sock = rawSocket(uniqueUrl('nobody-listens'), { reconnect: { jitter: 0, minDelay: 100, maxRetries: 2 } })
    sock.send('doomed', { timeout: 600_000 })
    await advanceUntil(() => sock.state === 'closed')
    await flush()
    expect(vi.getTimerCount()).toBe(0)
  })

  it('removes its window and document listeners on close(), and adds them again on connect()', async () => {
    const listeners = trackListeners()
    const server = createServer()
    const sock = rawSocket(server.url)
    expect(listeners.window('online')).toBe(1)
    expect(listeners.window('offline')).toBe(1)
    expect(listeners.document('visibilitychange')).toBe(1)
    await flush()
    await Promise.all([sock.close(), flush()])
    expect(listeners.total()).toBe(0)
    sock.connect()
    expect(listeners.total()).toBe(3)
    await flush()
    await Promise.all([sock.close(), flush()])
    expect(listeners.total()).toBe(0)
  })

  it('adds no window listener before connecting (autoConnect: false)', () => {
    const listeners = trackListeners()
    rawSocket(uniqueUrl(), { autoConnect: false })
    expect(listeners.total()).toBe(0)
  })

  it('removes its window and document listeners when it gives up reconnecting', async () => {
    const listeners = trackListeners()
    const sock = rawSocket(uniqueUrl('nobody-listens'), { reconnect: { jitter: 0, minDelay: 100, maxRetries: 1 } })
    await advanceUntil(() => sock.state === 'closed')
    expect(listeners.total()).toBe(0)
  })

  it('removes its window and document listeners when the server refuses for good (1008)', async () => {
    const listeners = trackListeners()
    const server = createDroppingServer(1008)
    const sock = rawSocket(server.url)
    await flush()
    expect(sock.state).toBe('closed')
    expect(listeners.total()).toBe(0)
  })

  it('detaches its handlers from every WebSocket it is done with', async () => {
    const server = createDroppingServer()
    const { WebSocket, created } = countingWebSocket()
    const sock = rawSocket(server.url, { WebSocket, reconnect: { jitter: 0, minDelay: 10 } })
    await advanceUntil(() => created.length === 5)
    await flush()
    await Promise.all([sock.close(), flush()])
    for (const { socket } of created) {
      expect(socket.onopen).toBeNull()
      expect(socket.onmessage).toBeNull()
      expect(socket.onclose).toBeNull()
    }
  })
})

describe('1,000 reconnect cycles', () => {
  it('leave no growth in timers, window/document listeners or event listeners', async () => {
    const listeners = trackListeners()
    const server = createDroppingServer()
    let urlCalls = 0
    const sock = rawSocket(
      () => {
        urlCalls++
        return server.url
      },
      { reconnect: { jitter: 0, minDelay: 1, maxDelay: 1 } },
    )
    sock.on('message', () => {})
    sock.on('error', () => {})
    const timers: number[] = []
    const net: number[] = []
    sock.on('reconnecting', () => {
      timers.push(vi.getTimerCount())
      net.push(listeners.total())
    })
    await advanceUntil(() => timers.length === 10)
    const early = listenerCounts(sock)
    await advanceUntil(() => timers.length === 1000, 60_000)
    expect(server.connections.length).toBeGreaterThanOrEqual(1000)
    expect(urlCalls).toBe(sock.stats.attempts)
    expect(sock.stats.reconnects).toBeGreaterThanOrEqual(999)
    expect(listenerCounts(sock)).toEqual(early)
    expect(new Set(net)).toEqual(new Set([3]))
    expect(timers[999]).toBe(timers[9])
    expect(Math.max(...timers)).toBe(timers[9])
    expect(sock.pending).toBe(0)
    await Promise.all([sock.close(), flush()])
    expect(vi.getTimerCount()).toBe(0)
    expect(listeners.total()).toBe(0)
    expect(server.open()).toHaveLength(0)
  })

  it('keep messages queued during the cycles in order and deliver them once a connection stays', async () => {
    let dropping = true
    const server = createServer({
      onConnection: (client) => {
        if (dropping) client.close({ code: 1001, reason: '', wasClean: true })
      },
    })
    const sock = rawSocket<string, string>(server.url, { reconnect: { jitter: 0, minDelay: 1, maxDelay: 1 } })
    const sends: Promise<void>[] = []
    sock.on('reconnecting', () => {
      if (sends.length < 50) sends.push(sock.send(`m${sends.length}`))
    })
    await advanceUntil(() => server.connections.length >= 1000, 60_000)
    dropping = false
    await advanceUntil(() => sock.state === 'open')
    await Promise.all(sends)
    // raw mode is at-most-once for what was written just before a drop; here every write came
    // after an open, so each message reached the server exactly once and in order
    expect(server.received).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`))
  })
})
