/**
 * Topics across the nodes of a service sharing a store (store.ts): each topic's log lives in
 * the store, numbered (`n`, contiguous per topic), once for the whole service. A node keeps a
 * copy of the logs its sessions have places in (a {@link TopicLog} numbered as the store's, so
 * places mean the same on every node), reads each on when told a message was published to it,
 * and lets the sessions it holds pull what is new, as they do without a store (topics.ts).
 *
 * A copy starts with everything the store's log holds, and drops its oldest messages as the
 * store's does (at `maxMessages`; a retention in bytes applies without a store only): a place
 * before a copy's first message is before the store's too, and yields one `miss` item.
 * @module
 */
import type { Session } from './sessions.js'
import type { StoreLink } from './store.js'
import { type PresenceEntry, type Published, TopicLog, type TopicRetention } from './topics.js'

/** This node's copy of one topic's log, and how far it has read the store's. */
interface Copy {
  readonly log: TopicLog
  /** The stream id of the last message read (`'0-0'`: none yet). */
  lastId: string
  /** Resolves once the copy has read the store's log (its first read). */
  loaded: Promise<void>
  /** A read is under way; `again`: a notice came meanwhile. */
  reading: boolean
  again: boolean
}

/** What the node's topics need. */
export interface SharedTopicsHost {
  /** The sessions this node holds. */
  readonly sessions: ReadonlyMap<string, Session>
  readonly retention: TopicRetention
  error(error: Error): void
}

/** A node's part in the service's topics. @internal */
export class SharedTopics {
  private readonly copies = new Map<string, Copy>()
  /** Joins and claims waiting for a copy: copies are not let go meanwhile. */
  private loading = 0

  constructor(
    private readonly link: StoreLink,
    private readonly host: SharedTopicsHost,
  ) {}

  /**
   * Records `session` as a member of `name` and resolves with this node's copy of its log and the
   * session's place (the next message's number). The store is asked at once, so a publish made
   * on this node after the join (or after a join on any node has been answered) reaches it.
   */
  async join(session: Session, name: string): Promise<{ log: TopicLog; cursor: number }> {
    const cursor = this.link.member(name, { id: session.id, principal: session.principal, connected: session.connected })
    this.loading++
    try {
      const [logs, at] = await Promise.all([this.load([name]), cursor])
      return { log: logs.get(name) as TopicLog, cursor: at }
    } finally {
      this.loading--
    }
  }

  /** This node's copies of the logs `names`, each read from the store's if it is new. */
  async load(names: readonly string[]): Promise<Map<string, TopicLog>> {
    this.loading++
    try {
      const copies = names.map((name) => this.copy(name))
      await Promise.all(copies.map((copy) => copy.loaded))
      return new Map(copies.map((copy) => [copy.log.name, copy.log]))
    } finally {
      this.loading--
    }
  }

  /** Publishes through the store; the nodes with members are told. Failures are the server's `error`. */
  publish(name: string, payload: string): void {
    this.link.publish(name, payload, this.host.retention.maxMessages).catch(this.reportError)
  }

  /** Message `n` was published to `name`: a copy that lacks it reads on. */
  published(name: string, n: number): void {
    const copy = this.copies.get(name)
    if (copy && n >= copy.log.next) this.read(copy)
  }

  /** The members of `name`, as the store lists them. */
  async presence(name: string): Promise<PresenceEntry[]> {
    return (await this.link.members(name)).map(({ id, principal, connected }) => ({ id, principal, connected }))
  }

  /** `session` connected or went away: the topics it is a member of say so (presence). */
  connected(session: Session, connected: boolean): void {
    for (const name of session.topics) {
      this.link.member(name, { id: session.id, principal: session.principal, connected }).catch(this.reportError)
    }
  }

  /** `session` left `names` (or ended): the store no longer lists it there. */
  left(session: Session, names: readonly string[]): void {
    this.link.leaveTopics(names, session.id).catch(this.reportError)
  }

  /**
   * Now and then (the sweep): every copy reads on, in case a notice was missed, and copies no
   * session held here has a place in are let go.
   */
  sweep(): void {
    const used = new Set<string>()
    for (const session of this.host.sessions.values()) if (session.isHeld) for (const name of session.topicLogs) used.add(name)
    for (const [name, copy] of this.copies) {
      if (used.has(name)) this.read(copy)
      else if (this.loading === 0 && !copy.reading) this.copies.delete(name)
    }
  }

  private copy(name: string): Copy {
    const existing = this.copies.get(name)
    if (existing) return existing
    const copy: Copy = {
      // No retention in bytes: the copy drops what the store's log drops, no more.
      log: new TopicLog(name, { maxMessages: this.host.retention.maxMessages, maxBytes: Number.POSITIVE_INFINITY }),
      lastId: '0-0',
      loaded: Promise.resolve(),
      reading: false,
      again: false,
    }
    copy.loaded = this.readNow(copy).catch((error: unknown) => {
      this.copies.delete(name) // the next join or claim tries again
      throw error
    })
    this.copies.set(name, copy)
    return copy
  }

  private read(copy: Copy): void {
    if (copy.reading) {
      copy.again = true
      return
    }
    this.readNow(copy).catch(this.reportError)
  }

  /** Reads the store's log on from where the copy is, and lets the sessions held here pull what is new. */
  private async readNow(copy: Copy): Promise<void> {
    copy.reading = true
    try {
      const { log } = copy
      const { next, messages } = await this.link.readTopic(log.name, copy.lastId)
      const { maxMessages } = this.host.retention
      let unpulled = 0
      for (const message of messages) {
        copy.lastId = message.id
        if (message.n < log.next) continue
        // Before the copy drops what the sessions here have not pulled yet (many read at once), they pull.
        if (unpulled >= maxMessages) {
          this.pullHere(log.name)
          unpulled = 0
        }
        // Trimmed from the store's log before this node read them: gone here too (a miss for whoever needed them).
        if (message.n > log.next) log.skipTo(message.n)
        log.append(published(log.name, message.payload, message.stamp))
        unpulled++
      }
      log.skipTo(next)
      if (unpulled > 0) this.pullHere(log.name)
    } finally {
      copy.reading = false
      if (copy.again) {
        copy.again = false
        this.read(copy)
      }
    }
  }

  /** The sessions held here with a place in `name` pull what is new. */
  private pullHere(name: string): void {
    for (const session of this.host.sessions.values()) if (session.isHeld && session.topicLogs.has(name)) session.published()
  }

  private readonly reportError = (error: unknown): void => {
    this.host.error(error instanceof Error ? error : new Error(String(error)))
  }
}

/** A message of a topic as the copy holds it: one object every member's outbox refers to. */
const published = (topic: string, payload: string, stamp: number): Published => ({
  payload,
  size: Buffer.byteLength(payload),
  topic,
  stamp,
  holdersAway: 0,
  tail: undefined,
})
