/**
 * The `ws` package, for the server. `ws` is an optional peer dependency, so that users of the
 * browser client alone do not install it; a server without it must say what to install. A
 * static `import 'ws'` would fail before any code of ours runs, with Node's bare "Cannot find
 * package 'ws'", so the server loads it here, when its entry loads, and names the fix.
 * @module
 */
import { createRequire } from 'node:module'
import type { RawData as WsRawData, WebSocket as WsWebSocket, WebSocketServer as WsWebSocketServer } from 'ws'

/** What the message says; docs/ERRORS.md has a section with this anchor. */
const help =
  'tethersocket/server needs the `ws` package, which is not installed: run `npm install ws` ' +
  '(the browser client does not need it, so it is an optional peer dependency). ' +
  'See docs/ERRORS.md#module_not_found'

/** Node's code for a package that `require` cannot find. */
const MODULE_NOT_FOUND = 'MODULE_NOT_FOUND'

/** Whether `error` says that `ws` itself is missing (not a file inside an installed, broken `ws`). */
function isMissing(error: unknown): boolean {
  return (
    error instanceof Error &&
    (error as NodeJS.ErrnoException).code === MODULE_NOT_FOUND &&
    error.message.startsWith("Cannot find module 'ws'")
  )
}

function load(): typeof import('ws') {
  try {
    return createRequire(import.meta.url)('ws') as typeof import('ws')
  } catch (error) {
    if (!isMissing(error)) throw error
    // Node's code is kept, so code that tells a missing module by it still does.
    throw Object.assign(new Error(help, { cause: error }), { code: MODULE_NOT_FOUND })
  }
}

const ws = load()

/** `ws`'s WebSocket: the server's side of one connection. */
export const WebSocket: typeof WsWebSocket = ws.WebSocket
/** `ws`'s WebSocket: the server's side of one connection. */
export type WebSocket = WsWebSocket
/** `ws`'s server, which accepts the upgrades. */
export const WebSocketServer: typeof WsWebSocketServer = ws.WebSocketServer
/** `ws`'s server, which accepts the upgrades. */
export type WebSocketServer = WsWebSocketServer
/** The data of a message as `ws` gives it. */
export type RawData = WsRawData
