// @vitest-environment node
/**
 * The IndexedDB outbox store (`tethersocket/persist`) in Node, on fake-indexeddb (an in-memory
 * IndexedDB) and the in-memory Web Locks of test/support/locks.ts. A "page" here is a store on
 * its own `navigator.locks` and a tab's `sessionStorage`: a reload is a new page on the same
 * storage after the old page ended (its locks released, as the browser does), a duplicated tab a
 * new page on a copy of it. The same behaviour in real Chromium: test/browser/persist-store.test.ts.
 */
import { forceCloseDatabase, IDBDatabase, IDBFactory, IDBKeyRange, IDBObjectStore } from 'fake-indexeddb'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { OutboxHandle, PersistedEntry, PersistedSession } from '../../src/client/persist.js'
import { OptionError, PersistError } from '../../src/errors.js'
import { indexedDBStore, requestPersistentStorage } from '../../src/persist/index.js'
import { ENTRIES_PER_DELTA, MAX_DELTAS } from '../../src/persist/log.js'
import { LOG, type LogRecord, OUTBOXES, SCHEMA_VERSION } from '../../src/persist/schema.js'
import { createStore, type PersistEnvironment } from '../../src/persist/store.js'
import { FakeLockBroker, type FakeLocks } from '../support/locks.js'
import { MemoryStorage } from '../support/storage.js'

let factory: IDBFactory
let broker: FakeLockBroker
const handles: OutboxHandle[] = []
const restores: (() => void)[] = []

beforeEach(() => {
  factory = new IDBFactory() // an empty IndexedDB per test
  broker = new FakeLockBroker()
})

afterEach(() => {
  for (const restore of restores.splice(0).reverse()) restore()
  for (const handle of handles.splice(0)) handle.close()
  vi.unstubAllGlobals()
})

interface Page {
  readonly storage: MemoryStorage
  readonly locks: FakeLocks
  open(): Promise<OutboxHandle>
  /** The page goes away without closing its outbox (a reload, a closed tab): its locks are released. */
  end(): void
}

function page(storage = new MemoryStorage(), environment: Partial<PersistEnvironment> = {}, name = 'chat'): Page {
  const locks = broker.client()
  const store = createStore(name, () => ({ indexedDB: factory, IDBKeyRange, locks, sessionStorage: storage, ...environment }))
  return {
    storage,
    locks,
    open: async () => {
      const handle = await store.open()
      handles.push(handle)
      return handle
    },
    end: () => locks.end(),
  }
}

/** Replaces `object[method]` for this test (restored after it). */
function wrap<T extends object, K extends keyof T>(object: T, method: K, replacement: (original: T[K]) => T[K]): void {
  const original = object[method]
  object[method] = replacement(original)
  restores.push(() => {
    object[method] = original
  })
}

const entry = (position: number, text: string, more: Partial<PersistedEntry> = {}): PersistedEntry => ({
  position,
  seq: 0,
  payload: JSON.stringify({ text }),
  ...more,
})
const texts = (entries: readonly PersistedEntry[]) => entries.map((e) => JSON.parse(e.payload as string).text)
const session = (id: string, n = 0): PersistedSession => ({ id, delivered: n, sent: n, acked: n })

/** Everything in the database, read with a connection of its own. */
async function dump(name = 'chat'): Promise<{ outboxes: { id: string }[]; log: LogRecord[] }> {
  const db = await new Promise<globalThis.IDBDatabase>((resolve, reject) => {
    const request = factory.open(`tethersocket:${name}`)
    request.onsuccess = () => resolve(request.result)
    request.onerror = () => reject(request.error)
  })
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction([OUTBOXES, LOG])
      const outboxes = tx.objectStore(OUTBOXES).getAll()
      const log = tx.objectStore(LOG).getAll()
      tx.oncomplete = () => resolve({ outboxes: outboxes.result, log: log.result })
      tx.onerror = () => reject(tx.error)
    })
  } finally {
    db.close()
  }
}

/**
 * Counts the write requests (`put`, `add`, `delete` of an object store) issued from now on:
 * returns the function that lists those since it was last called (records put as snapshots as
 * `'put snapshot'`).
 */
function countWrites(): () => string[] {
  let made: string[] = []
  for (const method of ['put', 'add', 'delete'] as const) {
    wrap(
      IDBObjectStore.prototype,
      method,
      (original) =>
        function (this: IDBObjectStore, ...args: unknown[]) {
          made.push((args[0] as { snapshot?: boolean } | undefined)?.snapshot ? `${method} snapshot` : method)
          return (original as (...args: unknown[]) => IDBRequest).apply(this, args)
        } as never,
    )
  }
  return () => {
    const since = made
    made = []
    return since
  }
}

/** The kinds of the records of the log, in order. */
const kinds = (log: readonly LogRecord[]) => log.map((record) => (record.snapshot ? 'snapshot' : 'delta'))

/** `count` entries from position `from` on. */
const entries = (from: number, count: number, more: Partial<PersistedEntry> = {}) =>
  Array.from({ length: count }, (_, i) => entry(from + i, `m${from + i}`, more))
const positions = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i)

/** Lets pending callbacks and promise jobs run (one turn of the event loop; no time passes). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve))

async function rejection(promise: Promise<unknown>): Promise<PersistError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(PersistError)
  return error as PersistError
}

describe('open, commit, reopen', () => {
  it('opens an empty outbox on a first visit, keeps its id in sessionStorage and holds its lock', async () => {
    const tab = page()
    const handle = await tab.open()
    expect(handle.opened).toEqual({ id: expect.any(String), entries: [] })
    expect(handle.orphans).toEqual([])
    expect(handle.lost).toBeUndefined()
    expect(tab.storage.getItem('tethersocket:chat')).toBe(handle.opened.id)
    expect(broker.held()).toEqual([`tethersocket:chat:${handle.opened.id}`])
    handle.close()
    await settle() // the browser releases a lock once its callback's promise settled
    expect(broker.held()).toEqual([])
  })

  it('reopens the same outbox after a reload, with the entries and session committed, in position order', async () => {
    const first = page()
    const before = await first.open()
    await before.commit({
      put: [entry(2, 'c'), entry(0, 'a', { seq: 1, requestId: 7 }), entry(1, 'b', { key: 'k', staleAt: 10, deadline: Infinity })],
    })
    await before.commit({ put: [entry(3, 'd')], remove: [1], session: session('s1', 2) })
    first.end() // reloaded: the page is gone without closing anything

    const reloaded = page(first.storage)
    const after = await reloaded.open()
    expect(after.opened.id).toBe(before.opened.id)
    expect(after.opened.session).toEqual(session('s1', 2))
    expect(after.opened.entries).toEqual([entry(0, 'a', { seq: 1, requestId: 7 }), entry(2, 'c'), entry(3, 'd')])
    expect(after.orphans).toEqual([])
    expect(after.lost).toBeUndefined()
  })

  it('clears the session with null, and removes an entry put and removed in the same commit', async () => {
    const tab = page()
    const handle = await tab.open()
    await handle.commit({ put: [entry(0, 'a')], session: session('s1') })
    await handle.commit({ put: [entry(1, 'b')], remove: [1], session: null })
    handle.close()
    await settle()
    const again = await page(tab.storage).open()
    expect(again.opened).toEqual({ id: handle.opened.id, entries: [entry(0, 'a')] })
  })

  it('keeps binary payloads as ArrayBuffers, byte for byte, beside text ones', async () => {
    const tab = page()
    const handle = await tab.open()
    const bytes = new Uint8Array(300).map((_, i) => (i * 7) % 256)
    await handle.commit({ put: [{ position: 0, seq: 0, payload: bytes.buffer }, entry(1, 'text')] })
    tab.end()
    const [binary, text] = (await page(tab.storage).open()).opened.entries
    expect(Object.prototype.toString.call(binary.payload)).toBe('[object ArrayBuffer]')
    expect(new Uint8Array(binary.payload as ArrayBuffer)).toEqual(bytes)
    expect(text.payload).toBe(JSON.stringify({ text: 'text' }))
  })

  it('writes each commit in one readwrite transaction with strict durability', async () => {
    const handle = await page().open()
    const made: { mode: string; durability: string }[] = []
    wrap(
      IDBDatabase.prototype,
      'transaction',
      (original) =>
        function (this: IDBDatabase, ...args: Parameters<IDBDatabase['transaction']>) {
          const tx = original.apply(this, args)
          made.push({ mode: tx.mode, durability: tx.durability })
          return tx
        },
    )
    await handle.commit({ put: [entry(0, 'a'), entry(1, 'b'), entry(2, 'c')], remove: [5], session: session('s1') })
    expect(made).toEqual([{ mode: 'readwrite', durability: 'strict' }])
    await handle.commit({})
    expect(made).toHaveLength(1) // nothing to write: no transaction
  })

  it('writes nothing of a commit whose write fails: the whole transaction is aborted', async () => {
    const tab = page()
    const handle = await tab.open()
    await handle.commit({ put: [entry(0, 'kept')], session: session('s1', 1) })
    let puts = 0
    wrap(
      IDBObjectStore.prototype,
      'put',
      (original) =>
        function (this: IDBObjectStore, ...args: Parameters<IDBObjectStore['put']>) {
          if (++puts === 1) throw new DOMException('the disk is unhappy', 'UnknownError')
          return original.apply(this, args)
        },
    )
    const error = await rejection(
      handle.commit({ put: [entry(1, 'x'), entry(2, 'y'), entry(3, 'z')], remove: [0], session: session('s1', 9) }),
    )
    expect(puts).toBe(1)
    expect(error).toMatchObject({ code: 'ERR_PERSIST', reason: 'unavailable' })
    expect(error.message).toMatch(/nothing of it was written \(UnknownError: the disk is unhappy\)/)
    tab.end()
    const again = await page(tab.storage).open()
    expect(again.opened).toEqual({ id: handle.opened.id, session: session('s1', 1), entries: [entry(0, 'kept')] })
  })

  it("maps QuotaExceededError to reason 'quota', writes nothing, and the next commit works", async () => {
    const tab = page()
    const handle = await tab.open()
    let full = true
    wrap(
      IDBObjectStore.prototype,
      'put',
      (original) =>
        function (this: IDBObjectStore, ...args: Parameters<IDBObjectStore['put']>) {
          const written = (args[0] as { put?: PersistedEntry[] }).put ?? []
          if (full && written.some((e) => e.position === 1)) throw new DOMException('quota reached', 'QuotaExceededError')
          return original.apply(this, args)
        },
    )
    const error = await rejection(handle.commit({ put: [entry(0, 'a'), entry(1, 'b')] }))
    expect(error.reason).toBe('quota')
    expect((error.cause as DOMException).name).toBe('QuotaExceededError')
    expect(error.message).toMatch(/storage quota for this site is used up: a commit to "chat" was not written/)
    full = false
    await handle.commit({ put: [entry(2, 'c')] })
    tab.end()
    expect((await page(tab.storage).open()).opened.entries).toEqual([entry(2, 'c')])
  })

  it('rejects bad changes with an OptionError naming the field, writing nothing', async () => {
    const handle = await page().open()
    await expect(handle.commit({ put: [{ position: 0, seq: 0, payload: new Uint8Array(2) as never }] })).rejects.toThrow(
      new OptionError('commit(): an entry `payload` must be a string or an ArrayBuffer; got {"0":0,"1":0}'),
    )
    await expect(handle.commit({ put: [{ position: Number.NaN, seq: 0, payload: 'x' }] })).rejects.toThrow(
      /`position` must be a finite number; got NaN/,
    )
    await expect(handle.commit({ session: { id: 's', delivered: 0, sent: '1' as never, acked: 0 } })).rejects.toThrow(
      /`session.sent` must be a finite number/,
    )
    expect((await dump()).log).toEqual([])
  })

  it("rejects commits after close() with reason 'locked': the page no longer holds the outbox", async () => {
    const handle = await page().open()
    handle.close()
    handle.close() // idempotent
    expect((await rejection(handle.commit({ put: [entry(0, 'late')] }))).reason).toBe('locked')
    expect((await dump()).log).toEqual([])
  })

  it('discard() deletes the outbox and its entries and forgets it in sessionStorage', async () => {
    const tab = page()
    const handle = await tab.open()
    await handle.commit({ put: [entry(0, 'a')], session: session('s1') })
    await handle.discard()
    expect(await dump()).toEqual({ outboxes: [], log: [] })
    expect(tab.storage.getItem('tethersocket:chat')).toBeNull()
    expect(broker.held()).toEqual([])
    const next = await page(tab.storage).open()
    expect(next.opened.id).not.toBe(handle.opened.id)
    expect(next.orphans).toEqual([])
  })

  it('keeps stores of different names apart', async () => {
    const storage = new MemoryStorage()
    const chat = await page(storage, {}, 'chat').open()
    const game = await page(storage, {}, 'game').open()
    await chat.commit({ put: [entry(0, 'chat')] })
    expect(game.opened.id).not.toBe(chat.opened.id)
    expect((await dump('game')).log).toEqual([])
    expect((await dump('chat')).log).toHaveLength(1)
  })

  it('refuses a store name that is not a non-empty string, with an OptionError', () => {
    expect(() => indexedDBStore('')).toThrow(OptionError)
    expect(() => indexedDBStore(42 as never)).toThrow(/name must be a non-empty string.*got number/)
  })

  it('gives the same store object for the same name (sockets of one store take turns to open it)', () => {
    expect(indexedDBStore('chat')).toBe(indexedDBStore('chat'))
    expect(indexedDBStore('game')).not.toBe(indexedDBStore('chat'))
  })
})

describe('which page owns which outbox', () => {
  it('gives a duplicated tab (a copy of sessionStorage, the lock held by its origin) an outbox of its own', async () => {
    const origin = page()
    const mine = await origin.open()
    await mine.commit({ put: [entry(0, 'origin')], session: session('s-origin') })

    const duplicate = page(origin.storage.copy())
    const theirs = await duplicate.open()
    expect(theirs.opened.id).not.toBe(mine.opened.id)
    expect(theirs.opened).toEqual({ id: theirs.opened.id, entries: [] })
    expect(theirs.orphans).toEqual([]) // the origin's outbox is held: not an orphan
    expect(duplicate.storage.getItem('tethersocket:chat')).toBe(theirs.opened.id)
    expect(origin.storage.getItem('tethersocket:chat')).toBe(mine.opened.id)

    await theirs.commit({ put: [entry(0, 'duplicate')] })
    // Each tab's reload reopens its own.
    origin.end()
    duplicate.end()
    expect(texts((await page(origin.storage).open()).opened.entries)).toEqual(['origin'])
    expect(texts((await page(duplicate.storage).open()).opened.entries)).toEqual(['duplicate'])
  })

  it('gives a second socket of the same page (the lock held by the first) an outbox of its own', async () => {
    const storage = new MemoryStorage()
    const first = await page(storage).open()
    const second = await page(storage).open()
    expect(second.opened.id).not.toBe(first.opened.id)
    expect(broker.held()).toHaveLength(2)
  })

  it("lists a closed tab's outbox as an orphan, with its session and entries, and never one a page holds", async () => {
    const closed = page()
    const gone = await closed.open()
    await gone.commit({ put: [entry(0, 'a'), entry(1, 'b')], session: session('s-gone', 3) })
    closed.end() // the tab was closed: its sessionStorage goes with it

    const live = await page().open() // another tab, still open
    await live.commit({ put: [entry(0, 'live')] })

    const next = await page().open()
    // `live` holds its lock: it is no orphan, though it has entries.
    expect(next.orphans).toEqual([{ id: gone.opened.id, session: session('s-gone', 3), entries: [entry(0, 'a'), entry(1, 'b')] }])
    expect(live.orphans.map((o) => o.id)).toEqual([gone.opened.id])
  })

  it('adopts an orphan: its entries move after the own ones, in order, renumbered; the orphan is deleted; its lock is released', async () => {
    const closed = page()
    const gone = await closed.open()
    await gone.commit({
      put: [entry(5, 'o1', { seq: 11 }), entry(9, 'o2', { seq: 12, key: 'k' }), entry(20, 'o3', { seq: 13 })],
      session: session('s-gone', 13),
    })
    closed.end()

    const tab = page()
    const handle = await tab.open()
    await handle.commit({ put: [entry(0, 'own0'), entry(1, 'own1')] })
    const [orphan] = handle.orphans
    const adopted = await handle.adopt(orphan)
    expect(adopted).toEqual({
      id: gone.opened.id,
      session: session('s-gone', 13),
      entries: [entry(2, 'o1', { seq: 11 }), entry(3, 'o2', { seq: 12, key: 'k' }), entry(4, 'o3', { seq: 13 })],
    })
    expect(broker.held()).toEqual([`tethersocket:chat:${handle.opened.id}`])
    const stored = await dump()
    expect(stored.outboxes.map((o) => o.id)).toEqual([handle.opened.id])
    expect(stored.log.every((record) => record.outbox === handle.opened.id)).toBe(true)

    tab.end()
    const reloaded = await page(tab.storage).open()
    expect(texts(reloaded.opened.entries)).toEqual(['own0', 'own1', 'o1', 'o2', 'o3'])
    expect(reloaded.opened.entries.map((e) => e.position)).toEqual([0, 1, 2, 3, 4])
    // Having none, it continues the orphan's session, written with the adoption: a page gone
    // before its first commit leaves it to the next one.
    expect(reloaded.opened.session).toEqual(session('s-gone', 13))
    expect(reloaded.orphans).toEqual([])
  })

  it("keeps its own session when it adopts an orphan of another session (the orphan's numbers are then the caller's to redo)", async () => {
    const closed = page()
    const gone = await closed.open()
    await gone.commit({ put: [entry(0, 'o1', { seq: 4 })], session: session('s-gone', 4) })
    closed.end()
    const tab = page()
    const handle = await tab.open()
    await handle.commit({ session: session('s-own', 2) })
    const adopted = await handle.adopt(handle.orphans[0]!)
    expect(adopted.session).toEqual(session('s-gone', 4))
    tab.end()
    const reloaded = await page(tab.storage).open()
    expect(reloaded.opened.session).toEqual(session('s-own', 2))
    expect(texts(reloaded.opened.entries)).toEqual(['o1'])
  })

  it('places adopted entries after every position the outbox was given, removed ones too, and offers orphans oldest first', async () => {
    const orphans: string[] = []
    vi.useFakeTimers({ toFake: ['Date'] })
    restores.push(() => vi.useRealTimers())
    // The older one gets the greater id, so that key order (how the database lists them) is not creation order.
    const fills = [0xff, 0x00]
    wrap(
      crypto,
      'getRandomValues',
      (original) =>
        ((array: Uint8Array) => {
          const fill = fills.shift()
          return fill === undefined ? original.call(crypto, array) : array.fill(fill)
        }) as typeof original,
    )
    for (const [name, created] of [
      ['older', 1000],
      ['newer', 2000],
    ] as const) {
      vi.setSystemTime(created)
      const tab = page()
      const handle = await tab.open()
      orphans.push(handle.opened.id)
      await handle.commit({ put: [entry(0, name)] })
      tab.end()
    }
    expect(orphans).toEqual(['f'.repeat(32), '0'.repeat(32)])
    const handle = await page().open()
    expect(handle.orphans.map((o) => o.id)).toEqual(orphans)
    await handle.commit({ put: [entry(40, 'done'), entry(41, 'done too')] })
    await handle.commit({ remove: [40, 41] }) // acknowledged: the outbox is empty again
    const first = await handle.adopt(handle.orphans[0])
    const inFlight = handle.commit({ put: [entry(44, 'mine')] })
    const second = await handle.adopt(handle.orphans[1])
    await inFlight
    // A caller numbering on from what adopt() returned never reuses a position.
    expect(first.entries).toEqual([entry(42, 'older')])
    expect(second.entries).toEqual([entry(45, 'newer')])
  })

  it("lets only one of two pages adopt an orphan: the other is refused with reason 'locked'", async () => {
    const closed = page()
    const gone = await closed.open()
    await gone.commit({ put: [entry(0, 'once')] })
    closed.end()

    const a = await page().open()
    const b = await page().open()
    expect(a.orphans.map((o) => o.id)).toEqual([gone.opened.id])
    expect(b.orphans.map((o) => o.id)).toEqual([gone.opened.id])
    const [fromA, fromB] = await Promise.allSettled([a.adopt(a.orphans[0]), b.adopt(b.orphans[0])])
    expect(fromA).toMatchObject({ status: 'fulfilled', value: { entries: [entry(0, 'once')] } })
    expect(fromB).toMatchObject({ status: 'rejected', reason: { code: 'ERR_PERSIST', reason: 'locked' } })
    // Afterwards too: the orphan is gone.
    expect((await rejection(b.adopt(b.orphans[0]))).message).toMatch(/another page adopted it first/)
    expect((await dump()).log.filter((record) => record.outbox === b.opened.id)).toEqual([])
  })

  it('refuses to adopt an orphan whose tab reopened it since the listing', async () => {
    const reloading = page()
    const gone = await reloading.open()
    await gone.commit({ put: [entry(0, 'mine')] })
    reloading.end()
    const other = await page().open()
    expect(other.orphans).toHaveLength(1)
    const back = await page(reloading.storage).open() // the reload finished: its page holds it again
    expect(back.opened.id).toBe(gone.opened.id)
    expect((await rejection(other.adopt(other.orphans[0]))).reason).toBe('locked')
    expect(texts(back.opened.entries)).toEqual(['mine'])
  })

  it('opens a new outbox, without reporting a loss, when its tab finds its outbox adopted by another page during a reload', async () => {
    const reloading = page()
    const gone = await reloading.open()
    await gone.commit({ put: [entry(0, 'taken')] })
    reloading.end()
    const other = await page().open()
    await other.adopt(other.orphans[0])
    const back = await page(reloading.storage).open()
    expect(back.opened.id).not.toBe(gone.opened.id)
    expect(back.opened.entries).toEqual([])
    expect(back.lost).toBeUndefined()
    expect(reloading.storage.getItem('tethersocket:chat')).toBe(back.opened.id)
  })

  it('deletes outboxes nobody holds that have neither entries nor a session, rather than offering them', async () => {
    const empty = page()
    await empty.open()
    empty.end()
    const withSession = page()
    await (await withSession.open()).commit({ session: session('s') })
    withSession.end()
    const next = await page().open()
    expect(next.orphans.map((o) => o.session?.id)).toEqual(['s'])
    expect((await dump()).outboxes).toHaveLength(2) // the session-only orphan and `next`
  })

  it('rejects adopting itself or something that is not an orphan with an OptionError', async () => {
    const handle = await page().open()
    await expect(handle.adopt(handle.opened)).rejects.toThrow(/cannot adopt itself/)
    await expect(handle.adopt(null as never)).rejects.toThrow(OptionError)
  })
})

describe('the log: a few requests a commit, whatever it holds', () => {
  it('writes a commit of 5,000 entries with one request, and their removal with two (a snapshot, and the deletion of the log before it)', async () => {
    const tab = page()
    const handle = await tab.open()
    const writes = countWrites()
    await handle.commit({ put: entries(0, 5000), session: session('s1') })
    expect(writes()).toEqual(['put'])
    await handle.commit({ put: entries(0, 5000, { seq: 1 }), session: session('s1', 5000) }) // numbered
    expect(writes()).toEqual(['put'])
    await handle.commit({ remove: positions(0, 5000), session: session('s1', 5000) }) // acknowledged
    expect(writes()).toEqual(['put snapshot', 'delete'])
    expect((await dump()).log).toEqual([{ outbox: handle.opened.id, n: 2, snapshot: true, entries: [], session: session('s1', 5000) }])
    tab.end()
    expect((await page(tab.storage).open()).opened).toEqual({ id: handle.opened.id, session: session('s1', 5000), entries: [] })
  })

  it('keeps the log short over 300 commits of one message each, and a reload replays it to the same state', async () => {
    const tab = page()
    const handle = await tab.open()
    const expected = new Map<number, PersistedEntry>()
    let longest = 0
    for (let i = 0; i < 300; i++) {
      // A send, and the acknowledgement of the one three commits before it.
      const put = [entry(i, `m${i}`, { seq: i + 1 })]
      const remove = i >= 3 ? [i - 3] : []
      await handle.commit({ put, remove, session: session('s1', i) })
      expected.set(i, put[0])
      for (const position of remove) expected.delete(position)
      longest = Math.max(longest, (await dump()).log.length)
    }
    expect(longest).toBe(MAX_DELTAS + 1) // a snapshot and the records after it
    tab.end()
    const again = await page(tab.storage).open()
    expect(again.opened).toEqual({ id: handle.opened.id, session: session('s1', 299), entries: [...expected.values()] })
    expect(texts(again.opened.entries)).toEqual(['m297', 'm298', 'm299'])
  })

  it('rewrites a large outbox seldom: its log may hold a record per 64 entries it holds before the next snapshot', async () => {
    const tab = page()
    const handle = await tab.open()
    await handle.commit({ put: entries(0, 4000) })
    const writes = countWrites()
    for (let i = 4000; i < 4200; i++) await handle.commit({ put: [entry(i, `m${i}`)] })
    const made = writes()
    const snapshots = made.filter((write) => write === 'put snapshot').length
    expect(made).toHaveLength(200 + snapshots) // each snapshot also deletes the log before it
    // 4,000 entries allow 62 records after a snapshot: 201 commits write 3 snapshots.
    expect(4000 / ENTRIES_PER_DELTA).toBeGreaterThan(MAX_DELTAS)
    expect(snapshots).toBe(3)
    expect((await dump()).log.length).toBeLessThanOrEqual(4200 / ENTRIES_PER_DELTA + 1)
    tab.end()
    const again = await page(tab.storage).open()
    expect(again.opened.entries).toEqual(entries(0, 4200))
  })

  it('reopens after a snapshot and the records after it', async () => {
    const tab = page()
    const handle = await tab.open()
    await handle.commit({ put: entries(0, 300), session: session('s1', 1) })
    await handle.commit({ remove: positions(0, 295) }) // the live entries are few now: a snapshot
    await handle.commit({ put: [entry(300, 'late')], session: session('s1', 2) })
    await handle.commit({ put: [entry(296, 'm296', { seq: 9 })], remove: [295] })
    const { log } = await dump()
    expect(kinds(log)).toEqual(['snapshot', 'delta', 'delta'])
    expect(log.map((record) => record.n)).toEqual([1, 2, 3])
    tab.end()
    const reloaded = page(tab.storage)
    const again = await reloaded.open()
    expect(again.opened).toEqual({
      id: handle.opened.id,
      session: session('s1', 2),
      entries: [entry(296, 'm296', { seq: 9 }), ...entries(297, 3), entry(300, 'late')],
    })
    // And the reopened outbox goes on from there: its next records follow, and its next snapshot replaces them.
    await again.commit({ put: entries(301, 300) })
    expect((await dump()).log.map((record) => record.n)).toEqual([1, 2, 3, 4])
    await again.commit({ remove: positions(296, 305), session: null })
    reloaded.end()
    expect((await dump()).log).toEqual([{ outbox: handle.opened.id, n: 5, snapshot: true, entries: [] }])
    expect((await page(tab.storage).open()).opened).toEqual({ id: handle.opened.id, entries: [] })
  })

  it('adopts a compacted orphan: its replayed entries, renumbered, in one record of the adopter; its log is deleted', async () => {
    const closed = page()
    const gone = await closed.open()
    await gone.commit({ put: entries(0, 300), session: session('s-gone', 1) })
    await gone.commit({ remove: positions(0, 298) }) // a snapshot
    await gone.commit({ put: [entry(300, 'last', { seq: 3 })], remove: [298], session: session('s-gone', 3) })
    expect(kinds((await dump()).log)).toEqual(['snapshot', 'delta'])
    closed.end()

    const tab = page()
    const handle = await tab.open()
    await handle.commit({ put: [entry(0, 'own')] })
    expect(handle.orphans).toEqual([
      { id: gone.opened.id, session: session('s-gone', 3), entries: [entry(299, 'm299'), entry(300, 'last', { seq: 3 })] },
    ])
    const writes = countWrites()
    const adopted = await handle.adopt(handle.orphans[0])
    expect(writes()).toEqual(['put', 'delete', 'delete']) // its record in the adopter's log; the orphan's log and record
    expect(adopted).toEqual({
      id: gone.opened.id,
      session: session('s-gone', 3),
      entries: [entry(1, 'm299'), entry(2, 'last', { seq: 3 })],
    })
    const { outboxes, log } = await dump()
    expect(outboxes.map((o) => o.id)).toEqual([handle.opened.id])
    expect(log.map((record) => [record.outbox, record.n])).toEqual([
      [handle.opened.id, 0],
      [handle.opened.id, 1],
    ])
    tab.end()
    const again = await page(tab.storage).open()
    expect(texts(again.opened.entries)).toEqual(['own', 'm299', 'last'])
    expect(again.opened.entries.map((e) => e.position)).toEqual([0, 1, 2])
  })

  it('writes nothing of a snapshot whose deletion of the log before it fails, and keeps what the log held', async () => {
    const tab = page()
    const handle = await tab.open()
    await handle.commit({ put: entries(0, 300), session: session('s1', 1) })
    const before = await dump()
    wrap(IDBObjectStore.prototype, 'delete', () => (): IDBRequest => {
      throw new DOMException('the disk is unhappy', 'UnknownError')
    })
    const writes = countWrites()
    const error = await rejection(handle.commit({ remove: positions(0, 299), session: session('s1', 2) }))
    expect(writes()).toEqual(['put snapshot', 'delete'])
    expect(error.message).toMatch(/nothing of it was written \(UnknownError: the disk is unhappy\)/)
    expect(await dump()).toEqual(before)
    for (const restore of restores.splice(0).reverse()) restore()
    // The page's state is what was written: the next commit builds on it.
    await handle.commit({ remove: positions(0, 100) })
    tab.end()
    const again = await page(tab.storage).open()
    expect(again.opened).toEqual({ id: handle.opened.id, session: session('s1', 1), entries: entries(100, 200) })
  })

  it('writes no snapshot while another write is in flight: the snapshot would not hold its changes', async () => {
    const tab = page()
    const handle = await tab.open()
    await handle.commit({ put: entries(0, 300) })
    const inFlight = handle.commit({ put: [entry(300, 'in flight')] })
    const due = handle.commit({ remove: positions(0, 295) }) // enough for a snapshot, were nothing in flight
    await Promise.all([inFlight, due])
    expect(kinds((await dump()).log)).toEqual(['delta', 'delta', 'delta'])
    await handle.commit({ put: [entry(301, 'next')] }) // nothing in flight: the snapshot is written now
    expect(kinds((await dump()).log)).toEqual(['snapshot'])
    tab.end()
    const again = await page(tab.storage).open()
    expect(texts(again.opened.entries)).toEqual(['m295', 'm296', 'm297', 'm298', 'm299', 'in flight', 'next'])
  })
})

describe('failures are reported, never silent', () => {
  it("rejects with reason 'unavailable' where there is no IndexedDB (through indexedDBStore, on the globals)", async () => {
    expect('indexedDB' in globalThis).toBe(false) // Node has none
    const error = await rejection(indexedDBStore('chat').open())
    expect(error).toMatchObject({ code: 'ERR_PERSIST', reason: 'unavailable', name: 'PersistError' })
    expect(error.message).toMatch(/IndexedDB is not available here.*memory only.*See docs\/ERRORS.md#err_persist/)
  })

  it("rejects with reason 'unavailable' when IndexedDB refuses to open (a private window)", async () => {
    const refusing = new IDBFactory()
    refusing.open = () => {
      throw new DOMException('The operation is insecure.', 'SecurityError')
    }
    const error = await rejection(page(new MemoryStorage(), { indexedDB: refusing }).open())
    expect(error.reason).toBe('unavailable')
    expect((error.cause as DOMException).name).toBe('SecurityError')
    expect(error.message).toMatch(/IndexedDB refused to open "tethersocket:chat"/)
  })

  it("rejects with reason 'version' on a database of a newer schema, and leaves it as it is", async () => {
    await new Promise<void>((resolve, reject) => {
      const request = factory.open('tethersocket:chat', SCHEMA_VERSION + 1)
      request.onupgradeneeded = () => request.result.createObjectStore('future')
      request.onsuccess = () => {
        request.result.close()
        resolve()
      }
      request.onerror = () => reject(request.error)
    })
    const error = await rejection(page().open())
    expect(error.reason).toBe('version')
    expect((error.cause as DOMException).name).toBe('VersionError')
    expect(error.message).toMatch(/written by a newer version of tethersocket/)
    const databases = await factory.databases()
    expect(databases).toEqual([{ name: 'tethersocket:chat', version: SCHEMA_VERSION + 1 }])
  })

  it("rejects commits with reason 'evicted' once the database is deleted under the page", async () => {
    const handle = await page().open()
    await handle.commit({ put: [entry(0, 'a')] })
    await new Promise<void>((resolve, reject) => {
      const request = factory.deleteDatabase('tethersocket:chat') // site data cleared: waits for our connection to close
      request.onsuccess = () => resolve()
      request.onerror = () => reject(request.error)
    })
    const error = await rejection(handle.commit({ put: [entry(1, 'b')] }))
    expect(error.reason).toBe('evicted')
    expect(error.message).toMatch(/was deleted/)
    expect((await rejection(handle.adopt({ id: 'x', entries: [] }))).reason).toBe('evicted')
  })

  it("rejects commits with reason 'evicted' when the browser closes the connection itself", async () => {
    const handle = await page().open()
    const [connection] = openConnections
    forceCloseDatabase(connection as never)
    expect((await rejection(handle.commit({ put: [entry(0, 'a')] }))).reason).toBe('evicted')
  })

  it("rejects commits with reason 'version' after a newer version upgraded the database in another page", async () => {
    const handle = await page().open()
    await new Promise<void>((resolve, reject) => {
      const request = factory.open('tethersocket:chat', SCHEMA_VERSION + 1)
      request.onsuccess = () => {
        request.result.close()
        resolve()
      }
      request.onerror = () => reject(request.error)
    })
    expect((await rejection(handle.commit({ put: [entry(0, 'a')] }))).reason).toBe('version')
  })

  it("reports 'evicted' as `lost` when the tab's outbox is gone with the whole database, and keeps the new outbox", async () => {
    const tab = page()
    const before = await tab.open()
    await before.commit({ put: [entry(0, 'lost')] })
    tab.end()
    before.close()
    factory = new IDBFactory() // the browser deleted the site's storage between the two pages
    const handle = await page(tab.storage).open()
    expect(handle.lost).toBeInstanceOf(PersistError)
    expect(handle.lost).toMatchObject({ reason: 'evicted', code: 'ERR_PERSIST' })
    expect(handle.lost?.message).toMatch(/the browser deleted this site's storage/)
    expect(handle.opened.id).not.toBe(before.opened.id)
    await handle.commit({ put: [entry(0, 'kept')] })
    handle.close()
    await settle()
    const again = await page(tab.storage).open()
    expect(again.lost).toBeUndefined()
    expect(texts(again.opened.entries)).toEqual(['kept'])
  })
})

describe('without Web Locks', () => {
  it('still reopens the tab’s outbox on a reload, lists no orphans and adopts nothing', async () => {
    const closed = page(new MemoryStorage(), { locks: undefined })
    await (await closed.open()).commit({ put: [entry(0, 'orphan')] })

    const tab = page(new MemoryStorage(), { locks: undefined })
    const handle = await tab.open()
    expect(handle.orphans).toEqual([]) // a live tab's outbox cannot be told from a closed one's
    await handle.commit({ put: [entry(0, 'mine')] })
    const reloaded = await page(tab.storage, { locks: undefined }).open()
    expect(reloaded.opened.id).toBe(handle.opened.id)
    expect(texts(reloaded.opened.entries)).toEqual(['mine'])
    const error = await rejection(reloaded.adopt({ id: 'other', entries: [] }))
    expect(error.reason).toBe('locked')
    expect(error.message).toMatch(/no Web Locks/)
  })

  it('lets a duplicated tab reopen its origin’s outbox: the documented loss', async () => {
    const origin = page(new MemoryStorage(), { locks: undefined })
    const mine = await origin.open()
    const copy = await page(origin.storage.copy(), { locks: undefined }).open()
    expect(copy.opened.id).toBe(mine.opened.id)
  })

  it("rejects with reason 'unavailable' without sessionStorage either: no later page could find the outbox", async () => {
    const error = await rejection(page(new MemoryStorage(), { locks: undefined, sessionStorage: undefined }).open())
    expect(error.reason).toBe('unavailable')
    expect(error.message).toMatch(/neither sessionStorage nor Web Locks/)
  })
})

describe('without sessionStorage', () => {
  it('opens a new outbox on every page, and the next page adopts the previous one', async () => {
    const first = page(new MemoryStorage(), { sessionStorage: undefined })
    const before = await first.open()
    await before.commit({ put: [entry(0, 'a')], session: session('s1') })
    first.end()
    const after = await page(new MemoryStorage(), { sessionStorage: undefined }).open()
    expect(after.opened.id).not.toBe(before.opened.id)
    expect(after.orphans.map((o) => o.id)).toEqual([before.opened.id])
  })
})

describe('the public entry', () => {
  it('indexedDBStore() uses the page’s globals: indexedDB, IDBKeyRange, navigator.locks, sessionStorage', async () => {
    const storage = new MemoryStorage()
    vi.stubGlobal('indexedDB', factory)
    vi.stubGlobal('IDBKeyRange', IDBKeyRange)
    vi.stubGlobal('sessionStorage', storage)
    vi.stubGlobal('navigator', { locks: broker.client() })
    const store = indexedDBStore('chat')
    expect(store.name).toBe('chat')
    const handle = await store.open()
    handles.push(handle)
    await handle.commit({ put: [entry(0, 'global')] })
    handle.close()
    const again = await indexedDBStore('chat').open()
    handles.push(again)
    expect(again.opened.id).toBe(handle.opened.id)
    expect(texts(again.opened.entries)).toEqual(['global'])
  })

  it('requestPersistentStorage() resolves false where the platform has no navigator.storage (Node)', async () => {
    expect((globalThis as { navigator?: { storage?: unknown } }).navigator?.storage).toBeUndefined()
    await expect(requestPersistentStorage()).resolves.toBe(false)
  })
})

/** The connections the store under test opened (for forceCloseDatabase). */
const openConnections: IDBDatabase[] = []
beforeEach(() => {
  openConnections.length = 0
  wrap(
    IDBFactory.prototype,
    'open',
    (original) =>
      function (this: IDBFactory, ...args: Parameters<IDBFactory['open']>) {
        const request = original.apply(this, args)
        request.addEventListener('success', () => openConnections.push(request.result as unknown as IDBDatabase))
        return request
      },
  )
})
