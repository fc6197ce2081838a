import { describe, expect, it, vi } from 'vitest'
import type { ReconnectingInfo } from '../../../src/index.js'
import {
  advanceUntil,
  createDroppingServer,
  createServer,
  createTetherMockServer,
  flush,
  rawSocket,
  useMockEnvironment,
} from '../../support/mock.js'

useMockEnvironment()

function goOffline() {
  return vi.spyOn(navigator, 'onLine', 'get').mockReturnValue(false)
}

function setVisibility(state: DocumentVisibilityState) {
  vi.spyOn(document, 'visibilityState', 'get').mockReturnValue(state)
  document.dispatchEvent(new Event('visibilitychange'))
}

/** A server that closes its first `drops` connections at once and keeps the rest. */
function createFlakyServer(drops: number) {
  return createServer({
    onConnection: (client, i) => {
      if (i < drops) client.close({ code: 1001, reason: '', wasClean: true })
    },
  })
}

describe('offline (navigator.onLine false)', () => {
  it('makes no attempt while offline, however long the backoff waits', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000 } })
    await flush()
    const reconnecting: ReconnectingInfo[] = []
    sock.on('reconnecting', (info) => reconnecting.push(info))
    goOffline()
    server.connections[0]!.close({ code: 1006, reason: '', wasClean: false })
    await flush()
    expect(sock.state).toBe('reconnecting')
    await flush(10 * 60_000)
    expect(sock.state).toBe('reconnecting')
    expect(sock.stats.attempts).toBe(1)
    expect(server.connections).toHaveLength(1)
    // No retry is scheduled while offline: the event says the socket waits for the network
    // (this test pinned "no reconnecting event while offline" before; a UI needs to know).
    expect(reconnecting).toEqual([{ attempt: 1, delay: Number.POSITIVE_INFINITY, waitingFor: 'network' }])
  })

  it('skips an attempt whose backoff delay ends while offline', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000 } })
    await flush()
    expect(sock.state).toBe('reconnecting')
    goOffline()
    await flush(60_000)
    expect(sock.stats.attempts).toBe(1)
    expect(server.connections).toHaveLength(1)
    expect(sock.state).toBe('reconnecting')
  })

  it('tries at once when the browser reports online again', async () => {
    const server = createFlakyServer(1)
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000 } })
    await flush()
    const offline = goOffline()
    await flush(60_000)
    expect(server.connections).toHaveLength(1)
    offline.mockReturnValue(true)
    window.dispatchEvent(new Event('online'))
    expect(sock.stats.attempts).toBe(2)
    expect(sock.state).toBe('connecting')
    await flush()
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(2)
  })

  it('resets the backoff when the network comes back: the next failure waits the first delay', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000 } })
    const reconnecting: ReconnectingInfo[] = []
    sock.on('reconnecting', (info) => reconnecting.push(info))
    await advanceUntil(() => reconnecting.length === 3)
    expect(reconnecting[2]).toEqual({ attempt: 3, delay: 4000, waitingFor: 'delay' })
    const offline = goOffline()
    await flush(10_000)
    expect(sock.stats.attempts).toBe(3)
    offline.mockReturnValue(true)
    window.dispatchEvent(new Event('online'))
    expect(sock.stats.attempts).toBe(4)
    await flush()
    // the wait that ended while offline turned into a wait for the network, then the network came back
    expect(reconnecting[3]).toEqual({ attempt: 3, delay: Number.POSITIVE_INFINITY, waitingFor: 'network' })
    expect(reconnecting).toHaveLength(5)
    expect(reconnecting[4]).toEqual({ attempt: 1, delay: 1000, waitingFor: 'delay' })
  })

  it('tries at once on online even before the backoff delay has passed', async () => {
    const server = createFlakyServer(1)
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 30_000 } })
    await flush()
    expect(sock.state).toBe('reconnecting')
    window.dispatchEvent(new Event('online'))
    await flush()
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(2)
    await flush(60_000)
    expect(server.connections).toHaveLength(2) // the abandoned backoff wait fires no extra attempt
  })

  it('ignores online while open or connecting', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    window.dispatchEvent(new Event('online'))
    await flush()
    window.dispatchEvent(new Event('online'))
    await flush()
    expect(sock.state).toBe('open')
    expect(sock.stats.attempts).toBe(1)
    expect(server.connections).toHaveLength(1)
  })

  it('does not retry on online while the browser still says offline', async () => {
    const server = createFlakyServer(1)
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000 } })
    await flush()
    goOffline()
    window.dispatchEvent(new Event('online'))
    await flush(5000)
    expect(sock.stats.attempts).toBe(1)
  })

  it('ignores online after close()', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    await Promise.all([sock.close(), flush()])
    window.dispatchEvent(new Event('online'))
    await flush()
    expect(sock.state).toBe('closed')
    expect(server.connections).toHaveLength(1)
  })
})

describe('page visibility', () => {
  it('retries at once when the page becomes visible while reconnecting', async () => {
    const server = createFlakyServer(1)
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 30_000 } })
    await flush()
    expect(sock.state).toBe('reconnecting')
    setVisibility('hidden')
    await flush(1000)
    expect(server.connections).toHaveLength(1)
    setVisibility('visible')
    expect(sock.stats.attempts).toBe(2)
    await flush()
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(2)
  })

  it('resets the backoff when the page becomes visible', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000 } })
    const reconnecting: ReconnectingInfo[] = []
    sock.on('reconnecting', (info) => reconnecting.push(info))
    await advanceUntil(() => reconnecting.length === 3)
    setVisibility('visible')
    await flush()
    expect(reconnecting[3]).toEqual({ attempt: 1, delay: 1000, waitingFor: 'delay' })
  })

  it('does nothing when the page becomes hidden', async () => {
    const server = createFlakyServer(1)
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 30_000 } })
    await flush()
    setVisibility('hidden')
    await flush(1000)
    expect(sock.stats.attempts).toBe(1)
    expect(sock.state).toBe('reconnecting')
  })

  it('does nothing when the page becomes visible while open', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    setVisibility('visible')
    await flush()
    expect(sock.state).toBe('open')
    expect(sock.stats.attempts).toBe(1)
    expect(server.connections).toHaveLength(1)
  })
})

describe('an open tether-mode connection when the network goes away', () => {
  it('is probed at the offline event: a ping, then the heartbeat timeout replaces it if nothing comes', async () => {
    // The server answers the hello, then goes silent: no pong, no close (a dead network).
    const server = createTetherMockServer()
    const sock = rawSocket(server.url, { mode: 'tether', heartbeat: { interval: 60_000, timeout: 2000 } })
    await flush(50)
    expect(sock.state).toBe('open')
    const frames = () => server.received.map((frame) => JSON.parse(String(frame)).t)
    expect(frames()).toEqual(['hello'])
    goOffline()
    window.dispatchEvent(new Event('offline'))
    await flush()
    expect(frames()).toEqual(['hello', 'ping'])
    await flush(2000)
    // Long before the heartbeat's own interval: the probe's timeout, and the socket waits for the network.
    expect(sock.state).toBe('reconnecting')
  })
})
