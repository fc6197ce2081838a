/**
 * React bindings: `useTetherSocket`, one `TetherSocket` per component instance, and
 * `useTetherEvent`, a listener that follows the latest render without resubscribing.
 *
 * - The socket is created in an effect, never during render: nothing connects during server
 *   rendering, and StrictMode's simulated unmount closes the first socket before the second
 *   exists (the first one never even reaches the network: `TetherSocket` opens its WebSocket
 *   a microtask after `connect()`, and `close()` cancels that).
 * - The state lives in an external store read with `useSyncExternalStore`. The returned object
 *   tracks which fields the component reads (like SWR and TanStack Query), so a component that
 *   never reads `lastMessage` is not re-rendered by every message.
 *
 * @example
 * ```tsx
import { useTetherSocket } from 'tethersocket/react'
 *
 * function Chat() {
 *   const { state, pending, send } = useTetherSocket<ServerMsg, ClientMsg>('wss://example.com/live', {
 *     onMessage: (msg) => appendToLog(msg),
 *   })
 *   return <button onClick={() => send({ text: 'hi' })}>{state} ({pending} unacknowledged)</button>
 * }
 * ```
 * @packageDocumentation
 */
import { type DependencyList, useEffect, useLayoutEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react'
import type {
  ReconnectOptions,
  RequestReply,
  SendOptions,
  SocketState,
  TetherError,
  TetherSocket,
  TetherSocketEvents,
  TetherSocketOptions,
  UrlProvider,
} from '../index.js'
import { type BindingCallbacks, BindingCore, type BindingSnapshot, FIELDS, initial, REFUSED } from './core.js'

/**
 * Options of {@link useTetherSocket}: every `TetherSocket` option, plus the hook's own.
 *
 * Non-function options are read when the socket is created; changing them later has no effect
 * until the socket is recreated (a new `url` string or a change in `deps`). Function options
 * (`onMessage`, `onError`, `onOpen`, `serialize`, `deserialize`, a `protocols` function,
 * `reconnect.shouldReconnect`) always call the function of the latest render, so inline
 * arrow functions neither reconnect nor go stale.
 *
 * @example
 * ```tsx
 * const { state } = useTetherSocket(url, {
 *   mode: 'raw',
 *   deps: [roomId],                    // a new socket when roomId changes
 *   onMessage: (msg) => setLog((log) => [...log, msg]),
 * })
 * ```
 */
export interface UseTetherSocketOptions<In = unknown, Out = unknown, Requests extends RequestReply = RequestReply>
  extends TetherSocketOptions<In, Out>,
    BindingCallbacks<In, Out, Requests> {
  /**
   * Values that, when one changes (`Object.is`), close the socket and open a new one, like an
   * effect's dependency list (keep its length constant). A string or `URL` `url` is always a
   * dependency; a function `url` is not (it is called before every attempt instead).
   */
  deps?: DependencyList
  /** Called for every message, without re-rendering. Use this rather than `lastMessage` to handle each message. */
  onMessage?: (data: In, socket: TetherSocket<In, Out, Requests>) => void
  /** Called for every `error` event, for a refused call, and when the socket cannot be created (a bad URL or option). */
  onError?: (error: TetherError) => void
}

/**
 * What {@link useTetherSocket} returns: the same members as the Vue composable's result, as
 * plain values. Fields are read lazily: the component re-renders only when a field it has read
 * changes (destructure what you need; a spread reads everything). The methods are stable.
 *
 * @example
 * ```tsx
 * const { state, send } = useTetherSocket(url) // re-renders on state changes only
 * ```
 */
export interface UseTetherSocketResult<In = unknown, Out = unknown, Requests extends RequestReply = RequestReply> {
  /** The socket, or `null` before the first effect ran, during server rendering, or when `url` is `null`. */
  readonly socket: TetherSocket<In, Out, Requests> | null
  /** The socket's state; `'idle'` while there is no socket, `'closed'` when it could not be created. */
  readonly state: SocketState
  /** Messages queued or sent but not yet acknowledged (follows the socket's `pending` event). */
  readonly pending: number
  /** The server session's id (tether mode), once known. */
  readonly sessionId: string | undefined
  /**
   * The most recent message, for rendering the latest value. Not a stream: two equal messages
   * in a row, or several in one batch, render once. Handle every message with `onMessage`.
   */
  readonly lastMessage: In | undefined
  /** The most recent error since the connection last opened (also a refused call, or a socket that could not be created). */
  readonly error: TetherError | undefined
  /**
   * `socket.send`, stable across renders. Before the socket exists (e.g. in a child's effect
   * on first mount) the call waits for it; after unmount, or while `url` is `null`, it
   * rejects with `ClosedError`.
   */
  readonly send: (data: Out, options?: SendOptions) => Promise<void>
  /** `socket.request`, stable across renders, waiting for the socket like `send`. */
  readonly request: TetherSocket<In, Out, Requests>['request']
  /** Closes the current socket, stable across renders; it stays closed until `reconnect()`, a new `url` or a `deps` change. */
  readonly close: (code?: number, reason?: string) => Promise<void>
  /** Reconnects now, stable across renders: drops the connection or the backoff wait, or reopens a closed socket. */
  readonly reconnect: () => void
}

type Snapshot<In, Out, Requests extends RequestReply = RequestReply> = BindingSnapshot<In, Out, Requests>
type Field = keyof Snapshot<unknown, unknown>
type Change<In, Out, Requests extends RequestReply = RequestReply> = (
  prev: Snapshot<In, Out, Requests>,
  next: Snapshot<In, Out, Requests>,
) => void

// Layout effects warn during server rendering in React 18; there they would not run anyway.
const useIsomorphicLayoutEffect = typeof document === 'undefined' ? useEffect : useLayoutEffect

/**
 * Wraps a function option so that each call goes to the function of the latest render (or to
 * `initial` when the latest render has none): inline callbacks then need no socket recreation.
 */
function fresh<F>(initial: F | undefined, pick: () => unknown): F | undefined {
  if (typeof initial !== 'function') return initial
  const wrapped = (...args: unknown[]) => {
    const latest = pick()
    return Reflect.apply(typeof latest === 'function' ? latest : initial, undefined, args)
  }
  return wrapped as F
}

/** One hook instance: the shared core, driven by the effect, and the store React reads. */
class Binding<In, Out, Requests extends RequestReply = RequestReply> {
  /** The url and options of the latest committed render. */
  latest: { url: UrlProvider | null; options: UseTetherSocketOptions<In, Out> }
  /** Fields the component read: only their changes re-render it. */
  readonly tracked = new Set<Field>()
  readonly core: BindingCore<In, Out, Requests>
  /**
   * `mounted`: the effect ran; `released`: its cleanup ran (a re-run, StrictMode's simulated
   * unmount, or a real unmount: a microtask later tells which). Before the first effect and
   * after a release, calls wait for the next socket.
   */
  private phase: 'new' | 'mounted' | 'released' = 'new'
  private readonly listeners = new Set<Change<In, Out, Requests>>()

  constructor(url: UrlProvider | null, options: UseTetherSocketOptions<In, Out>) {
    this.latest = { url, options }
    this.core = new BindingCore<In, Out, Requests>(
      () => this.latest.options,
      (prev, next) => {
        for (const listener of this.listeners) listener(prev, next)
      },
    )
    this.core.noUrl = url === null
  }

  // ── the store ─────────────────────────────────────────────────────────────

  subscribe = (onStoreChange: () => void): (() => void) => {
    const listener: Change<In, Out, Requests> = (prev, next) => {
      for (const field of this.tracked) {
        if (!Object.is(prev[field], next[field])) {
          onStoreChange()
          return
        }
      }
    }
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  getSnapshot = (): Snapshot<In, Out, Requests> => this.core.snapshot

  getServerSnapshot = (): Snapshot<In, Out, Requests> => initial<In, Out, Requests>()

  /** A render committed: its url and options are the ones to use from now on. */
  commit(url: UrlProvider | null, options: UseTetherSocketOptions<In, Out>): void {
    this.latest = { url, options }
    // A call made between this render and its effect waits for a socket only if one is coming.
    this.core.noUrl = url === null
  }

  // ── the socket's life (driven by the effect) ──────────────────────────────

  /** The effect ran: create the socket, unless `url` is null. */
  mount(): void {
    this.phase = 'mounted'
    const { url, options } = this.latest
    this.core.open(url === null ? null : this.socketUrl(url), this.socketOptions(options))
  }

  /** The effect's cleanup: close the socket. Calls made meanwhile wait, unless this is an unmount. */
  release(): void {
    this.core.drop()
    this.phase = 'released'
    // StrictMode and dependency changes run the effect again before this microtask. After an
    // unmount no socket is coming, until the effect runs again (a hidden `<Activity>` shown again).
    queueMicrotask(() => {
      if (this.phase === 'released') this.core.end(REFUSED.unmounted)
    })
  }

  private socketUrl(url: UrlProvider): UrlProvider {
    // A function url is called before every attempt: the latest render's function is used.
    return typeof url === 'function' ? (fresh(url, () => this.latest.url) ?? url) : url
  }

  private socketOptions(options: UseTetherSocketOptions<In, Out>): TetherSocketOptions<In, Out> {
    const { deps: _deps, onMessage: _onMessage, onError: _onError, ...rest } = options
    const latest = () => this.latest.options
    const reconnect: false | ReconnectOptions | undefined =
      rest.reconnect && typeof rest.reconnect === 'object'
        ? {
            ...rest.reconnect,
            shouldReconnect: fresh(rest.reconnect.shouldReconnect, () => {
              const r = latest().reconnect
              return r ? r.shouldReconnect : undefined
            }),
          }
        : rest.reconnect
    return {
      ...rest,
      reconnect,
      protocols: fresh(rest.protocols, () => latest().protocols),
      onOpen: fresh(rest.onOpen, () => latest().onOpen),
      serialize: fresh(rest.serialize, () => latest().serialize),
      deserialize: fresh(rest.deserialize, () => latest().deserialize),
    }
  }
}

/** A result object whose getters record which fields the component reads. */
function view<In, Out, Requests extends RequestReply = RequestReply>(
  binding: Binding<In, Out, Requests>,
  snapshot: Snapshot<In, Out, Requests>,
): UseTetherSocketResult<In, Out, Requests> {
  const { send, request, close, reconnect } = binding.core
  const result = { send, request, close, reconnect }
  for (const field of FIELDS) {
    Object.defineProperty(result, field, {
      enumerable: true,
      get: () => {
        binding.tracked.add(field)
        return snapshot[field]
      },
    })
  }
  return result as UseTetherSocketResult<In, Out, Requests>
}

/** Marks a function `url`: it is not a dependency (it is called before every attempt). */
const FUNCTION_URL = '\0function'

/**
 * Connects a component to a WebSocket server: one {@link TetherSocket} per component
 * instance, created after mount, closed on unmount.
 *
 * - `url`: a string or `URL` (a new value closes the socket and opens one to the new URL), a
 *   function called before every attempt (not a dependency: the latest render's function is
 *   called), or `null` for no connection (for example until the user signed in).
 * - Re-renders only for the fields the component reads; `send`, `request`, `close` and
 *   `reconnect` are stable.
 * - `pending` follows the socket's `pending` event (once per tick in which it changed, also for
 *   messages sent with `socket.send()` directly), and counts a `send` made through the hook at once.
 *
 * @typeParam In - messages the server sends
 * @typeParam Out - messages this client sends
 * @example
 * ```tsx
 * function Ticker({ symbol }: { symbol: string }) {
 *   const { state, lastMessage, send } = useTetherSocket<Quote, Command>(`wss://example.com/quotes/${symbol}`)
 *   useEffect(() => void send({ subscribe: symbol }), [send, symbol])
 *   return <p>{state === 'open' ? lastMessage?.price : state}</p>
 * }
 * ```
 */
export function useTetherSocket<In = unknown, Out = unknown, Requests extends RequestReply = RequestReply>(
  url: UrlProvider | null,
  options: UseTetherSocketOptions<In, Out> = {},
): UseTetherSocketResult<In, Out, Requests> {
  const [binding] = useState(() => new Binding<In, Out, Requests>(url, options))
  // Committed values only: a render React throws away must not change what the socket uses.
  useIsomorphicLayoutEffect(() => {
    binding.commit(url, options)
  })
  const snapshot = useSyncExternalStore(binding.subscribe, binding.getSnapshot, binding.getServerSnapshot)
  const urlKey = url === null ? null : typeof url === 'function' ? FUNCTION_URL : String(url)
  const deps = options.deps ?? []
  // biome-ignore lint/correctness/useExhaustiveDependencies: the socket is recreated exactly when url (as a string) or a deps value changes; everything else is read from binding.latest
  useEffect(() => {
    binding.mount()
    return () => binding.release()
  }, [binding, urlKey, ...deps])
  return useMemo(() => view(binding, snapshot), [binding, snapshot])
}

/**
 * Subscribes to one event of a socket for the component's lifetime. The listener may be a new
 * inline function every render: the latest one is called, and the subscription is only
 * renewed when `socket` or `event` changes. Nothing re-renders unless the listener sets state.
 *
 * @example
 * ```tsx
 * const { socket } = useTetherSocket<ServerMsg, ClientMsg>(url)
 * useTetherEvent(socket, 'close', (info) => {
 *   if (!info.willReconnect) toast(`disconnected (${info.code})`)
 * })
 * ```
 */
export function useTetherEvent<In, Out, Requests extends RequestReply, E extends keyof TetherSocketEvents<In>>(
  socket: TetherSocket<In, Out, Requests> | null | undefined,
  event: E,
  listener: TetherSocketEvents<In>[E],
): void {
  const latest = useRef(listener)
  useIsomorphicLayoutEffect(() => {
    latest.current = listener
  })
  useEffect(() => {
    if (!socket) return undefined
    const forward = ((...args: unknown[]) => Reflect.apply(latest.current, undefined, args)) as TetherSocketEvents<In>[E]
    // eventemitter3's overloads cannot relate a generic event name to its listener type.
    const emitter = socket as unknown as {
      on(event: E, fn: TetherSocketEvents<In>[E]): void
      off(event: E, fn: TetherSocketEvents<In>[E]): void
    }
    emitter.on(event, forward)
    return () => emitter.off(event, forward)
  }, [socket, event])
}
