import { describe, expect, it, vi } from 'vitest'
import { ConnectionError, type TetherError } from '../../../src/index.js'
import {
  advanceUntil,
  collect,
  countingWebSocket,
  createDroppingServer,
  createServer,
  flush,
  rawSocket,
  uniqueUrl,
  useMockEnvironment,
  watchUnhandledRejections,
} from '../../support/mock.js'

useMockEnvironment()

const quickRetry = { jitter: 0, minDelay: 100 }

describe('url provider', () => {
  it('calls a sync url function before every attempt and connects where it points', async () => {
    const server = createDroppingServer()
    let n = 0
    const url = vi.fn(() => `${server.url}?token=t${++n}`)
    const sock = rawSocket(url, { reconnect: quickRetry })
    expect(url).not.toHaveBeenCalled() // providers run in the attempt's promise chain, not in the constructor
    await advanceUntil(() => sock.stats.attempts === 4)
    await flush()
    expect(url).toHaveBeenCalledTimes(4)
    expect(server.connections.map((c) => new URL(c.url).searchParams.get('token'))).toEqual(['t1', 't2', 't3', 't4'])
  })

  it('waits for an async url function before creating the WebSocket', async () => {
    const server = createServer()
    const { WebSocket, created } = countingWebSocket()
    const url = vi.fn(() => new Promise<URL>((resolve) => setTimeout(() => resolve(new URL(server.url)), 1000)))
    const sock = rawSocket(url, { WebSocket })
    await flush(999)
    expect(created).toHaveLength(0)
    expect(sock.state).toBe('connecting')
    await flush(1 + 10)
    expect(created).toHaveLength(1)
    expect(sock.state).toBe('open')
  })

  it('calls an async url function again for every reconnect', async () => {
    const server = createDroppingServer()
    const url = vi.fn(async () => server.url)
    const sock = rawSocket(url, { reconnect: quickRetry })
    await advanceUntil(() => server.connections.length === 3)
    expect(url).toHaveBeenCalledTimes(sock.stats.attempts)
    expect(url).toHaveBeenCalledTimes(3)
  })

  it('turns a throwing url function into a ConnectionError event and a retry, without an unhandled rejection', async () => {
    const watch = watchUnhandledRejections()
    const server = createServer()
    let calls = 0
    const url = () => {
      calls++
      if (calls === 1) throw new Error('token service down')
      return server.url
    }
    const sock = rawSocket(url, { reconnect: quickRetry })
    const errors = collect<[TetherError]>(sock, 'error')
    const reconnecting = collect(sock, 'reconnecting')
    await flush()
    expect(errors).toHaveLength(1)
    expect(errors[0]![0]).toBeInstanceOf(ConnectionError)
    expect(errors[0]![0].message).toMatch(/token service down/)
    expect((errors[0]![0].cause as Error).message).toBe('token service down')
    expect(reconnecting).toEqual([[{ attempt: 1, delay: 100, waitingFor: 'delay' }]])
    expect(sock.state).toBe('reconnecting')
    await flush(100)
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(1)
    await watch.check()
  })

  it('turns a rejecting url function into a ConnectionError event and a retry, without an unhandled rejection', async () => {
    const watch = watchUnhandledRejections()
    const server = createServer()
    const url = vi.fn<() => Promise<string>>().mockRejectedValueOnce(new Error('offline token cache')).mockResolvedValue(server.url)
    const sock = rawSocket(url, { reconnect: quickRetry })
    const errors = collect<[TetherError]>(sock, 'error')
    await flush()
    expect(errors.map(([e]) => e.constructor)).toEqual([ConnectionError])
    expect(sock.state).toBe('reconnecting')
    await flush(100)
    expect(sock.state).toBe('open')
    expect(url).toHaveBeenCalledTimes(2)
    await watch.check()
  })

  it('treats an invalid URL from the provider as a failed attempt (ConnectionError), not a crash', async () => {
    const sock = rawSocket(() => 'ftp://example.test/', { reconnect: quickRetry })
    const errors = collect<[TetherError]>(sock, 'error')
    await flush()
    expect(errors).toHaveLength(1)
    expect(errors[0]![0]).toBeInstanceOf(ConnectionError)
    expect(sock.state).toBe('reconnecting')
  })

  it('gives up on a provider that keeps failing once maxRetries is reached', async () => {
    const url = vi.fn(() => {
      throw new Error('nope')
    })
    const sock = rawSocket(url, { reconnect: { ...quickRetry, maxRetries: 2 } })
    await advanceUntil(() => sock.state === 'closed')
    expect(url).toHaveBeenCalledTimes(3)
  })
})

describe('protocols provider', () => {
  it('offers a static protocols list to the server on every attempt', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { protocols: ['chat.v2', 'chat.v1'], reconnect: quickRetry })
    await advanceUntil(() => server.connections.length === 2)
    expect(server.offered).toEqual([
      ['chat.v2', 'chat.v1'],
      ['chat.v2', 'chat.v1'],
    ])
    expect(sock.stats.attempts).toBe(2)
  })

  it('offers a single string protocol', async () => {
    const server = createServer()
    rawSocket(server.url, { protocols: 'chat.v1' })
    await flush()
    expect(server.offered).toEqual([['chat.v1']])
    expect(server.connections[0]!.protocol).toBe('chat.v1')
  })

  it('calls a protocols function (sync or async) before every attempt', async () => {
    const server = createDroppingServer()
    let n = 0
    const protocols = vi.fn(async () => [`auth.${++n}`])
    rawSocket(server.url, { protocols, reconnect: quickRetry })
    await advanceUntil(() => server.connections.length === 3)
    expect(protocols).toHaveBeenCalledTimes(3)
    expect(server.offered).toEqual([['auth.1'], ['auth.2'], ['auth.3']])
  })

  it('offers no subprotocol in raw mode when none is given', async () => {
    const server = createServer()
    rawSocket(server.url)
    await flush()
    expect(server.offered).toEqual([[]])
  })

  it('turns a throwing protocols function into a ConnectionError event and a retry', async () => {
    const watch = watchUnhandledRejections()
    const server = createServer()
    const protocols = vi
      .fn<() => string[]>()
      .mockImplementationOnce(() => {
        throw new Error('no ticket')
      })
      .mockReturnValue(['ticket.ok'])
    const sock = rawSocket(server.url, { protocols, reconnect: quickRetry })
    const errors = collect<[TetherError]>(sock, 'error')
    await flush()
    expect(errors.map(([e]) => e.constructor)).toEqual([ConnectionError])
    expect(errors[0]![0].message).toMatch(/no ticket/)
    await flush(100)
    expect(sock.state).toBe('open')
    expect(server.offered).toEqual([['ticket.ok']])
    await watch.check()
  })

  it('turns a rejecting protocols function into a ConnectionError event and a retry', async () => {
    const watch = watchUnhandledRejections()
    const server = createServer()
    const protocols = vi.fn<() => Promise<string>>().mockRejectedValueOnce(new Error('later')).mockResolvedValue('p1')
    const sock = rawSocket(server.url, { protocols, reconnect: quickRetry })
    const errors = collect<[TetherError]>(sock, 'error')
    await flush(110)
    expect(errors.map(([e]) => e.constructor)).toEqual([ConnectionError])
    expect(sock.state).toBe('open')
    expect(server.offered).toEqual([['p1']])
    await watch.check()
  })

  it('ignores the late result of a provider whose attempt was abandoned by close()', async () => {
    const { WebSocket, created } = countingWebSocket()
    const url = () => new Promise<string>((resolve) => setTimeout(() => resolve(uniqueUrl()), 1000))
    const sock = rawSocket(url, { WebSocket })
    await flush(500)
    await sock.close()
    expect(sock.state).toBe('closed')
    await flush(1000)
    expect(created).toHaveLength(0)
    expect(sock.state).toBe('closed')
  })
})
