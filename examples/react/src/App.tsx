import { type FormEvent, useState } from 'react'
import { useTetherSocket } from 'tethersocket/react'

/** What the demo server (scripts/start.mjs) accepts, and sends to everyone in the lobby, the sender included. */
interface ChatMessage {
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
type Delivery = { status: 'pending' } | { status: 'delivered' } | { status: 'failed'; reason: string }

interface Line extends ChatMessage {
  id: number
  /** Set on our own messages only. */
  delivery?: Delivery
}

// A random name per page load, so that our own messages can be told apart when they come back.
const me = Math.random().toString(36).slice(2, 6)
// The page's own origin: in development Vite proxies /ws to the demo server (see vite.config.ts).
const url = new URL('/ws', location.href).href
// A message not acknowledged by then gives up (its tick turns ✗): stop the server for longer to see it.
const GIVE_UP_AFTER = 30_000
let nextId = 0

export function App() {
  const [lines, setLines] = useState<Line[]>([])
  const [draft, setDraft] = useState('')
  // Reading state, pending and error subscribes this component to them (and only to them).
  const { state, pending, error, send } = useTetherSocket<ChatMessage | Members, ChatMessage>(url, {
    // Every message, the history the server replays to a new session included. Our own come back
    // too: they are in the log already, with their tick.
    onMessage: (msg) => {
      if ('text' in msg && msg.from !== me) setLines((all) => [...all, { ...msg, id: nextId++ }])
    },
  })

  const settle = (id: number, delivery: Delivery) => setLines((all) => all.map((line) => (line.id === id ? { ...line, delivery } : line)))

  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault()
    const text = draft.trim()
    if (!text) return
    setDraft('')
    const id = nextId++
    setLines((all) => [...all, { id, from: me, text, delivery: { status: 'pending' } }])
    // Resolves once the server has the message; while offline it waits in the queue. It rejects
    // when the timeout passes, the queue is full, or the socket closes (unmount).
    send({ from: me, text }, { timeout: GIVE_UP_AFTER }).then(
      () => settle(id, { status: 'delivered' }),
      (reason: unknown) => settle(id, { status: 'failed', reason: reason instanceof Error ? reason.message : String(reason) }),
    )
  }

  return (
    <>
      <header>
        <h1>tethersocket chat (React)</h1>
        <span>
          state:{' '}
          <span className="state" data-state={state}>
            {state}
          </span>
        </span>
        <span>pending: {pending}</span>
      </header>
      {error && (
        <p className="error">
          {error.name}: {error.message}
        </p>
      )}
      <ul className="log">
        {lines.map((line) => (
          <li key={line.id}>
            {line.from}: {line.text}
            {line.delivery && <Tick delivery={line.delivery} />}
          </li>
        ))}
      </ul>
      <form onSubmit={submit}>
        <input
          value={draft}
          onChange={(event) => setDraft(event.target.value)}
          placeholder="Say something (it is queued while offline)"
          autoComplete="off"
        />
        <button type="submit">Send</button>
      </form>
    </>
  )
}

function Tick({ delivery }: { delivery: Delivery }) {
  switch (delivery.status) {
    case 'pending':
      return (
        <span className="tick" title="waiting for the server">
          …
        </span>
      )
    case 'delivered':
      return (
        <span className="tick done" title="delivered">
          ✓
        </span>
      )
    case 'failed':
      return <span className="tick failed">✗ {delivery.reason}</span>
  }
}
