/**
 * An opened outbox: this page's, held under its Web Lock until `close()`. Every change is one
 * durable transaction; a failure rejects the call with a PersistError and writes nothing of it.
 * @module
 */
import type { OutboxHandle, PersistChanges, PersistedEntry, PersistedOutbox, PersistedSession } from '../client/persist.js'
import { OptionError, type PersistError } from '../errors.js'
import { checkChanges, entryOf, entryRecord } from './entries.js'
import { persistError, writeError } from './failure.js'
import { outboxRange, transact } from './idb.js'
import { type Locks, tryLock } from './locks.js'
import { ENTRIES, type EntryRecord, lockName, OUTBOXES, type OutboxRecord, tabKey } from './schema.js'
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
  /** The outbox's record as last written. */
  readonly record: OutboxRecord
  /** Releases the outbox's lock (a no-op without Web Locks). */
  readonly release: () => void
  /** The connection's failure once it is closed under us (set by the store). */
  readonly failure: () => PersistError | undefined
}

export class IndexedDBOutbox implements OutboxHandle {
  readonly opened: PersistedOutbox
  readonly orphans: readonly PersistedOutbox[]
  readonly lost?: PersistError
  #context: HandleContext
  #record: OutboxRecord
  /** The highest position this outbox holds or was given: adopted entries go after it. */
  #last: number
  #closed = false

  constructor(context: HandleContext, opened: PersistedOutbox, orphans: readonly PersistedOutbox[], lost?: PersistError) {
    this.#context = context
    this.#record = context.record
    this.opened = opened
    this.orphans = orphans
    if (lost) this.lost = lost
    this.#last = opened.entries.reduce((last, entry) => Math.max(last, entry.position), -1)
  }

  /** Why nothing can be written now: the handle is closed, or the connection was closed under it. */
  #unusable(): PersistError | undefined {
    if (this.#closed) {
      return persistError(
        'locked',
        `the outbox of "${this.#context.name}" was closed: this page no longer holds it, so it writes nothing more`,
      )
    }
    return this.#context.failure()
  }

  commit(changes: PersistChanges): Promise<void> {
    const unusable = this.#unusable()
    if (unusable) return Promise.reject(unusable)
    const { db, name } = this.#context
    const id = this.#record.id
    let records: EntryRecord[]
    try {
      checkChanges(changes)
      records = (changes.put ?? []).map((entry) => entryRecord(id, entry))
    } catch (error) {
      return Promise.reject(error)
    }
    const remove = changes.remove ?? []
    const session = changes.session
    if (records.length === 0 && remove.length === 0 && session === undefined) return Promise.resolve()
    for (const record of records) this.#last = Math.max(this.#last, record.position)
    const next = session === undefined ? undefined : withSession(this.#record, session)
    return transact(
      db,
      'readwrite',
      (tx) => {
        const entries = tx.objectStore(ENTRIES)
        // Puts first: an entry added and done within one tick ends up removed.
        for (const record of records) entries.put(record)
        for (const position of remove) entries.delete([id, position])
        if (next) tx.objectStore(OUTBOXES).put(next)
        return () => {
          if (next) this.#record = next
        }
      },
      'strict',
    ).catch((error) => {
      throw this.#context.failure() ?? writeError(error, name, 'a commit')
    })
  }

  async adopt(orphan: PersistedOutbox): Promise<PersistedOutbox> {
    const unusable = this.#unusable()
    if (unusable) throw unusable
    const { db, keyRange, locks, name } = this.#context
    const id = this.#record.id
    if (typeof orphan !== 'object' || orphan === null || typeof orphan.id !== 'string') {
      throw new OptionError('adopt(orphan): orphan must be one of the `orphans` of this handle')
    }
    if (orphan.id === id) throw new OptionError('adopt(orphan): an outbox cannot adopt itself')
    if (!locks) {
      throw persistError(
        'locked',
        `cannot adopt an outbox of "${name}": this browser has no Web Locks, so it cannot tell a closed page's outbox from a live one`,
      )
    }
    let release: (() => void) | undefined
    try {
      release = await tryLock(locks, lockName(name, orphan.id))
    } catch (error) {
      throw persistError('unavailable', `cannot take the lock of an outbox of "${name}"`, error)
    }
    if (!release) throw persistError('locked', `another page holds the outbox ${orphan.id} of "${name}" (it reopened or is adopting it)`)
    try {
      const adopted = await transact(
        db,
        'readwrite',
        (tx) => {
          const outboxes = tx.objectStore(OUTBOXES)
          const entries = tx.objectStore(ENTRIES)
          let record: OutboxRecord | undefined
          let moved: PersistedEntry[] = []
          outboxes.get(orphan.id).onsuccess = (event) => {
            record = (event.target as IDBRequest<OutboxRecord | undefined>).result
            if (!record) return
            entries.getAll(outboxRange(keyRange, orphan.id)).onsuccess = (event) => {
              const theirs = (event.target as IDBRequest<EntryRecord[]>).result
              entries.openCursor(outboxRange(keyRange, id), 'prev').onsuccess = (event) => {
                const cursor = (event.target as IDBRequest<IDBCursorWithValue | null>).result
                const first = Math.max(this.#last, cursor ? (cursor.value as EntryRecord).position : -1) + 1
                moved = theirs.map((entry, i) => ({ ...entryOf(entry), position: first + i }))
                for (const entry of moved) entries.put({ ...entry, outbox: id })
                entries.delete(outboxRange(keyRange, orphan.id))
                outboxes.delete(orphan.id)
              }
            }
          }
          return () => (record ? { record, moved } : undefined)
        },
        'strict',
      )
      if (!adopted) throw persistError('locked', `the outbox ${orphan.id} of "${name}" is gone: another page adopted it first`)
      const { record, moved } = adopted
      if (moved.length > 0) this.#last = Math.max(this.#last, moved[moved.length - 1].position)
      return { id: record.id, ...(record.session && { session: record.session }), entries: moved }
    } catch (error) {
      throw this.#context.failure() ?? writeError(error, name, `the adoption of the outbox ${orphan.id}`)
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
    const { db, keyRange, name, sessionStorage } = this.#context
    const id = this.#record.id
    try {
      await transact(
        db,
        'readwrite',
        (tx) => {
          tx.objectStore(ENTRIES).delete(outboxRange(keyRange, id))
          tx.objectStore(OUTBOXES).delete(id)
          return () => undefined
        },
        'strict',
      )
    } catch (error) {
      throw this.#context.failure() ?? writeError(error, name, 'the deletion of the outbox')
    }
    forgetTab(sessionStorage, tabKey(name), id)
    this.close()
  }
}

function withSession(record: OutboxRecord, session: PersistedSession | null): OutboxRecord {
  const { session: _old, ...rest } = record
  return session ? { ...rest, session: { id: session.id, delivered: session.delivered, sent: session.sent, acked: session.acked } } : rest
}
