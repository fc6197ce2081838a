/**
 * A socket's place in its shared group (option `shared`): what it hears and says on the group's
 * BroadcastChannel, its links to the holder, and its page's candidacy for holding the connection.
 *
 * The holder is elected with a Web Lock: every page with a socket of the group asks for the
 * group's lock, the browser grants it to one, and the next when that page lets go or goes away
 * (closed, crashed: the browser releases its locks). A page lets go when it is hidden
 * (`pagehide`: closing, or entering the back-forward cache) or frozen (`freeze`), and asks again
 * when it comes back (`pageshow`, `resume`).
 *
 * One channel per socket carries everything the holders say to it: the link hears the state
 * (welcome, down, another holder) and the protocol the data (accepted, ack, res, msg, miss), in
 * the order the holder said them.
 * @module
 */

import { perTick } from '../../protocol/frames.js'
import type { RestoredInfo } from '../persist.js'
import { type FollowerMessage, groupName, type HolderMessage, holderMessage, type Outgoing, randomId } from './channel.js'
import { HANDOVER } from './codes.js'
import type { FollowerSide, HelloState } from './follower.js'
import { type HeldSocket, Holder, type HolderHooks, pageMembers } from './holder.js'
import { type ChannelClass, Link } from './link.js'

/** The part of `navigator.locks` the election uses. */
export interface ElectionLocks {
  request(name: string, options: { signal?: AbortSignal }, callback: () => Promise<void>): Promise<unknown>
}

/** What sharing needs of the platform: Web Locks and BroadcastChannel (and the tab's sessionStorage, where it can be used). */
export interface SharedPlatform {
  readonly locks: ElectionLocks
  readonly BroadcastChannel: ChannelClass
  readonly sessionStorage: Storage | undefined
}

/** The tab's `sessionStorage` (it survives a reload), or undefined where it cannot be used. */
function tabStorage(): Storage | undefined {
  try {
    return (globalThis as { sessionStorage?: Storage }).sessionStorage
  } catch {
    return undefined
  }
}

/** The platform's Web Locks and BroadcastChannel, or undefined where either is missing. */
export function sharedPlatform(): SharedPlatform | undefined {
  const scope = globalThis as { navigator?: { locks?: ElectionLocks }; BroadcastChannel?: ChannelClass }
  try {
    const locks = scope.navigator?.locks
    const Channel = scope.BroadcastChannel
    return locks && typeof locks.request === 'function' && typeof Channel === 'function'
      ? { locks, BroadcastChannel: Channel, sessionStorage: tabStorage() }
      : undefined
  } catch {
    return undefined
  }
}

/** Which part a socket's page plays: it holds the group's connection, or another tab does. */
export type SharedRole = 'holder' | 'follower'

/** What the socket gives its group. */
export interface SharedHost {
  /** Makes the holder's socket (when this page is elected). */
  hold(hooks: HolderHooks): HeldSocket
  /** What this tab's hello says. */
  hello(): HelloState
  /** What a holder said about this tab's messages, or a server message: for the protocol. */
  heard(message: HolderMessage): void
  /** A holder's connection opened: a socket waiting in backoff tries now. */
  wake(): void
  /** This page's role changed. */
  role(role: SharedRole): void
  /** Messages of tabs gone that the holder of this page finished: the socket's `restored` event. */
  restored(info: RestoredInfo): void
}

/** One socket's membership in its group. */
export class SharedTab implements FollowerSide {
  readonly tab = randomId()
  /** The group's name: its BroadcastChannel's and its Web Lock's. */
  group: string
  /** The holder this tab's messages go to: the last one that announced itself or welcomed this tab. */
  holderId: string | undefined
  private candidacy: AbortController | undefined
  private holder: Holder | undefined
  private release: (() => void) | undefined
  private channel: BroadcastChannel | undefined
  /** The socket's latest link. */
  private linked: Link | undefined
  private running = false
  /** Between pagehide and pageshow. */
  private hidden = false
  private readonly unlisten: (() => void)[] = []
  /** How far this tab delivered, for its next page: kept in sessionStorage at the end of each tick, and when the page is hidden. */
  private delivered: { sid: string; last: number } | undefined

  constructor(
    private readonly platform: SharedPlatform,
    name: string | true,
    url: string,
    private readonly host: SharedHost,
  ) {
    this.group = groupName(name, url)
  }

  /**
   * The holder refused this tab (it connects as another principal): from now on it is a group of
   * its own, holding its own connection (with the same store, whose outbox it then continues).
   */
  alone(): void {
    const { running } = this
    this.stop()
    this.group = groupName(`alone:${this.tab}`, '')
    if (running) this.start()
  }

  /** A link to the group's holder, saying this tab connects with `url` and `protocols`. */
  link(url: string, protocols: readonly string[]): Link {
    this.linked = new Link(
      this.tab,
      (message) => this.post(message),
      () => {
        const { pending, accepted, sid, last } = this.host.hello()
        return { t: 'hello', tab: this.tab, url, protocols, pending, accepted, sid, last } satisfies FollowerMessage
      },
    )
    // An attempt between pagehide and the page's entry into the cache: it waits for the page to be shown.
    if (this.hidden) this.linked.suspend()
    return this.linked
  }

  get reachable(): boolean {
    return this.channel !== undefined && this.holderId !== undefined
  }

  send(messages: Outgoing[]): boolean {
    return this.holderId !== undefined && this.post({ t: 'send', tab: this.tab, h: this.holderId, m: messages })
  }

  /** How far this tab's previous page delivered (after a reload of this tab), if it said. */
  recall(): { sid: string; last: number } | undefined {
    try {
      const kept = this.platform.sessionStorage?.getItem(this.memoryKey)
      const at = kept?.lastIndexOf(' ') ?? -1
      if (!kept || at < 0) return undefined
      const last = Number(kept.slice(at + 1))
      return Number.isSafeInteger(last) && last >= 0 ? { sid: kept.slice(0, at), last } : undefined
    } catch {
      return undefined
    }
  }

  remember(sid: string, last: number): void {
    this.delivered = { sid, last }
    this.keepSoon()
  }

  private get memoryKey(): string {
    return `${this.group}:delivered`
  }

  private readonly keepSoon = perTick(() => this.keep())

  private keep(): void {
    const { delivered } = this
    if (!delivered) return
    try {
      this.platform.sessionStorage?.setItem(this.memoryKey, `${delivered.sid} ${delivered.last}`)
    } catch {
      // Full or disabled: a reload of this tab starts after what the holder last delivered.
    }
  }

  /** Posts a message of this tab on the group's channel; false when the page's channel is closed (hidden, stopped). */
  post(message: FollowerMessage): boolean {
    if (!this.channel) return false
    this.channel.postMessage(message)
    return true
  }

  /** Asks the holder to try its connection now (the tab's `reconnect()`), when it waits. */
  retry(): void {
    if (this.holderId) this.post({ t: 'retry', tab: this.tab, h: this.holderId })
  }

  /** The socket runs: the page stands for holding the connection, and hears its group. */
  start(): void {
    if (this.running) return
    this.running = true
    this.listen()
    const page = globalThis as { addEventListener?: typeof addEventListener; removeEventListener?: typeof removeEventListener }
    const doc = (globalThis as { document?: Document }).document
    const on = (
      target: { addEventListener?: typeof addEventListener; removeEventListener?: typeof removeEventListener } | undefined,
      type: string,
      fn: (event: Event) => void,
    ) => {
      if (!target?.addEventListener) return
      target.addEventListener(type, fn)
      this.unlisten.push(() => target.removeEventListener?.(type, fn))
    }
    // A page in the back-forward cache or frozen runs nothing: it must not hold the connection.
    on(page, 'pagehide', () => this.hide())
    on(page, 'pageshow', () => this.show())
    on(doc, 'freeze', () => this.withdraw())
    on(doc, 'resume', () => this.stand())
    this.stand()
  }

  /** The socket closed: the page no longer stands, and a holder it runs steps down. */
  stop(): void {
    this.running = false
    this.withdraw()
    for (const unlisten of this.unlisten.splice(0)) unlisten()
    this.deafen()
  }

  /** Opens the page's channel of the group, and hears the holder of this page at once (pageMembers). */
  private listen(): void {
    const channel = new this.platform.BroadcastChannel(this.group)
    channel.onmessage = (event) => {
      const message = holderMessage(event.data)
      if (message) this.heard(message)
    }
    this.channel = channel
    pageMembers.join(this.platform.BroadcastChannel, this.group, this)
  }

  private deafen(): void {
    this.channel?.close()
    this.channel = undefined
    pageMembers.leave(this.platform.BroadcastChannel, this.group, this)
  }

  restored(info: RestoredInfo): void {
    this.host.restored(info)
  }

  /** What a holder said: the state goes to the link, the rest to the protocol. */
  heard(message: HolderMessage): void {
    if (message.t === 'holder' || (message.t === 'welcome' && message.to === this.tab)) this.holderId = message.h
    else if (message.t === 'down' && message.code === HANDOVER && message.h === this.holderId) this.holderId = undefined
    this.linked?.heard(message)
    if ('to' in message && message.to !== undefined && message.to !== this.tab) return
    this.host.heard(message)
    if (message.t === 'holder') this.host.wake()
  }

  /**
   * The page is hidden (closing, or going into the back-forward cache): it steps down, and
   * closes its channel, since a cached page whose channel hears a message is evicted.
   */
  private hide(): void {
    this.hidden = true
    // Who holds the connection when the page is shown again is for the next welcome or announcement to say.
    this.holderId = undefined
    this.keep()
    this.withdraw()
    this.deafen()
    this.linked?.suspend()
  }

  /** The page is shown again (from the back-forward cache): it listens, and stands again; its socket links anew. */
  private show(): void {
    this.hidden = false
    if (!this.running) return
    if (!this.channel) this.listen()
    this.linked?.show()
    this.stand()
  }

  /** Asks for the group's lock; while granted, this page holds the connection. */
  private stand(): void {
    if (this.candidacy) return
    const candidacy = new AbortController()
    this.candidacy = candidacy
    this.platform.locks
      .request(this.group, { signal: candidacy.signal }, () => {
        if (this.candidacy !== candidacy) return Promise.resolve()
        return new Promise<void>((release) => {
          this.release = release
          this.holder = new Holder(this.platform.BroadcastChannel, this.group, (hooks) => this.host.hold(hooks))
          this.host.role('holder')
        })
      })
      .catch(() => undefined) // withdrawn while waiting (AbortError)
  }

  /** Withdraws: stops waiting for the lock, or steps down and lets it go. */
  private withdraw(): void {
    const { candidacy, holder, release } = this
    this.candidacy = this.holder = this.release = undefined
    candidacy?.abort()
    if (holder) {
      holder.stop()
      this.host.role('follower')
    }
    release?.()
  }
}
