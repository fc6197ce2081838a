import { describe, expect, it, vi } from 'vitest'
import { ClosedError, ConnectionError, OptionError, type SocketState, type TetherError } from '../../../src/index.js'
import {
  collect,
  countingWebSocket,
  createDroppingServer,
  createServer,
  flush,
  hangingWebSocket,
  microtasks,
  rawSocket,
  rejection,
  settled,
  uniqueUrl,
  useMockEnvironment,
} from '../../support/mock.js'

useMockEnvironment()

describe('close()', () => {
  it('resolves only once the connection is closed', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    const done = sock.close()
    expect(sock.state).toBe('closing')
    expect(await settled(done)).toBe(false)
    await flush()
    expect(await settled(done)).toBe(true)
    expect(sock.state).toBe('closed')
    expect(server.open()).toHaveLength(0)
  })

  it('sends the given code and reason to the server and reports them in the close event', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    const closes = collect(sock, 'close')
    await Promise.all([sock.close(4321, 'user logged out'), flush()])
    expect(server.closes).toEqual([{ code: 4321, reason: 'user logged out' }])
    expect(closes).toEqual([[expect.objectContaining({ code: 4321, reason: 'user logged out', willReconnect: false })]])
    expect(sock.stats.lastCloseCode).toBe(4321)
  })

  it('stops reconnecting for good: no attempt however much time passes', async () => {
    const server = createServer()
    const { WebSocket, created } = countingWebSocket()
    const sock = rawSocket(server.url, { WebSocket, reconnect: { jitter: 0, minDelay: 100 } })
    await flush()
    await Promise.all([sock.close(), flush()])
    await flush(24 * 3600_000)
    expect(created).toHaveLength(1)
    expect(server.connections).toHaveLength(1)
    expect(sock.state).toBe('closed')
  })

  it('rejects every message still queued with ClosedError, also emitted as error', async () => {
    const sock = rawSocket<string, string>(uniqueUrl('nobody-listens'), { reconnect: { jitter: 0, minDelay: 60_000 } })
    const errors = collect<[TetherError]>(sock, 'error')
    await flush()
    expect(sock.state).toBe('reconnecting')
    const a = sock.send('a')
    const b = sock.send('b')
    await sock.close()
    const [ea, eb] = await Promise.all([rejection(a), rejection(b)])
    expect(ea).toBeInstanceOf(ClosedError)
    expect(eb).toBeInstanceOf(ClosedError)
    expect((ea as ClosedError).data).toBe('a')
    // first the failed attempt's cause, then one error per message
    expect(errors.map(([e]) => e)).toEqual([expect.any(ConnectionError), ea, eb])
    expect(sock.pending).toBe(0)
  })

  it('while reconnecting: closes at once, cancels the backoff wait, resolves', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000 } })
    await flush()
    expect(sock.state).toBe('reconnecting')
    const states = collect<[SocketState, SocketState]>(sock, 'state')
    const done = sock.close()
    expect(sock.state).toBe('closed')
    expect(await settled(done)).toBe(true)
    expect(states).toEqual([['closed', 'reconnecting']])
    await flush(60_000)
    expect(server.connections).toHaveLength(1)
  })

  it('while connecting, before the WebSocket exists: closed at once, and no WebSocket is ever created', async () => {
    const server = createServer()
    const { WebSocket, created } = countingWebSocket()
    const sock = rawSocket(server.url, { WebSocket })
    expect(sock.state).toBe('connecting')
    const done = sock.close()
    expect(sock.state).toBe('closed')
    expect(await settled(done)).toBe(true)
    await flush(60_000)
    expect(created).toHaveLength(0)
    expect(server.connections).toHaveLength(0)
  })

  it('while the handshake is in progress: abandons it (the socket never opens), then resolves', async () => {
    const server = createServer()
    const { WebSocket, created } = countingWebSocket()
    const sock = rawSocket(server.url, { WebSocket })
    const opened = vi.fn()
    sock.on('open', opened)
    await microtasks()
    expect(created).toHaveLength(1)
    const done = sock.close()
    expect(sock.state).toBe('closing')
    await flush()
    expect(await settled(done)).toBe(true)
    expect(sock.state).toBe('closed')
    await flush(60_000)
    expect(opened).not.toHaveBeenCalled()
    expect(server.open()).toHaveLength(0)
    expect(sock.stats.attempts).toBe(1)
  })

  it('while connecting to a server that never answers: resolves without waiting for connectTimeout', async () => {
    const { WebSocket, instances } = hangingWebSocket()
    const sock = rawSocket(uniqueUrl('never-answers'), { WebSocket })
    await flush()
    const done = sock.close()
    await flush(100)
    expect(await settled(done)).toBe(true)
    expect(sock.state).toBe('closed')
    expect(instances).toHaveLength(1)
    expect(instances[0]!.closed).toHaveLength(1)
  })

  it('when idle or already closed: resolves at once', async () => {
    const sock = rawSocket(uniqueUrl(), { autoConnect: false })
    await expect(sock.close()).resolves.toBeUndefined()
    expect(sock.state).toBe('closed')
    await expect(sock.close()).resolves.toBeUndefined()
  })

  it('called twice while closing: both promises resolve when closed', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    const first = sock.close()
    const second = sock.close()
    await flush()
    expect(await settled(first)).toBe(true)
    expect(await settled(second)).toBe(true)
    expect(server.closes).toHaveLength(1)
  })

  it('from a close listener stops the reconnect that was about to be scheduled', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 100 } })
    const reconnecting = collect(sock, 'reconnecting')
    sock.once('close', () => {
      void sock.close()
    })
    await flush(60_000)
    expect(sock.state).toBe('closed')
    expect(reconnecting).toEqual([])
    expect(server.connections).toHaveLength(1)
  })

  it('from a reconnecting listener: no attempt is made afterwards and no timer is left', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 100 } })
    const errors = collect(sock, 'error')
    sock.once('reconnecting', () => {
      void sock.close()
    })
    await flush()
    expect(sock.state).toBe('closed')
    expect(vi.getTimerCount()).toBe(0)
    await flush(60_000)
    expect(sock.state).toBe('closed')
    expect(sock.stats.attempts).toBe(1)
    expect(server.connections).toHaveLength(1)
    expect(errors).toEqual([])
  })

  it('from a state listener as a retry begins: the abandoned attempt leaves no timer and reports nothing later', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 100, connectTimeout: 5000 } })
    await flush()
    expect(sock.state).toBe('reconnecting')
    sock.on('state', (next) => {
      if (next === 'connecting') void sock.close()
    })
    const errors = collect(sock, 'error')
    const closes = collect(sock, 'close')
    await flush(100)
    expect(sock.state).toBe('closed')
    await flush()
    expect(vi.getTimerCount()).toBe(0)
    await flush(60_000)
    expect(errors).toEqual([])
    expect(closes).toEqual([])
    expect(sock.state).toBe('closed')
    expect(server.connections).toHaveLength(1)
  })

  it.each([1000, 3000, 4000, 4999])('accepts close code %i', async (code) => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    await Promise.all([sock.close(code), flush()])
    expect(server.closes).toEqual([{ code, reason: '' }])
  })

  it.each([1001, 1006, 1011, 2000, 2999, 5000])('throws OptionError for close code %i, and stays as it was', async (code) => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    expect(() => sock.close(code)).toThrow(OptionError)
    expect(sock.state).toBe('open')
    await flush()
    expect(server.open()).toHaveLength(1)
  })
})

describe('after close()', () => {
  it('send() rejects at once with ClosedError (nothing waits in a queue nobody will flush)', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url)
    await flush()
    await Promise.all([sock.close(), flush()])
    const errors = collect<[TetherError]>(sock, 'error')
    const error = await rejection(sock.send('late'))
    expect(error).toBeInstanceOf(ClosedError)
    expect((error as Error).message).toMatch(/connect\(\)/)
    expect(errors).toEqual([[error]])
    expect(sock.pending).toBe(0)
  })

  it('close() resolves within connectTimeout even when the close event never comes', async () => {
    // Opens, then never reports a close, as over a network that died silently.
    class OpensButNeverCloses {
      readyState = 0
      protocol = ''
      binaryType = 'blob'
      onopen: (() => void) | null = null
      onmessage: ((event: unknown) => void) | null = null
      onclose: ((event: unknown) => void) | null = null
      onerror: (() => void) | null = null
      constructor() {
        setTimeout(() => {
          this.readyState = 1
          this.onopen?.()
        }, 1)
      }
      send(): void {}
      close(): void {
        this.readyState = 2
      }
    }
    const sock = rawSocket(uniqueUrl('never-closes'), { WebSocket: OpensButNeverCloses as never, reconnect: { connectTimeout: 5000 } })
    await flush()
    expect(sock.state).toBe('open')
    const done = sock.close()
    await flush(4000)
    expect(await settled(done)).toBe(false)
    await flush(1001)
    expect(await settled(done)).toBe(true)
    expect(sock.state).toBe('closed')
    expect(vi.getTimerCount()).toBe(0)
  })
})

describe('reconnect() while open', () => {
  it('reports the dropped connection as a close event (code 4000, willReconnect) and reconnects', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    const closes = collect(sock, 'close')
    sock.reconnect()
    expect(closes).toEqual([[{ code: 4000, reason: 'reconnect requested', wasClean: false, willReconnect: true }]])
    expect(sock.stats.lastCloseCode).toBe(4000)
    await flush()
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(2)
  })
})
