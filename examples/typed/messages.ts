// The app's messages, declared once and imported by both halves: the client and the server are
// typed by the same declaration, so a change to a message is a type error on both sides.
import type { RequestReply } from 'tethersocket'

/** What a client sends with `send()`. */
export type ClientToServer = { type: 'chat'; text: string } | { type: 'typing' }

/** What the server sends to clients. */
export type ServerToClient = { type: 'chat'; from: string; text: string } | { type: 'typing'; from: string }

export interface User {
  id: string
  name: string
}

/** The requests a client makes with `request()`, each with the reply it gets. */
export type Requests = RequestReply<{ get: 'user' }, User> | RequestReply<{ get: 'time' }, number>
