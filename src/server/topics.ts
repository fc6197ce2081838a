/**
 * Topics, in one server: each topic's log holds every published message once, and each member
 * session keeps only its place in the logs of its topics (a cursor), not copies.
 *
 * A topic message becomes an item of a member's stream (its sequence number given) when the
 * session pulls it into its outbox: at once for a connected member, when it resumes for one that
 * was away, and before a direct message is queued to a session with topic messages waiting (so
 * its stream keeps the order in which things were sent). Pulling takes the waiting messages of
 * all its topics in publish order (each message has a server-wide stamp). A member whose place
 * fell behind the log's retention gets one `miss` item saying how many it lost, never a gap.
 * @module
 */
import { OptionError } from '../errors.js'

/** Checks a topic name given to `call`: a non-empty string of at most 200 characters. */
export function checkTopic(call: string, topic: unknown): asserts topic is string {
  if (typeof topic !== 'string' || topic === '' || topic.length > 200) {
    const got = typeof topic === 'string' ? JSON.stringify(topic.slice(0, 40)) : typeof topic
    throw new OptionError(`${call}(topic): topic must be a non-empty string of at most 200 characters, such as 'room:42'; got ${got}`)
  }
}

/** How much each topic's log keeps for members that are behind. */
export interface TopicRetention {
  /** Messages kept per topic. Default 1000. */
  maxMessages: number
  /** Bytes of payload kept per topic. Default 1 MiB. */
  maxBytes: number
}

/** The defaults of {@link TopicRetention}. */
export const TOPIC_DEFAULTS: TopicRetention = { maxMessages: 1000, maxBytes: 1024 * 1024 }

/**
 * A message published to a topic, as its log holds it: the one object every member's outbox
 * refers to once pulled (like a broadcast's shared entry).
 */
export interface Published {
  readonly payload: string
  readonly size: number
  readonly topic: string
  /** Server-wide publish order, across topics. */
  readonly stamp: number
  /** Disconnected sessions holding it in their outbox (the memory budget's count, as a broadcast's). */
  holdersAway: number
  /** Its `msg` frame without the sequence number, made once for every member (outbox.ts). */
  tail?: string
}

/** A member of a topic, as the topic sees it. */
export interface TopicMember {
  readonly id: string
  readonly principal: string | undefined
  readonly connected: boolean
  /** A message was published to one of its topics: a connected member pulls it now. */
  published(): void
}

/** One member as `presence()` reports it. */
export interface PresenceEntry {
  /** The session's id. */
  readonly id: string
  /** Who authenticated it (`authenticate`'s result), if anyone. */
  readonly principal: string | undefined
  /** Whether its client is connected now (false: away, within `sessionTtl`). */
  readonly connected: boolean
}

/** One topic: its log and its members. */
export class TopicLog {
  /** The messages kept, oldest first; `items[0]` is number `base`. */
  private items: Published[] = []
  private head = 0
  /** The number of the oldest message kept. */
  private first = 0
  private bytes = 0
  readonly members = new Set<TopicMember>()

  /**
   * @param first - the number of its first message (a node's copy of a log kept in a shared
   *   store starts where that log is)
   */
  constructor(
    readonly name: string,
    private readonly retention: TopicRetention,
    first = 0,
  ) {
    this.first = first
  }

  /**
   * Lets go of every message kept and goes on at number `next` (a copy of a shared log whose
   * messages before `next` were trimmed before this node read them).
   */
  skipTo(next: number): void {
    if (next <= this.next) return
    this.items = []
    this.head = 0
    this.bytes = 0
    this.first = next
  }

  /** The number the next published message gets. */
  get next(): number {
    return this.first + this.items.length - this.head
  }

  /** The number of the oldest message still kept. */
  get base(): number {
    return this.first
  }

  /** Appends a message and lets go of the oldest beyond the retention. */
  append(message: Published): void {
    this.items.push(message)
    this.bytes += message.size
    const { maxMessages, maxBytes } = this.retention
    while (this.items.length - this.head > maxMessages || (this.bytes > maxBytes && this.items.length - this.head > 1)) {
      const dropped = this.items[this.head] as Published
      this.items[this.head++] = RELEASED
      this.bytes -= dropped.size
      this.first++
    }
    // Compact now and then rather than shifting per message.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
  }

  /** Message number `index` (at least `base`, below `next`). */
  at(index: number): Published {
    return this.items[this.head + index - this.first] as Published
  }
}

const RELEASED: Published = { payload: '', size: 0, topic: '', stamp: 0, holdersAway: 0 }

/** The server's topics: created when a first session joins, dropped when the last member leaves. */
export class Topics {
  private readonly logs = new Map<string, TopicLog>()
  private stamp = 0

  constructor(private readonly retention: TopicRetention) {}

  /** The log of `name`, if it has members. */
  get(name: string): TopicLog | undefined {
    return this.logs.get(name)
  }

  /** Adds `member` to `name` (creating the topic); returns the log and whether it was new there. */
  join(name: string, member: TopicMember): { log: TopicLog; joined: boolean } {
    let log = this.logs.get(name)
    if (!log) {
      log = new TopicLog(name, this.retention)
      this.logs.set(name, log)
    }
    const joined = !log.members.has(member)
    log.members.add(member)
    return { log, joined }
  }

  /** Removes `member` from `name`; a topic without members is dropped with its log. Returns whether it was a member. */
  leave(name: string, member: TopicMember): boolean {
    const log = this.logs.get(name)
    if (!log?.members.delete(member)) return false
    if (log.members.size === 0) this.logs.delete(name)
    return true
  }

  /**
   * Publishes an encoded message: held once by the topic's log, and pulled now by its connected
   * members. Returns how many members it has (0: nobody holds it).
   */
  publish(name: string, payload: string): number {
    const log = this.logs.get(name)
    if (!log) return 0
    log.append({ payload, size: Buffer.byteLength(payload), topic: name, stamp: ++this.stamp, holdersAway: 0, tail: undefined })
    for (const member of log.members) if (member.connected) member.published()
    return log.members.size
  }

  /** The members of `name`: ids, principals and whether connected. */
  presence(name: string): PresenceEntry[] {
    const log = this.logs.get(name)
    if (!log) return []
    return Array.from(log.members, ({ id, principal, connected }) => ({ id, principal, connected }))
  }

  /** Topic names with members. */
  names(): string[] {
    return [...this.logs.keys()]
  }
}

/** Where a session stands in one of its topics. */
interface Place {
  readonly log: TopicLog
  /** The number of the next message to pull. */
  cursor: number
  /** Set once the session left: messages below it (published while a member) are still due. */
  end?: number
}

const NO_PLACES: ReadonlySet<Place> = new Set()

/** Of two places, the one whose next message due was published first (`a` on a tie; undefined: neither has one due). */
function earlier(a: Place | undefined, b: Place): Place | undefined {
  if (b.cursor >= (b.end ?? b.log.next)) return a
  return a && a.log.at(a.cursor).stamp <= b.log.at(b.cursor).stamp ? a : b
}

/** What a session's topics pull into its outbox: a published message, or how many were missed. */
export type Pulled = { readonly message: Published } | { readonly missed: number; readonly topic: string }

/**
 * One session's places in its topics, and the pull that turns waiting topic messages into items
 * of its stream, in publish order. The session owns it; it knows nothing of outboxes. A topic
 * left with messages still due keeps its place until they are pulled; joining again starts a
 * new place (what was published in between is not the session's).
 */
export class Subscriptions {
  /**
   * Its places in the topics it is a member of, in the order joined. An array searched by name,
   * not a Map: a session is in few topics, and every send looks at each of its places anyway
   * (`waiting`); the smallest Map is about 180 bytes, an array of one place 56. A join replaces
   * the array (`concat` makes it exactly as long as needed) where a push would give it room for
   * 16 more places.
   */
  private places: Place[] = []
  /**
   * Places in topics it left with messages still due (published while it was a member). Kept
   * apart from `places`: a rejoin starts a new place, and must neither skip what is due here
   * nor take what was published while it was out. Made when first needed: most sessions never
   * leave a topic with messages due, and an empty Set is 150 bytes.
   */
  private left: Set<Place> | undefined

  /** Topics the session is a member of (not those it left with messages still due). */
  names(): string[] {
    return this.places.map((place) => place.log.name)
  }

  has(name: string): boolean {
    return this.indexOf(name) >= 0
  }

  private indexOf(name: string): number {
    return this.places.findIndex((place) => place.log.name === name)
  }

  /** Its place in topic `log` from now on: replaces the one it had there, if any. */
  private put(place: Place): void {
    const index = this.indexOf(place.log.name)
    if (index >= 0) this.places[index] = place
    else this.places = this.places.concat(place)
  }

  /**
   * Starts at the next message of `log` (or at `cursor`: its number in a shared store); joining
   * a topic it is a member of changes nothing.
   */
  join(log: TopicLog, cursor = log.next): void {
    if (!this.has(log.name)) this.put({ log, cursor })
  }

  /**
   * Puts back a place a shared store recorded (store.ts `TopicPlaces`): in a topic it is a member
   * of, or (with `end`) one it left with messages due, and (with `current`) joined again.
   */
  restore(log: TopicLog, cursor: number, end?: number, current?: number): void {
    if (end === undefined) {
      this.put({ log, cursor })
      return
    }
    if (cursor < end) this.keepLeft({ log, cursor, end })
    if (current !== undefined) this.put({ log, cursor: current })
  }

  /** Its places, as a shared store records them (store.ts `TopicPlaces`). */
  snapshot(): Record<string, [number] | [number, number] | [number, number, number]> {
    const places: Record<string, [number] | [number, number] | [number, number, number]> = {}
    // The left place with the most due (the earliest) per topic, and the member's place beside it.
    for (const place of this.left ?? NO_PLACES) {
      const kept = places[place.log.name]
      if (!kept || place.cursor < kept[0]) places[place.log.name] = [place.cursor, place.end as number]
    }
    for (const place of this.places) {
      const name = place.log.name
      const left = places[name]
      places[name] = left ? [left[0], left[1] as number, place.cursor] : [place.cursor]
    }
    return places
  }

  /** Names of the topics whose logs it has places in (its topics, and those left with messages due). */
  logs(): Set<string> {
    const names = new Set(this.names())
    for (const place of this.left ?? NO_PLACES) names.add(place.log.name)
    return names
  }

  /** No messages published from now on; those before are still due. */
  leave(name: string): void {
    const index = this.indexOf(name)
    if (index < 0) return
    const [place] = this.places.splice(index, 1)
    // A copy of a shared log may not have read up to where the session stands yet.
    place.end = Math.max(place.log.next, place.cursor)
    if (place.cursor < place.end) this.keepLeft(place)
  }

  /** Keeps the place of a topic left with messages still due. */
  private keepLeft(place: Place): void {
    this.left ??= new Set()
    this.left.add(place)
  }

  /** Whether a message waits to be pulled. */
  get waiting(): boolean {
    // Asked before every direct send: a session without topics answers without iterating.
    if (this.places.length === 0 && !this.left?.size) return false
    for (const place of this.places) if (place.cursor < place.log.next) return true
    for (const place of this.left ?? NO_PLACES) if (place.cursor < (place.end as number)) return true
    return false
  }

  /**
   * Pulls waiting messages in publish order, while `take` accepts them (it returns false when the
   * session's outbox is full: the rest waits). A place behind its log's retention yields one
   * `missed` first.
   */
  pull(take: (pulled: Pulled) => boolean): void {
    for (;;) {
      const place = this.due()
      if (!place) return
      if (place.cursor < place.log.base) {
        // Behind the retention: say how many were lost, once, before what is still kept.
        const missed = Math.min(place.log.base, place.end ?? place.log.next) - place.cursor
        if (!take({ missed, topic: place.log.name })) return
        place.cursor += missed
      } else {
        if (!take({ message: place.log.at(place.cursor) })) return
        place.cursor++
      }
      this.settle(place)
    }
  }

  /**
   * The place whose item comes next: the first one behind its log's retention (its `miss` goes
   * before anything), or else the one whose next message was published first. Two loops rather
   * than one over a generator: this runs for every member at every publish.
   */
  private due(): Place | undefined {
    let next: Place | undefined
    for (const place of this.places) {
      if (place.cursor < place.log.next && place.cursor < place.log.base) return place
      next = earlier(next, place)
    }
    for (const place of this.left ?? NO_PLACES) {
      if (place.cursor < (place.end as number) && place.cursor < place.log.base) return place
      next = earlier(next, place)
    }
    return next
  }

  /** A left topic whose due messages are all pulled is forgotten. */
  private settle(place: Place): void {
    if (place.end !== undefined && place.cursor >= place.end) this.left?.delete(place)
  }

  /** Every topic it is a member of (the session ended). */
  clear(): string[] {
    const names = this.names()
    this.places = []
    this.left = undefined
    return names
  }
}
