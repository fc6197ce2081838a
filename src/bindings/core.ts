/**
 * What the React and Vue bindings share: one `TetherSocket` at a time, the snapshot of it both
 * show (state, pending, session, last message, error), the calls made before the socket exists,
 * and the rules for refusing them. The bindings add only the framework's glue: when a socket
 * is opened or dropped, and how the snapshot reaches the components.
 * @module
 */
import { reportLater } from '../client/report.js'
import { DEV } from '../dev.js'
import {
  ClosedError,
  type RequestOptions,
  type RequestReply,
  type SendOptions,
  type SocketState,
  TetherError,
  TetherSocket,
  type TetherSocketOptions,
  type UrlProvider,
} from '../index.js'

/** The callbacks both bindings add to the socket's options. */
export interface BindingCallbacks<In, Out, Requests extends RequestReply = RequestReply> {
  /** Called for every message. */
  onMessage?: (data: In, socket: TetherSocket<In, Out, Requests>) => void
  /** Called for every `error` event, for a refused call, and when the socket cannot be created. */
  onError?: (error: TetherError) => void
}

/** What both bindings show of the socket (React as values, Vue as refs). */
export interface BindingSnapshot<In, Out, Requests extends RequestReply = RequestReply> {
  /** The current socket; `null` while there is none. */
  readonly socket: TetherSocket<In, Out, Requests> | null
  /** The socket's state; without a socket `'idle'`, or `'closed'` when none is coming or it could not be created. */
  readonly state: SocketState
  /** `socket.pending`, or 0 without a socket. */
  readonly pending: number
  /** `socket.sessionId`. */
  readonly sessionId: string | undefined
  /** The most recent message of the current socket. */
  readonly lastMessage: In | undefined
  /** The most recent error since the connection last opened, a refused call, or why the socket could not be created. */
  readonly error: TetherError | undefined
}

/** A field of {@link BindingSnapshot}. */
export type SnapshotField = keyof BindingSnapshot<unknown, unknown>

/** The snapshot's fields, in the order the bindings list them. */
export const FIELDS: readonly SnapshotField[] = ['socket', 'state', 'pending', 'sessionId', 'lastMessage', 'error']

/** The snapshot without a socket; also what server rendering and hydration see. */
export const INITIAL: BindingSnapshot<unknown, unknown> = Object.freeze({
  socket: null,
  state: 'idle',
  pending: 0,
  sessionId: undefined,
  lastMessage: undefined,
  error: undefined,
})

/** Why a call gets `ClosedError` instead of waiting for a socket. */
export const REFUSED = {
  noUrl: DEV ? 'useTetherSocket has no connection: its url is null' : '',
  unmounted: DEV ? 'the component using useTetherSocket has unmounted' : '',
  disposed: DEV ? 'the scope using useTetherSocket was disposed' : '',
}

/** {@link INITIAL} for a binding's message types (it holds no message nor socket). */
export const initial = <In, Out, Requests extends RequestReply = RequestReply>() => INITIAL as unknown as BindingSnapshot<In, Out, Requests>

/** Socket events after which state, pending or sessionId may have changed. */
const REFRESH_ON = ['state', 'close', 'reconnecting', 'session', 'pending'] as const

type Waiter<In, Out, Requests extends RequestReply = RequestReply> = {
  resolve: (socket: TetherSocket<In, Out, Requests>) => void
  reject: (error: TetherError) => void
}

const noop = () => {}

/**
 * One binding's connection: the current socket, the snapshot published on every change, and
 * `send`/`request`/`close`/`reconnect`, which are stable (arrow properties) and work before
 * the socket exists.
 */
export class BindingCore<In, Out, Requests extends RequestReply = RequestReply> {
  /** The latest snapshot: a new frozen object whenever a field changed. */
  snapshot = initial<In, Out, Requests>()
  /**
   * True while the binding has no url: calls are refused instead of waiting. `open()` sets it;
   * a binding may set it earlier, as soon as it knows a socket is (or is no longer) coming.
   */
  noUrl = false
  private socket: TetherSocket<In, Out, Requests> | null = null
  private detach = noop
  private lastMessage: In | undefined
  private error: TetherError | undefined
  /** Why there is no socket although there should be one (it could not be created). */
  private failure: TetherError | undefined
  /** Set when no socket is coming any more (unmount, disposal). */
  private ended: ClosedError | undefined
  /** Calls made while no socket existed yet but one was about to. */
  private waiting: Waiter<In, Out, Requests>[] = []

  /**
   * @param callbacks - the binding's current `onMessage` and `onError`, read at each call
   * @param publish - told of each new snapshot
   */
  constructor(
    private readonly callbacks: () => BindingCallbacks<In, Out, Requests>,
    private readonly publish: (prev: BindingSnapshot<In, Out, Requests>, next: BindingSnapshot<In, Out, Requests>) => void,
  ) {}

  /** `socket.send`, now or once the socket exists. */
  send = (data: Out, options?: SendOptions): Promise<void> => this.call((socket) => socket.send(data, options))

  /** `socket.request`, now or once the socket exists. */
  request = ((data: Requests['request'], options?: RequestOptions) => this.call((socket) => socket.request(data, options))) as TetherSocket<
    In,
    Out,
    Requests
  >['request']

  /** Closes the current socket; it stays closed until `reconnect()` or a new socket. */
  close = (code?: number, reason?: string): Promise<void> => (this.socket ? this.socket.close(code, reason) : Promise.resolve())

  /** Reconnects the current socket now (drops the connection or the backoff wait, or reopens it). */
  reconnect = (): void => this.socket?.reconnect()

  /** Re-reads the socket; publishes a new snapshot only when a value changed. */
  refresh = (): void => {
    const socket = this.socket
    const next: BindingSnapshot<In, Out, Requests> = {
      socket,
      state: socket ? socket.state : this.ended || this.failure ? 'closed' : 'idle',
      pending: socket ? socket.pending : 0,
      sessionId: socket?.sessionId,
      lastMessage: this.lastMessage,
      error: this.error,
    }
    const prev = this.snapshot
    if (FIELDS.every((field) => Object.is(prev[field], next[field]))) return
    this.snapshot = Object.freeze(next)
    this.publish(prev, this.snapshot)
  }

  /**
   * Replaces the socket with a new one to `url` (none for `null`). Nothing carries over: the
   * old socket's undelivered messages reject with `ClosedError`, and `lastMessage` and `error`
   * start over. Calls waiting for a socket go to the new one, or are refused.
   */
  open(url: UrlProvider | null, options: TetherSocketOptions<In, Out>): void {
    this.drop()
    this.lastMessage = this.error = this.failure = this.ended = undefined
    this.noUrl = url === null
    if (url === null) {
      this.rejectWaiting(new ClosedError(REFUSED.noUrl))
      this.refresh()
      return
    }
    let socket: TetherSocket<In, Out, Requests>
    try {
      // autoConnect: false, so that listeners are attached before the first event.
      socket = new TetherSocket<In, Out, Requests>(url, { ...options, autoConnect: false })
    } catch (cause) {
      // A bad URL or option: shown as `error` rather than thrown from an effect or a watcher.
      this.failure =
        cause instanceof TetherError
          ? cause
          : new TetherError(DEV ? `could not create the socket: ${String(cause)}` : '', { cause }, 'TetherError', 'ERR_CREATE')
      this.rejectWaiting(this.failure, { report: false })
      this.report(this.failure)
      return
    }
    this.socket = socket
    this.detach = this.listen(socket)
    if (options.autoConnect !== false) socket.connect()
    this.refresh()
    const waiting = this.waiting
    this.waiting = []
    for (const waiter of waiting) waiter.resolve(socket)
  }

  /**
   * Closes the current socket, if any (its undelivered messages reject with `ClosedError`: they
   * are not carried over to a next socket, which may talk to another server). Calls made
   * meanwhile wait for the next `open()`. Publishes nothing: an `open()` or `end()` follows.
   */
  drop(): void {
    const socket = this.socket
    this.socket = null
    this.detach()
    this.detach = noop
    if (socket) void socket.close()
  }

  /** No socket is coming (unmount, disposal): waiting and later calls reject with `ClosedError(reason)`. */
  end(reason: string): void {
    this.drop()
    this.ended = new ClosedError(reason)
    this.rejectWaiting(this.ended)
    this.refresh()
  }

  /**
   * Runs `use` on the socket, now or once it exists. The caller's message counts in `pending`
   * at once (the snapshot is read again right after the call); acknowledgements, failures and
   * sends made on the socket directly arrive with the socket's `pending` event.
   */
  private call<T>(use: (socket: TetherSocket<In, Out, Requests>) => Promise<T>): Promise<T> {
    const run = (socket: TetherSocket<In, Out, Requests>) => {
      const promise = use(socket)
      this.refresh()
      return promise
    }
    if (this.socket) return run(this.socket)
    const refusal = this.ended ?? this.failure ?? (this.noUrl ? new ClosedError(REFUSED.noUrl) : undefined)
    const later = refusal
      ? Promise.reject(refusal)
      : new Promise<TetherSocket<In, Out, Requests>>((resolve, reject) => this.waiting.push({ resolve, reject })).then(run)
    later.catch(noop) // like the socket's own promises: ignoring one never raises an unhandled rejection
    if (refusal) this.report(refusal)
    return later
  }

  /** Rejects the calls waiting for a socket (reporting the error once, if there were any). */
  private rejectWaiting(error: TetherError, { report = true } = {}): void {
    const waiting = this.waiting
    this.waiting = []
    for (const waiter of waiting) waiter.reject(error)
    if (report && waiting.length > 0) this.report(error)
  }

  /** Shows `error` and tells `onError` (a throwing `onError` is reported as uncaught). */
  private report(error: TetherError): void {
    this.error = error
    try {
      this.callbacks().onError?.(error)
    } catch (thrown) {
      reportLater(thrown)
    }
    this.refresh()
  }

  private listen(socket: TetherSocket<In, Out, Requests>): () => void {
    const onMessage = (data: In) => {
      this.lastMessage = data
      try {
        this.callbacks().onMessage?.(data, socket)
      } catch (thrown) {
        reportLater(thrown)
      }
      this.refresh()
    }
    const onError = (error: TetherError) => this.report(error)
    // The error belongs to the attempt that failed: a banner for it goes once the socket is open.
    const onOpen = () => {
      this.error = undefined
      this.refresh()
    }
    for (const event of REFRESH_ON) socket.on(event, this.refresh)
    socket.on('open', onOpen)
    socket.on('message', onMessage)
    socket.on('error', onError)
    return () => {
      for (const event of REFRESH_ON) socket.off(event, this.refresh)
      socket.off('open', onOpen)
      socket.off('message', onMessage)
      socket.off('error', onError)
    }
  }
}
