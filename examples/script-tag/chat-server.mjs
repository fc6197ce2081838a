// The chat behind the demo page, on a tether reference server: what `npm start` runs
// (scripts/start.mjs), and what the browser tests run against the page (test/browser/).
//
// Rooms are topics. A session is in one room at a time: every new session starts in the lobby
// (so clients that know nothing of rooms, like the Node, React and Vue examples, chat there),
// and a page moves with a request, `{ join: 'random', name }`. A chat line is published to its
// room's topic, and reaches every session in the room, its sender's included: a page shows what
// it receives, in the order it receives it, so every tab in a room shows the server's order. A
// line keeps the `id` its page gave it; that is how a page recognises its own lines (see
// index.html). Joining a room sends its last 50 lines first, as direct messages naming the room,
// after `{ room, entered: true }`. Tabs sharing one connection (option `shared`) share one
// session, so one room: a page joining with `follow: true` (a new tab) stays in the session's
// room and gets its history in the reply.
// Who is in a room (connected or away) is published to the room whenever it changes.
import { RequestError } from 'tethersocket/server'

/** The rooms there are. */
export const ROOMS = ['lobby', 'random', 'help']

/**
 * The options the demo creates its server with: each room's topic keeps 20 messages (chat
 * lines and member lists alike) for members who are away. Small, so that it can be seen: a tab
 * away for longer is told what it missed ("6 earlier messages in #random were missed while you
 * were away"), and the room's history (50 lines, the app's own) has them when it joins again.
 */
export const CHAT_OPTIONS = { topics: { maxMessages: 20 } }

const HISTORY = 50
/** The topic of a room. A prefix of its own, so that an app's other topics cannot be joined as rooms. */
const topicOf = (room) => `room:${room}`
const roomOf = (topic) => (topic.startsWith('room:') ? topic.slice('room:'.length) : undefined)

/** Wires the chat onto `server`; returns the history of each room (oldest first), which the server owns. */
export function serveChat(server) {
  const history = Object.fromEntries(ROOMS.map((room) => [room, []]))
  // The name each session goes by in the rooms' member lists. Not the session id: session ids
  // are secrets that must not be published (whoever has one can resume the session).
  const names = new Map()
  const roomOfSession = (session) => session.topics.map(roomOf).find((room) => room !== undefined)

  /**
   * Moves `session` to `room` and sends it the room's history; false if it is there already.
   * `asked`: a page asked; the session's tabs are told first, which matters when several tabs
   * share its connection (option `shared`): a session is in one room, so they all follow.
   */
  function enter(session, room, asked = false) {
    const current = roomOfSession(session)
    if (current === room) return false
    if (current !== undefined) session.leave(topicOf(current))
    // Lines published from now on reach the session after the history sent next: a joined
    // session's topic messages take their place in its stream when they are published.
    session.join(topicOf(room))
    if (asked) session.send({ room, entered: true })
    for (const line of history[room]) session.send({ ...line, room })
    // Published after join() returned: from then on the session is a member that gets it too.
    announce(topicOf(room))
    return true
  }

  /** Publishes who is in the room of `topic`: every member hears of joins, leaves, and who is away. */
  async function announce(topic) {
    const room = roomOf(topic)
    if (room === undefined) return
    // presence() is a promise: with a session store it is the service's, read from the store.
    const present = await server.presence(topic)
    const members = present.map(({ id, connected }) => ({ name: names.get(id) ?? 'guest', connected }))
    if (members.length > 0) server.publish(topic, { room, members })
  }
  server.on('leave', (_session, topic) => announce(topic))
  server.on('disconnect', (session) => session.topics.forEach(announce))
  server.on('resume', (session) => session.topics.forEach(announce))
  server.on('expire', (session) => names.delete(session.id))

  server.on('session', (session) => enter(session, 'lobby'))
  server.on('message', (msg, session) => {
    if (typeof msg?.text !== 'string') return
    // A line names its room; a line without one (the Node, React and Vue examples) is the lobby's.
    const room = msg.room ?? 'lobby'
    // Who may post where is the app's to decide: here anyone, in any of the rooms.
    if (!ROOMS.includes(room)) return
    const line = { from: String(msg.from).slice(0, 12), text: msg.text.slice(0, 500) }
    // Optional: the Node, React and Vue examples send { from, text } and match on `from`.
    if (typeof msg.id === 'string') line.id = msg.id.slice(0, 40)
    if (!names.has(session.id)) names.set(session.id, line.from)
    history[room].push(line)
    if (history[room].length > HISTORY) history[room].shift()
    server.publish(topicOf(room), line)
  })

  server.onRequest((request, session) => {
    if (request?.join !== undefined) {
      // Joining is a server-side call, so authorization stays with the app: check the request
      // (and, in an app with accounts, `session.principal`) before session.join(). Here every
      // session may enter the fixed rooms; anything else is refused with an error the client
      // sees (a ReplyError with this code and message).
      if (!ROOMS.includes(request.join)) {
        throw new RequestError('NO_SUCH_ROOM', `there is no room ${JSON.stringify(request.join)}: join one of ${ROOMS.join(', ')}`)
      }
      const named = typeof request.name === 'string' && names.get(session.id) !== request.name.slice(0, 12)
      if (named) names.set(session.id, request.name.slice(0, 12))
      // `follow`: a tab opened next to tabs sharing the session's connection. The session stays
      // where they are, and the reply has the room's history, which they were sent before it came.
      const current = roomOfSession(session)
      if (request.follow === true && current !== undefined) {
        if (named) announce(topicOf(current))
        return { room: current, rooms: ROOMS, lines: [...history[current]] }
      }
      // Already there: only the name may be new, and the others hear of it.
      if (!enter(session, request.join, true) && named) announce(topicOf(request.join))
      return { room: request.join, rooms: ROOMS }
    }
    // Anything else: a little status, so the examples have something to ask.
    const messages = ROOMS.reduce((sum, room) => sum + history[room].length, 0)
    return { sessions: server.sessions.size, messages, time: new Date().toISOString() }
  })
  return { history }
}
