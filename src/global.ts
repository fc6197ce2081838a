/**
 * The `<script>` tag entry: `window.TetherSocket` is the client class, and every other
 * runtime export hangs on it as a static property (`TetherSocket.DeliveryError`, …).
 * @module
 */
import * as api from './index.js'

const { TetherSocket } = api
Object.assign(TetherSocket, api)

export default TetherSocket
