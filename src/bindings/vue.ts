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
import { useTetherSocket } from 'tethersocket/vue'
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
import type { RequestReply, SendOptions, SocketState, TetherError, TetherSocket, TetherSocketOptions, UrlProvider } from '../index.js'
import { type BindingCallbacks, BindingCore, REFUSED } from './core.js'

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
export interface UseTetherSocketOptions<In = unknown, Out = unknown, Requests extends RequestReply = RequestReply>
  extends TetherSocketOptions<In, Out>,
    BindingCallbacks<In, Out, Requests> {
  /** Called for every message. Use this rather than watching `lastMessage` to handle each message. */
  onMessage?: (data: In, socket: TetherSocket<In, Out, Requests>) => void
  /** Called for every `error` event, for a refused call, and when the socket cannot be created (a bad URL or option). */
  onError?: (error: TetherError) => void
}

/**
 * What {@link useTetherSocket} returns: the same members as the React hook's result, the
 * fields as read-only refs mirroring the socket.
 *
 * @example
 * ```ts
 * const { state, pending, send, close } = useTetherSocket('wss://example.com/live')
 * watch(state, (s) => console.log('now', s))
 * ```
 */
export interface UseTetherSocketReturn<In = unknown, Out = unknown, Requests extends RequestReply = RequestReply> {
  /** The current socket: `null` before mount, while the url is null, and after the scope is disposed. Replaced when the url changes. */
  readonly socket: Readonly<ShallowRef<TetherSocket<In, Out, Requests> | null>>
  /** The socket's state; `'idle'` without a socket, `'closed'` after disposal or when it could not be created. */
  readonly state: Readonly<ShallowRef<SocketState>>
  /** Messages queued or sent but not yet acknowledged (follows the socket's `pending` event). */
  readonly pending: Readonly<ShallowRef<number>>
  /** The server session's id (tether mode), once known. */
  readonly sessionId: Readonly<ShallowRef<string | undefined>>
  /** The most recent message. Not a stream: an equal message in a row does not trigger watchers; use `onMessage` for each one. */
  readonly lastMessage: Readonly<ShallowRef<In | undefined>>
  /** The most recent error since the connection last opened (also a refused call, or a socket that could not be created). */
  readonly error: Readonly<ShallowRef<TetherError | undefined>>
  /** `socket.send`. Before mount the call waits for the socket; after disposal, or while the url is null, it rejects with `ClosedError`. */
  send(data: Out, options?: SendOptions): Promise<void>
  /** `socket.request`, waiting for the socket like `send`. */
  request: TetherSocket<In, Out, Requests>['request']
  /** Closes the current socket (it stays closed until `reconnect()` or a url change). */
  close(code?: number, reason?: string): Promise<void>
  /** Reconnects now: drops the connection or the backoff wait, or reopens a closed socket. */
  reconnect(): void
}

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
 * - `pending` follows the socket's `pending` event (once per tick in which it changed, also for
 *   messages sent with `socket.send()` directly), and counts a `send` made through it at once.
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
export function useTetherSocket<In = unknown, Out = unknown, Requests extends RequestReply = RequestReply>(
  url: TetherUrlSource,
  options: UseTetherSocketOptions<In, Out> = {},
): UseTetherSocketReturn<In, Out, Requests> {
  const socket = shallowRef<TetherSocket<In, Out, Requests> | null>(null)
  const state = shallowRef<SocketState>('idle')
  const pending = shallowRef(0)
  const sessionId = shallowRef<string | undefined>()
  const lastMessage = shallowRef<In | undefined>()
  const error = shallowRef<TetherError | undefined>()
  const core = new BindingCore<In, Out, Requests>(
    () => options,
    (_prev, next) => {
      socket.value = next.socket
      state.value = next.state
      pending.value = next.pending
      sessionId.value = next.sessionId
      lastMessage.value = next.lastMessage
      error.value = next.error
    },
  )

  const scope = getCurrentScope()
  /** `waiting`: not started yet (before mount); `started`: following the url; `disposed`: done. */
  let phase: 'waiting' | 'started' | 'disposed' = 'waiting'
  /** The url of the current socket as a string; a promise gets a fresh key every time. */
  let currentKey: string | symbol | null = null
  let followed = false
  let stopWatching = noop

  /** What the socket connects to: a getter's first value is reused by the first attempt, then it is called per attempt. */
  const provider = (target: string | URL | Promise<string | URL>): UrlProvider => {
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

  const follow = (target: Target) => {
    // A promise nobody consumes (the url changed again first) must not become an unhandled rejection.
    if (isThenable(target)) target.then(noop, noop)
    const key = isThenable(target) ? Symbol('url promise') : target === null || target === undefined ? null : String(target)
    // Vue compares with Object.is; an equal URL in a new URL object (or string) is no change.
    if (followed && key === currentKey) return
    followed = true
    currentKey = key
    const { onMessage: _onMessage, onError: _onError, ...rest } = options
    core.open(target === null || target === undefined ? null : provider(target), rest)
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
    core.end(REFUSED.disposed)
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
    send: core.send,
    request: core.request,
    close: core.close,
    reconnect: core.reconnect,
  }
}
