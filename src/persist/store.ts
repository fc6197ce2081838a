/**
 * Opening a page's outbox: reopen the one this tab's previous page left (its id in
 * `sessionStorage`) when its Web Lock is free, or create one; list the orphans (outboxes of the
 * same name whose lock nobody holds and that hold entries or a session); drop empty ones.
 * @module
 */
import type { OutboxHandle, PersistedOutbox, PersistStore } from '../client/persist.js'
import { share } from '../client/shared/index.js'
import { DEV } from '../dev.js'
import { OptionError, PersistError } from '../errors.js'
import { randomHex } from '../random.js'
import { persistError, reasonOf } from './failure.js'
import { IndexedDBOutbox } from './handle.js'
import { logRange, openDatabase, transact } from './idb.js'
import { type Locks, lockedNames, tryLock } from './locks.js'
import { OutboxState } from './log.js'
import { restore } from './restore.js'
import { databaseName, LOG, type LogRecord, lockName, lockPrefix, OUTBOXES, type OutboxRecord, tabKey } from './schema.js'
import { readTab, writeTab } from './tab.js'

/** The platform objects the store uses; any may be missing. */
export interface PersistEnvironment {
  readonly indexedDB?: IDBFactory
  readonly IDBKeyRange?: typeof IDBKeyRange
  readonly locks?: Locks
  readonly sessionStorage?: Storage
}

/** Reads a global that may be missing or throw on access (`sessionStorage` with storage disabled). */
function global<T>(read: () => T | undefined): T | undefined {
  try {
    return read() ?? undefined
  } catch {
    return undefined
  }
}

/** The page's own platform objects, read when a store opens. */
export function browserEnvironment(): PersistEnvironment {
  const scope = globalThis as {
    indexedDB?: IDBFactory
    IDBKeyRange?: typeof IDBKeyRange
    sessionStorage?: Storage
    navigator?: { locks?: Locks }
  }
  return {
    indexedDB: global(() => scope.indexedDB),
    IDBKeyRange: global(() => scope.IDBKeyRange),
    locks: global(() => scope.navigator?.locks),
    sessionStorage: global(() => scope.sessionStorage),
  }
}

/** A store of outboxes under `name`, on the platform objects `environment()` returns at each `open()`. */
export function createStore(name: string, environment: () => PersistEnvironment): PersistStore {
  if (typeof name !== 'string' || name === '' || name.length > 200) {
    throw new OptionError(
      DEV
        ? `indexedDBStore(name): name must be a non-empty string of at most 200 characters, such as 'chat'; got ${typeof name === 'string' ? JSON.stringify(name.slice(0, 40)) : typeof name}`
        : '',
    )
  }
  const store: PersistStore = {
    name,
    open: () => open(name, environment()),
    restore: (context) => restore(store, context),
    share,
  }
  return store
}

async function open(name: string, env: PersistEnvironment): Promise<OutboxHandle> {
  const { indexedDB, IDBKeyRange: keyRange, locks, sessionStorage } = env
  if (!indexedDB || !keyRange) {
    throw persistError(
      'unavailable',
      DEV ? `IndexedDB is not available here, so the outbox of "${name}" is kept in memory only (a reload loses what is pending)` : '',
    )
  }
  if (!locks && !sessionStorage) {
    throw persistError(
      'unavailable',
      DEV
        ? `neither sessionStorage nor Web Locks are available, so no later page could find the outbox of "${name}": it is kept in memory only`
        : '',
    )
  }
  const { db, created } = await openOrExplain(indexedDB, databaseName(name))
  const failure = watch(db, databaseName(name))
  let release: (() => void) | undefined
  try {
    const claimed = await claim({ db, keyRange, locks, sessionStorage, name, created })
    release = claimed.release
    const orphans = locks ? await findOrphans(db, keyRange, locks, name, claimed.record.id) : []
    const { record, state, next } = claimed
    const context = { name, db, keyRange, locks, sessionStorage, record, state, next, release: claimed.release, failure }
    return new IndexedDBOutbox(context, orphans, claimed.lost)
  } catch (error) {
    release?.()
    db.close()
    throw (
      failure() ??
      (error instanceof PersistError
        ? error
        : persistError(reasonOf(error), DEV ? `IndexedDB failed while opening the outbox of "${name}"` : '', error))
    )
  }
}

/** Opens the database, or throws the PersistError that says why it cannot be. */
async function openOrExplain(indexedDB: IDBFactory, dbName: string): Promise<{ db: IDBDatabase; created: boolean }> {
  try {
    return await openDatabase(indexedDB, dbName)
  } catch (error) {
    throw reasonOf(error) === 'version'
      ? persistError(
          'version',
          DEV
            ? `the database "${dbName}" was written by a newer version of tethersocket; this one does not downgrade it, so the outbox is kept in memory only (update the page's tethersocket)`
            : '',
          error,
        )
      : persistError(
          'unavailable',
          DEV ? `IndexedDB refused to open "${dbName}" (a private window or storage disabled?), so the outbox is kept in memory only` : '',
          error,
        )
  }
}

/** Watches the connection for being closed under the page; returns what happened, once it has. */
function watch(db: IDBDatabase, dbName: string): () => PersistError | undefined {
  let failure: PersistError | undefined
  db.onversionchange = (event) => {
    // Close at once: a newer page's upgrade, or the deletion, waits for this connection.
    db.close()
    failure ??=
      event.newVersion === null
        ? persistError(
            'evicted',
            DEV ? `the database "${dbName}" was deleted (site data cleared): what is pending is kept in memory only` : '',
          )
        : persistError(
            'version',
            DEV
              ? `a newer version of tethersocket upgraded "${dbName}" in another page: this page keeps what is pending in memory only`
              : '',
          )
  }
  // Fired only when the browser closes the connection itself: the storage was cleared or failed.
  db.onclose = () => {
    failure ??= persistError(
      'evicted',
      DEV ? `the browser closed the database "${dbName}" (its storage was cleared or failed): what is pending is kept in memory only` : '',
    )
  }
  return () => failure
}

interface Claiming {
  readonly db: IDBDatabase
  readonly keyRange: typeof IDBKeyRange
  readonly locks: Locks | undefined
  readonly sessionStorage: Storage | undefined
  readonly name: string
  /** Whether opening created the database (none existed). */
  readonly created: boolean
}

/** An outbox as its log left it. */
interface Found {
  readonly record: OutboxRecord
  readonly state: OutboxState
  /** The number of the next record of its log. */
  readonly next: number
}

interface Claimed extends Found {
  /** Releases its lock. */
  readonly release: () => void
  readonly lost?: PersistError
}

/**
 * This page's outbox, under its lock: the one this tab kept when its lock is free and it still
 * exists, else a new one (then kept in sessionStorage for the tab's next page). Without Web
 * Locks, the kept one whenever it exists.
 */
async function claim({ db, keyRange, locks, sessionStorage, name, created }: Claiming): Promise<Claimed> {
  const hold = (id: string) => (locks ? tryLock(locks, lockName(name, id)) : Promise.resolve(() => undefined))
  const key = tabKey(name)
  const kept = readTab(sessionStorage, key)
  let lost: PersistError | undefined
  if (kept) {
    // No lock: another page holds it (this tab was duplicated, or another socket of this page has
    // it), and this page gets an outbox of its own.
    const release = await hold(kept)
    if (release) {
      const found = await reopen(db, keyRange, kept).catch((error: unknown) => {
        release()
        throw error
      })
      if (found) return { ...found, release }
      release()
      // Gone. The tab kept its id but the database had to be created: the browser deleted it
      // since the last page. Otherwise another page adopted it while this tab was reloading (and
      // delivers what it held), or it was discarded: nothing is lost.
      if (created) {
        lost = persistError(
          'evicted',
          DEV
            ? `the stored outbox of "${name}" is gone: the browser deleted this site's storage since the last page (evicted, or cleared), and what it held is lost`
            : '',
        )
      }
    }
  }
  const id = newId()
  const release = await hold(id)
  if (!release) throw new Error(`the lock of a new outbox is taken: ${id}`)
  const now = Date.now()
  const record: OutboxRecord = { id, created: now, opened: now }
  try {
    await transact(db, 'readwrite', (tx) => {
      tx.objectStore(OUTBOXES).add(record)
      return () => undefined
    })
  } catch (error) {
    release()
    throw error
  }
  writeTab(sessionStorage, key, id)
  return { record, state: new OutboxState(), next: 0, release, ...(lost && { lost }) }
}

/** Ids of outboxes: 128 random bits. */
const newId = () => randomHex(16)

/** Reads outbox `id` (marking it opened now) and replays its log, or `undefined` when it is gone. */
function reopen(db: IDBDatabase, keyRange: typeof IDBKeyRange, id: string): Promise<Found | undefined> {
  return transact(db, 'readwrite', (tx) => {
    const outboxes = tx.objectStore(OUTBOXES)
    let found: Found | undefined
    outboxes.get(id).onsuccess = (event) => {
      const stored = (event.target as IDBRequest<OutboxRecord | undefined>).result
      if (!stored) return
      const record = { ...stored, opened: Date.now() }
      outboxes.put(record)
      tx.objectStore(LOG).getAll(logRange(keyRange, id)).onsuccess = (event) => {
        found = { record, ...OutboxState.replay((event.target as IDBRequest<LogRecord[]>).result) }
      }
    }
    return () => found
  })
}

/**
 * The outboxes under `name` whose lock nobody holds, oldest first, except `own`: those with
 * entries or a session are the orphans; empty ones are deleted (under their lock, so that a page
 * reopening one meanwhile keeps it).
 */
async function findOrphans(
  db: IDBDatabase,
  keyRange: typeof IDBKeyRange,
  locks: Locks,
  name: string,
  own: string,
): Promise<PersistedOutbox[]> {
  const held = await lockedNames(locks, lockPrefix(name))
  const free = (id: string) => id !== own && !held.has(lockName(name, id))
  const found = await transact(db, 'readonly', (tx) => {
    const all: { record: OutboxRecord; state: OutboxState }[] = []
    tx.objectStore(OUTBOXES).getAll().onsuccess = (event) => {
      for (const record of (event.target as IDBRequest<OutboxRecord[]>).result) {
        if (!free(record.id)) continue
        const item = { record, state: new OutboxState() }
        all.push(item)
        tx.objectStore(LOG).getAll(logRange(keyRange, record.id)).onsuccess = (event) => {
          item.state = OutboxState.replay((event.target as IDBRequest<LogRecord[]>).result).state
        }
      }
    }
    return () => all
  })
  const empty = found.filter(({ state }) => state.empty)
  for (const { record } of empty) {
    try {
      await dropEmpty(db, keyRange, locks, name, record.id)
    } catch {
      // Housekeeping only: an empty outbox left behind holds nothing, and costs a few small records.
    }
  }
  return found
    .filter((item) => !empty.includes(item))
    .sort((a, b) => a.record.created - b.record.created)
    .map(({ record, state }) => state.outbox(record.id))
}

/** Deletes an empty outbox nobody holds, and its log; leaves it when a page took it meanwhile, or when it got entries. */
async function dropEmpty(db: IDBDatabase, keyRange: typeof IDBKeyRange, locks: Locks, name: string, id: string): Promise<void> {
  const release = await tryLock(locks, lockName(name, id))
  if (!release) return
  try {
    await transact(db, 'readwrite', (tx) => {
      const log = tx.objectStore(LOG)
      // Read again under the lock: a page may have reopened it and written since the listing.
      log.getAll(logRange(keyRange, id)).onsuccess = (event) => {
        if (!OutboxState.replay((event.target as IDBRequest<LogRecord[]>).result).state.empty) return
        log.delete(logRange(keyRange, id))
        tx.objectStore(OUTBOXES).delete(id)
      }
      return () => undefined
    })
  } finally {
    release()
  }
}
