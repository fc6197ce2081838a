/**
 * Tools for tests of the durable outbox (`persist`) on the pages of support/pages.ts: a store
 * whose `open` and `commit` a test can hold or fail at the moment it needs, what an origin's
 * IndexedDB holds (read with a connection of its own), a recorded tether client with `persist`,
 * and the frames a page writes.
 */
import { IDBKeyRange } from 'fake-indexeddb'
import type {
  OutboxHandle,
  PersistChanges,
  PersistedEntry,
  PersistedSession,
  PersistStore,
  RestoredInfo,
} from '../../src/client/persist.js'
import type { MessageInfo } from '../../src/client/wire/types.js'
import type { PersistError } from '../../src/errors.js'
import type { TetherSocketOptions } from '../../src/index.js'
import { OutboxState } from '../../src/persist/log.js'
import { restore } from '../../src/persist/restore.js'
import { databaseName, LOG, type LogRecord, OUTBOXES } from '../../src/persist/schema.js'
import type { TetherServer } from '../../src/server/index.js'
import type { Origin, Page } from './pages.js'
import { tetherClient } from './tether.js'

/** A gate: `hold()` makes later passes wait until `release()`. */
export class Gate {
  #held = false
  #waiting: (() => void)[] = []

  /** How many passes wait now. */
  get waiting(): number {
    return this.#waiting.length
  }

  /** Passes from now on wait. */
  hold(): void {
    this.#held = true
  }

  /** Lets every waiting pass go, and later ones pass at once. */
  release(): void {
    this.#held = false
    for (const go of this.#waiting.splice(0)) go()
  }

  /** Resolves at once, or once released while held. */
  pass(): Promise<void> {
    if (!this.#held) return Promise.resolve()
    return new Promise((resolve) => this.#waiting.push(resolve))
  }
}

/** A page's store with gates on `open` (before it starts, and once it holds its outbox) and on each `commit` (before it is written). */
export interface GatedStore {
  readonly store: PersistStore
  readonly opening: Gate
  /** Passed once an `open` holds its outbox, before it returns it. */
  readonly opened: Gate
  readonly committing: Gate
  /** Every commit asked for, in order, and how many completed. */
  readonly commits: PersistChanges[]
  readonly completed: () => number
  /** The commits that completed (durable), in order. */
  readonly durable: PersistChanges[]
  /** Commits completed or failed (the rest are held or running). */
  readonly settled: () => number
  /** The next commit rejects with `error`, writing nothing. */
  failNextCommit(error: PersistError): void
  /** Every `discard` rejects with `error`, deleting nothing (the stored outbox stays behind, stale). */
  failDiscard(error: PersistError): void
}

/**
 * Wraps `page`'s store (crash() still applies: it wraps the page's own store).
 * @param latency - ms each commit waits before it is written (a slow disk), when given
 */
export function gated(page: Page, latency?: () => number): GatedStore {
  const opening = new Gate()
  const opened = new Gate()
  const committing = new Gate()
  const commits: PersistChanges[] = []
  const durable: PersistChanges[] = []
  let completed = 0
  let failed = 0
  let failure: PersistError | undefined
  let discardFailure: PersistError | undefined
  const store: PersistStore = {
    name: page.store.name,
    open: async () => {
      await opening.pass()
      const handle = await page.store.open()
      await opened.pass()
      const wrapped: OutboxHandle = {
        opened: handle.opened,
        orphans: handle.orphans,
        ...(handle.lost && { lost: handle.lost }),
        commit: async (changes) => {
          commits.push(changes)
          await committing.pass()
          const wait = latency?.() ?? 0
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
          try {
            if (failure) {
              const error = failure
              failure = undefined
              throw error
            }
            await handle.commit(changes)
          } catch (error) {
            failed++
            throw error
          }
          durable.push(changes)
          completed++
        },
        adopt: (orphan) => handle.adopt(orphan),
        close: () => handle.close(),
        discard: () => (discardFailure ? Promise.reject(discardFailure) : handle.discard()),
      }
      return wrapped
    },
    restore: (context) => restore(store, context),
  }
  return {
    store,
    opening,
    opened,
    committing,
    commits,
    completed: () => completed,
    durable,
    settled: () => completed + failed,
    failNextCommit(error) {
      failure = error
    },
    failDiscard(error) {
      discardFailure = error
    },
  }
}

/** One stored outbox: its record's id and session, and its entries in position order. */
export interface StoredOutbox {
  readonly id: string
  readonly session?: PersistedSession
  readonly entries: readonly PersistedEntry[]
}

/** What the origin's IndexedDB holds under store name `name` (empty when there is no database). */
export async function stored(origin: Origin, name = 'chat'): Promise<StoredOutbox[]> {
  const dbName = databaseName(name)
  // Opening a database that does not exist would create it without its object stores.
  const existing = await origin.indexedDB.databases()
  if (!existing.some((db) => db.name === dbName)) return []
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const request = origin.indexedDB.open(dbName)
    request.onsuccess = () => resolve(request.result)
    request.onerror = () => reject(request.error)
  })
  try {
    return await new Promise<StoredOutbox[]>((resolve, reject) => {
      const tx = db.transaction([OUTBOXES, LOG], 'readonly')
      const all: StoredOutbox[] = []
      tx.objectStore(OUTBOXES).getAll().onsuccess = (event) => {
        for (const record of (event.target as IDBRequest<{ id: string }[]>).result) {
          tx.objectStore(LOG).getAll(IDBKeyRange.bound([record.id, -Infinity], [record.id, Infinity])).onsuccess = (e) => {
            // The outbox as its log leaves it, replayed as the store does.
            const { state } = OutboxState.replay((e.target as IDBRequest<LogRecord[]>).result)
            all.push(state.outbox(record.id))
          }
        }
      }
      tx.oncomplete = () => resolve(all)
      tx.onerror = () => reject(tx.error)
    })
  } finally {
    db.close()
  }
}

/** The texts of a tether outbox's stored entries. */
export const storedData = <T>(outbox: StoredOutbox): T[] => outbox.entries.map((e) => JSON.parse(e.payload as string) as T)

/** A tether client with `persist` on `page` (or a gated store of it), recording restored reports and message infos. */
export function persistClient<In = unknown, Out = unknown>(
  page: Page,
  url: string,
  options: TetherSocketOptions<In, Out> & { store?: PersistStore } = {},
) {
  const { store, ...rest } = options
  const c = tetherClient<In, Out>(url, { WebSocket: page.WebSocket, persist: store ?? page.store, ...rest })
  const restored: RestoredInfo<Out>[] = []
  const infos: MessageInfo[] = []
  c.sock.on('restored', (info) => restored.push(info))
  c.sock.on('message', (_m, info) => infos.push(info))
  return { ...c, restored, infos }
}

/** Every message the server's `message` listeners get, in order. */
export function received<T>(server: TetherServer): T[] {
  const got: T[] = []
  server.on('message', (data) => got.push(data as T))
  return got
}

/** `page`'s WebSocket class, recording every text frame the page writes (in `frames`). */
export function recordingWebSocket(page: Page): { WebSocket: Page['WebSocket']; frames: string[] } {
  const frames: string[] = []
  const Base = page.WebSocket
  class Recording extends Base {
    override send(data: unknown, ...rest: unknown[]): void {
      if (typeof data === 'string') frames.push(data)
      ;(super.send as (...args: unknown[]) => void)(data, ...rest)
    }
  }
  return { WebSocket: Recording as Page['WebSocket'], frames }
}

/** `waitFor` for an async predicate (what the store holds): polls until it resolves truthy, bounded. */
export async function eventually(predicate: () => Promise<unknown>, timeoutMs: number, description: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
