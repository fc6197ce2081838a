/**
 * The `<script>` tag entry: `window.TetherSocket` is the client class, and every other
 * runtime export hangs on it as a static property (`TetherSocket.DeliveryError`, …).
 * @module
 */
import * as api from './index.js'

// Only the public exports, and not the class as a static of itself.
const { TetherSocket, ...statics } = api
Object.assign(TetherSocket, statics)

export default TetherSocket
