/**
 * Vue bindings: `useTetherSocket`, a composable that owns one `TetherSocket` for the lifetime
 * of the effect scope it is called in (a component's setup, or an `effectScope`) and mirrors
 * its state into refs.
 *
 * - In a component the socket is created when the component mounts, so server rendering
 *   (where `onMounted` never runs) opens nothing; in a bare `effectScope` it is created at once.
 * - It is closed when the scope is disposed (`onScopeDispose`): on unmount, or `scope.stop()`.
 *
 * @example
 * ```vue
 * <script setup lang="ts">
 * import { useTetherSocket } from 'tethersocket/vue'
 * const { state, pending, lastMessage, send } = useTetherSocket<ServerMsg, ClientMsg>('wss://example.com/live')
 * </script>
 * <template>
 *   <p>{{ state }}, {{ pending }} unacknowledged, last: {{ lastMessage }}</p>
 *   <button @click="send({ text: 'hi' })">say hi</button>
 * </template>
 * ```
 * @packageDocumentation
 */
import {
  getCurrentInstance,
  getCurrentScope,
  type MaybeRefOrGetter,
  onMounted,
  onScopeDispose,
  type ShallowRef,
  shallowRef,
  toValue,
  watch,
} from 'vue'
import { reportLater } from '../client/report.js'
import {
  ClosedError,
  type RequestOptions,
  type SendOptions,
  type SocketState,
  TetherError,
  TetherSocket,
  type TetherSocketOptions,
  type UrlProvider,
} from '../index.js'

/**
 * Where {@link useTetherSocket} connects: a string or `URL`, a ref or computed of one, or a
 * getter. `null`/`undefined` means no connection.
 *
 * - A ref, computed or getter is watched: when its value changes (compared as a string) the
 *   socket is closed and a new one opens to the new URL; several changes in one tick reconnect
 *   once.
 * - A getter is also called before every reconnection attempt, like a function `url` of
 *   `TetherSocket`, so it can put a fresh token in the URL. It may return a promise (an async
 *   token fetch); what it reads reactively before its first `await` is still watched.
 *
 * @example
 * ```ts
 * const room = ref('lobby')
 * useTetherSocket(() => `wss://example.com/rooms/${room.value}`) // room.value = 'dev' reconnects
 * ```
 */
export type TetherUrlSource = MaybeRefOrGetter<string | URL | null | undefined> | (() => Promise<string | URL>)

/**
 * Options of {@link useTetherSocket}: every `TetherSocket` option, plus two callbacks. They
 * are read when a socket is created (the composable runs once per scope, so there are no
 * stale closures to worry about).
 *
 * @example
 * ```ts
 * useTetherSocket(url, { mode: 'raw', onMessage: (msg) => log.value.push(msg) })
 * ```
 */
export interface UseTetherSocketOptions<In = unknown, Out = unknown> extends TetherSocketOptions<In, Out> {
  /** Called for every message. Use this rather than watching `lastMessage` to handle each message. */
  onMessage?: (data: In, socket: TetherSocket<In, Out>) => void
  /** Called for every `error` event, and when the socket cannot be created (a bad URL or option). */
  onError?: (error: TetherError) => void
}

/**
 * What {@link useTetherSocket} returns: read-only refs mirroring the socket, and methods.
 *
 * @example
 * ```ts
 * const { state, pending, send, close } = useTetherSocket('wss://example.com/live')
 * watch(state, (s) => console.log('now', s))
 * ```
 */
export interface UseTetherSocketReturn<In = unknown, Out = unknown> {
  /** The current socket: `null` before mount, while the url is null, and after the scope is disposed. Replaced when the url changes. */
  readonly socket: Readonly<ShallowRef<TetherSocket<In, Out> | null>>
  /** The socket's state; `'idle'` without a socket, `'closed'` after disposal or when it could not be created. */
  readonly state: Readonly<ShallowRef<SocketState>>
  /** Messages queued or sent but not yet acknowledged (refreshed after each `send`/`request` and on socket events). */
  readonly pending: Readonly<ShallowRef<number>>
  /** The server session's id (tether mode), once known. */
  readonly sessionId: Readonly<ShallowRef<string | undefined>>
  /** The most recent message. Not a stream: an equal message in a row does not trigger watchers; use `onMessage` for each one. */
  readonly lastMessage: Readonly<ShallowRef<In | undefined>>
  /** The most recent error since the connection last opened (also a socket that could not be created). */
  readonly error: Readonly<ShallowRef<TetherError | undefined>>
  /** `socket.send`. Before mount the call waits for the socket; after disposal, or while the url is null, it rejects with `ClosedError`. */
  send(data: Out, options?: SendOptions): Promise<void>
  /** `socket.request`, waiting for the socket like `send`. */
  request<R = unknown>(data: Out, options?: RequestOptions): Promise<R>
  /** Closes the current socket (it stays closed until `reconnect()` or a url change). */
  close(code?: number, reason?: string): Promise<void>
  /** Reconnects now: drops the connection or the backoff wait, or reopens a closed socket. */
  reconnect(): void
}

type Waiter<In, Out> = { resolve: (socket: TetherSocket<In, Out>) => void; reject: (error: TetherError) => void }
type Target = string | URL | Promise<string | URL> | null | undefined

const noop = () => {}

const isThenable = (value: unknown): value is Promise<string | URL> =>
  typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function'

/**
 * Owns one {@link TetherSocket} for the current effect scope and mirrors its state into refs.
 * The socket is closed when the scope is disposed (component unmount or `scope.stop()`).
 * Outside any scope nothing closes it: call `close()` yourself.
 *
 * - `url`: see {@link TetherUrlSource}. A change closes the socket (its undelivered messages
 *   reject with `ClosedError`) and opens a new one; a `null` value closes it.
 * - `pending` has no event of its own: it is refreshed right after each `send`/`request` made
 *   through the composable, when their promises settle, and on every socket event.
 *
 * @typeParam In - messages the server sends
 * @typeParam Out - messages this client sends
 * @example
 * ```ts
 * const scope = effectScope()
 * const chat = scope.run(() => useTetherSocket<ServerMsg, ClientMsg>(url, { onMessage: render }))!
 * await chat.send({ text: 'hi' })
 * scope.stop() // closes the socket
 * ```
 */
export function useTetherSocket<In = unknown, Out = unknown>(
  url: TetherUrlSource,
  options: UseTetherSocketOptions<In, Out> = {},
): UseTetherSocketReturn<In, Out> {
  const socket = shallowRef<TetherSocket<In, Out> | null>(null)
  const state = shallowRef<SocketState>('idle')
  const pending = shallowRef(0)
  const sessionId = shallowRef<string | undefined>()
  const lastMessage = shallowRef<In | undefined>()
  const error = shallowRef<TetherError | undefined>()

  const scope = getCurrentScope()
  /** `waiting`: not started yet (before mount); `started`: following the url; `disposed`: done. */
  let phase: 'waiting' | 'started' | 'disposed' = 'waiting'
  let waiting: Waiter<In, Out>[] = []
  /** Why there is no socket although the url is set (it could not be created). */
  let failure: TetherError | undefined
  /** The url of the current socket as a string; a promise gets a fresh key every time. */
  let currentKey: string | symbol | null = null
  let followed = false
  let detach = noop
  let stopWatching = noop

  const refresh = () => {
    const current = socket.value
    state.value = current ? current.state : phase === 'disposed' || failure ? 'closed' : 'idle'
    pending.value = current ? current.pending : 0
    sessionId.value = current?.sessionId
  }

  const report = (err: TetherError) => {
    error.value = err
    try {
      options.onError?.(err)
    } catch (thrown) {
      reportLater(thrown)
    }
  }

  const rejectWaiting = (err: TetherError) => {
    const list = waiting
    waiting = []
    for (const waiter of list) waiter.reject(err)
    if (list.length > 0) report(err)
  }

  const listen = (sock: TetherSocket<In, Out>) => {
    const onMessage = (data: In) => {
      lastMessage.value = data
      try {
        options.onMessage?.(data, sock)
      } catch (thrown) {
        reportLater(thrown)
      }
      refresh()
    }
    const onOpen = () => {
      error.value = undefined
      refresh()
    }
    const onError = (err: TetherError) => {
      report(err)
      refresh()
    }
    const events = ['state', 'close', 'reconnecting', 'session'] as const
    for (const event of events) sock.on(event, refresh)
    sock.on('open', onOpen)
    sock.on('message', onMessage)
    sock.on('error', onError)
    return () => {
      for (const event of events) sock.off(event, refresh)
      sock.off('open', onOpen)
      sock.off('message', onMessage)
      sock.off('error', onError)
    }
  }

  /** Closes the current socket, if any. Its undelivered messages reject with ClosedError. */
  const drop = () => {
    const current = socket.value
    detach()
    detach = noop
    socket.value = null
    if (current) void current.close()
  }

  /** What the socket connects to: a getter's first value is reused by the first attempt, then it is called per attempt. */
  const provider = (target: Target): UrlProvider => {
    if (typeof url !== 'function') return target as string | URL
    let primed: Target = target
    const getter = url as () => Target
    return () => {
      const value = primed ?? getter()
      primed = undefined
      if (value === null || value === undefined) throw new Error('the url getter returned no url')
      return value
    }
  }

  const create = (target: Target) => {
    drop()
    failure = undefined
    lastMessage.value = undefined
    error.value = undefined
    if (target === null || target === undefined) {
      rejectWaiting(new ClosedError('useTetherSocket has no connection: its url is null'))
      refresh()
      return
    }
    let sock: TetherSocket<In, Out>
    try {
      const { onMessage: _onMessage, onError: _onError, ...rest } = options
      // autoConnect: false, so that listeners are attached before the first event.
      sock = new TetherSocket<In, Out>(provider(target), { ...rest, autoConnect: false })
    } catch (cause) {
      // A bad URL or option: shown as `error` rather than thrown from a watcher.
      failure =
        cause instanceof TetherError
          ? cause
          : new TetherError(`could not create the socket: ${String(cause)}`, { cause }, 'TetherError', 'ERR_CREATE')
      const list = waiting
      waiting = []
      for (const waiter of list) waiter.reject(failure)
      report(failure)
      refresh()
      return
    }
    socket.value = sock
    detach = listen(sock)
    if (options.autoConnect !== false) sock.connect()
    refresh()
    const list = waiting
    waiting = []
    for (const waiter of list) waiter.resolve(sock)
  }

  const follow = (target: Target) => {
    // A promise nobody consumes (the url changed again first) must not become an unhandled rejection.
    if (isThenable(target)) target.then(noop, noop)
    const key = isThenable(target) ? Symbol('url promise') : target === null || target === undefined ? null : String(target)
    // Vue compares with Object.is; an equal URL in a new URL object (or string) is no change.
    if (followed && key === currentKey) return
    followed = true
    currentKey = key
    create(target)
  }

  const start = () => {
    if (phase !== 'waiting') return
    phase = 'started'
    // Started inside the owning scope, so the watcher stops with it.
    const begin = () => watch(() => toValue(url) as Target, follow, { immediate: true })
    stopWatching = (scope ? scope.run(begin) : begin()) ?? noop
  }

  const dispose = () => {
    if (phase === 'disposed') return
    phase = 'disposed'
    stopWatching()
    drop()
    rejectWaiting(new ClosedError('the scope using useTetherSocket was disposed'))
    refresh()
  }

  /** Runs `use` on the socket, now or once it exists, refreshing `pending` when called and when settled. */
  const call = <T>(use: (sock: TetherSocket<In, Out>) => Promise<T>): Promise<T> => {
    const run = (sock: TetherSocket<In, Out>) => {
      const promise = use(sock)
      refresh()
      promise.then(refresh, refresh)
      return promise
    }
    if (socket.value) return run(socket.value)
    let refusal: TetherError | undefined
    if (phase === 'disposed') refusal = new ClosedError('the scope using useTetherSocket was disposed')
    else if (failure) refusal = failure
    else if (phase === 'started') refusal = new ClosedError('useTetherSocket has no connection: its url is null')
    const later = refusal
      ? Promise.reject(refusal)
      : new Promise<TetherSocket<In, Out>>((resolve, reject) => waiting.push({ resolve, reject })).then(run)
    later.catch(noop) // like the socket's own promises: ignoring one never raises an unhandled rejection
    if (refusal) report(refusal)
    return later
  }

  if (scope) onScopeDispose(dispose)
  // In a component: connect once mounted, which never happens during server rendering.
  if (getCurrentInstance()) onMounted(start)
  else start()

  return {
    socket,
    state,
    pending,
    sessionId,
    lastMessage,
    error,
    send: (data, sendOptions) => call((sock) => sock.send(data, sendOptions)),
    request: <R = unknown>(data: Out, requestOptions?: RequestOptions) => call((sock) => sock.request<R>(data, requestOptions)),
    close: (code, reason) => socket.value?.close(code, reason) ?? Promise.resolve(),
    reconnect: () => socket.value?.reconnect(),
  }
}
