/**
 * An opened outbox: this page's, held under its Web Lock until `close()`. Every change is one
 * durable transaction of a few requests, whatever it holds: a commit appends one record to the
 * outbox's log, or (now and then, log.ts) writes a snapshot and deletes the records before it.
 * A failure rejects the call with a PersistError and writes nothing of it.
 * @module
 */
import type { OutboxHandle, PersistChanges, PersistedEntry, PersistedOutbox, PersistedSession } from '../client/persist.js'
import { DEV } from '../dev.js'
import { OptionError, type PersistError } from '../errors.js'
import { checkChanges, storedEntry, storedSession } from './entries.js'
import { persistError, writeError } from './failure.js'
import { logBefore, logRange, transact } from './idb.js'
import { type Locks, tryLock } from './locks.js'
import { type Delta, OutboxState } from './log.js'
import { type DeltaRecord, LOG, type LogRecord, lockName, OUTBOXES, type OutboxRecord, tabKey } from './schema.js'
import { forgetTab } from './tab.js'

/** What an outbox handle works with: the page's platform objects and the outbox it owns. */
export interface HandleContext {
  /** The store's name. */
  readonly name: string
  readonly db: IDBDatabase
  readonly keyRange: typeof IDBKeyRange
  /** Absent where the platform has no Web Locks: then nothing is adopted. */
  readonly locks: Locks | undefined
  readonly sessionStorage: Storage | undefined
  /** The outbox's record. */
  readonly record: OutboxRecord
  /** Its state as its log left it when opened. */
  readonly state: OutboxState
  /** The number of the next record of its log. */
  readonly next: number
  /** Releases the outbox's lock (a no-op without Web Locks). */
  readonly release: () => void
  /** The connection's failure once it is closed under us (set by the store). */
  readonly failure: () => PersistError | undefined
}

/** An opened outbox of the IndexedDB store. */
export class IndexedDBOutbox implements OutboxHandle {
  readonly opened: PersistedOutbox
  readonly orphans: readonly PersistedOutbox[]
  readonly lost?: PersistError
  #context: HandleContext
  #id: string
  /** The outbox as its completed writes left it, kept in memory so that a snapshot reads nothing. */
  #state: OutboxState
  /** The number of the next record of its log: taken when a write starts (writes complete in that order). */
  #next: number
  /** Writes started and not yet settled: a snapshot is written only when there are none (it is built from `#state`). */
  #writing = 0
  /** The highest position this outbox holds or was given: adopted entries go after it. */
  #last: number
  #closed = false

  constructor(context: HandleContext, orphans: readonly PersistedOutbox[], lost?: PersistError) {
    this.#context = context
    this.#id = context.record.id
    this.#state = context.state
    this.#next = context.next
    this.opened = context.state.outbox(this.#id)
    this.orphans = orphans
    if (lost) this.lost = lost
    this.#last = this.opened.entries.reduce((last, entry) => Math.max(last, entry.position), -1)
  }

  /** Why nothing can be written now: the handle is closed, or the connection was closed under it. */
  #unusable(): PersistError | undefined {
    if (this.#closed) {
      return persistError(
        'locked',
        DEV ? `the outbox of "${this.#context.name}" was closed: this page no longer holds it, so it writes nothing more` : '',
      )
    }
    return this.#context.failure()
  }

  /** Runs a write transaction (strict durability), counted in `#writing` until it settles. */
  #write<T>(body: (tx: IDBTransaction) => () => T): Promise<T> {
    this.#writing++
    const settled = () => {
      this.#writing--
    }
    const done = transact(this.#context.db, 'readwrite', body, 'strict')
    done.then(settled, settled)
    return done
  }

  commit(changes: PersistChanges): Promise<void> {
    const unusable = this.#unusable()
    if (unusable) return Promise.reject(unusable)
    const { keyRange, name } = this.#context
    const id = this.#id
    let delta: Delta
    try {
      checkChanges(changes)
      const { session } = changes
      delta = {
        put: (changes.put ?? []).map(storedEntry),
        remove: [...(changes.remove ?? [])],
        ...(session !== undefined && { session: session && storedSession(session) }),
      }
    } catch (error) {
      return Promise.reject(error)
    }
    const { put, remove, session } = delta
    if (put.length === 0 && remove.length === 0 && session === undefined) return Promise.resolve()
    for (const entry of put) this.#last = Math.max(this.#last, entry.position)
    const n = this.#next++
    // A snapshot is built from the state the completed writes left: only when none is under way.
    const compacted = this.#writing === 0 && this.#state.compacts(delta) ? this.#state.after(delta) : undefined
    return this.#write((tx) => {
      const log = tx.objectStore(LOG)
      if (compacted) {
        log.put(compacted.snapshot(id, n))
        log.delete(logBefore(keyRange, id, n))
      } else {
        const record: DeltaRecord = {
          outbox: id,
          n,
          ...(put.length > 0 && { put }),
          ...(remove.length > 0 && { remove }),
          ...(session !== undefined && { session }),
        }
        log.put(record)
      }
      // Every request is issued: the browser commits without waiting for this page to hear
      // their results. A page frozen (or hidden in the back-forward cache) meanwhile would
      // otherwise keep the transaction open, and every other page's use of the store waiting.
      tx.commit?.()
      return () => {
        if (compacted) this.#state = compacted
        else this.#state.apply(delta)
      }
    }).catch((error) => {
      throw this.#context.failure() ?? writeError(error, name, DEV ? 'a commit' : '')
    })
  }

  async adopt(orphan: PersistedOutbox): Promise<PersistedOutbox> {
    const unusable = this.#unusable()
    if (unusable) throw unusable
    const { keyRange, locks, name } = this.#context
    const id = this.#id
    if (typeof orphan !== 'object' || orphan === null || typeof orphan.id !== 'string') {
      throw new OptionError(DEV ? 'adopt(orphan): orphan must be one of the `orphans` of this handle' : '')
    }
    if (orphan.id === id) throw new OptionError(DEV ? 'adopt(orphan): an outbox cannot adopt itself' : '')
    if (!locks) {
      throw persistError(
        'locked',
        DEV
          ? `cannot adopt an outbox of "${name}": this browser has no Web Locks, so it cannot tell a closed page's outbox from a live one`
          : '',
      )
    }
    let release: (() => void) | undefined
    try {
      release = await tryLock(locks, lockName(name, orphan.id))
    } catch (error) {
      throw persistError('unavailable', DEV ? `cannot take the lock of an outbox of "${name}"` : '', error)
    }
    if (!release) {
      throw persistError('locked', DEV ? `another page holds the outbox ${orphan.id} of "${name}" (it reopened or is adopting it)` : '')
    }
    try {
      const n = this.#next++
      const adopted = await this.#write((tx) => {
        const outboxes = tx.objectStore(OUTBOXES)
        const log = tx.objectStore(LOG)
        let found: PersistedOutbox | undefined
        let moved: PersistedEntry[] = []
        let inherited: PersistedSession | undefined
        outboxes.get(orphan.id).onsuccess = (event) => {
          if (!(event.target as IDBRequest<OutboxRecord | undefined>).result) return
          log.getAll(logRange(keyRange, orphan.id)).onsuccess = (event) => {
            found = OutboxState.replay((event.target as IDBRequest<LogRecord[]>).result).state.outbox(orphan.id)
            // After every position this outbox holds or was given (in commits started before this callback too).
            const first = this.#last + 1
            moved = found.entries.map((entry, i) => ({ ...entry, position: first + i }))
            this.#last += moved.length
            // An outbox without a session continues the first orphan's it adopts, in the same
            // transaction: a page gone before its first commit leaves it to the next page.
            inherited = this.#state.session ? undefined : found.session
            if (moved.length > 0 || inherited) {
              log.put({ outbox: id, n, put: moved, ...(inherited && { session: inherited }) } satisfies DeltaRecord)
            }
            log.delete(logRange(keyRange, orphan.id))
            outboxes.delete(orphan.id)
          }
        }
        return () => {
          if (!found) return undefined
          if (moved.length > 0 || inherited) this.#state.apply({ put: moved, remove: [], ...(inherited && { session: inherited }) })
          return { ...found, entries: moved }
        }
      })
      if (!adopted) throw persistError('locked', DEV ? `the outbox ${orphan.id} of "${name}" is gone: another page adopted it first` : '')
      return adopted
    } catch (error) {
      throw this.#context.failure() ?? writeError(error, name, DEV ? `the adoption of the outbox ${orphan.id}` : '')
    } finally {
      release()
    }
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#context.release()
    // Transactions already started still complete: IndexedDB closes once they have.
    this.#context.db.close()
  }

  async discard(): Promise<void> {
    const unusable = this.#unusable()
    if (unusable) throw unusable
    const { keyRange, name, sessionStorage } = this.#context
    const id = this.#id
    try {
      await this.#write((tx) => {
        tx.objectStore(LOG).delete(logRange(keyRange, id))
        tx.objectStore(OUTBOXES).delete(id)
        return () => undefined
      })
    } catch (error) {
      throw this.#context.failure() ?? writeError(error, name, DEV ? 'the deletion of the outbox' : '')
    }
    forgetTab(sessionStorage, tabKey(name), id)
    this.close()
  }
}
