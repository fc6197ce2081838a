import { describe, expect, it, vi } from 'vitest'
import { ConnectionError, type OpenContext, type TetherError, TimeoutError } from '../../../src/index.js'
import { collect, createServer, flush, rawSocket, settled, useMockEnvironment, watchUnhandledRejections } from '../../support/mock.js'

useMockEnvironment()

describe('onOpen hook', () => {
  it('runs on open and what it sends goes out before the queued backlog', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, {
      onOpen: ({ send }) => {
        send('hello')
      },
    })
    sock.send('a')
    sock.send('b')
    await flush()
    expect(server.received).toEqual(['hello', 'a', 'b'])
  })

  it('keeps the order of several hook sends, all ahead of the backlog', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, {
      onOpen: ({ send }) => {
        send('auth')
        send('subscribe')
      },
    })
    sock.send('queued')
    await flush()
    expect(server.received).toEqual(['auth', 'subscribe', 'queued'])
  })

  it('runs on every open, with the connection number, ahead of that connection’s backlog', async () => {
    const server = createServer()
    const connections: number[] = []
    const sock = rawSocket<string, string>(server.url, {
      reconnect: { jitter: 0, minDelay: 100 },
      onOpen: ({ send, connection }) => {
        connections.push(connection)
        send(`hello ${connection}`)
      },
    })
    sock.send('first')
    await flush()
    server.connections[0]!.close({ code: 1001, reason: '', wasClean: true })
    await flush()
    sock.send('second')
    await flush(110)
    expect(connections).toEqual([1, 2])
    expect(server.received).toEqual(['hello 1', 'first', 'hello 2', 'second'])
  })

  it('resolves the hook’s send() once written', async () => {
    const server = createServer()
    let hookSend: Promise<void> | undefined
    rawSocket<string, string>(server.url, {
      onOpen: ({ send }) => {
        hookSend = send('hello')
      },
    })
    await flush()
    await expect(hookSend).resolves.toBeUndefined()
  })

  it('holds the backlog and the open state until an async hook resolves', async () => {
    const server = createServer()
    const states: string[] = []
    const sock = rawSocket<string, string>(server.url, {
      onOpen: async ({ send }) => {
        send('auth')
        await new Promise((resolve) => setTimeout(resolve, 1000))
        send('after-wait')
      },
    })
    sock.on('state', (next) => states.push(next))
    const opened = vi.fn()
    sock.on('open', opened)
    const queued = sock.send('queued')
    await flush(500)
    expect(sock.state).toBe('connecting')
    expect(opened).not.toHaveBeenCalled()
    expect(server.received).toEqual(['auth'])
    const duringHook = sock.send('during-hook')
    await flush(100)
    expect(server.received).toEqual(['auth'])
    expect(await settled(queued)).toBe(false)
    await flush(500)
    expect(sock.state).toBe('open')
    expect(opened).toHaveBeenCalledTimes(1)
    expect(states).toEqual(['open'])
    await Promise.all([queued, duringHook])
    expect(server.received).toEqual(['auth', 'after-wait', 'queued', 'during-hook'])
  })

  it('fails the attempt when the hook throws: ConnectionError event, the connection dropped, then a retry', async () => {
    const server = createServer()
    const onOpen = vi
      .fn<(context: OpenContext<string>) => void>()
      .mockImplementationOnce(() => {
        throw new Error('login refused')
      })
      .mockImplementation(({ send }) => {
        send('login')
      })
    const sock = rawSocket<string, string>(server.url, { reconnect: { jitter: 0, minDelay: 100 }, onOpen })
    const errors = collect<[TetherError]>(sock, 'error')
    const closes = collect(sock, 'close')
    const opened = vi.fn()
    sock.on('open', opened)
    const queued = sock.send('queued')
    await flush()
    expect(errors).toHaveLength(1)
    expect(errors[0]![0]).toBeInstanceOf(ConnectionError)
    expect(errors[0]![0].message).toMatch(/login refused/)
    expect(closes).toEqual([[expect.objectContaining({ willReconnect: true })]])
    expect(opened).not.toHaveBeenCalled()
    expect(sock.state).toBe('reconnecting')
    expect(server.open()).toHaveLength(0)
    expect(server.received).toEqual([])
    await flush(110)
    expect(sock.state).toBe('open')
    await queued
    expect(server.received).toEqual(['login', 'queued'])
  })

  it('fails the attempt when the hook rejects, without an unhandled rejection', async () => {
    const watch = watchUnhandledRejections()
    const server = createServer()
    let calls = 0
    const sock = rawSocket(server.url, {
      reconnect: { jitter: 0, minDelay: 100 },
      onOpen: async () => {
        calls++
        if (calls === 1) throw new Error('not yet')
      },
    })
    const errors = collect<[TetherError]>(sock, 'error')
    await flush()
    expect(errors.map(([e]) => e.constructor)).toEqual([ConnectionError])
    expect(sock.state).toBe('reconnecting')
    await flush(110)
    expect(sock.state).toBe('open')
    expect(calls).toBe(2)
    await watch.check()
  })

  it('fails the attempt with TimeoutError when the hook does not settle within connectTimeout', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, {
      reconnect: { jitter: 0, minDelay: 100, connectTimeout: 2000 },
      onOpen: () => new Promise<void>(() => {}),
    })
    const errors = collect<[TetherError]>(sock, 'error')
    await flush(1990)
    expect(sock.state).toBe('connecting')
    await flush(10)
    expect(errors.map(([e]) => e.constructor)).toEqual([TimeoutError])
    expect(sock.state).toBe('reconnecting')
    await flush(110)
    expect(server.connections).toHaveLength(2)
  })

  it('ignores a hook that resolves after its connection was lost', async () => {
    const server = createServer()
    let release: () => void = () => {}
    const sock = rawSocket(server.url, {
      reconnect: { jitter: 0, minDelay: 60_000 },
      onOpen: () =>
        new Promise<void>((resolve) => {
          release = resolve
        }),
    })
    await flush()
    server.connections[0]!.close({ code: 1001, reason: '', wasClean: true })
    await flush()
    expect(sock.state).toBe('reconnecting')
    release()
    await flush()
    expect(sock.state).toBe('reconnecting')
  })
})
