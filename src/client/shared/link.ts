/**
 * A shared socket's connection: what socket.ts drives as it drives a WebSocket (open, message,
 * close), carried over the group's BroadcastChannel to the tab holding the real connection.
 *
 * It opens when a holder welcomes its `hello` (a holder answers once its own connection is open),
 * and closes when its holder's connection goes down (`down`, with that close code), when
 * another tab takes over (`holder`: HANDOVER, and the socket links to the new holder at
 * once), or when the holder refuses this tab (another principal: REFUSED, codes.ts).
 * @module
 */

import type { ErrorEventLike } from '../failure.js'
import type { Payload } from '../outbox.js'
import type { WireData } from '../wire/types.js'
import { type FollowerMessage, type HolderMessage, holderMessage } from './channel.js'
import { HANDOVER, REFUSED } from './codes.js'

/** The BroadcastChannel class (the page's, or a test's). */
export type ChannelClass = new (name: string) => BroadcastChannel

const CONNECTING = 0
const OPEN = 1
const CLOSED = 3

/** A tab's link to the holder of its group, with the WebSocket surface the socket uses. */
export class Link {
  readyState = CONNECTING
  readonly protocol = ''
  binaryType = 'arraybuffer'
  onopen: (() => void) | null = null
  onmessage: ((event: { data: WireData }) => void) | null = null
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null = null
  onerror: ((event: ErrorEventLike) => void) | null = null
  /** The holder this link speaks to, once welcomed. */
  private holder: string | undefined
  /** Closed while the page was hidden, its close event not given yet. */
  private suspended = false
  private readonly channel: BroadcastChannel

  /**
   * @param hello - the `hello` to say (again, to each new holder while connecting)
   */
  constructor(
    Channel: ChannelClass,
    name: string,
    private readonly tab: string,
    private readonly hello: () => FollowerMessage,
  ) {
    this.channel = new Channel(name)
    this.channel.onmessage = (event) => this.heard(holderMessage(event.data))
    this.channel.postMessage(hello())
  }

  private heard(message: HolderMessage | undefined): void {
    if (!message || this.readyState === CLOSED) return
    if ('to' in message && message.to !== undefined && message.to !== this.tab) return
    if (this.readyState === CONNECTING) {
      if (message.t === 'holder')
        this.channel.postMessage(this.hello()) // a new holder: it did not hear the first hello
      else if (message.t === 'refuse') this.end(REFUSED, message.why)
      else if (message.t === 'welcome') {
        this.holder = message.h
        this.readyState = OPEN
        this.onopen?.()
        this.onmessage?.({ data: message as unknown as WireData })
      }
      return
    }
    if (message.t === 'holder') {
      if (message.h !== this.holder) this.end(HANDOVER, 'another tab holds the shared connection now')
      return
    }
    if (message.h !== this.holder) return
    if (message.t === 'down') this.end(message.code, message.reason)
    else this.onmessage?.({ data: message as unknown as WireData })
  }

  send(frame: Payload): void {
    if (this.readyState !== OPEN) return
    this.channel.postMessage({ ...(frame as unknown as object), tab: this.tab, h: this.holder })
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState === OPEN) this.channel.postMessage({ t: 'bye', tab: this.tab, h: this.holder as string } satisfies FollowerMessage)
    this.end(code, reason)
  }

  /**
   * The page is hidden, maybe for the back-forward cache, where a channel that hears a message
   * gets the page evicted: the channel closes now, without a `bye` (the holder keeps what it
   * knows of this tab). The close event waits until the page is shown again (`show`): the socket
   * would otherwise link anew, with a new channel, while the page goes into the cache.
   */
  suspend(): void {
    if (this.readyState === CLOSED) return
    this.readyState = CLOSED
    this.channel.close()
    this.suspended = true
  }

  /** The page is shown again: a suspended link closes now, and the socket links anew at once. */
  show(): void {
    if (!this.suspended) return
    this.suspended = false
    this.closed(HANDOVER, 'the page was hidden')
  }

  /** Closed: the close event follows in a later task, as a WebSocket's does. */
  private end(code: number, reason: string): void {
    if (this.suspended) {
      // Closed by the socket while suspended: its close event is due.
      this.suspended = false
      this.closed(code, reason)
      return
    }
    if (this.readyState === CLOSED) return
    this.readyState = CLOSED
    this.channel.close()
    this.closed(code, reason)
  }

  private closed(code: number, reason: string): void {
    setTimeout(() => this.onclose?.({ code, reason, wasClean: true }), 0)
  }
}
