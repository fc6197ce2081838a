/**
 * tethersocket: a WebSocket client that reconnects, queues and, in tether mode, delivers
 * every message exactly once in both directions.
 *
 * @example
 * ```ts
 * import { TetherSocket } from 'tethersocket'
 * const sock = new TetherSocket('wss://example.com/live')
 * await sock.send({ hello: 'world' })
 * ```
 * @packageDocumentation
 */

export type { BackoffPolicy } from './backoff.js'
export { backoffDelay } from './backoff.js'
export type { TetherErrorOptions } from './errors.js'
export {
  AbortError,
  ClosedError,
  ConnectionError,
  DeliveryError,
  OptionError,
  ProtocolError,
  QueueFullError,
  ReplyError,
  TetherError,
  TimeoutError,
} from './errors.js'
export type {
  CloseInfo,
  HeartbeatOptions,
  OpenContext,
  ProtocolsProvider,
  QueueOptions,
  ReconnectOptions,
  RequestOptions,
  SendOptions,
  TetherSocketOptions,
  UrlProvider,
  WebSocketConstructor,
} from './options.js'
export { defaultShouldReconnect } from './options.js'
export type { Payload } from './outbox.js'
export type { SessionInfo } from './protocol/tether.js'
export type {
  CloseEventInfo,
  ReconnectingInfo,
  SocketState,
  TetherSocketEvents,
  TetherSocketStats,
} from './socket.js'
export { TetherSocket } from './socket.js'
