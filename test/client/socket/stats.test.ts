import { describe, expect, it } from 'vitest'
import { advanceUntil, createDroppingServer, createServer, flush, rawSocket, uniqueUrl, useMockEnvironment } from '../../support/mock.js'

useMockEnvironment()

describe('stats', () => {
  it('starts at zero', () => {
    const sock = rawSocket(uniqueUrl(), { autoConnect: false })
    expect(sock.stats).toEqual({
      state: 'idle',
      queued: 0,
      pending: 0,
      attempts: 0,
      reconnects: 0,
      connectedTime: 0,
      lastCloseCode: undefined,
    })
  })

  it('counts queued and pending messages', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { autoConnect: false })
    sock.send('a')
    sock.send('b')
    sock.send('c')
    expect(sock.stats).toMatchObject({ state: 'idle', queued: 3, pending: 3 })
    sock.connect()
    await flush()
    expect(sock.stats).toMatchObject({ state: 'open', queued: 0, pending: 0 })
  })

  it('counts every attempt, failed ones included', async () => {
    const sock = rawSocket(uniqueUrl('nobody-listens'), { reconnect: { jitter: 0, minDelay: 100, maxRetries: 4 } })
    expect(sock.stats.attempts).toBe(1)
    await advanceUntil(() => sock.state === 'closed')
    expect(sock.stats.attempts).toBe(5)
    expect(sock.stats.reconnects).toBe(0) // none of them opened
  })

  it('counts reconnects: connections opened after the first one', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 100 } })
    await flush()
    expect(sock.stats.reconnects).toBe(0)
    await advanceUntil(() => server.connections.length === 4)
    await flush()
    expect(sock.stats.attempts).toBe(4)
    expect(sock.stats.reconnects).toBe(3)
  })

  it('adds up connectedTime only while open, the current connection included', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 10_000 } })
    await flush()
    expect(sock.state).toBe('open')
    const opened = sock.stats.connectedTime
    expect(opened).toBeLessThan(10)
    await flush(5000)
    expect(sock.stats.connectedTime).toBe(opened + 5000)
    server.connections[0]!.close({ code: 1001, reason: '', wasClean: true })
    await flush()
    expect(sock.state).toBe('reconnecting')
    const afterFirst = sock.stats.connectedTime
    expect(afterFirst).toBeGreaterThanOrEqual(opened + 5000)
    expect(afterFirst).toBeLessThanOrEqual(opened + 5010) // + mock-socket's close delay
    await flush(9000)
    expect(sock.stats.connectedTime).toBe(afterFirst)
    await advanceUntil(() => sock.state === 'open')
    expect(sock.stats.connectedTime).toBe(afterFirst)
    const reopened = sock.stats.connectedTime
    await flush(3000)
    expect(sock.stats.connectedTime).toBe(reopened + 3000)
    await Promise.all([sock.close(), flush()])
    const final = sock.stats.connectedTime
    await flush(10_000)
    expect(sock.stats.connectedTime).toBe(final)
  })

  it('records the close code of the last connection that ended', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 100 } })
    await flush()
    expect(sock.stats.lastCloseCode).toBeUndefined()
    server.connections[0]!.close({ code: 4000, reason: '', wasClean: false })
    await flush()
    expect(sock.stats.lastCloseCode).toBe(4000)
    await flush(110)
    server.connections[1]!.close({ code: 1011, reason: '', wasClean: false })
    await flush()
    expect(sock.stats.lastCloseCode).toBe(1011)
    await advanceUntil(() => sock.state === 'open')
    await Promise.all([sock.close(4100), flush()])
    expect(sock.stats.lastCloseCode).toBe(4100)
  })

  it('records 1006 for an attempt that failed before opening', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, {
      onOpen: () => {
        throw new Error('no')
      },
    })
    await flush()
    expect(sock.stats.lastCloseCode).toBe(1006)
  })

  it('reports the current state', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    expect(sock.stats.state).toBe('connecting')
    await flush()
    expect(sock.stats.state).toBe('open')
  })
})
