import type { TetherServer } from 'tethersocket/server'

/** The demo's rooms. */
export type Room = 'lobby' | 'random' | 'help'

/** The rooms there are. */
export declare const ROOMS: readonly Room[]

/** The options the demo creates its server with: a small retention per room (20 messages), so that a tab away longer is told what it missed. */
export declare const CHAT_OPTIONS: { readonly topics: { readonly maxMessages: number } }

/** A chat line as the server publishes it to its room. */
export interface ChatLine {
  /** The sender's name (at most 12 characters). */
  from: string
  /** At most 500 characters. */
  text: string
  /** The id the sending page gave the line, when it gave one (at most 40 characters). */
  id?: string
}

/** The running chat. */
export interface Chat {
  /** The last 50 lines of each room, oldest first, in the order they were published. */
  readonly history: Readonly<Record<Room, readonly ChatLine[]>>
}

/**
 * Wires the demo's chat onto `server`: rooms as topics (every session starts in the lobby, a
 * `{ join: room, name }` request moves it and tells the session `{ room, entered: true }`; with
 * `follow: true` a session already in a room stays there and the reply carries the room's
 * history as `lines`), each line published to its room, a room's history sent on joining, who
 * is in a room published to it, a status reply to other requests.
 */
export function serveChat(server: TetherServer): Chat
