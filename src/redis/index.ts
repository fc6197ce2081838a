/**
 * `tethersocket/redis`: the session store on Redis. Servers that share it form one service:
 * any node resumes any session, and exactly-once holds in both directions across the death
 * of a node (docs/SCALING.md).
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
  StoreLink,
  StoreListener,
  StoreNotice,
} from '../server/store.js'
import { APPEND, CLAIM, COMMIT, CREATE, END, EXPIRE, RELEASE, TOUCH } from './scripts.js'

/**
 * What the store needs of a client from the `redis` package (node-redis 5 or later): a
 * connected client. The store sends commands on it, and subscribes to its notices on a
 * duplicate it opens and closes itself.
 */
export interface RedisClient {
  sendCommand(args: string[]): Promise<unknown>
  duplicate(): RedisSubscriber
}

/** The duplicate connection the store subscribes on. */
export interface RedisSubscriber {
  connect(): Promise<unknown>
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>
  close?(): Promise<unknown>
  quit?(): Promise<unknown>
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
 * client from the `redis` package; the store never closes it.
 * @example
 * ```ts
 * const server = await createTetherServer({ store: redisStore(client, { prefix: 'chat' }) })
 * ```
 */
export function redisStore(client: RedisClient, options: RedisStoreOptions = {}): SessionStore {
  const prefix = options.prefix ?? 'tether'
  if (typeof prefix !== 'string' || prefix === '' || /[{}]/.test(prefix)) {
    throw new TypeError(`redisStore: options.prefix must be a non-empty string without braces, got ${JSON.stringify(prefix)}`)
  }
  if (!client || typeof client.sendCommand !== 'function' || typeof client.duplicate !== 'function') {
    throw new TypeError('redisStore: pass a connected client of the `redis` package (createClient(...).connect())')
  }
  return { open: (listener) => openLink(client, prefix, listener) }
}

/** A Lua script, run by its SHA1 (loaded on first use, and again after a Redis restart). */
class Script {
  private readonly sha: string
  constructor(private readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex')
  }

  /** Loads the script into Redis's cache, so that the first calls need not send its source. */
  load(client: RedisClient): Promise<unknown> {
    return client.sendCommand(['SCRIPT', 'LOAD', this.source])
  }

  async run(client: RedisClient, keys: string[], args: Array<string | number>): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args.map(String)]
    try {
      return await client.sendCommand(['EVALSHA', this.sha, ...tail])
    } catch (error) {
      // Not in the script cache (a restarted Redis): EVAL sends the source, which caches it.
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
      return client.sendCommand(['EVAL', this.source, ...tail])
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
}

/** An entry as the list holds it: its kind in the first character. */
const encodeEntry = (entry: StoredEntry): string => (entry.reply ? 'r' : 'm') + entry.payload
const decodeEntry = (text: string): StoredEntry => (text[0] === 'r' ? { payload: text.slice(1), reply: true } : { payload: text.slice(1) })

async function openLink(client: RedisClient, prefix: string, listener: StoreListener): Promise<StoreLink> {
  const hash = (id: string) => `${prefix}:{${id}}`
  const queue = (id: string) => `${prefix}:{${id}}:q`
  const due = `${prefix}:due`
  const channel = `${prefix}:notices`
  const broadcasts = `${prefix}:broadcasts`
  const principalArgs = (principal: string | undefined) => (principal === undefined ? ['0', ''] : ['1', principal])

  await Promise.all(Object.values(scripts).map((script) => script.load(client)))
  const subscriber = client.duplicate()
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
    }
  })

  const index = (id: string, deadline: number) => client.sendCommand(['ZADD', due, String(deadline), id])

  return {
    async create(id, principal, deadline, broadcast) {
      const created = await scripts.create.run(client, [hash(id)], [...principalArgs(principal), deadline, broadcast])
      if (created !== 1) throw new Error(`session id ${id} exists already`)
      await index(id, deadline)
    },

    async claim(id, request): Promise<ClaimedSession | ClaimRefusal> {
      const reply = (await scripts.claim.run(
        client,
        [hash(id), queue(id)],
        [...principalArgs(request.principal), request.deadline, request.ack, request.acked ?? -1],
      )) as unknown[]
      if (reply[0] !== 'ok') return reply[0] === 'lost' ? 'lost' : 'unknown'
      await index(id, request.deadline)
      const [, epoch, rx, tx, unclean, seen, waiting, entries, broadcast] = reply as [
        string,
        number,
        number,
        number,
        number,
        number,
        number,
        string[],
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
      }
    },

    async commit(id, batch): Promise<CommitResult> {
      const reply = (await scripts.commit.run(
        client,
        [hash(id), queue(id)],
        [batch.epoch, batch.rx, batch.base, batch.trim, batch.recorded, batch.broadcast ?? '', ...batch.entries.map(encodeEntry)],
      )) as unknown[]
      // A store that lost writes holds a session that is not this one any more: gone, as if ended.
      if (reply[0] !== 'ok') return { ok: false, reason: reply[0] === 'fenced' ? 'fenced' : 'gone' }
      return { ok: true, waiting: reply[1] as number, gap: (reply[2] as string[]).map(decodeEntry) }
    },

    async release(id, release) {
      const released = await scripts.release.run(client, [hash(id)], [release.epoch, release.deadline, release.waiting, release.seen])
      if (released !== 1) return false
      await index(id, release.deadline)
      return true
    },

    async touch(id, epoch, deadline) {
      const touched = await scripts.touch.run(client, [hash(id)], [epoch, deadline])
      if (touched !== 1) return false
      await index(id, deadline)
      return true
    },

    async append(id, entry, { waiting, maxQueue }) {
      const seq = (await scripts.append.run(client, [hash(id), queue(id)], [encodeEntry(entry), waiting ? 1 : 0, maxQueue])) as number
      return seq === -1 ? 'unknown' : seq === -2 ? 'full' : seq
    },

    async end(id, epoch) {
      const ended = await scripts.end.run(client, [hash(id), queue(id)], [epoch ?? ''])
      await client.sendCommand(['ZREM', due, id])
      return ended === 1
    },

    async acknowledgedUpTo(id) {
      const acked = await client.sendCommand(['HGET', hash(id), 'ak'])
      return acked === null || acked === undefined ? undefined : Number(acked)
    },

    async due(now, limit) {
      return (await client.sendCommand(['ZRANGEBYSCORE', due, '-inf', String(now), 'LIMIT', '0', String(limit)])) as string[]
    },

    async expire(id, now) {
      const reply = (await scripts.expire.run(client, [hash(id), queue(id)], [now])) as unknown[]
      if (reply[0] === 1) {
        // Resumed or touched since it was indexed: indexed again at its deadline.
        await index(id, Number(reply[1]))
        return undefined
      }
      await client.sendCommand(['ZREM', due, id])
      if (reply[0] === 2) return { principal: reply[1] as string }
      if (reply[0] === 3) return { principal: undefined }
      return undefined
    },

    async broadcast(payload, keep) {
      // Trimmed by age (approximately, which is cheap): stream ids begin with Redis's clock in ms.
      const oldest = Math.max(0, Date.now() - keep)
      const id = (await client.sendCommand(['XADD', broadcasts, 'MINID', '~', String(oldest), '*', 'p', payload])) as string
      await client.sendCommand(['PUBLISH', channel, JSON.stringify({ t: 'broadcast', id } satisfies StoreNotice)])
      return id
    },

    async broadcastsAfter(id) {
      const entries = (await client.sendCommand(['XRANGE', broadcasts, `(${id}`, '+'])) as Array<[string, string[]]>
      return entries.map(([entryId, fields]) => ({ id: entryId, payload: fields[fields.indexOf('p') + 1] ?? 'null' }))
    },

    async lastBroadcast() {
      const last = (await client.sendCommand(['XREVRANGE', broadcasts, '+', '-', 'COUNT', '1'])) as Array<[string, string[]]>
      return last[0]?.[0] ?? '0-0'
    },

    async notify(notice) {
      await client.sendCommand(['PUBLISH', channel, JSON.stringify(notice)])
    },

    async close() {
      await (subscriber.close?.() ?? subscriber.quit?.())
    },
  }
}
