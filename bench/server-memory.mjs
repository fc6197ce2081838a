// The reference server's memory, as docs/SECURITY.md records it: heap per disconnected session,
// per broadcast per session and per session.send() entry, measured after full GCs, with real
// `ws` clients that connect, say hello and vanish without a close frame (abandoned sessions).
//
//   npx rollup -c --silent && node --expose-gc bench/server-memory.mjs [sessions] [broadcasts] [maxDisconnectedBytes|inf]
//
// Defaults: 10,000 sessions, 100 broadcasts of about 100 bytes, maxDisconnectedBytes at its
// default. Run each configuration in a fresh process (the JIT's code counts in the heap).
import { WebSocket } from 'ws'
import { createTetherServer } from '../dist/server.mjs'

if (typeof gc !== 'function') throw new Error('run with node --expose-gc')
const [sessionsArg = '10000', broadcastsArg = '100', budgetArg] = process.argv.slice(2)
const N = Number(sessionsArg)
const M = Number(broadcastsArg)
const MiB = 1024 * 1024
const mb = (bytes) => `${(bytes / MiB).toFixed(1)} MiB`

/** A raw tether.v1 client that has had its welcome. */
function connect(target) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${target.port}`, 'tether.v1')
    ws.on('error', () => {})
    ws.once('open', () => {
      ws.send('{"t":"hello","sid":null,"ack":0}')
      ws.once('message', () => resolve(ws))
    })
  })
}

async function heap() {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

const options = { port: 0, heartbeatInterval: 0 }
if (budgetArg) options.maxDisconnectedBytes = budgetArg === 'inf' ? Number.POSITIVE_INFINITY : Number(budgetArg)
const server = await createTetherServer(options)
let evicted = 0
server.on('expire', (_session, reason) => {
  if (reason === 'evicted') evicted++
})

const start = await heap()
for (let i = 0; i < N; i += 250) {
  const batch = await Promise.all(Array.from({ length: Math.min(250, N - i) }, () => connect(server)))
  for (const ws of batch) ws.terminate()
}
while ([...server.sessions.values()].some((session) => session.connected)) await new Promise((resolve) => setTimeout(resolve, 20))
const withSessions = await heap()
for (let i = 0; i < M; i++) {
  server.broadcast({ type: 'news', i, text: `item ${i} of a stream of small broadcasts, about a hundred bytes` })
  if (i % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 1))
}
const withBroadcasts = await heap()
const kept = server.sessions.size
console.log(
  `${N} abandoned sessions: +${mb(withSessions - start)} (${Math.round((withSessions - start) / N)} B each); ` +
    `${M} broadcasts: +${mb(withBroadcasts - withSessions)} (${((withBroadcasts - withSessions) / (kept * M)).toFixed(1)} B per broadcast per session); ` +
    `${kept} sessions kept, ${evicted} evicted`,
)

// One session.send() entry: 100,000 sends to one abandoned session of a server without bounds
// (so neither maxQueueBytes nor an eviction cuts it short), payloads of about 10 bytes.
const single = await createTetherServer({
  port: 0,
  heartbeatInterval: 0,
  maxQueue: Number.POSITIVE_INFINITY,
  maxQueueBytes: Number.POSITIVE_INFINITY,
  maxDisconnectedBytes: Number.POSITIVE_INFINITY,
})
const ws = await connect(single)
ws.terminate()
while ([...single.sessions.values()].some((session) => session.connected)) await new Promise((resolve) => setTimeout(resolve, 20))
const [away] = single.sessions.values()
const beforeSends = await heap()
const sends = []
for (let i = 0; i < 100_000; i++) sends.push(away.send(i))
const afterSends = await heap()
console.log(
  `session.send() while away: ${((afterSends - beforeSends) / 100_000).toFixed(0)} B per message, payload included (its promise kept by the caller)`,
)
await single.close()
await server.close()
process.exit(0)
