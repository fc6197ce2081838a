/**
 * Browser pages in Node, for the durable outbox (`persist`): one origin's storage (an in-memory
 * IndexedDB from fake-indexeddb and the Web Locks of support/locks.ts), tabs (each a
 * `sessionStorage`) and pages in them. A page has its own `navigator.locks`, its own store and its
 * own WebSocket class (`ws`), so that `crash()` can do what a reload or a closed tab does to it:
 * its connections drop without a close frame, its locks are released, and its store writes
 * nothing more (a transaction already running may still complete, as in a browser). The socket
 * object lives on in Node; it is closed at cleanup, which changes nothing stored.
 *
 * The same behaviour in real Chromium: test/browser/persist-*.test.ts.
 */
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb'
import { WebSocket } from 'ws'
import type { OutboxHandle, PersistStore } from '../../src/client/persist.js'
import { PersistError } from '../../src/errors.js'
import { restore } from '../../src/persist/restore.js'
import { createStore, type PersistEnvironment } from '../../src/persist/store.js'
import { FakeLockBroker, type FakeLocks } from './locks.js'
import { MemoryStorage } from './storage.js'

/** A page of an origin: its store (for `persist`) and WebSocket class (for `WebSocket`). */
export interface Page {
  readonly store: PersistStore
  readonly WebSocket: typeof WebSocket
  readonly locks: FakeLocks
  /** The page goes away without closing anything: a reload, a closed or crashed tab. */
  crash(): void
}

const gone = () => new PersistError('the page is gone: nothing more is written', 'unavailable')

/** One origin: its IndexedDB and lock manager, shared by its pages. */
export class Origin {
  readonly indexedDB = new IDBFactory()
  readonly broker = new FakeLockBroker()

  /** A new tab (its own sessionStorage). */
  tab(): MemoryStorage {
    return new MemoryStorage()
  }

  /**
   * A page in `tab`, with a store named `name`.
   * @param environment - overrides of the platform objects (e.g. no IndexedDB)
   */
  page(tab: MemoryStorage, name = 'chat', environment: Partial<PersistEnvironment> = {}): Page {
    const locks = this.broker.client()
    let alive = true
    const inner = createStore(name, () => ({ indexedDB: this.indexedDB, IDBKeyRange, locks, sessionStorage: tab, ...environment }))
    const handles: OutboxHandle[] = []
    const store: PersistStore = {
      name,
      open: async () => {
        if (!alive) throw gone()
        const handle = await inner.open()
        handles.push(handle)
        return {
          opened: handle.opened,
          orphans: handle.orphans,
          ...(handle.lost && { lost: handle.lost }),
          commit: (changes) => (alive ? handle.commit(changes) : Promise.reject(gone())),
          adopt: (orphan) => (alive ? handle.adopt(orphan) : Promise.reject(gone())),
          close: () => handle.close(),
          discard: () => (alive ? handle.discard() : Promise.reject(gone())),
        }
      },
      restore: (context) => restore(store, context),
      share: inner.share,
    }
    const sockets = new Set<WebSocket>()
    class PageWebSocket extends WebSocket {
      constructor(...args: ConstructorParameters<typeof WebSocket>) {
        if (!alive) throw new Error('the page is gone')
        super(...args)
        sockets.add(this)
        this.on('close', () => sockets.delete(this))
      }
    }
    return {
      store,
      WebSocket: PageWebSocket as unknown as typeof WebSocket,
      locks,
      crash: () => {
        alive = false
        for (const ws of sockets) ws.terminate()
        locks.end()
      },
    }
  }
}
