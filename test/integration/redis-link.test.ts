/**
 * The Redis store's link (src/redis/index.ts and its scripts) against a real redis-server,
 * method by method: what store.ts promises of a `StoreLink`. Two links on one Redis stand for
 * two nodes.
 */
import { createClient } from 'redis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import type { StoreLink, StoreListener, StoreNotice } from '../../src/server/store.js'
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { waitFor } from '../support/tether.js'

let redis: RedisServer
const opened: Array<() => Promise<unknown>> = []
let prefixCount = 0

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(async () => {
  for (const close of opened.splice(0)) await close()
})

/** `count` links sharing one prefix (one service), each with its own client, and what each heard. */
async function links(count: number) {
  const prefix = `l${++prefixCount}-${Date.now()}`
  const all: Array<{ link: StoreLink; heard: StoreNotice[] }> = []
  for (let i = 0; i < count; i++) {
    const client = createClient({ url: redis.url })
    await client.connect()
    const heard: StoreNotice[] = []
    const listener: StoreListener = {
      appended: (id) => heard.push({ t: 'appended', id }),
      acknowledged: (id, seq) => heard.push({ t: 'acknowledged', id, seq }),
      ended: (id, reason) => heard.push({ t: 'ended', id, reason }),
      claimed: (id, epoch) => heard.push({ t: 'claimed', id, epoch }),
      broadcast: (id) => heard.push({ t: 'broadcast', id }),
      error: () => {},
    }
    const link = await redisStore(client, { prefix }).open(listener)
    opened.push(async () => {
      await link.close()
      await client.close()
    })
    all.push({ link, heard })
  }
  return all
}

const later = (ms = 60_000) => Date.now() + ms
const hello = { principal: 'alice', deadline: later(), ack: 0 }

describe('redisStore link', () => {
  it('create, then a claim from another node takes a new epoch; the old epoch is fenced', async () => {
    const [a, b] = await links(2)
    await a.link.create('s1', 'alice', later(), '0-0')
    const first = await a.link.commit('s1', { epoch: 1, rx: 2, base: 0, entries: [{ payload: '"m1"' }], trim: 0, recorded: 0 })
    expect(first).toEqual({ ok: true, gap: [], waiting: 0 })
    const claimed = await b.link.claim('s1', hello)
    expect(claimed).toMatchObject({ epoch: 2, rx: 2, tx: 1, unclean: true, entries: [{ payload: '"m1"' }], broadcast: '0-0' })
    const fenced = await a.link.commit('s1', { epoch: 1, rx: 3, base: 1, entries: [{ payload: '"late"' }], trim: 0, recorded: 2 })
    expect(fenced).toEqual({ ok: false, reason: 'fenced' })
    expect(await a.link.release('s1', { epoch: 1, deadline: later(), waiting: 0, seen: 3 })).toBe(false)
    expect(await a.link.touch('s1', 1, later())).toBe(false)
    // The new holder's numbering goes on, untouched by the fenced write.
    const next = await b.link.commit('s1', { epoch: 2, rx: 3, base: 1, entries: [{ payload: '"m2"' }], trim: 1, recorded: 2 })
    expect(next).toEqual({ ok: true, gap: [], waiting: 0 })
    const again = await a.link.claim('s1', { ...hello, ack: 1 })
    expect(again).toMatchObject({ epoch: 3, rx: 3, tx: 2, entries: [{ payload: '"m2"' }] })
  })

  it('a claim is refused: another principal or no such id is unknown; a client that knows more than the store is lost', async () => {
    const [a] = await links(1)
    await a.link.create('s2', 'alice', later(), '0-0')
    expect(await a.link.claim('s2', { ...hello, principal: 'mallory' })).toBe('unknown')
    expect(await a.link.claim('s2', { ...hello, principal: undefined })).toBe('unknown')
    expect(await a.link.claim('nope', hello)).toBe('unknown')
    expect(await a.link.claim('s2', { ...hello, ack: 5 })).toBe('lost') // received messages never recorded
    expect(await a.link.claim('s2', { ...hello, acked: 1 })).toBe('lost') // saw an ack never recorded
  })

  it('a commit that finds the store behind what this node saw recorded says gone (the store lost writes)', async () => {
    const [a] = await links(1)
    await a.link.create('s3', undefined, later(), '0-0')
    expect(
      await a.link.commit('s3', { epoch: 1, rx: 0, base: 4, entries: [], trim: 0, recorded: 0 }), // the node saw 4 messages recorded
    ).toEqual({ ok: false, reason: 'gone' })
  })

  it("append from another node goes after the holder's messages; the holder's next commit gets it as its gap", async () => {
    const [a, b] = await links(2)
    await a.link.create('s4', undefined, later(), '0-0')
    await a.link.commit('s4', { epoch: 1, rx: 0, base: 0, entries: [{ payload: '"own"' }], trim: 0, recorded: 0 })
    expect(await b.link.append('s4', { payload: '"from b"' }, { waiting: true, maxQueue: 10, maxQueueBytes: 1e6 })).toBe(2)
    const result = await a.link.commit('s4', { epoch: 1, rx: 0, base: 1, entries: [{ payload: '"own 2"' }], trim: 1, recorded: 0 })
    expect(result).toEqual({ ok: true, gap: [{ payload: '"from b"' }], waiting: 2 })
    expect(await b.link.append('nope', { payload: '1' }, { waiting: false, maxQueue: 10, maxQueueBytes: 1e6 })).toBe('unknown')
    expect(await b.link.append('s4', { payload: '1' }, { waiting: false, maxQueue: 2, maxQueueBytes: 1e6 })).toBe('full')
    expect(await b.link.acknowledgedUpTo('s4')).toBe(1)
  })

  it('expiry: due once its deadline passed and no node pushed it on; two nodes expiring it at once end it once', async () => {
    const [a, b] = await links(2)
    await a.link.create('s5', 'alice', Date.now() + 50, '0-0')
    await a.link.create('s6', 'alice', later(), '0-0')
    await new Promise((resolve) => setTimeout(resolve, 80))
    const now = Date.now()
    expect(await a.link.due(now, 10)).toEqual(['s5'])
    const results = await Promise.all([a.link.expire('s5', now), b.link.expire('s5', now)])
    expect(results.filter(Boolean)).toEqual([{ principal: 'alice', topics: [] }])
    expect(await a.link.due(Date.now(), 10)).toEqual([])
    expect(await a.link.claim('s5', hello)).toBe('unknown')
    // A touched session is not expired: its deadline moved.
    await a.link.touch('s6', 1, later())
    expect(await b.link.expire('s6', Date.now())).toBeUndefined()
  })

  it('end: only with the holding epoch, or by anyone without one', async () => {
    const [a] = await links(1)
    await a.link.create('s7', undefined, later(), '0-0')
    expect(await a.link.end('s7', 9)).toBe(false)
    expect(await a.link.end('s7', 1)).toBe(true)
    expect(await a.link.end('s7')).toBe(false)
  })

  it('broadcasts: logged once, in order, read after an id; every node hears of each', async () => {
    const [a, b] = await links(2)
    const start = await a.link.lastBroadcast()
    const first = await a.link.broadcast('"one"', 60_000)
    const second = await b.link.broadcast('"two"', 60_000)
    expect(await a.link.broadcastsAfter(start)).toEqual([
      { id: first, payload: '"one"' },
      { id: second, payload: '"two"' },
    ])
    expect(await b.link.broadcastsAfter(first)).toEqual([{ id: second, payload: '"two"' }])
    expect(await a.link.lastBroadcast()).toBe(second)
    await waitFor(() => a.heard.length >= 2 && b.heard.length >= 2, 3000, 'the notices')
    expect(b.heard).toEqual([
      { t: 'broadcast', id: first },
      { t: 'broadcast', id: second },
    ])
  })

  it('notices reach every node, the sender too', async () => {
    const [a, b] = await links(2)
    await a.link.notify({ t: 'acknowledged', id: 'x', seq: 4 })
    await waitFor(() => a.heard.length === 1 && b.heard.length === 1, 3000, 'the notice')
    expect(b.heard).toEqual([{ t: 'acknowledged', id: 'x', seq: 4 }])
  })
})
