// One node of a tethersocket service on Redis, as a child process for the failover tests: the
// built server (dist/) with `redisStore`, an echo `message` handler and an echo request handler.
// It reports on stdout, one JSON line each (with `at`, when), written synchronously before the handler returns,
// so a SIGKILL never loses a line about something the node did:
//   { t: 'ready', port } · { t: 'msg', data, id, redelivered, sid } · { t: 'req', data, id, redelivered }
//   { t: 'hold', sid } (a session opened or resumed here) · { t: 'expire', sid, reason } · { t: 'error', message }
// Env: REDIS_URL, PORT, PREFIX, SESSION_TTL (ms), REQUEST_DELAY (ms the request handler waits),
// MESSAGE_DELAY (ms: the message handler returns a promise settled that much later, which holds
// the item's record, and its echo, until then), ECHO_AFTER_DELAY=1 (the echo is sent after that
// delay, not before it). A request `{ join: [topics] }` joins its session to them. TOPIC_MAX:
// messages each topic's log keeps. PUBLISH_TOPICS (comma-separated): the node publishes
// `{ src: PORT, pid, k }` to them in turn, one every PUBLISH_EVERY ms while its clock is in
// [PUBLISH_FROM, PUBLISH_UNTIL), reporting { t: 'pub', topic, data } first.
import { writeSync } from 'node:fs'
import { createClient } from 'redis'
import { redisStore } from '../../dist/redis.mjs'
import { createTetherServer } from '../../dist/server.mjs'

// `at`: when, in ms on this machine's clock (sub-millisecond), to order the lines of several nodes.
const say = (line) => writeSync(1, `${JSON.stringify({ ...line, at: performance.timeOrigin + performance.now() })}\n`)
const client = createClient({ url: process.env.REDIS_URL })
client.on('error', (error) => say({ t: 'error', message: `redis: ${error.message}` }))
await client.connect()
const server = await createTetherServer({
  port: Number(process.env.PORT),
  host: '127.0.0.1',
  store: redisStore(client, { prefix: process.env.PREFIX }),
  sessionTtl: Number(process.env.SESSION_TTL ?? 60000),
  heartbeatInterval: 1000,
  ...(process.env.TOPIC_MAX && { topics: { maxMessages: Number(process.env.TOPIC_MAX) } }),
})
const messageDelay = Number(process.env.MESSAGE_DELAY ?? 0)
const echoAfter = process.env.ECHO_AFTER_DELAY === '1'
server.on('message', (data, session, info) => {
  say({ t: 'msg', data, id: info.id, redelivered: info.redelivered, sid: session.id })
  if (echoAfter) {
    // An outside call first (a database, say), then the echo: it belongs to the item all the same.
    return new Promise((resolve) => setTimeout(resolve, messageDelay)).then(() => {
      session.send({ echo: data }).catch(() => {})
    })
  }
  session.send({ echo: data }).catch(() => {})
  if (messageDelay > 0) return new Promise((resolve) => setTimeout(resolve, messageDelay))
})
const delay = Number(process.env.REQUEST_DELAY ?? 0)
server.onRequest(async (data, session, info) => {
  say({ t: 'req', data, id: info.id, redelivered: info.redelivered })
  if (Array.isArray(data?.join)) for (const topic of data.join) session.join(topic)
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
  return { re: data }
})
server.on('session', (session) => say({ t: 'hold', sid: session.id }))
server.on('resume', (session) => say({ t: 'hold', sid: session.id }))
server.on('expire', (session, reason) => say({ t: 'expire', sid: session.id, reason }))
server.on('error', (error) => say({ t: 'error', message: error.message }))
if (process.env.PUBLISH_TOPICS) {
  const topics = process.env.PUBLISH_TOPICS.split(',')
  const [from, until] = [Number(process.env.PUBLISH_FROM), Number(process.env.PUBLISH_UNTIL)]
  let k = 0
  const timer = setInterval(
    () => {
      const now = Date.now()
      if (now < from) return
      if (now >= until) return clearInterval(timer)
      const topic = topics[k % topics.length]
      const data = { src: server.port, pid: process.pid, k: k++ }
      say({ t: 'pub', topic, data })
      server.publish(topic, data)
    },
    Number(process.env.PUBLISH_EVERY ?? 10),
  )
}
say({ t: 'ready', port: server.port })
