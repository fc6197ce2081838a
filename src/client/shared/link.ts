/**
 * A shared socket's connection: what socket.ts drives as it drives a WebSocket (open, close),
 * standing for this tab's connection through the tab holding the real one. It carries no data:
 * the tab's messages and the holder's answers go over the group's channel whatever the link's
 * state (tab.ts), so that what a tab sends while the connection is down is in the shared durable
 * outbox at once, as a socket of its own keeps it in its own.
 *
 * It opens when a holder welcomes its `hello` (a holder welcomes once its own connection is open),
 * and closes when its holder's connection is down (`down`, with that close code and when the
 * holder tries again), when another tab takes over (`holder`: HANDOVER, and the socket links to
 * the new holder at once), or when the holder refuses this tab (another principal: REFUSED).
 * @module
 */

import type { ErrorEventLike } from '../failure.js'
import type { WireData } from '../wire/types.js'
import type { FollowerMessage, HolderMessage } from './channel.js'
import { HANDOVER, REFUSED } from './codes.js'

/** The BroadcastChannel class (the page's, or a test's). */
export type ChannelClass = new (name: string) => BroadcastChannel

/** A link's close event: a WebSocket's, and when the holder tries its connection again (ms from now), when it said. */
export interface LinkCloseEvent {
  readonly code: number
  readonly reason: string
  readonly wasClean: boolean
  readonly retryIn?: number
}

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
  onclose: ((event: LinkCloseEvent) => void) | null = null
  onerror: ((event: ErrorEventLike) => void) | null = null
  /** The holder this link speaks to, once welcomed. */
  private holder: string | undefined
  /** Closed while the page was hidden, its close event not given yet. */
  private suspended = false

  /**
   * @param post - posts on the group's channel (false when the page's channel is closed)
   * @param hello - the `hello` to say (again, to each new holder while connecting)
   */
  constructor(
    private readonly tab: string,
    private readonly post: (message: FollowerMessage) => boolean,
    private readonly hello: () => FollowerMessage,
  ) {
    post(hello())
  }

  /** What the holders say on the group's channel, as the tab hears it (tab.ts). */
  heard(message: HolderMessage): void {
    if (this.readyState === CLOSED) return
    if ('to' in message && message.to !== undefined && message.to !== this.tab) return
    if (this.readyState === CONNECTING) {
      if (message.t === 'holder')
        this.post(this.hello()) // a new holder: it did not hear the first hello
      else if (message.t === 'refuse') this.end({ code: REFUSED, reason: message.why })
      else if (message.t === 'welcome') {
        this.holder = message.h
        this.readyState = OPEN
        this.onopen?.()
        this.onmessage?.({ data: message as unknown as WireData })
      } else if (message.t === 'down' && (message.to !== undefined || message.code !== HANDOVER)) {
        // The holder's connection is down (said to this tab, or to all): this attempt failed as
        // the holder's did. A holder stepping down is not that: the next one will answer.
        this.end(message)
      }
      return
    }
    if (message.t === 'holder') {
      if (message.h !== this.holder) this.end({ code: HANDOVER, reason: 'another tab holds the shared connection now' })
    } else if (message.t === 'down' && message.h === this.holder) this.end(message)
  }

  send(): void {
    // Nothing goes over a link: the protocol posts on the group's channel (see the module's comment).
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState === OPEN) this.post({ t: 'bye', tab: this.tab, h: this.holder as string })
    this.end({ code, reason })
  }

  /**
   * The page is hidden, maybe for the back-forward cache, where a channel that hears a message
   * gets the page evicted (tab.ts closes the page's channel): no `bye` (the holder keeps what it
   * knows of this tab). The close event waits until the page is shown again (`show`): the socket
   * would otherwise link anew while the page goes into the cache.
   */
  suspend(): void {
    if (this.readyState === CLOSED) return
    this.readyState = CLOSED
    this.suspended = true
  }

  /** The page is shown again: a suspended link closes now, and the socket links anew at once. */
  show(): void {
    if (!this.suspended) return
    this.suspended = false
    this.closed({ code: HANDOVER, reason: 'the page was hidden' })
  }

  /** Closed: the close event follows in a later task, as a WebSocket's does. */
  private end(info: { code: number; reason: string; retryIn?: number }): void {
    if (this.suspended) {
      // Closed by the socket while suspended: its close event is due.
      this.suspended = false
      this.closed(info)
      return
    }
    if (this.readyState === CLOSED) return
    this.readyState = CLOSED
    this.closed(info)
  }

  private closed({ code, reason, retryIn }: { code: number; reason: string; retryIn?: number }): void {
    setTimeout(() => this.onclose?.({ code, reason, wasClean: true, ...(retryIn !== undefined && { retryIn }) }), 0)
  }
}
