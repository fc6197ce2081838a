/**
 * The connection's states and the transitions between them, as data. `TetherSocket.setState`
 * checks every change against {@link TRANSITIONS}; docs/ARCHITECTURE.md shows the same table,
 * and a test keeps the two equal.
 * @module
 */
import { DEV } from '../dev.js'

/** The connection states. `closed` is also where a socket ends when it gives up reconnecting. */
export type SocketState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed'

/**
 * Every state change the socket makes, by the state it leaves. Staying in a state (a new
 * attempt while `connecting`, `close()` when `closed`) is not a change and emits nothing.
 */
export const TRANSITIONS: Readonly<Record<SocketState, readonly SocketState[]>> = {
  idle: ['connecting', 'closed'],
  connecting: ['open', 'reconnecting', 'closing', 'closed'],
  open: ['connecting', 'reconnecting', 'closing', 'closed'],
  reconnecting: ['connecting', 'closed'],
  closing: ['closed'],
  closed: ['connecting'],
}

/**
 * Throws when `prev` → `next` is not in {@link TRANSITIONS}: a bug in this library, never
 * something a user can cause, so it is a plain Error rather than a TetherError.
 */
export function checkTransition(prev: SocketState, next: SocketState): void {
  if (!TRANSITIONS[prev].includes(next)) {
    throw new Error(
      DEV ? `tethersocket internal error: ${prev} → ${next} is not in TRANSITIONS (a bug; please report it)` : `${prev} → ${next}`,
    )
  }
}
