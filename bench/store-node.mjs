// One reference server node in a process of its own, for the store section (bench/nodes.mjs
// starts it): with the in-memory default, or with `redisStore` on a Redis that other nodes may
// share. In a process of its own so that it can be SIGKILLed like a crashed node, profiled
// with --cpu-prof, and run on the other core than the clients.
//
// argv[2] is JSON: { port, redis (url or null), prefix, heartbeatInterval, log (a file: every
// message handled is appended to it before the handler returns, so a SIGKILL loses none: the
// monotonic time, `info.id`, the message's `n`, and 1 if `info.redelivered`) }.
// The parent drives it over IPC: mode, holds, fill, stats, close.
import { closeSync, openSync, writeSync } from 'node:fs'
import { createClient } from 'redis'
import { loadRedis, loadServer } from './dist.mjs'
import { message } from './harness.mjs'

const config = JSON.parse(process.argv[2])
const { createTetherServer } = await loadServer()

let client
let store
if (config.redis) {
  const { redisStore } = await loadRedis()
  client = createClient({ url: config.redis })
  // The benchmark stops Redis while a node may still be connected; the client reconnects or is closed.
  client.on('error', () => {})
  await client.connect()
  store = timed(redisStore(client, { prefix: config.prefix }))
}

/**
 * Times every commit the server makes through the store: from the call to its result, which
 * is what an acknowledgement waits for (Redis's round trip, its fsync, and the wait for this
 * process's event loop to take the reply). The store itself is untouched.
 */
const commits = { count: 0, times: [] }
function timed(inner) {
  return {
    async open(listener) {
      const link = await inner.open(listener)
      const commit = link.commit.bind(link)
      link.commit = async (id, batch) => {
        const start = performance.now()
        try {
          return await commit(id, batch)
        } finally {
          commits.count++
          if (commits.times.length < 100_000) commits.times.push(performance.now() - start)
        }
      }
      return link
    },
  }
}

const server = await createTetherServer({
  port: config.port,
  host: '127.0.0.1',
  store,
  // As in bench/servers.mjs: a 100,000-message burst must not be slowed to the default 1,000/s,
  // and nothing here is refused for holding what a benchmark sends at once.
  rateLimit: false,
  maxQueue: Number.POSITIVE_INFINITY,
  maxQueueBytes: Number.POSITIVE_INFINITY,
  heartbeatInterval: config.heartbeatInterval ?? 30_000,
})

const errors = []
const noteError = (error) => {
  if (errors.length < 20) errors.push(String(error?.stack ?? error))
}
server.on('error', noteError)

let echo = false
const log = config.log ? openSync(config.log, 'a') : undefined
server.on('message', (data, session, info) => {
  if (log !== undefined) writeSync(log, `${process.hrtime.bigint()} ${info.id} ${data.n} ${info.redelivered ? 1 : 0}\n`)
  if (echo) session.send(data).catch(noteError)
})

const commands = {
  port: () => server.port,
  /** 'count' (acknowledge only) or 'echo' (the handler sends every message back to its session). */
  mode(mode) {
    echo = mode === 'echo'
  },
  /** Whether the session `sid` is connected here. */
  holds: (sid) => server.sessions.get(sid)?.connected === true,
  /** Sends `count` small messages to every session held here (not awaited: the clients may never acknowledge). */
  fill(count) {
    let sent = 0
    for (const session of server.sessions.values()) {
      for (let i = 0; i < count; i++) session.send(message(i)).catch(() => {})
      sent += count
    }
    return sent
  },
  stats: () => ({ sessions: server.sessions.size, errors: [...errors] }),
  /** Commits since the last call, and their durations in ms (sorted). */
  commits() {
    const result = { count: commits.count, times: commits.times.sort((a, b) => a - b) }
    commits.count = 0
    commits.times = []
    return result
  },
  async close() {
    await server.close()
    await client?.close()
    if (log !== undefined) closeSync(log)
    // The reply goes out before the process ends (a --cpu-prof profile is written at a normal exit).
    setImmediate(() => process.exit(0))
  },
}

process.on('message', async ({ id, command, args }) => {
  try {
    process.send({ id, result: await commands[command](...args) })
  } catch (error) {
    process.send({ id, error: error?.stack ?? String(error) })
  }
})
process.on('disconnect', () => process.exit(0))
process.send({ ready: true, port: server.port })
