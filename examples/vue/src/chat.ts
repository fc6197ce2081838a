import { useTetherSocket } from 'tethersocket/vue'
import { reactive, shallowRef } from 'vue'

/** What the demo server (scripts/start.mjs) accepts, and sends to everyone in the lobby, the sender included. */
export interface ChatMessage {
  from: string
  text: string
}

/**
 * The demo server's other message: who is in a room (this app chats in the lobby, where every
 * session starts), whenever that changes. This app does not show it.
 */
interface Members {
  room: string
  members: { name: string; connected: boolean }[]
}

/** Where one of our own messages is: the promise of its `send()`, as state. */
export type Delivery = { status: 'pending' } | { status: 'delivered' } | { status: 'failed'; reason: string }

export interface Line extends ChatMessage {
  id: number
  /** Set on our own messages only. */
  delivery?: Delivery
}

// A random name per page load, so that our own messages can be told apart when they come back.
export const me = Math.random().toString(36).slice(2, 6)
// The page's own origin: in development Vite proxies /ws to the demo server (see vite.config.ts).
const url = new URL('/ws', location.href).href
// A message not acknowledged by then gives up (its tick turns ✗): stop the server for longer to see it.
const GIVE_UP_AFTER = 30_000
let nextId = 0

/**
 * The chat as a composable, called from a component's setup: the socket opens when the
 * component mounts and closes when it unmounts. It lives in a .ts file so that tsc checks it.
 */
export function useChat() {
  // Replaced wholesale, never mutated: a shallow ref is enough, and each line stays reactive on its own.
  const lines = shallowRef<Line[]>([])
  const { state, pending, error, send } = useTetherSocket<ChatMessage | Members, ChatMessage>(url, {
    // Every message, the history the server replays to a new session included. Our own come back
    // too: they are in the log already, with their tick.
    onMessage: (msg) => {
      if ('text' in msg && msg.from !== me) lines.value = [...lines.value, { ...msg, id: nextId++ }]
    },
  })

  function say(text: string): void {
    const line = reactive<Line>({ id: nextId++, from: me, text, delivery: { status: 'pending' } })
    lines.value = [...lines.value, line]
    // Resolves once the server has the message; while offline it waits in the queue. It rejects
    // when the timeout passes, the queue is full, or the socket closes (unmount).
    send({ from: me, text }, { timeout: GIVE_UP_AFTER }).then(
      () => {
        line.delivery = { status: 'delivered' }
      },
      (reason: unknown) => {
        line.delivery = { status: 'failed', reason: reason instanceof Error ? reason.message : String(reason) }
      },
    )
  }

  return { state, pending, error, lines, say }
}
