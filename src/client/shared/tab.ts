/**
 * A socket's place in its shared group (option `shared`): its links to the holder, and its
 * page's candidacy for holding the connection. The holder is elected with a Web Lock: every page
 * with a socket of the group asks for the group's lock, the browser grants it to one, and the
 * next when that page lets go or goes away (closed, crashed: the browser releases its locks).
 * A page lets go when it is hidden for the back-forward cache (`pagehide`) or frozen (`freeze`),
 * and asks again when it comes back (`pageshow`, `resume`).
 * @module
 */
import { type FollowerMessage, type GroupNames, groupNames, holderMessage, randomId } from './channel.js'
import type { HelloState } from './follower.js'
import { type HeldSocket, Holder, type HolderHooks } from './holder.js'
import { type ChannelClass, Link } from './link.js'

/** The part of `navigator.locks` the election uses. */
export interface ElectionLocks {
  request(name: string, options: { signal?: AbortSignal }, callback: () => Promise<void>): Promise<unknown>
}

/** What sharing needs of the platform: Web Locks and BroadcastChannel. */
export interface SharedPlatform {
  readonly locks: ElectionLocks
  readonly BroadcastChannel: ChannelClass
}

/** The platform's Web Locks and BroadcastChannel, or undefined where either is missing. */
export function sharedPlatform(): SharedPlatform | undefined {
  const scope = globalThis as { navigator?: { locks?: ElectionLocks }; BroadcastChannel?: ChannelClass }
  try {
    const locks = scope.navigator?.locks
    const Channel = scope.BroadcastChannel
    return locks && typeof locks.request === 'function' && typeof Channel === 'function' ? { locks, BroadcastChannel: Channel } : undefined
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
  /** A holder's connection opened: a socket waiting in backoff tries now. */
  wake(): void
  /** This page's role changed. */
  role(role: SharedRole): void
}

/** One socket's membership in its group. */
export class SharedTab {
  readonly tab = randomId()
  names: GroupNames
  private candidacy: AbortController | undefined
  private holder: Holder | undefined
  private release: (() => void) | undefined
  private listener: BroadcastChannel | undefined
  /** The socket's latest link (closed when the page is hidden). */
  private linked: Link | undefined
  private running = false
  /** Between pagehide and pageshow. */
  private hidden = false
  private readonly unlisten: (() => void)[] = []

  constructor(
    private readonly platform: SharedPlatform,
    name: string | true,
    url: string,
    private readonly host: SharedHost,
  ) {
    this.names = groupNames(name, url)
  }

  /**
   * The holder refused this tab (it connects as another principal): from now on it is a group of
   * its own, holding its own connection (with the same store, whose outbox it then continues).
   */
  alone(): void {
    const { running } = this
    this.stop()
    this.names = groupNames(`alone:${this.tab}`, '')
    if (running) this.start()
  }

  /** A link to the group's holder, saying this tab connects with `url` and `protocols`. */
  link(url: string, protocols: readonly string[]): Link {
    this.linked = new Link(this.platform.BroadcastChannel, this.names.channel, this.tab, () => {
      const { pending, accepted, sid, last } = this.host.hello()
      return { t: 'hello', tab: this.tab, url, protocols, pending, accepted, sid, last } satisfies FollowerMessage
    })
    // An attempt between pagehide and the page's entry into the cache: it waits for the page to be shown.
    if (this.hidden) this.linked.suspend()
    return this.linked
  }

  /** The socket runs: the page stands for holding the connection, and hears when a holder opens. */
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
    this.listener?.close()
    this.listener = undefined
  }

  /** Hears the group's channel: a holder whose connection opened wakes a socket waiting in backoff. */
  private listen(): void {
    this.listener = new this.platform.BroadcastChannel(this.names.channel)
    this.listener.onmessage = (event) => {
      if (holderMessage(event.data)?.t === 'holder') this.host.wake()
    }
  }

  /**
   * The page is hidden (closing, or going into the back-forward cache): it steps down, and
   * closes its channels, since a cached page whose channel hears a message is evicted.
   */
  private hide(): void {
    this.hidden = true
    this.withdraw()
    this.listener?.close()
    this.listener = undefined
    this.linked?.suspend()
  }

  /** The page is shown again (from the back-forward cache): it listens, and stands again; its socket links anew. */
  private show(): void {
    this.hidden = false
    if (!this.running) return
    if (!this.listener) this.listen()
    this.linked?.show()
    this.stand()
  }

  /** Asks for the group's lock; while granted, this page holds the connection. */
  private stand(): void {
    if (this.candidacy) return
    const candidacy = new AbortController()
    this.candidacy = candidacy
    this.platform.locks
      .request(this.names.lock, { signal: candidacy.signal }, () => {
        if (this.candidacy !== candidacy) return Promise.resolve()
        return new Promise<void>((release) => {
          this.release = release
          this.holder = new Holder(this.platform.BroadcastChannel, this.names, (hooks) => this.host.hold(hooks))
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
