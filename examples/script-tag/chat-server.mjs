// The chat behind the demo page, on a tether reference server: what `npm start` runs
// (scripts/start.mjs), and what the browser tests run against the page (test/browser/).
//
// Every chat line is broadcast to every session, its sender's included: a page shows what it
// receives, in the order it receives it, so every tab shows the server's order. A line keeps the
// `id` its page gave it; that is how a page recognises its own lines (see index.html). A new
// session (a new tab, or one the server no longer knew) gets the last 50 lines first.

const HISTORY = 50

/** Wires the chat onto `server`; returns its history (oldest first), which the server owns. */
export function serveChat(server) {
  const history = []
  server.on('session', (session) => {
    for (const line of history) session.send(line)
  })
  server.on('message', (msg) => {
    if (typeof msg?.text !== 'string') return
    const line = { from: String(msg.from).slice(0, 12), text: msg.text.slice(0, 500) }
    // Optional: the Node, React and Vue examples send { from, text } and match on `from`.
    if (typeof msg.id === 'string') line.id = msg.id.slice(0, 40)
    history.push(line)
    if (history.length > HISTORY) history.shift()
    server.broadcast(line)
  })
  // request() from a client: a little status, so the examples have something to ask.
  server.onRequest(() => ({ sessions: server.sessions.size, messages: history.length, time: new Date().toISOString() }))
  return { history }
}
