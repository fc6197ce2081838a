/**
 * The types of requests and their replies, shared by the client's `request()` and the server's
 * `onRequest()`, so that one declaration of an app's messages types both halves.
 *
 * @example
 * ```ts
 * // messages.ts, imported by the client and by the server
 * export type Requests =
 *   | RequestReply<{ get: 'user'; id: number }, { id: number; name: string }>
 *   | RequestReply<{ get: 'time' }, number>
 *
 * const user = await sock.request({ get: 'user', id: 7 }) // typed { id: number; name: string }
 * ```
 * @module
 */

/**
 * One kind of request and the reply it gets. A union of them describes every request a server
 * answers: the client's `request()` accepts each `request` type and resolves with its `reply`.
 * @typeParam Q - what the client sends
 * @typeParam R - what the server's handler answers
 */
export interface RequestReply<Q = unknown, R = unknown> {
  /** What the client sends. */
  readonly request: Q
  /** What the server answers it with. */
  readonly reply: R
}

/**
 * The reply to request `Q`, among the kinds in `Requests`: the replies of every kind whose
 * request type `Q` fits (`unknown` when `Requests` is left open).
 */
export type ReplyOf<Requests extends RequestReply, Q> = Requests extends RequestReply
  ? Q extends Requests['request']
    ? Requests['reply']
    : never
  : never
