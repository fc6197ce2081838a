// The contenders' clients, created the way each library's documentation shows for Node,
// with `ws` as the WebSocket underneath every one of them.
import PartySocket from 'partysocket/ws'
import ReconnectingWebSocket from 'reconnecting-websocket'
import { io } from 'socket.io-client'
import { WebSocket } from 'ws'
import { loadClient } from './dist.mjs'

export { message } from './harness.mjs'

export const { TetherSocket } = await loadClient()
export { WebSocket }

export const url = (port) => `ws://127.0.0.1:${port}`

/**
 * Resolves on the next `event` of an EventEmitter or an EventTarget, with `map(value)`.
 * `map` runs inside the listener: `once(x, 'open', now)` notes the moment of the event, which
 * a continuation of the promise would only see after the emitting code had finished.
 */
export function once(target, event, map = (value) => value) {
  return new Promise((resolve) => {
    if (typeof target.once === 'function') {
      target.once(event, (value) => resolve(map(value)))
      return
    }
    // reconnecting-websocket's addEventListener knows no `{ once }` option.
    const listener = (value) => {
      target.removeEventListener(event, listener)
      resolve(map(value))
    }
    target.addEventListener(event, listener)
  })
}

/**
 * Benchmarks hold tens of thousands of messages at once; tethersocket's default bounds
 * (10,000 messages, 10 MiB) exist to protect applications, not to be measured.
 */
const unbounded = { maxMessages: Number.POSITIVE_INFINITY, maxBytes: Number.POSITIVE_INFINITY }

export function tether(target, options = {}) {
  return new TetherSocket(target, { WebSocket, queue: unbounded, ...options })
}

export function reconnecting(target, options = {}) {
  return new ReconnectingWebSocket(target, [], { WebSocket, ...options })
}

export function party(target, options = {}) {
  return new PartySocket(target, undefined, { WebSocket, ...options })
}

/** socket.io-client over WebSocket only (its default starts with HTTP long-polling). */
export function socketio(target, options = {}) {
  return io(target.replace(/^ws/, 'http'), { transports: ['websocket'], forceNew: true, ...options })
}

/** Opens a client and resolves with it once it can send. */
export async function connected(client) {
  await once(client, client instanceof TetherSocket ? 'open' : client.io ? 'connect' : 'open')
  return client
}

export async function openRaw(target) {
  return connected(new WebSocket(target))
}

/** Closes any of the clients above. */
export function shut(client) {
  if (client.io) client.disconnect()
  else client.close()
}
