/**
 * Listeners and hooks that close, reconnect or connect in the middle of a transition. Each
 * case once broke the lifecycle (an internal "not in TRANSITIONS" error, a close that never
 * completed, a timer left behind, an event after the socket was closed): the socket must end
 * where the user asked, and leave nothing running.
 */
import { WebSocket as MockWebSocket } from 'mock-socket'
import { describe, expect, it, vi } from 'vitest'
import { ClosedError, type TetherError } from '../../../src/index.js'
import {
  collect,
  createServer,
  flush,
  microtasks,
  rawSocket,
  rejection,
  settled,
  uniqueUrl,
  useMockEnvironment,
} from '../../support/mock.js'

useMockEnvironment()

/** Errors reported as uncaught (reportLater), which is where an internal error thrown by a listener's call would land. */
function watchReported() {
  const reported: unknown[] = []
  const original = globalThis.reportError
  globalThis.reportError = (error: unknown) => reported.push(error)
  const onUncaught = (error: unknown) => reported.push(error)
  process.on('uncaughtException', onUncaught)
  return {
    reported,
    restore() {
      globalThis.reportError = original
      process.off('uncaughtException', onUncaught)
    },
  }
}

describe('an onOpen hook that calls close() or reconnect() and then throws', () => {
  it('close() then a synchronous throw: the socket closes, and close() resolves', async () => {
    const server = createServer()
    const watch = watchReported()
    let done: Promise<void> | undefined
    const sock = rawSocket(server.url, {
      onOpen: () => {
        done = sock.close()
        throw new Error('no token')
      },
    })
    sock.on('error', () => {})
    await flush(50)
    watch.restore()
    expect(watch.reported).toEqual([])
    expect(sock.state).toBe('closed')
    expect(await settled(done!)).toBe(true)
  })

  it('reconnect() then a synchronous throw: the new attempt is not failed by the old hook', async () => {
    const server = createServer()
    let calls = 0
    const sock = rawSocket(server.url, {
      onOpen: () => {
        calls++
        if (calls === 1) {
          sock.reconnect()
          throw new Error('first hook fails after asking for a new connection')
        }
      },
    })
    const errors = collect<[TetherError]>(sock, 'error')
    await flush(50)
    expect(sock.state).toBe('open')
    expect(calls).toBe(2)
    expect(errors).toEqual([])
  })
})

describe('close() from an error listener of a failed attempt', () => {
  it('completes at once (the WebSocket already reported its end), not after the close handshake timeout', async () => {
    // No server at this URL: mock-socket fires error, then close, like a refused connection.
    const sock = rawSocket(uniqueUrl('nobody'), { reconnect: { minDelay: 10, connectTimeout: 10_000 } })
    let done: Promise<void> | undefined
    sock.once('error', () => {
      done = sock.close()
    })
    const closes = collect<[{ code: number; reason: string }]>(sock, 'close')
    await flush(50)
    expect(sock.state).toBe('closed')
    expect(await settled(done!)).toBe(true)
    expect(closes.map(([c]) => c.reason)).not.toContain('close handshake timed out')
  })
})

describe('a closed state listener that connects and sends again', () => {
  it('its message is not failed by the close that came before', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    let sent: Promise<void> | undefined
    sock.on('state', (next) => {
      if (next === 'closed' && !sent) {
        sock.connect()
        sent = sock.send('after')
      }
    })
    const closing = sock.close()
    await flush(50)
    await closing
    expect(sock.state).toBe('open')
    expect(await settled(sent!)).toBe(true)
    await expect(sent).resolves.toBeUndefined()
    expect(server.received).toContain('after')
  })
})

describe('nothing left running after close()', () => {
  it('close() from an error listener while close() fails the queue: no timer survives', async () => {
    const sock = rawSocket(uniqueUrl('nobody'), { autoConnect: false, WebSocket: MockWebSocket })
    sock.connect()
    await microtasks() // the providers resolved: the WebSocket exists, still connecting
    const queued = sock.send('x')
    sock.on('error', () => void sock.close())
    const closing = sock.close()
    expect(await rejection(queued)).toBeInstanceOf(ClosedError)
    await flush(20) // mock-socket's own timers: the attempt fails, which completes the close
    expect(await settled(closing)).toBe(true)
    expect(vi.getTimerCount()).toBe(0)
  })

  it("close() from a TimeoutError listener: the outbox's timer is not re-armed for messages close() failed", async () => {
    const sock = rawSocket(uniqueUrl('nobody'), { reconnect: { minDelay: 600_000 } })
    sock.on('error', (error) => {
      if (error.name === 'TimeoutError') void sock.close()
    })
    const later = sock.send('b', { timeout: 600_000 })
    const sooner = sock.send('a', { timeout: 1000 })
    await vi.advanceTimersByTimeAsync(1100)
    await rejection(sooner)
    await rejection(later)
    expect(sock.state).toBe('closed')
    await flush(20)
    expect(vi.getTimerCount()).toBe(0)
  })
})

describe('a state listener that closes the socket as it starts to wait', () => {
  it('no reconnecting event follows the close', async () => {
    const server = createServer({ onConnection: (client) => client.close({ code: 4000, reason: 'bye', wasClean: true }) })
    const sock = rawSocket(server.url, { reconnect: { minDelay: 100 } })
    const seen: string[] = []
    sock.on('state', (next) => {
      seen.push(`state ${next}`)
      if (next === 'reconnecting') void sock.close()
    })
    sock.on('reconnecting', () => seen.push('reconnecting'))
    await flush(50)
    expect(sock.state).toBe('closed')
    expect(seen.slice(seen.indexOf('state reconnecting'))).toEqual(['state reconnecting', 'state closed'])
  })
})
