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

export type { BackoffPolicy } from './client/backoff.js'
export { backoffDelay } from './client/backoff.js'
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
} from './client/options.js'
export { defaultShouldReconnect } from './client/options.js'
export type { Payload } from './client/outbox.js'
export type { PersistStore, RestoredFailure, RestoredInfo, RestoredMessage } from './client/persist.js'
export type {
  CloseEventInfo,
  ReconnectingInfo,
  SharedInfo,
  SocketState,
  TetherSocketEvents,
  TetherSocketStats,
} from './client/socket.js'
export { type ReplyType, TetherSocket } from './client/socket.js'
export type { SessionInfo } from './client/wire/tether.js'
export type { MessageInfo, MissedInfo } from './client/wire/types.js'
export type { PersistFailure, ReplyErrorCode, TetherErrorCode, TetherErrorOptions } from './errors.js'
export {
  AbortError,
  ClosedError,
  ConnectionError,
  DeliveryError,
  EncodeError,
  OptionError,
  PersistError,
  ProtocolError,
  QueueFullError,
  ReplyError,
  TetherError,
  TimeoutError,
} from './errors.js'
export type { ReplyOf, RequestReply } from './protocol/requests.js'
