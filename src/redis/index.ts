/**
 * `tethersocket/redis`: the session store on Redis. Servers that share it form one service:
 * any node resumes any session, and exactly-once holds in both directions across the death
 * of a node (docs/SCALING.md). Pass a connected client of the `redis` package: `createClient()`
 * for one Redis, `createCluster()` for a Redis Cluster.
 *
 * @example
 * ```ts
 * import { createClient } from 'redis'
 * import { createTetherServer } from 'tethersocket/server'
 * import { redisStore } from 'tethersocket/redis'
 *
 * const client = await createClient({ url: process.env.REDIS_URL }).connect()
 * const server = await createTetherServer({ port: 8080, store: redisStore(client) })
 * ```
 * @module
 */
import { createHash } from 'node:crypto'
import type {
  ClaimedSession,
  ClaimRefusal,
  CommitResult,
  SessionStore,
  StoredEntry,
  StoredMember,
  StoreLink,
  StoreListener,
  StoreNotice,
  TopicPlaces,
} from '../server/store.js'
import { APPEND, CLAIM, COMMIT, CREATE, END, EXPIRE, MEMBER, PUBLISH, READ_TOPIC, RELEASE, TOUCH } from './scripts.js'

/**
 * What the store needs of a standalone client from the `redis` package (node-redis 5 or later),
 * as `createClient()` makes it, connected. The store sends commands on it, and subscribes to
 * its notices on a duplicate it opens and closes itself.
 */
export interface RedisClient {
  /** Sends one command (its name and arguments). */
  sendCommand(args: string[]): Promise<unknown>
  /** A new connection with the same settings (the store subscribes on it). */
  duplicate(): RedisSubscriber
}

/** A node of a Redis Cluster, as a cluster client lists it. */
export interface RedisClusterNode {
  /** `host:port`. */
  readonly address: string
}

/**
 * What the store needs of a cluster client from the `redis` package (node-redis 5 or later),
 * as `createCluster({ rootNodes })` makes it, connected: commands routed by the key they name,
 * the masters (each gets the store's scripts when the store opens), and a duplicate to
 * subscribe on, which the store opens and closes itself.
 */
export interface RedisClusterClient {
  /** Sends one command to the master of `firstKey`'s slot. */
  sendCommand(firstKey: string | undefined, isReadonly: boolean | undefined, args: string[]): Promise<unknown>
  /** The masters it knows (empty until connected). */
  readonly masters: readonly RedisClusterNode[]
  /** The client of one node (the store loads its scripts on each master). */
  nodeClient(node: RedisClusterNode): Promise<{
    /** Sends one command to that node. */
    sendCommand(args: string[]): Promise<unknown>
  }>
  /** A new cluster connection with the same settings (the store subscribes on it). */
  duplicate(overrides?: {
    /** One pub/sub connection rather than one per master. */
    minimizeConnections?: boolean
  }): RedisSubscriber
}

/** The duplicate connection the store subscribes on. */
export interface RedisSubscriber {
  /** Opens the connection. */
  connect(): Promise<unknown>
  /** Listens to a channel. */
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>
  /** Closes the connection (node-redis 5 and later). */
  close?(): Promise<unknown>
  /** Closes the connection (older node-redis). */
  quit?(): Promise<unknown>
  /** Hears the connection's errors (it reconnects by itself). */
  on(event: 'error', listener: (error: Error) => void): unknown
}

/** Options of {@link redisStore}. */
export interface RedisStoreOptions {
  /**
   * Prefix of every key and of the notices channel: servers with the same prefix (on the same
   * Redis) are one service. Default `'tether'`.
   */
  prefix?: string
}

/**
 * A session store on Redis, for the server's `store` option. `client` is your connected
 * client from the `redis` package: a standalone one (`createClient()`) or a Redis Cluster one
 * (`createCluster()`); the store never closes it.
 * @example
 * ```ts
 * const server = await createTetherServer({ store: redisStore(client, { prefix: 'chat' }) })
 * ```
 */
export function redisStore(client: RedisClient | RedisClusterClient, options: RedisStoreOptions = {}): SessionStore {
  const prefix = options.prefix ?? 'tether'
  if (typeof prefix !== 'string' || prefix === '' || /[{}]/.test(prefix)) {
    throw new TypeError(`redisStore: options.prefix must be a non-empty string without braces, got ${JSON.stringify(prefix)}`)
  }
  const connection = connectionOf(client)
  return { open: (listener) => openLink(connection, prefix, listener) }
}

/**
 * How the store reaches Redis, the same for both kinds of client. Every command names the key
 * (or channel) it is about, which routes it in a cluster; a standalone client ignores it.
 */
interface Connection {
  send(key: string | undefined, args: string[]): Promise<unknown>
  /** Puts the scripts into the script cache of every Redis that runs them. */
  load(sources: string[]): Promise<void>
  /** A new connection to subscribe on; the store closes it. */
  subscriber(): RedisSubscriber
}

const USAGE =
  'pass a connected client of the `redis` package: await createClient({ url }).connect() or await createCluster({ rootNodes }).connect()'

/**
 * Whether `client` is node-redis's cluster client, told by what only that class has: the list of
 * masters it discovered and `nodeClient()` to reach one of them (a standalone or a sentinel
 * client has neither). Constructor names are not used: bundlers rename classes.
 */
function isCluster(client: RedisClient | RedisClusterClient): client is RedisClusterClient {
  const candidate = client as Partial<RedisClusterClient>
  return typeof candidate.nodeClient === 'function' && Array.isArray(candidate.masters)
}

function connectionOf(client: RedisClient | RedisClusterClient): Connection {
  if (typeof client !== 'object' || client === null)
    throw new TypeError(`redisStore: ${USAGE}; got ${client === null ? 'null' : typeof client}`)
  if (typeof (client as { then?: unknown }).then === 'function') {
    throw new TypeError(`redisStore: got a promise; ${USAGE} (await the connect())`)
  }
  if (typeof client.sendCommand !== 'function' || typeof client.duplicate !== 'function') {
    throw new TypeError(`redisStore: got an object without sendCommand() and duplicate(); ${USAGE}`)
  }
  if (!isCluster(client)) {
    return {
      send: (_key, args) => client.sendCommand(args),
      load: async (sources) => {
        await Promise.all(sources.map((source) => client.sendCommand(['SCRIPT', 'LOAD', source])))
      },
      subscriber: () => client.duplicate(),
    }
  }
  return {
    // Never readonly, so never a replica (even with `useReplicas`): the store reads what it
    // has just written (a broadcast it logged, an acknowledgement), which a replica may lag.
    send: (key, args) => client.sendCommand(key, false, args),
    // Every master, where the scripts run (sent with their first key). A master that joins
    // later (a promoted replica, a new shard) gets them from the NOSCRIPT fallback of `run`.
    load: async (sources) => {
      const masters = client.masters
      if (masters.length === 0) throw new Error(`redisStore: the cluster client knows no masters; ${USAGE}`)
      await Promise.all(
        masters.map(async (master) => {
          const node = await client.nodeClient(master)
          await Promise.all(sources.map((source) => node.sendCommand(['SCRIPT', 'LOAD', source])))
        }),
      )
    },
    // Only the pub/sub connection is used on it: no connection to every master.
    subscriber: () => client.duplicate({ minimizeConnections: true }),
  }
}

/** A Lua script, run by its SHA1 (loaded on first use, and again after a Redis restart). */
class Script {
  private readonly sha: string
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex')
  }

  /** Runs on the Redis that holds `keys` (one slot: they share a hash tag). */
  async run(redis: Connection, keys: string[], args: Array<string | number>): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args.map(String)]
    try {
      return await redis.send(keys[0], ['EVALSHA', this.sha, ...tail])
    } catch (error) {
      // Not in the script cache (a restarted Redis, a new master): EVAL sends the source, which caches it.
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
      return redis.send(keys[0], ['EVAL', this.source, ...tail])
    }
  }
}

const scripts = {
  create: new Script(CREATE),
  claim: new Script(CLAIM),
  commit: new Script(COMMIT),
  release: new Script(RELEASE),
  touch: new Script(TOUCH),
  append: new Script(APPEND),
  end: new Script(END),
  expire: new Script(EXPIRE),
  publish: new Script(PUBLISH),
  member: new Script(MEMBER),
  readTopic: new Script(READ_TOPIC),
}

/**
 * An entry as the list holds it: its kind in the first character; a topic message's topic (or a
 * miss item's topic and count) before its payload, its length first.
 */
function encodeEntry(entry: StoredEntry): string {
  if (entry.missed !== undefined) return `x${entry.missed}:${entry.topic}`
  if (entry.topic !== undefined) return `t${entry.topic.length}:${entry.topic}${entry.payload}`
  return (entry.reply ? 'r' : 'm') + entry.payload
}

function decodeEntry(text: string): StoredEntry {
  const kind = text[0]
  if (kind === 'r') return { payload: text.slice(1), reply: true }
  if (kind === 'x') {
    const colon = text.indexOf(':')
    return { payload: '', topic: text.slice(colon + 1), missed: Number(text.slice(1, colon)) }
  }
  if (kind === 't') {
    const colon = text.indexOf(':')
    const end = colon + 1 + Number(text.slice(1, colon))
    return { payload: text.slice(end), topic: text.slice(colon + 1, end) }
  }
  return { payload: text.slice(1) }
}

/** A session's topic places as its hash holds them ('' : none). */
const decodePlaces = (text: string): TopicPlaces => (text === '' ? {} : (JSON.parse(text) as TopicPlaces))

/** A member as a topic's members hash holds it: connected (1/0), then `+` and the principal, or `-`. */
const encodeMember = (member: StoredMember): string =>
  (member.connected ? '1' : '0') + (member.principal === undefined ? '-' : `+${member.principal}`)
const decodeMember = (id: string, value: string): StoredMember => ({
  id,
  connected: value[0] === '1',
  principal: value[1] === '+' ? value.slice(2) : undefined,
})

async function openLink(redis: Connection, prefix: string, listener: StoreListener): Promise<StoreLink> {
  const hash = (id: string) => `${prefix}:{${id}}`
  const queue = (id: string) => `${prefix}:{${id}}:q`
  const due = `${prefix}:due`
  const channel = `${prefix}:notices`
  const broadcasts = `${prefix}:broadcasts`
  const principalArgs = (principal: string | undefined) => (principal === undefined ? ['0', ''] : ['1', principal])
  // A topic's keys: its own hash tag, so that a publish touches one slot.
  const members = (name: string) => `${prefix}:members:{${name}}`
  const counter = (name: string) => `${prefix}:topic-n:{${name}}`
  const stream = (name: string) => `${prefix}:topic:{${name}}`
  const stamps = `${prefix}:stamp`
  const leaveTopics = async (names: readonly string[], id: string) => {
    await Promise.all(names.map((name) => redis.send(members(name), ['HDEL', members(name), id])))
  }

  await redis.load(Object.values(scripts).map((script) => script.source))
  const subscriber = redis.subscriber()
  subscriber.on('error', (error) => listener.error(error))
  await subscriber.connect()
  await subscriber.subscribe(channel, (message) => {
    let notice: StoreNotice
    try {
      notice = JSON.parse(message) as StoreNotice
    } catch {
      return // not ours: another program publishing on the channel
    }
    switch (notice.t) {
      case 'appended':
        return listener.appended(notice.id)
      case 'acknowledged':
        return listener.acknowledged(notice.id, notice.seq)
      case 'ended':
        return listener.ended(notice.id, notice.reason)
      case 'claimed':
        return listener.claimed(notice.id, notice.epoch)
      case 'broadcast':
        return listener.broadcast(notice.id)
      case 'topic':
        return listener.topic?.(notice.name, notice.n)
    }
  })

  const index = (id: string, deadline: number) => redis.send(due, ['ZADD', due, String(deadline), id])

  return {
    async create(id, principal, deadline, broadcast) {
      const created = await scripts.create.run(redis, [hash(id)], [...principalArgs(principal), deadline, broadcast])
      if (created !== 1) throw new Error(`session id ${id} exists already`)
      await index(id, deadline)
    },

    async claim(id, request): Promise<ClaimedSession | ClaimRefusal> {
      const reply = (await scripts.claim.run(
        redis,
        [hash(id), queue(id)],
        [...principalArgs(request.principal), request.deadline, request.ack, request.acked ?? -1, Date.now()],
      )) as unknown[]
      if (reply[0] === 'expired') {
        // Ended by the claim: the topics it was a member of no longer list it.
        await leaveTopics(Object.keys(decodePlaces(reply[1] as string)), id)
        return 'expired'
      }
      if (reply[0] !== 'ok') return reply[0] === 'lost' ? 'lost' : 'unknown'
      await index(id, request.deadline)
      const [, epoch, rx, tx, unclean, seen, waiting, entries, broadcast, topics] = reply as [
        string,
        number,
        number,
        number,
        number,
        number,
        number,
        string[],
        string,
        string,
      ]
      return {
        principal: request.principal,
        epoch,
        rx,
        tx,
        unclean: unclean === 1,
        seen,
        waiting,
        entries: entries.map(decodeEntry),
        broadcast,
        topics: decodePlaces(topics),
      }
    },

    async commit(id, batch): Promise<CommitResult> {
      const reply = (await scripts.commit.run(
        redis,
        [hash(id), queue(id)],
        [
          batch.epoch,
          batch.rx,
          batch.base,
          batch.trim,
          batch.recorded,
          batch.broadcast ?? '',
          batch.topics ? JSON.stringify(batch.topics) : '',
          ...batch.entries.map(encodeEntry),
        ],
      )) as unknown[]
      // A store that lost writes holds a session that is not this one any more: gone, as if ended.
      if (reply[0] !== 'ok') return { ok: false, reason: reply[0] === 'fenced' ? 'fenced' : 'gone' }
      return { ok: true, waiting: reply[1] as number, gap: (reply[2] as string[]).map(decodeEntry) }
    },

    async release(id, release) {
      const released = await scripts.release.run(redis, [hash(id)], [release.epoch, release.deadline, release.waiting, release.seen])
      if (released !== 1) return false
      await index(id, release.deadline)
      return true
    },

    async touch(id, epoch, deadline) {
      const touched = await scripts.touch.run(redis, [hash(id)], [epoch, deadline])
      if (touched !== 1) return false
      await index(id, deadline)
      return true
    },

    async append(id, entry, { waiting, maxQueue, maxQueueBytes }) {
      const seq = (await scripts.append.run(
        redis,
        [hash(id), queue(id)],
        [encodeEntry(entry), waiting ? 1 : 0, maxQueue, maxQueueBytes],
      )) as number
      return seq === -1 ? 'unknown' : seq === -2 ? 'full' : seq
    },

    async end(id, epoch) {
      const ended = await scripts.end.run(redis, [hash(id), queue(id)], [epoch ?? ''])
      await redis.send(due, ['ZREM', due, id])
      return ended === 1
    },

    async acknowledgedUpTo(id) {
      const acked = await redis.send(hash(id), ['HGET', hash(id), 'ak'])
      return acked === null || acked === undefined ? undefined : Number(acked)
    },

    async due(now, limit) {
      return (await redis.send(due, ['ZRANGEBYSCORE', due, '-inf', String(now), 'LIMIT', '0', String(limit)])) as string[]
    },

    async expire(id, now) {
      const reply = (await scripts.expire.run(redis, [hash(id), queue(id)], [now])) as unknown[]
      if (reply[0] === 1) {
        // Resumed or touched since it was indexed: indexed again at its deadline.
        await index(id, Number(reply[1]))
        return undefined
      }
      await redis.send(due, ['ZREM', due, id])
      if (reply[0] !== 2 && reply[0] !== 3) return undefined
      // Expired: the topics it was a member of no longer list it.
      const topics = Object.keys(decodePlaces(reply[2] as string))
      await leaveTopics(topics, id)
      return { principal: reply[0] === 2 ? (reply[1] as string) : undefined, topics }
    },

    async publish(name, payload, maxMessages) {
      const stamp = Number(await redis.send(stamps, ['INCR', stamps]))
      const n = (await scripts.publish.run(redis, [members(name), counter(name), stream(name)], [stamp, payload, maxMessages])) as number
      if (n < 0) return undefined
      await redis.send(channel, ['PUBLISH', channel, JSON.stringify({ t: 'topic', name, n } satisfies StoreNotice)])
      return n
    },

    async readTopic(name, after) {
      const [next, entries] = (await scripts.readTopic.run(redis, [counter(name), stream(name)], [after])) as [
        number,
        Array<[string, string[]]>,
      ]
      return {
        next,
        messages: entries.map(([id, fields]) => {
          const field = (key: string) => fields[fields.indexOf(key) + 1] ?? ''
          return { id, n: Number(field('n')), stamp: Number(field('s')), payload: field('p') }
        }),
      }
    },

    async member(name, member) {
      return (await scripts.member.run(redis, [members(name), counter(name)], [member.id, encodeMember(member)])) as number
    },

    leaveTopics,

    async members(name) {
      const flat = (await redis.send(members(name), ['HGETALL', members(name)])) as string[] | Record<string, string>
      // node-redis answers HGETALL with a flat array to sendCommand (RESP2), or a map (RESP3).
      const pairs: Array<[string, string]> = []
      if (Array.isArray(flat)) for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i], flat[i + 1]])
      else for (const [id, value] of Object.entries(flat)) pairs.push([id, value])
      return pairs.map(([id, value]) => decodeMember(id, value))
    },

    async broadcast(payload, keep) {
      // Trimmed by age (approximately, which is cheap): stream ids begin with Redis's clock in ms.
      const oldest = Math.max(0, Date.now() - keep)
      const id = (await redis.send(broadcasts, ['XADD', broadcasts, 'MINID', '~', String(oldest), '*', 'p', payload])) as string
      await redis.send(channel, ['PUBLISH', channel, JSON.stringify({ t: 'broadcast', id } satisfies StoreNotice)])
      return id
    },

    async broadcastsAfter(id) {
      const entries = (await redis.send(broadcasts, ['XRANGE', broadcasts, `(${id}`, '+'])) as Array<[string, string[]]>
      return entries.map(([entryId, fields]) => ({ id: entryId, payload: fields[fields.indexOf('p') + 1] ?? 'null' }))
    },

    async lastBroadcast() {
      const last = (await redis.send(broadcasts, ['XREVRANGE', broadcasts, '+', '-', 'COUNT', '1'])) as Array<[string, string[]]>
      return last[0]?.[0] ?? '0-0'
    },

    async notify(notice) {
      await redis.send(channel, ['PUBLISH', channel, JSON.stringify(notice)])
    },

    async close() {
      await (subscriber.close?.() ?? subscriber.quit?.())
    },
  }
}
