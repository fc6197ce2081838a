import type { TetherServer } from 'tethersocket/server'

/** A chat line as the server broadcasts it. */
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
  /** The last 50 lines, oldest first, in the order they were broadcast. */
  readonly history: readonly ChatLine[]
}

/** Wires the demo's chat onto `server`: broadcast of every line, history for new sessions, a status reply to requests. */
export function serveChat(server: TetherServer): Chat
