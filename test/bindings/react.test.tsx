/**
 * `tethersocket/react` in jsdom against mock-socket servers (raw mode, real timers, bounded
 * `waitFor`). Connection counts are taken both at the server and at the WebSocket constructor.
 */
import { act, cleanup, render, renderHook, screen, waitFor } from '@testing-library/react'
import { WebSocket as MockWebSocket } from 'mock-socket'
import { StrictMode, useEffect } from 'react'
import { renderToString } from 'react-dom/server'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { WebSocket as NodeWebSocket } from 'ws'
import { type UseTetherSocketOptions, type UseTetherSocketResult, useTetherEvent, useTetherSocket } from '../../src/bindings/react.js'
import { ClosedError, OptionError, type TetherSocket, type TetherSocketOptions } from '../../src/index.js'
import { createTetherServer } from '../../src/server/index.js'
import { countingWebSocket, sleep, startServer, stopServers, tetherServers } from '../support/bindings.js'

// ── helpers ──────────────────────────────────────────────────────────────────

const raw = <In = string, Out = string>(extra: UseTetherSocketOptions<In, Out> = {}): UseTetherSocketOptions<In, Out> => ({
  mode: 'raw',
  WebSocket: MockWebSocket,
  reconnect: { minDelay: 10, maxDelay: 50 },
  ...extra,
})

/** A hook render that reads the fields during render, as a component would. */
function useProbe<In = string, Out = string>(url: string | null, options: UseTetherSocketOptions<In, Out>) {
  const r = useTetherSocket<In, Out>(url, options)
  return {
    socket: r.socket,
    state: r.state,
    pending: r.pending,
    sessionId: r.sessionId,
    error: r.error,
    send: r.send,
    request: r.request,
    close: r.close,
    reconnect: r.reconnect,
  } satisfies Omit<UseTetherSocketResult<In, Out>, 'lastMessage'>
}

// Components used by the tests (module level, as components should be).

function Status({ url, seen }: { url: string; seen: string[] }) {
  const { state, socket } = useTetherSocket<string, string>(url, raw())
  seen.push(state)
  return (
    <p data-testid="state">
      {state}/{socket ? 'socket' : 'none'}
    </p>
  )
}

type Renders = { stateOnly: number; withMessage: number }

function StateOnly({ url, renders }: { url: string; renders: Renders }) {
  const { state } = useTetherSocket<string, string>(url, raw())
  renders.stateOnly++
  return <p data-testid="a">{state}</p>
}

function WithMessage({ url, renders }: { url: string; renders: Renders }) {
  const { state, lastMessage } = useTetherSocket<string, string>(url, raw())
  renders.withMessage++
  return <p data-testid="b">{`${state}:${lastMessage ?? ''}`}</p>
}

/** Sends from its mount effect, which runs before its parent's (where the socket is created). */
function Child({ send, outcome }: { send: (msg: string) => Promise<void>; outcome: string[] }) {
  useEffect(() => {
    send('hello').then(
      () => outcome.push('sent'),
      (e: Error) => outcome.push(e.name),
    )
  }, [send, outcome])
  return null
}

function Parent({ url, outcome }: { url: string; outcome: string[] }) {
  const { send } = useTetherSocket<string, string>(url, raw())
  return <Child send={send} outcome={outcome} />
}

function Brief({ url, WebSocket }: { url: string; WebSocket: TetherSocketOptions['WebSocket'] }) {
  const { state, socket } = useTetherSocket(url, { mode: 'raw', WebSocket })
  return <p>{`${state}:${socket === null}`}</p>
}

let consoleError: ReturnType<typeof vi.spyOn>

beforeEach(() => {
  // React reports act() problems and effect errors through console.error: any is a failure.
  consoleError = vi.spyOn(console, 'error')
})

afterEach(async () => {
  cleanup()
  await sleep(20)
  await stopServers()
  expect(consoleError).not.toHaveBeenCalled()
  vi.restoreAllMocks()
})

// ── tests ────────────────────────────────────────────────────────────────────

describe('useTetherSocket (React)', () => {
  it('renders idle, then re-renders through connecting to open', async () => {
    const server = startServer('react.test')
    const seen: string[] = []
    render(<Status url={server.url} seen={seen} />)
    expect(seen[0]).toBe('idle')
    await waitFor(() => expect(screen.getByTestId('state').textContent).toBe('open/socket'), { timeout: 2000 })
    const distinct = seen.filter((s, i) => s !== seen[i - 1])
    expect(distinct).toEqual(['idle', 'connecting', 'open'])
    expect(server.connections).toHaveLength(1)
  })

  it('opens exactly one connection under StrictMode, closing the first effect’s socket', async () => {
    const server = startServer('react.test')
    const { WebSocket, counts } = countingWebSocket()
    const sockets = new Set<TetherSocket<string, string>>()
    const { result } = renderHook(
      () => {
        const r = useProbe(server.url, raw({ WebSocket }))
        if (r.socket) sockets.add(r.socket)
        return r
      },
      { wrapper: StrictMode },
    )
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    await sleep(50) // room for a second connection to show up, if there were one
    expect(server.connections).toHaveLength(1)
    expect(counts.created).toBe(1)
    expect(counts.maxOpen).toBe(1)
    // The socket the hook returns is the surviving one; any other it created is closed.
    const live = result.current.socket
    for (const s of sockets) if (s !== live) expect(s.state).toBe('closed')
    expect(live?.state).toBe('open')
  })

  it('closes the socket on unmount', async () => {
    const server = startServer('react.test')
    const { result, unmount } = renderHook(() => useProbe(server.url, raw()))
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    const socket = result.current.socket!
    unmount()
    await waitFor(() => expect(server.closed).toBe(1), { timeout: 2000 })
    expect(socket.state).toBe('closed')
    expect(server.open()).toBe(0)
  })

  it('reconnects once when the url changes, not when an equal url or new options object is passed', async () => {
    const a = startServer('react.test')
    const b = startServer('react.test')
    const { WebSocket, counts } = countingWebSocket()
    const { result, rerender } = renderHook(({ url }) => useProbe(url, raw({ WebSocket })), {
      initialProps: { url: a.url },
    })
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    const first = result.current.socket
    rerender({ url: b.url })
    await waitFor(() => expect(b.open()).toBe(1), { timeout: 2000 })
    await waitFor(() => expect(a.closed).toBe(1), { timeout: 2000 })
    expect(first?.state).toBe('closed')
    expect(result.current.socket).not.toBe(first)
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    // The same URL in another string, with a fresh options object every render.
    rerender({ url: `${b.url.slice(0, 5)}${b.url.slice(5)}` })
    rerender({ url: b.url })
    await sleep(50)
    expect(b.connections).toHaveLength(1)
    expect(a.connections).toHaveLength(1)
    expect(counts.created).toBe(2)
    expect(counts.maxOpen).toBe(1)
  })

  it('calls the latest inline callbacks without reconnecting', async () => {
    const server = startServer('react.test')
    const calls: string[] = []
    const { result, rerender } = renderHook(
      ({ label }) =>
        useProbe(
          server.url,
          raw({
            onMessage: (msg) => calls.push(`${label}:${msg}`),
            deserialize: (data) => `${label}(${String(data)})`,
          }),
        ),
      { initialProps: { label: 'r0' } },
    )
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    for (let i = 1; i <= 5; i++) rerender({ label: `r${i}` })
    server.broadcast('hi')
    await waitFor(() => expect(calls).toEqual(['r5:r5(hi)']), { timeout: 2000 })
    expect(server.connections).toHaveLength(1)
  })

  it('creates a new socket when a deps value changes, and only then', async () => {
    const server = startServer('react.test')
    const { result, rerender } = renderHook(({ room }) => useProbe(server.url, raw({ deps: [room] })), {
      initialProps: { room: 'a' },
    })
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    rerender({ room: 'a' })
    await sleep(30)
    expect(server.connections).toHaveLength(1)
    rerender({ room: 'b' })
    await waitFor(() => expect(server.connections).toHaveLength(2), { timeout: 2000 })
    await waitFor(() => expect(server.open()).toBe(1), { timeout: 2000 })
    expect(server.closed).toBe(1)
  })

  it('re-renders pending as messages are queued and sent; send resolves', async () => {
    const server = startServer('react.test')
    const pendings: number[] = []
    const { result } = renderHook(() => {
      const r = useProbe(server.url, raw({ autoConnect: false }))
      pendings.push(r.pending)
      return r
    })
    let first!: Promise<void>
    let second!: Promise<void>
    act(() => {
      first = result.current.send('one')
      second = result.current.send('two')
    })
    expect(result.current.pending).toBe(2)
    expect(result.current.state).toBe('idle')
    act(() => result.current.socket!.connect())
    await expect(first).resolves.toBeUndefined()
    await expect(second).resolves.toBeUndefined()
    await waitFor(() => expect(result.current.pending).toBe(0), { timeout: 2000 })
    await waitFor(() => expect(server.received).toEqual(['one', 'two']), { timeout: 2000 })
    expect(pendings).toContain(2)
    expect(pendings.at(-1)).toBe(0)
  })

  it('re-renders pending for messages sent on the socket directly (the pending event)', async () => {
    const server = startServer('react.test')
    const { result } = renderHook(() => useProbe(server.url, raw({ autoConnect: false })))
    await waitFor(() => expect(result.current.socket).not.toBeNull(), { timeout: 2000 })
    const socket = result.current.socket!
    let direct!: Promise<void>
    await act(async () => {
      direct = socket.send('direct')
    })
    expect(result.current.pending).toBe(1)
    act(() => socket.connect())
    await expect(direct).resolves.toBeUndefined()
    await waitFor(() => expect(result.current.pending).toBe(0), { timeout: 2000 })
    await waitFor(() => expect(server.received).toEqual(['direct']), { timeout: 2000 })
  })

  it('close() closes and reconnect() reopens the socket; both are stable', async () => {
    const server = startServer('react.test')
    const closes = new Set<unknown>()
    const reconnects = new Set<unknown>()
    const { result, rerender } = renderHook(() => {
      const r = useProbe(server.url, raw())
      closes.add(r.close)
      reconnects.add(r.reconnect)
      return r
    })
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    rerender()
    expect(closes.size).toBe(1)
    expect(reconnects.size).toBe(1)
    const socket = result.current.socket
    await act(() => result.current.close())
    expect(result.current.state).toBe('closed')
    await waitFor(() => expect(server.closed).toBe(1), { timeout: 2000 })
    act(() => result.current.reconnect())
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    expect(result.current.socket).toBe(socket)
    expect(server.connections).toHaveLength(2)
  })

  it('keeps send and request stable across renders', async () => {
    const server = startServer('react.test')
    const sends = new Set<unknown>()
    const requests = new Set<unknown>()
    const { result, rerender } = renderHook(() => {
      const r = useProbe(server.url, raw())
      sends.add(r.send)
      requests.add(r.request)
      return r
    })
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    rerender()
    rerender()
    expect(sends.size).toBe(1)
    expect(requests.size).toBe(1)
    // Raw mode has no replies: request() rejects, and the error is shown.
    await expect(result.current.request('x')).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED' })
    await waitFor(() => expect(result.current.error?.code).toBe('ERR_UNSUPPORTED'), { timeout: 2000 })
  })

  it('re-renders for messages only the components that read lastMessage', async () => {
    const server = startServer('react.test')
    const renders = { stateOnly: 0, withMessage: 0 }
    render(
      <>
        <StateOnly url={server.url} renders={renders} />
        <WithMessage url={server.url} renders={renders} />
      </>,
    )
    await waitFor(() => expect(screen.getByTestId('a').textContent).toBe('open'), { timeout: 2000 })
    await waitFor(() => expect(server.open()).toBe(2), { timeout: 2000 })
    await waitFor(() => expect(screen.getByTestId('b').textContent).toBe('open:'), { timeout: 2000 })
    const before = { ...renders }
    for (let i = 1; i <= 10; i++) {
      server.broadcast(`m${i}`)
      await sleep(5)
    }
    await waitFor(() => expect(screen.getByTestId('b').textContent).toBe('open:m10'), { timeout: 2000 })
    expect(renders.stateOnly).toBe(before.stateOnly)
    expect(renders.withMessage).toBeGreaterThan(before.withMessage)
  })

  it('lets a child send from its mount effect, before the parent’s socket exists', async () => {
    const server = startServer('react.test')
    const outcome: string[] = []
    render(<Parent url={server.url} outcome={outcome} />)
    await waitFor(() => expect(server.received).toEqual(['hello']), { timeout: 2000 })
    await waitFor(() => expect(outcome).toEqual(['sent']), { timeout: 2000 })
  })

  it('connects nothing while the url is null, rejecting sends, and connects once it is set', async () => {
    const server = startServer('react.test')
    const { result, rerender } = renderHook(({ url }: { url: string | null }) => useProbe(url, raw()), {
      initialProps: { url: null as string | null },
    })
    expect(result.current.socket).toBeNull()
    expect(result.current.state).toBe('idle')
    await expect(result.current.send('x')).rejects.toBeInstanceOf(ClosedError)
    rerender({ url: server.url })
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    rerender({ url: null })
    await waitFor(() => expect(server.closed).toBe(1), { timeout: 2000 })
    expect(result.current.socket).toBeNull()
    expect(result.current.state).toBe('idle')
  })

  it('shows an invalid url as error and state closed instead of throwing', async () => {
    const { result } = renderHook(() => useProbe('ftp://example.com/x', raw()))
    await waitFor(() => expect(result.current.error).toBeInstanceOf(OptionError), { timeout: 2000 })
    expect(result.current.state).toBe('closed')
    expect(result.current.socket).toBeNull()
    await expect(result.current.send('x')).rejects.toBeInstanceOf(OptionError)
  })

  it('rejects sends after unmount with ClosedError', async () => {
    const server = startServer('react.test')
    const { result, unmount } = renderHook(() => useProbe(server.url, raw()))
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    const { send } = result.current
    unmount()
    await sleep(0)
    await expect(send('late')).rejects.toBeInstanceOf(ClosedError)
    expect(server.received).toEqual([])
  })

  it('useTetherEvent calls the latest listener and unsubscribes on unmount', async () => {
    const server = startServer('react.test')
    const calls: string[] = []
    const { result, rerender, unmount } = renderHook(
      ({ label }) => {
        const r = useProbe(server.url, raw())
        useTetherEvent(r.socket, 'message', (msg) => calls.push(`${label}:${msg}`))
        return r
      },
      { initialProps: { label: 'first' } },
    )
    await waitFor(() => expect(result.current.state).toBe('open'), { timeout: 2000 })
    const socket = result.current.socket!
    const listeners = socket.listenerCount('message')
    rerender({ label: 'second' })
    expect(socket.listenerCount('message')).toBe(listeners)
    server.broadcast('x')
    await waitFor(() => expect(calls).toEqual(['second:x']), { timeout: 2000 })
    unmount()
    expect(socket.listenerCount('message')).toBe(0)
  })

  it('tether mode: re-renders the session id and unacknowledged count; request resolves', async () => {
    const server = await createTetherServer({ port: 0, host: '127.0.0.1' })
    tetherServers.push(server)
    const got: unknown[] = []
    server.on('message', (data) => got.push(data))
    server.onRequest(async (data) => ({ echo: data }))
    const url = `ws://127.0.0.1:${server.port}`
    const { result } = renderHook(() => useProbe<unknown, string>(url, { WebSocket: NodeWebSocket, autoConnect: false }))
    let acked!: Promise<unknown>
    act(() => {
      acked = Promise.all([result.current.send('a'), result.current.send('b')])
    })
    expect(result.current.pending).toBe(2)
    expect(result.current.sessionId).toBeUndefined()
    act(() => result.current.socket!.connect())
    await acked // resolves only once the server acknowledged both
    expect(got).toEqual(['a', 'b'])
    await waitFor(() => expect(result.current.pending).toBe(0), { timeout: 5000 })
    expect(result.current.sessionId).toMatch(/\S{8,}/)
    expect(result.current.state).toBe('open')
    await expect(result.current.request('q')).resolves.toEqual({ echo: 'q' })
  })

  it('creates no socket during server rendering', () => {
    const { WebSocket, counts } = countingWebSocket()
    expect(renderToString(<Brief url="ws://react.test/ssr" WebSocket={WebSocket} />)).toBe('<p>idle:true</p>')
    expect(counts.created).toBe(0)
  })
})
