/**
 * The `<script>` tag entry with the durable outbox: `window.TetherSocket` as global.ts defines it,
 * with `TetherSocket.indexedDBStore` and `TetherSocket.requestPersistentStorage` as statics too,
 * so a page without a bundler or modules can use `persist`, and so `shared`.
 *
 * @example
 * ```html
 * <script src="https://unpkg.com/tethersocket/dist/tethersocket.persist.global.js"></script>
 * <script>
 *   const sock = new TetherSocket('wss://example.com/ws', {
 *     persist: TetherSocket.indexedDBStore('app'),
 *     shared: true,
 *   })
 * </script>
 * ```
 * @module
 */
import TetherSocket from './global.js'
import { indexedDBStore, requestPersistentStorage } from './persist/index.js'

Object.assign(TetherSocket, { indexedDBStore, requestPersistentStorage })

export default TetherSocket
