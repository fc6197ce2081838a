/**
 * The session store seam: where a session's state lives when it must outlive this process.
 *
 * By default there is no store: each session keeps its state in its own memory (sessions.ts,
 * outbox.ts), synchronously, as it always has, and it ends with the process. A shared store
 * (`redisStore()` from `tethersocket/redis`, or your own implementation of {@link SessionStore})
 * makes the servers that share it one service: a session created on one node resumes on any
 * other, and what was delivered and acknowledged survives the death of a node.
 *
 * What a shared store records, per session (journal.ts writes it, in one `commit` per tick):
 * - the last client item recorded (`rx`): an item is acknowledged to the client only once it is;
 * - the messages to the client (`tx` numbers them), each recorded before it is written, together
 *   with the `rx` of the item whose handling sent them, and kept until the client acknowledges
 *   them (`trim`);
 * - who holds the session (`epoch`, the fencing token): a claim by a new connection, on any node,
 *   takes a new epoch, and every write with an older one fails, so no two nodes ever write one
 *   session's sequence;
 * - while it is disconnected, when it expires (`deadline`), so that any node can expire it, once;
 * - how far it has taken in the service's broadcasts (`broadcast`): broadcasts are logged once
 *   for the whole service, the nodes queue them to the sessions they hold, and a node that
 *   claims a session catches it up from the log. A disconnected session holds no copy;
 * - its places in the logs of its topics (`topics`): each topic's log is kept once for the
 *   service, numbered (`n`, contiguous per topic), and a session records, with the commit that
 *   records the topic items it took in, where it stands in each; a node that claims it goes on
 *   from there. Who is a member of a topic (and whether connected) is kept per topic, for
 *   `presence()`.
 * @module
 */
import type { ExpireReason } from './seams.js'

/** A message to the client as the store keeps it: a `msg` payload, or the tail of a `res` frame (frames.ts `resTail`). */
export interface StoredEntry {
  /** The JSON payload, or the `res` frame's tail. */
  readonly payload: string
  /** Set for a reply (a `res` frame's tail). */
  readonly reply?: true
  /** Set for a message published to this topic (written in a `msg` frame naming it), or for a `miss` item. */
  readonly topic?: string
  /** Set for a `miss` item: this many messages of `topic` were lost to its retention (`payload` is empty). */
  readonly missed?: number
}

/** What a node learns of a session when it claims it. */
export interface ClaimedSession {
  /** Who the session belongs to (undefined: anonymous). */
  readonly principal: string | undefined
  /** This claim's fencing token: every later write must carry it. */
  readonly epoch: number
  /** Last client item recorded. */
  readonly rx: number
  /** Last message to the client recorded. */
  readonly tx: number
  /** The messages after the client's `ack` (from its hello), numbered `ack + 1` to `tx`. */
  readonly entries: readonly StoredEntry[]
  /**
   * The node that held the session before did not release it (it died, or still holds a
   * connection the client gave up on): client items after `rx` may have been delivered there.
   */
  readonly unclean: boolean
  /** Last client item a node handed to its handlers, if more than `rx` (handled, not recorded): resent items up to it are redelivered. */
  readonly seen: number
  /** The highest message a promise on another node waits on (0: none). */
  readonly waiting: number
  /** The last broadcast the session took in (an id of the broadcast log): later ones are queued to it after the claim. */
  readonly broadcast: string
  /** Its places in its topics' logs, as the last commit recorded them (see {@link TopicPlaces}). */
  readonly topics: TopicPlaces
}

/**
 * A session's places in the logs of its topics, by topic name: `[cursor]` for a topic it is a
 * member of (the number of the next message it takes in), `[cursor, end]` for one it left
 * while messages published before it left (numbers below `end`) were still due, and
 * `[cursor, end, current]` for one it left with messages due and joined again (its member's
 * place is at `current`).
 */
export type TopicPlaces = Readonly<Record<string, readonly [number] | readonly [number, number] | readonly [number, number, number]>>

/** A message of a topic's log, as the store keeps it. */
export interface LoggedTopicMessage {
  /** Its id in the topic's stream (reads go on after it). */
  readonly id: string
  /** Its number in the topic: contiguous, from 0. */
  readonly n: number
  /** Its place in the service's publish order, across topics. */
  readonly stamp: number
  /** The message, as JSON. */
  readonly payload: string
}

/** What a read of a topic's log finds (see `StoreLink.readTopic`). */
export interface TopicRead {
  /** How many messages were published to the topic so far: the next one's number. */
  readonly next: number
  /** The messages after the stream id the read began after, in order. */
  readonly messages: LoggedTopicMessage[]
}

/** One member of a topic as the store keeps it. */
export interface StoredMember {
  /** The session's id. */
  readonly id: string
  /** Its principal, if any. */
  readonly principal: string | undefined
  /** Whether a node holds it with a client connected. */
  readonly connected: boolean
}

/**
 * Why a claim failed: no such session (or another principal's), the store knows less than the
 * client, or its deadline had passed (the claim ended it: the node reports it expired).
 */
export type ClaimRefusal = 'unknown' | 'lost' | 'expired'

/** What the client said in its `hello`, as far as a claim needs it. */
export interface ClaimRequest {
  /** Who is resuming: only the session's own principal may. */
  readonly principal: string | undefined
  /** Until a node touches it, the session expires then (ms since the epoch). */
  readonly deadline: number
  /** The last server item the client received: what it acknowledges. */
  readonly ack: number
  /** The last of its own items the client saw acknowledged (absent from older clients). */
  readonly acked?: number
}

/** What a node tells the store when a session it holds disconnects. */
export interface ReleaseRequest {
  /** The fencing token of this node's claim. */
  readonly epoch: number
  /** When it expires unless resumed, in ms since the epoch. */
  readonly deadline: number
  /** The highest message a promise of this node waits on (0: none): the next holder says when the client acknowledges it. */
  readonly waiting: number
  /** Last client item this node handed to its handlers: items after the recorded ones, up to here, were handled but not recorded. */
  readonly seen: number
}

/** One commit: what a session's tick changed, written at once (atomically in a shared store). */
export interface CommitBatch {
  /** The fencing token of the claim. */
  readonly epoch: number
  /** Last client item whose handling is complete; recorded, then acknowledged. */
  readonly rx: number
  /** The last message this node knows the store holds: `entries` follow it. */
  readonly base: number
  /** New messages to the client, in order. */
  readonly entries: readonly StoredEntry[]
  /** The client acknowledged messages up to here: the store lets them go. */
  readonly trim: number
  /**
   * The last client item this node saw the store record. A store that holds less (it lost
   * writes: restarted from an older file, or failed over) answers `'gone'`: the session it
   * holds is not the one the client knows.
   */
  readonly recorded: number
  /** The last broadcast among `entries`, if any: the session has taken in the log up to it. */
  readonly broadcast?: string
  /** Its places in its topics after `entries` (given when they changed since the last commit). */
  readonly topics?: TopicPlaces
}

/** A commit's outcome. */
export type CommitResult =
  | {
      /** Recorded. */
      readonly ok: true
      /**
       * Messages other nodes appended after `base` (`sendTo`), ahead of this commit's
       * entries: the node inserts them before its own, which are numbered after them.
       */
      readonly gap: readonly StoredEntry[]
      /** The highest message a promise on another node waits on (0: none): the holder says when the client acknowledges it. */
      readonly waiting: number
    }
  /** The session was claimed elsewhere (`'fenced'`), or is gone (`'gone'`: ended, or the store lost writes): this node lets it go. */
  | {
      /** Not recorded. */
      readonly ok: false
      /** Why: claimed elsewhere, or gone. */
      readonly reason: 'fenced' | 'gone'
    }

/** What other nodes tell this one, through the store's messaging. */
export interface StoreListener {
  /** A message was appended to `id` by another node: the node holding it commits, to write it. */
  appended(id: string): void
  /** The client of `id` acknowledged messages up to `seq`: `sendTo()` promises waiting here resolve. */
  acknowledged(id: string, seq: number): void
  /** The session `id` ended (on any node): what waits for it here rejects. */
  ended(id: string, reason: ExpireReason): void
  /** The session `id` was claimed with `epoch`: a node holding it with an older epoch lets it go. */
  claimed(id: string, epoch: number): void
  /** A broadcast was logged (by any node): each node reads the log on from where it was, and queues what is new to the sessions it holds. */
  broadcast(id: string): void
  /** Message number `n` was published to topic `name` (on any node): a node with members of it reads its log on. */
  topic?(name: string, n: number): void
  /** The store's connection failed (it reconnects by itself, if it can): reported as the server's `error`. */
  error(error: Error): void
}

/** Notices between nodes (see {@link StoreListener}). */
export type StoreNotice =
  | {
      /** A message was appended to session `id` by another node. */
      readonly t: 'appended'
      /** The session. */
      readonly id: string
    }
  | {
      /** The client of session `id` acknowledged messages up to `seq`. */
      readonly t: 'acknowledged'
      /** The session. */
      readonly id: string
      /** The last message acknowledged. */
      readonly seq: number
    }
  | {
      /** Session `id` ended. */
      readonly t: 'ended'
      /** The session. */
      readonly id: string
      /** Why it ended. */
      readonly reason: ExpireReason
    }
  | {
      /** Session `id` was claimed with `epoch`. */
      readonly t: 'claimed'
      /** The session. */
      readonly id: string
      /** The claim's fencing token. */
      readonly epoch: number
    }
  | {
      /** A broadcast was logged with id `id`. */
      readonly t: 'broadcast'
      /** Its id in the broadcast log. */
      readonly id: string
    }
  | {
      /** Message number `n` was published to topic `name`. */
      readonly t: 'topic'
      /** The topic. */
      readonly name: string
      /** The message's number in the topic. */
      readonly n: number
    }

/**
 * Whether broadcast id `a` comes after `b`. Ids of the broadcast log are two numbers,
 * `<ms>-<n>` (the form of Redis stream ids), ordered by the first, then the second.
 */
export function isAfter(a: string, b: string): boolean {
  const [am, an] = a.split('-').map(Number)
  const [bm, bn] = b.split('-').map(Number)
  return am > bm || (am === bm && an > bn)
}

/** A broadcast as the log holds it: its id (ordered), and its payload. */
export interface LoggedBroadcast {
  /** Its place in the log. */
  readonly id: string
  /** The message, as JSON. */
  readonly payload: string
}

/** One server's connection to a shared store. Every method may reject when the store is unreachable. */
export interface StoreLink {
  /**
   * Records a new session, held by this node with epoch 1, expiring at `deadline` unless
   * touched, having taken in the broadcast log up to `broadcast`.
   */
  create(id: string, principal: string | undefined, deadline: number, broadcast: string): Promise<void>
  /**
   * Logs a broadcast for the whole service and tells every node; its id. Entries older than
   * `keep` ms are let go (no session that may still resume needs them).
   */
  broadcast(payload: string, keep: number): Promise<string>
  /** Broadcasts logged after `id` (`'0-0'`: from the start), in order. */
  broadcastsAfter(id: string): Promise<LoggedBroadcast[]>
  /** The id of the last broadcast logged (`'0-0'` if none). */
  lastBroadcast(): Promise<string>
  /** Claims a session for a new connection on this node (a resume): a new epoch fences the old holder. */
  claim(id: string, request: ClaimRequest): Promise<ClaimedSession | ClaimRefusal>
  /** Writes one session's tick (see {@link CommitBatch}). */
  commit(id: string, batch: CommitBatch): Promise<CommitResult>
  /**
   * The session's connection is gone: it waits for a resume until `deadline` (ms since the
   * epoch), held by no node. False when fenced or gone.
   */
  release(id: string, release: ReleaseRequest): Promise<boolean>
  /** The holder is alive: the session's deadline moves to `deadline` (a node that dies stops this, and its sessions expire). */
  touch(id: string, epoch: number, deadline: number): Promise<boolean>
  /**
   * Appends a message to a session wherever it is held (or while no node holds it): its number;
   * `'unknown'` if there is no such session, `'full'` if it holds `maxQueue` messages.
   * `waiting`: a promise on this node waits for its ack (the holder will say when it comes).
   */
  append(
    id: string,
    entry: StoredEntry,
    options: {
      /** A promise of this node waits for the client's ack of it. */
      waiting: boolean
      /** Most messages the session may hold. */
      maxQueue: number
      /** Most bytes of messages the session may hold (as the store counts them: what it stores of each). */
      maxQueueBytes: number
    },
  ): Promise<number | 'unknown' | 'full'>
  /** Ends a session (with `epoch`: only if still held with it). True if this call ended it. */
  end(id: string, epoch?: number): Promise<boolean>
  /**
   * How far the client of `id` acknowledged messages (undefined: no such session). Nodes ask it
   * now and then for the sessions their promises wait on, in case a notice was missed.
   */
  acknowledgedUpTo(id: string): Promise<number | undefined>
  /** Sessions whose deadline passed by `now`, at most `limit`. */
  due(now: number, limit: number): Promise<string[]>
  /**
   * Ends a session whose deadline passed, if it still has (no one resumed it): its principal if
   * this call ended it, and the topics it was a member of (the store no longer lists it there).
   */
  expire(
    id: string,
    now: number,
  ): Promise<
    | {
        /** Who the session belonged to. */
        principal: string | undefined
        /** The topics it was a member of. */
        topics: string[]
      }
    | undefined
  >
  /**
   * Publishes a message to topic `name` (its log keeps the last `maxMessages`) with the service-wide
   * `stamp`, and tells every node. Its number in the topic; undefined when the topic has no
   * members (nothing is kept).
   */
  publish(name: string, payload: string, maxMessages: number): Promise<number | undefined>
  /**
   * The topic's number of messages published so far (the next one's number), and the messages its
   * log holds after stream id `after` (`'0-0'`: all), in order.
   */
  readTopic(name: string, after: string): Promise<TopicRead>
  /**
   * Records session `id` as a member of `name` (or updates whether it is connected); with
   * `join`, returns the number of the next message published to the topic (its place).
   */
  member(name: string, member: StoredMember): Promise<number>
  /** Session `id` is no longer a member of the topics `names`. */
  leaveTopics(names: readonly string[], id: string): Promise<void>
  /** The members of topic `name`. */
  members(name: string): Promise<StoredMember[]>
  /** Tells every node sharing the store (this one too). */
  notify(notice: StoreNotice): Promise<void>
  /** Disconnects what the link opened (not the client the user gave). */
  close(): Promise<void>
}

/**
 * A store several server processes share. Pass it as the server's `store` option:
 * `createTetherServer({ store: redisStore(client) })`.
 */
export interface SessionStore {
  /** Connects one server to the store; `listener` hears the other nodes. */
  open(listener: StoreListener): Promise<StoreLink>
}
