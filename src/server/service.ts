/**
 * One node of a service whose sessions live in a shared store (store.ts): what the server does
 * beyond its own connections when it has a store.
 *
 * - hello: a resume claims the session in the store (a new epoch fences whoever held it) and
 *   restores it here from what the store recorded; a new session is recorded before its welcome.
 * - release: when a connection goes, the session's last records are written and it is handed
 *   back to the store, held by no node, until its deadline.
 * - liveness: every held session's deadline is pushed on while this node lives; a node that dies
 *   stops pushing, and its sessions expire unless their clients resume them elsewhere.
 * - expiry: every node sweeps the sessions whose deadline passed; the store lets one node end
 *   each, and that node alone emits `expire`.
 * - sending from anywhere: `sendTo` a session held elsewhere (or by none) appends through the
 *   store and tells the holder; the promise resolves when the holder sees the client's ack.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { ClosedError, DeliveryError, QueueFullError, type TetherError } from '../errors.js'
import { CloseCode, perTick } from '../protocol/frames.js'
import { type Outgoing, type SharedMessage, sharedMessage } from './outbox.js'
import type { ExpireReason, SessionConnection } from './seams.js'
import { type Session, type SharedSession, unrecordedItem } from './sessions.js'
import { SharedTopics } from './shared-topics.js'
import { isAfter, type LoggedBroadcast, type SessionStore, type StoreLink, type StoreListener } from './store.js'
import type { TopicRetention } from './topics.js'
import type { HelloFrame } from './ws.js'

/** What the service needs from its server. */
export interface ServiceHost {
  /** The sessions this node holds, by id. */
  readonly sessions: Map<string, Session>
  readonly sessionTtl: number
  readonly maxQueue: number
  readonly maxQueueBytes: number
  /** Makes a session (restored from a claim, or new) and registers it in `sessions`. */
  create(principal: string | undefined, shared: SharedSession): Session
  /** A session no node holds, as a handle for `expire` and for sends through the store. */
  handle(id: string, principal: string | undefined): Session
  /** What each topic's log keeps (with a store: `maxMessages` only). */
  readonly retention: TopicRetention
  opened(session: Session, resumed: boolean): void
  /** A session this node ended in the store; `topics`: those it was a member of. */
  expired(session: Session, reason: ExpireReason, topics?: readonly string[]): void
  /**
   * Queues a broadcast from the service's log to the sessions this node holds whose place in
   * the log is not before `readFrom` (where the read that found it began).
   */
  broadcastHere(message: SharedMessage, readFrom: string): void
  error(error: Error): void
}

/** A send promise waiting, on this node, for a client ack that another node will see. */
interface Waiter {
  readonly seq: number
  readonly resolve: () => void
  readonly reject: (error: TetherError) => void
}

const noop = () => {}

/** A handler holding its item this long while a message it sent waits for it is reported (it may await its own message). */
const STALL_WARNING = 5000

/** How many due sessions one sweep takes at most. */
const SWEEP_BATCH = 100

/** A node's part in a service sharing one store. @internal */
export class SharedService {
  private readonly waiters = new Map<string, Waiter[]>()
  private readonly sweeper: ReturnType<typeof setInterval>
  private readonly toucher: ReturnType<typeof setInterval>
  private sweeping = false
  /** Sessions whose stalled handler was reported, with the item: reported once. */
  private readonly stallsReported = new Map<string, number>()
  /** Releases (and claims) under way, so that close() waits for them. */
  private readonly busy = new Set<Promise<unknown>>()
  /** The last entry of the broadcast log queued to the sessions held here. */
  private broadcastAt: string
  /** A read of the broadcast log is under way; `readAgain`: another notice came meanwhile. */
  private reading = false
  private readAgain = false
  /** The service's topics, as this node takes part in them. */
  readonly topics: SharedTopics

  private constructor(
    private readonly link: StoreLink,
    private readonly host: ServiceHost,
    broadcastAt: string,
  ) {
    this.broadcastAt = broadcastAt
    this.topics = new SharedTopics(link, { sessions: host.sessions, retention: host.retention, error: (error) => host.error(error) })
    const ttl = host.sessionTtl
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, ttl / 4)))
    this.sweeper.unref()
    // A held session's deadline is pushed on well before it passes.
    this.toucher = setInterval(() => this.touch(), Math.max(50, ttl / 3))
    this.toucher.unref()
  }

  /** Connects to the store and starts the node's timers. */
  static async open(store: SessionStore, host: ServiceHost): Promise<SharedService> {
    let service: SharedService | undefined
    const listener: StoreListener = {
      appended: (id) => service?.appended(id),
      acknowledged: (id, seq) => service?.settle(id, seq),
      ended: (id, reason) => service?.ended(id, reason),
      claimed: (id, epoch) => service?.claimed(id, epoch),
      broadcast: (id) => {
        if (service && isAfter(id, service.broadcastAt)) service.readLog()
      },
      topic: (name, n) => service?.topics.published(name, n),
      error: (error) => host.error(error),
    }
    const link = await store.open(listener)
    service = new SharedService(link, host, await link.lastBroadcast())
    return service
  }

  /** A hello: claims the session it names, or records a new one; attaches the connection. */
  hello(frame: HelloFrame, principal: string | undefined, connection: SessionConnection): Promise<Session> {
    const work = this.claimOrCreate(frame, principal, connection)
    return this.track(work)
  }

  private async claimOrCreate(frame: HelloFrame, principal: string | undefined, connection: SessionConnection): Promise<Session> {
    const deadline = Date.now() + this.host.sessionTtl
    let reason: 'unknown' | 'lost' | undefined
    // Only ids this service makes name a session: anything else resumes nothing, without asking the
    // store (an id with a brace would not keep a session's keys in one Redis Cluster slot).
    if (frame.sid !== null && !isSessionId(frame.sid)) reason = 'unknown'
    else if (frame.sid !== null) {
      const id = frame.sid
      // Held here (a quick reconnect): its last records are written first, so nothing is redelivered.
      const here = this.host.sessions.get(id)
      if (here?.isHeld && here.principal === principal) {
        await here.drain()
        this.letGo(here, { code: 1000, reason: 'replaced by a newer connection of the same session', replaced: true })
      }
      const claimed = await this.link.claim(id, { principal, deadline, ack: frame.ack, acked: frame.acked })
      if (typeof claimed !== 'string') {
        // Its topics' logs, read here if this node has no copy yet: it goes on from its places in them.
        const topics = await this.topics.load(Object.keys(claimed.topics))
        void this.link.notify({ t: 'claimed', id, epoch: claimed.epoch }).catch(this.reportError)
        if (claimed.waiting > 0) void this.link.notify({ t: 'acknowledged', id, seq: frame.ack }).catch(this.reportError)
        const session = this.host.create(principal, {
          link: this.link,
          id,
          claimed,
          ack: frame.ack,
          sent: frame.sent ?? 0,
          broadcast: claimed.broadcast,
          topics,
        })
        session.attach(connection, { ack: frame.ack, resumed: true })
        this.host.opened(session, true)
        // Appended by another node between the claim and now: its notice found no session here.
        session.pull()
        // What was broadcast while it was away: the next read of the log starts where it stands.
        if (claimed.broadcast !== this.broadcastAt) this.readLog()
        return session
      }
      reason = claimed === 'lost' ? 'lost' : 'unknown'
      // Past its deadline: the claim ended it, so this node reports it expired, once.
      if (claimed === 'expired') this.endedHere(id, principal, 'ttl')
      if (claimed === 'lost') {
        // The store knows less than the client: it ends that session (its messages are not
        // what the client saw) and the client is told, once, and starts a new one.
        if (await this.link.end(id)) this.endedHere(id, principal, 'ended')
      }
    }
    const broadcast = this.broadcastAt
    const session = this.host.create(principal, { link: this.link, id: newId(), ack: 0, sent: 0, broadcast })
    try {
      await this.link.create(session.id, principal, deadline, broadcast)
    } catch (error) {
      this.letGo(session) // never recorded: nothing to hand back
      throw error
    }
    session.attach(connection, reason ? { ack: 0, resumed: false, reason } : { ack: 0, resumed: false })
    this.host.opened(session, false)
    return session
  }

  /** The session's connection is gone: its last records are written, then the store holds it alone until its deadline. */
  release(session: Session): void {
    const work = (async () => {
      await session.drain()
      if (!session.isHeld) return // claimed meanwhile, here or elsewhere
      const epoch = session.epoch ?? 0
      const seen = session.seen
      const waiting = this.letGo(session)
      await this.link.release(session.id, { epoch, deadline: Date.now() + this.host.sessionTtl, waiting, seen })
    })()
    this.track(work.catch(this.reportError))
  }

  /** Before the server closes: every held session is released, its connection closed with `close`. */
  async releaseAll(close: { code: number; reason: string }): Promise<void> {
    // Claims under way register sessions after this begins: until none is left, and nothing is busy.
    while (this.host.sessions.size > 0 || this.busy.size > 0) {
      await this.releaseHeld(close)
      while (this.busy.size > 0) await Promise.all([...this.busy])
    }
  }

  private async releaseHeld(close: { code: number; reason: string }): Promise<void> {
    for (const session of [...this.host.sessions.values()]) {
      if (!session.isHeld) {
        this.host.sessions.delete(session.id)
        continue
      }
      const work = (async () => {
        await session.drain()
        if (!session.isHeld) return
        const epoch = session.epoch ?? 0
        const seen = session.seen
        const waiting = this.letGo(session, close)
        await this.link.release(session.id, { epoch, deadline: Date.now() + this.host.sessionTtl, waiting, seen })
      })()
      this.track(work.catch(this.reportError))
    }
  }

  /**
   * Sends a payload to a session wherever it is: appended in the store, and its holder told.
   * Resolves when the client acknowledged it (the holder says so), as `session.send()`.
   */
  async forward(id: string, payload: string): Promise<void> {
    if (!isSessionId(id)) throw new ClosedError(`session ${JSON.stringify(id)} does not exist: session ids are 22 base64url characters`)
    const { maxQueue, maxQueueBytes } = this.host
    const seq = await this.link.append(id, { payload }, { waiting: true, maxQueue, maxQueueBytes })
    if (seq === 'unknown') throw new ClosedError(`session ${id} does not exist (it ended, or expired)`)
    if (seq === 'full') {
      throw new QueueFullError(
        `session ${id} holds maxQueue (${maxQueue}) unacknowledged messages, or maxQueueBytes (${maxQueueBytes}) with this one; the client is not keeping up or is away`,
      )
    }
    const done = this.wait(id, seq)
    done.catch(noop) // as session.send(): an ignored failure must not end the process
    void this.link.notify({ t: 'appended', id }).catch(this.reportError)
    return done
  }

  /** Ends a session in the store (`session.end()` on this node): other nodes' waiters reject. */
  end(session: Session): void {
    const work = this.link
      .end(session.id, session.isHeld ? session.epoch : undefined)
      .then((ended) => {
        if (ended) return this.link.notify({ t: 'ended', id: session.id, reason: 'ended' })
      })
      .catch(this.reportError)
    this.track(work)
  }

  /** Tells every node (this one too) that the client acknowledged up to `seq`. */
  acknowledged(session: Session, seq: number): void {
    this.link.notify({ t: 'acknowledged', id: session.id, seq }).catch(this.reportError)
  }

  /**
   * Logs a broadcast for the service: every node queues it to the sessions it holds; a session
   * no node holds takes it in when it is claimed. The log keeps entries `2 × sessionTtl` (and a
   * minute), longer than any session that may still resume needs them.
   */
  broadcast(payload: string): void {
    this.link.broadcast(payload, 2 * this.host.sessionTtl + 60_000).catch(this.reportError)
  }

  /** Reads the broadcast log on from where this node is, and queues what is new to the sessions held here. */
  private readLog(): void {
    if (this.reading) {
      this.readAgain = true
      return
    }
    this.reading = true
    this.readLogSoon()
  }

  private readonly readLogSoon = perTick(() => {
    // From the earliest place of any session held here (one just claimed may be behind the node).
    let from = this.broadcastAt
    for (const session of this.host.sessions.values()) {
      if (session.isHeld && isAfter(from, session.broadcastPosition)) from = session.broadcastPosition
    }
    this.link
      .broadcastsAfter(from)
      .then((entries) => {
        // Each session takes what is after its own place (Session.sendShared), in the log's order;
        // one whose place is before where this read began (claimed meanwhile) waits for its own read.
        for (const message of asMessages(entries)) {
          if (isAfter(message.broadcast, this.broadcastAt)) this.broadcastAt = message.broadcast
          this.host.broadcastHere(message, from)
        }
        for (const session of this.host.sessions.values()) {
          if (session.isHeld && isAfter(this.broadcastAt, session.broadcastPosition)) this.readAgain = true
        }
      })
      .catch(this.reportError)
      .finally(() => {
        this.reading = false
        if (this.readAgain) {
          this.readAgain = false
          this.readLog()
        }
      })
  })

  /** The store refused or failed a write of a session this node held. */
  lost(session: Session, reason: 'fenced' | 'gone' | Error): void {
    if (reason instanceof Error) {
      this.host.error(reason)
      this.letGo(session, { code: CloseCode.TRY_AGAIN_LATER, reason: 'the session store is unavailable' })
      return
    }
    this.letGo(session, {
      code: 1000,
      reason: reason === 'fenced' ? 'the session was resumed on another connection' : 'session ended',
    })
  }

  /** Stops the timers and closes the link (the server's sessions were released first). */
  async close(): Promise<void> {
    clearInterval(this.sweeper)
    clearInterval(this.toucher)
    while (this.busy.size > 0) await Promise.all([...this.busy])
    for (const [id, list] of this.waiters) {
      for (const waiter of list) waiter.reject(new ClosedError(`the server shut down before session ${id} acknowledged`))
    }
    this.waiters.clear()
    await this.link.close()
  }

  /**
   * This node lets the session go: it leaves `sessions`, its connection closes (with `close`),
   * and the promises of its messages wait here for the ack another node will see. Messages the
   * store had not recorded yet are appended through it. Returns the highest message waited on.
   */
  private letGo(session: Session, close?: { code: number; reason: string; replaced?: boolean }): number {
    const recordedUpTo = session.recordedUpTo
    const recordedItems = session.recordedItems
    const waiting = session.letGo(close)
    if (this.host.sessions.get(session.id) === session) this.host.sessions.delete(session.id)
    let highest = 0
    for (const { seq, entry } of waiting) {
      if (seq <= recordedUpTo) {
        this.waitEntry(session.id, seq, entry)
        highest = seq
        continue
      }
      // Not recorded, so never written. Sent while handling an item not recorded either: that item
      // comes again, and its handler sends this again. Otherwise it goes through the store.
      if (entry.item !== undefined && entry.item > recordedItems) {
        entry.promise?.catch(noop) // an ignored failure must not end the process
        entry.reject?.(unrecordedItem())
      } else this.forward(session.id, entry.payload).then(entry.resolve, entry.reject)
    }
    return highest
  }

  private waitEntry(id: string, seq: number, entry: Outgoing): void {
    if (!entry.resolve || !entry.reject) return
    entry.promise?.catch(noop) // an ignored failure (the session ended) must not end the process
    this.addWaiter(id, { seq, resolve: entry.resolve, reject: entry.reject })
  }

  private wait(id: string, seq: number): Promise<void> {
    return new Promise<void>((resolve, reject) => this.addWaiter(id, { seq, resolve, reject }))
  }

  private addWaiter(id: string, waiter: Waiter): void {
    const list = this.waiters.get(id)
    if (!list) this.waiters.set(id, [waiter])
    else list.push(waiter)
  }

  /** Another node appended to `id`: if this node holds it, a commit brings the message here and writes it. */
  private appended(id: string): void {
    this.host.sessions.get(id)?.pull()
  }

  /** The client of `id` acknowledged up to `seq`: the promises waiting here for it resolve. */
  private settle(id: string, seq: number): void {
    const list = this.waiters.get(id)
    if (!list) return
    const rest = list.filter((waiter) => waiter.seq > seq)
    for (const waiter of list) if (waiter.seq <= seq) waiter.resolve()
    if (rest.length > 0) this.waiters.set(id, rest)
    else this.waiters.delete(id)
  }

  /** `id` ended somewhere: what waits for it here rejects; if this node still holds it, it lets it go. */
  private ended(id: string, reason: ExpireReason): void {
    const list = this.waiters.get(id)
    this.waiters.delete(id)
    const error = new DeliveryError(`session ${id} ended (${reason}) before the client acknowledged`)
    for (const waiter of list ?? []) waiter.reject(error)
    const here = this.host.sessions.get(id)
    if (here?.isHeld) this.letGoWhenIdle(here, { code: 1000, reason: 'session ended' })
  }

  /** `id` was claimed with `epoch`: a holder here with an older claim lets it go. */
  private claimed(id: string, epoch: number): void {
    const here = this.host.sessions.get(id)
    if (here?.isHeld && (here.epoch ?? 0) < epoch) {
      this.letGoWhenIdle(here, { code: 1000, reason: 'the session was resumed on another connection' })
    }
  }

  /**
   * Lets a session go once the commit it has in flight is answered: a message that commit
   * records must not be taken for unrecorded (and appended again) by letGo.
   */
  private letGoWhenIdle(session: Session, close: { code: number; reason: string }): void {
    const work = session.stopRecording().then(() => {
      if (session.isHeld) this.letGo(session, close)
    })
    this.track(work.catch(this.reportError))
  }

  /** Expires the sessions whose deadline passed; the store gives each to one node only. */
  private async sweep(): Promise<void> {
    if (this.sweeping) return
    this.sweeping = true
    try {
      const now = Date.now()
      for (const id of await this.link.due(now, SWEEP_BATCH)) {
        const ended = await this.link.expire(id, now)
        if (ended) this.endedHere(id, ended.principal, 'ttl', ended.topics)
      }
    } catch (error) {
      this.reportError(error)
    } finally {
      this.sweeping = false
    }
    // A notice missed while the store's connection was down: the log is read now and then anyway,
    // and the sessions promises here wait on are asked how far their clients acknowledged.
    this.readLog()
    this.topics.sweep()
    this.reconcileWaiters()
    this.reportStalls()
  }

  /** Settles what waits here by what the store says of each session (a missed notice is not waited for forever). */
  private reconcileWaiters(): void {
    for (const id of this.waiters.keys()) {
      this.link
        .acknowledgedUpTo(id)
        .then((acked) => {
          if (acked === undefined) this.ended(id, 'ended')
          else this.settle(id, acked)
        })
        .catch(this.reportError)
    }
  }

  /** Reports, once each, handlers that hold their item while a message they sent waits for it. */
  private reportStalls(): void {
    const since = Date.now() - STALL_WARNING
    for (const session of this.host.sessions.values()) {
      const seq = session.stalled(since)
      if (seq === undefined || this.stallsReported.get(session.id) === seq) continue
      this.stallsReported.set(session.id, seq)
      this.host.error(
        new Error(
          `session ${session.id}: the handler of client item ${seq} has not finished for ${STALL_WARNING / 1000} s, and a message it sent waits for it. With a shared store a handler's messages are written once it is done (docs/SCALING.md), so a handler that awaits session.send() to its own session never finishes: do not await it there.`,
        ),
      )
    }
    for (const id of this.stallsReported.keys()) if (!this.host.sessions.has(id)) this.stallsReported.delete(id)
  }

  /** This node ended `id` in the store: it alone emits `expire`, and tells the others. */
  private endedHere(id: string, principal: string | undefined, reason: ExpireReason, topics?: readonly string[]): void {
    this.ended(id, reason)
    void this.link.notify({ t: 'ended', id, reason }).catch(this.reportError)
    this.host.expired(this.host.handle(id, principal), reason, topics)
  }

  /** Pushes on the deadline of every session held here, so that only a dead node's sessions expire. */
  private touch(): void {
    const deadline = Date.now() + this.host.sessionTtl
    for (const session of this.host.sessions.values()) {
      const epoch = session.epoch
      if (!session.isHeld || epoch === undefined) continue
      this.link
        .touch(session.id, epoch, deadline)
        .then((touched) => {
          // Gone from the store (it lost writes, or it ended elsewhere): the client is told on resume.
          if (!touched && session.isHeld) this.letGoWhenIdle(session, { code: 1000, reason: 'session ended' })
        })
        .catch(this.reportError)
    }
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.busy.add(work)
    const done = () => this.busy.delete(work)
    work.then(done, done)
    return work
  }

  private readonly reportError = (error: unknown): void => {
    this.host.error(error instanceof Error ? error : new Error(String(error)))
  }
}

/** Log entries as broadcast messages (one object per broadcast, shared by every session here). */
const asMessages = (entries: LoggedBroadcast[]): Array<SharedMessage & { broadcast: string }> =>
  entries.map((entry) => sharedMessage(entry.payload, entry.id) as SharedMessage & { broadcast: string })

/** Whether `id` has the form of the ids sessions get (128 random bits, base64url). */
export const isSessionId = (id: string): boolean => /^[A-Za-z0-9_-]{22}$/.test(id)

function newId(): string {
  return randomBytes(16).toString('base64url')
}
