/**
 * `tethersocket/vue` in jsdom against mock-socket servers (raw mode, real timers, bounded
 * polling): in components mounted with @vue/test-utils, in bare effect scopes, and in SSR.
 */
import { mount } from '@vue/test-utils'
import { WebSocket as MockWebSocket } from 'mock-socket'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createSSRApp, defineComponent, type EffectScope, effectScope, h, nextTick, ref, watch } from 'vue'
import { renderToString } from 'vue/server-renderer'
import { WebSocket as NodeWebSocket } from 'ws'
import { type TetherUrlSource, type UseTetherSocketOptions, type UseTetherSocketReturn, useTetherSocket } from '../../src/bindings/vue.js'
import { ClosedError, OptionError } from '../../src/index.js'
import { createTetherServer } from '../../src/server/index.js'
import { countingWebSocket, sleep, startServer, stopServers, tetherServers } from '../support/bindings.js'

// ── helpers ──────────────────────────────────────────────────────────────────

const scopes: EffectScope[] = []

const raw = <In = string, Out = string>(extra: UseTetherSocketOptions<In, Out> = {}): UseTetherSocketOptions<In, Out> => ({
  mode: 'raw',
  WebSocket: MockWebSocket,
  reconnect: { minDelay: 10, maxDelay: 50 },
  ...extra,
})

/** Polls `check` until it stops throwing; fails after `timeout` ms. */
async function until(check: () => void, timeout = 2000): Promise<void> {
  const end = Date.now() + timeout
  for (;;) {
    try {
      check()
      return
    } catch (error) {
      if (Date.now() > end) throw error
      await sleep(5)
    }
  }
}

/** Runs the composable in a bare effect scope (stopped after the test). */
function inScope<In = string, Out = string>(url: TetherUrlSource, options: UseTetherSocketOptions<In, Out>) {
  const scope = effectScope()
  scopes.push(scope)
  const result = scope.run(() => useTetherSocket<In, Out>(url, options))!
  return { scope, result }
}

let warn: ReturnType<typeof vi.spyOn>

beforeEach(() => {
  // Vue reports misuse (hooks outside setup, errors in watchers) through console.warn.
  warn = vi.spyOn(console, 'warn')
})

afterEach(async () => {
  for (const scope of scopes.splice(0)) scope.stop()
  await sleep(20)
  await stopServers()
  expect(warn).not.toHaveBeenCalled()
  vi.restoreAllMocks()
})

// ── tests ────────────────────────────────────────────────────────────────────

describe('useTetherSocket (Vue)', () => {
  it('mirrors the state into refs that re-render a component', async () => {
    const server = startServer('vue.test')
    const states: string[] = []
    const Status = defineComponent({
      setup() {
        const { state } = useTetherSocket<string, string>(server.url, raw())
        watch(state, (s) => states.push(s), { flush: 'sync' })
        return () => h('p', state.value)
      },
    })
    const wrapper = mount(Status)
    expect(wrapper.text()).toBe('idle') // rendered before mount, where the socket is created
    await nextTick()
    expect(wrapper.text()).toBe('connecting')
    await until(() => expect(wrapper.text()).toBe('open'))
    expect(states).toEqual(['connecting', 'open'])
    expect(server.connections).toHaveLength(1)
    wrapper.unmount()
  })

  it('creates the socket on mount, delivering a send made during setup', async () => {
    const server = startServer('vue.test')
    let during: UseTetherSocketReturn<string, string>['socket']['value'] | undefined
    let sent: Promise<void> | undefined
    const Sender = defineComponent({
      setup() {
        const chat = useTetherSocket<string, string>(server.url, raw())
        during = chat.socket.value
        sent = chat.send('hello from setup')
        return () => h('p', chat.state.value)
      },
    })
    const wrapper = mount(Sender)
    expect(during).toBeNull()
    await expect(sent).resolves.toBeUndefined()
    await until(() => expect(server.received).toEqual(['hello from setup']))
    wrapper.unmount()
  })

  it('closes the socket when the component unmounts', async () => {
    const server = startServer('vue.test')
    let chat!: UseTetherSocketReturn<string, string>
    const Comp = defineComponent({
      setup() {
        chat = useTetherSocket<string, string>(server.url, raw())
        return () => h('p', chat.state.value)
      },
    })
    const wrapper = mount(Comp)
    await until(() => expect(chat.state.value).toBe('open'))
    const socket = chat.socket.value!
    wrapper.unmount()
    await until(() => expect(server.closed).toBe(1))
    expect(socket.state).toBe('closed')
    expect(chat.state.value).toBe('closed')
    expect(chat.socket.value).toBeNull()
    await expect(chat.send('late')).rejects.toBeInstanceOf(ClosedError)
  })

  it('works in a bare effectScope: connects at once, scope.stop() closes', async () => {
    const server = startServer('vue.test')
    const { scope, result } = inScope(server.url, raw())
    expect(result.socket.value).not.toBeNull()
    await until(() => expect(result.state.value).toBe('open'))
    const socket = result.socket.value!
    scope.stop()
    expect(result.state.value).toBe('closed')
    await until(() => expect(server.closed).toBe(1))
    expect(socket.state).toBe('closed')
  })

  it('updates pending as messages are queued and sent; send resolves', async () => {
    const server = startServer('vue.test')
    const { result } = inScope(server.url, raw({ autoConnect: false }))
    const one = result.send('one')
    const two = result.send('two')
    expect(result.pending.value).toBe(2)
    expect(result.state.value).toBe('idle')
    result.socket.value!.connect()
    await expect(one).resolves.toBeUndefined()
    await expect(two).resolves.toBeUndefined()
    await until(() => expect(result.pending.value).toBe(0))
    await until(() => expect(server.received).toEqual(['one', 'two']))
  })

  it('follows pending for messages sent on the socket directly (the pending event)', async () => {
    const server = startServer('vue.test')
    const { result } = inScope(server.url, raw({ autoConnect: false }))
    const socket = result.socket.value!
    const direct = socket.send('direct')
    await until(() => expect(result.pending.value).toBe(1))
    socket.connect()
    await expect(direct).resolves.toBeUndefined()
    await until(() => expect(result.pending.value).toBe(0))
    await until(() => expect(server.received).toEqual(['direct']))
  })

  it('reconnects once when a ref url changes, and not for an equal value', async () => {
    const a = startServer('vue.test')
    const b = startServer('vue.test')
    const c = startServer('vue.test')
    const { WebSocket, counts } = countingWebSocket()
    const url = ref<string | URL>(a.url)
    const { result } = inScope(url, raw({ WebSocket }))
    await until(() => expect(result.state.value).toBe('open'))
    const first = result.socket.value
    // Two changes in one tick: one new socket, to the last value.
    url.value = b.url
    url.value = c.url
    await until(() => expect(c.open()).toBe(1))
    await until(() => expect(a.closed).toBe(1))
    expect(first?.state).toBe('closed')
    expect(b.connections).toHaveLength(0)
    await until(() => expect(result.state.value).toBe('open'))
    // The same URL as a URL object: no change.
    url.value = new URL(c.url)
    await nextTick()
    await sleep(30)
    expect(c.connections).toHaveLength(1)
    expect(counts.created).toBe(2)
  })

  it('watches a getter url and calls it again before every attempt', async () => {
    const lobby = startServer('vue.test')
    const dev = startServer('vue.test')
    const rooms: Record<string, string> = { lobby: lobby.url, dev: dev.url }
    const room = ref('lobby')
    let calls = 0
    const { result } = inScope(() => {
      calls++
      return rooms[room.value]
    }, raw())
    await until(() => expect(result.state.value).toBe('open'))
    expect(calls).toBe(1) // the watcher's first value serves the first attempt
    result.reconnect()
    await until(() => expect(lobby.connections).toHaveLength(2))
    expect(calls).toBe(2)
    room.value = 'dev'
    await until(() => expect(dev.open()).toBe(1))
    await until(() => expect(lobby.open()).toBe(0))
    expect(lobby.connections).toHaveLength(2)
  })

  it('accepts an async getter (a token fetched before each attempt)', async () => {
    const server = startServer('vue.test')
    let fetched = 0
    const { result } = inScope(async () => {
      fetched++
      await sleep(1)
      return server.url
    }, raw())
    await until(() => expect(result.state.value).toBe('open'))
    expect(fetched).toBe(1)
    result.reconnect()
    await until(() => expect(server.connections).toHaveLength(2))
    expect(fetched).toBe(2)
  })

  it('connects nothing while the url is null, rejecting sends, and connects once it is set', async () => {
    const server = startServer('vue.test')
    const url = ref<string | null>(null)
    const { result } = inScope(url, raw())
    expect(result.socket.value).toBeNull()
    expect(result.state.value).toBe('idle')
    await expect(result.send('x')).rejects.toBeInstanceOf(ClosedError)
    url.value = server.url
    await until(() => expect(result.state.value).toBe('open'))
    url.value = null
    await until(() => expect(server.closed).toBe(1))
    expect(result.socket.value).toBeNull()
    expect(result.state.value).toBe('idle')
  })

  it('calls onMessage for every message and keeps the latest in lastMessage', async () => {
    const server = startServer('vue.test')
    const got: string[] = []
    const { result } = inScope(server.url, raw({ onMessage: (msg) => got.push(msg) }))
    await until(() => expect(result.state.value).toBe('open'))
    server.broadcast('a')
    server.broadcast('a')
    server.broadcast('b')
    await until(() => expect(got).toEqual(['a', 'a', 'b']))
    expect(result.lastMessage.value).toBe('b')
  })

  it('shows an invalid url as error and state closed instead of throwing', async () => {
    const errors: unknown[] = []
    const { result } = inScope('ftp://example.com/x', raw({ onError: (e) => errors.push(e) }))
    expect(result.error.value).toBeInstanceOf(OptionError)
    expect(errors).toEqual([result.error.value])
    expect(result.state.value).toBe('closed')
    await expect(result.send('x')).rejects.toBeInstanceOf(OptionError)
  })

  it('close() closes and reconnect() reopens the socket', async () => {
    const server = startServer('vue.test')
    const { result } = inScope(server.url, raw())
    await until(() => expect(result.state.value).toBe('open'))
    await result.close()
    expect(result.state.value).toBe('closed')
    await until(() => expect(server.closed).toBe(1))
    result.reconnect()
    await until(() => expect(result.state.value).toBe('open'))
    expect(server.connections).toHaveLength(2)
  })

  it('tether mode: mirrors the session id and unacknowledged count; request resolves', async () => {
    const server = await createTetherServer({ port: 0, host: '127.0.0.1' })
    tetherServers.push(server)
    const got: unknown[] = []
    server.on('message', (data) => got.push(data))
    server.onRequest(async (data) => ({ echo: data }))
    const { result } = inScope<unknown, string>(`ws://127.0.0.1:${server.port}`, { WebSocket: NodeWebSocket, autoConnect: false })
    const acked = Promise.all([result.send('a'), result.send('b')])
    expect(result.pending.value).toBe(2)
    expect(result.sessionId.value).toBeUndefined()
    result.socket.value!.connect()
    await acked // resolves only once the server acknowledged both
    expect(got).toEqual(['a', 'b'])
    await until(() => expect(result.pending.value).toBe(0), 5000)
    expect(result.sessionId.value).toMatch(/\S{8,}/)
    expect(result.state.value).toBe('open')
    await expect(result.request('q')).resolves.toEqual({ echo: 'q' })
  })

  it('creates no socket during server rendering', async () => {
    const { WebSocket, counts } = countingWebSocket()
    const App = defineComponent({
      setup() {
        const { state, socket } = useTetherSocket('ws://vue.test/ssr', { mode: 'raw', WebSocket })
        return () => h('p', `${state.value}:${socket.value === null}`)
      },
    })
    expect(await renderToString(createSSRApp(App))).toBe('<p>idle:true</p>')
    expect(counts.created).toBe(0)
  })
})
