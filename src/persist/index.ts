/**
 * `tethersocket/persist`: the durable outbox. A socket given `persist: indexedDBStore('chat')`
 * keeps its session, its sequence numbers and every message not yet acknowledged in IndexedDB,
 * written before the message goes on the wire, so that a reload resumes where the page was and
 * a closed tab's messages are delivered by the next page with the same store name.
 *
 * Which page owns which outbox: each page opens its own outbox under the store's name and holds
 * it under a Web Lock while it lives. A reload reopens the tab's outbox (its id is kept in
 * `sessionStorage`); a duplicated tab, which copies `sessionStorage`, finds the lock taken and
 * opens a new outbox; two sockets of one page should use two store names. An outbox whose lock
 * nobody holds and that holds messages or a session (its tab was closed) is an orphan, offered
 * to the next page that opens the same name.
 *
 * Without Web Locks (browsers before 2022; pages not served over HTTPS or from localhost) a
 * reload still reopens the tab's outbox, but nothing is adopted (a closed tab's outbox stays
 * where it is) and a duplicated tab reopens its origin's outbox too, so the two tabs share one
 * session and exactly-once no longer holds between them. Where IndexedDB is missing or refused
 * (some private windows, storage disabled), `open()` rejects with a {@link PersistError} whose
 * `reason` is `'unavailable'`, and the socket keeps its outbox in memory only.
 *
 * @example
 * ```ts
 * import { TetherSocket } from 'tethersocket'
 * import { indexedDBStore } from 'tethersocket/persist'
 *
 * const sock = new TetherSocket('wss://example.com/live', { persist: indexedDBStore('chat') })
 * ```
 * @module
 */
import type { PersistStore } from '../client/persist.js'
import { browserEnvironment, createStore } from './store.js'

export type {
  OutboxHandle,
  PersistChanges,
  PersistedEntry,
  PersistedOutbox,
  PersistedSession,
  PersistFailure,
  PersistStore,
} from '../client/persist.js'
export { PersistError } from '../errors.js'
export { requestPersistentStorage } from './storage.js'

/**
 * The store for the client option `persist`: outboxes kept in the IndexedDB database
 * `tethersocket:<name>` of this origin. Use one name per app (or per socket, when a page has
 * several); pages of the same origin that use the same name adopt each other's orphans.
 *
 * Creating it touches nothing: the socket opens the page's outbox (`open()`) when it starts. The
 * same name gives the same store object.
 * Throws an `OptionError` when `name` is not a non-empty string of at most 200 characters.
 *
 * @param name - what the outboxes are kept under, such as `'chat'`
 */
export function indexedDBStore(name: string): PersistStore {
  // One store object per name in a page: sockets of one store take turns to open it (a socket
  // closed while it opened, as a component mounted twice does, lets go of the tab's outbox
  // before the next one looks for it).
  let store = stores.get(name)
  if (!store) {
    store = createStore(name, browserEnvironment)
    stores.set(name, store)
  }
  return store
}

const stores = new Map<string, PersistStore>()
