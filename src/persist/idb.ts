/**
 * IndexedDB as promises, without ever awaiting inside a transaction: a transaction's body only
 * issues requests and chains them in their callbacks, and its promise settles on `complete` (or
 * `abort`), once everything it did is durable (or nothing is).
 * @module
 */
import { LOG, OUTBOXES, SCHEMA_VERSION, upgrade } from './schema.js'

/** An open database, and whether this open created it (no database of that name existed). */
export interface OpenedDatabase {
  readonly db: IDBDatabase
  readonly created: boolean
}

/** Opens (creating or upgrading) a database at {@link SCHEMA_VERSION}. Rejects with the platform's error (a `VersionError` for a newer database). */
export function openDatabase(factory: IDBFactory, name: string): Promise<OpenedDatabase> {
  return new Promise((resolve, reject) => {
    let request: IDBOpenDBRequest
    try {
      request = factory.open(name, SCHEMA_VERSION)
    } catch (error) {
      // Opaque origins and some privacy modes throw at once.
      reject(error)
      return
    }
    let created = false
    request.onupgradeneeded = (event) => {
      created = event.oldVersion === 0
      upgrade(request.result, event.oldVersion)
    }
    request.onsuccess = () => resolve({ db: request.result, created })
    request.onerror = () => reject(request.error ?? new Error(`IndexedDB did not open ${name}`))
    // `blocked` (an older connection still open during an upgrade) needs no handling: every
    // connection this code opens closes on `versionchange`, after which the open goes on.
  })
}

/** The log of one outbox: `[id, -Infinity]` to `[id, Infinity]` (record numbers are finite). */
export const logRange = (keyRange: typeof IDBKeyRange, id: string): IDBKeyRange => keyRange.bound([id, -Infinity], [id, Infinity])

/** The records of one outbox's log before record `n`. */
export const logBefore = (keyRange: typeof IDBKeyRange, id: string, n: number): IDBKeyRange =>
  keyRange.bound([id, -Infinity], [id, n], false, true)

/**
 * Runs `body` in one transaction over both object stores and resolves with what its result
 * function returns once the transaction completed. Rejects, and nothing of it is written, when
 * the transaction aborts (with the transaction's or the first request's error) or `body` throws
 * (the transaction is then aborted, and the promise rejects with what it threw).
 */
export function transact<T>(
  db: IDBDatabase,
  mode: IDBTransactionMode,
  body: (tx: IDBTransaction) => () => T,
  durability?: 'strict',
): Promise<T> {
  return new Promise((resolve, reject) => {
    let tx: IDBTransaction
    try {
      // Browsers without the options argument ignore it (and write with their default durability).
      tx = db.transaction([OUTBOXES, LOG], mode, durability ? { durability } : undefined)
    } catch (error) {
      reject(error)
      return
    }
    let result: (() => T) | undefined
    let failure: unknown
    tx.onerror = (event) => {
      failure ??= (event.target as IDBRequest | null)?.error
    }
    tx.onabort = () => reject(failure ?? tx.error ?? new Error('the IndexedDB transaction was aborted'))
    tx.oncomplete = () => {
      try {
        resolve(result!())
      } catch (error) {
        reject(error)
      }
    }
    try {
      result = body(tx)
    } catch (error) {
      failure = error
      try {
        tx.abort()
      } catch {
        // Already finishing: its own abort or error reports.
      }
    }
  })
}
