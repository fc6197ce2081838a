// Memory per queued message: 100,000 messages sent while offline (the URL points at a closed
// port and the next retry is an hour away), heap measured after a full GC before and after.
// Each measurement runs in a fresh `node --expose-gc` process of its own, so no other
// section's heap or JIT state is in it. Overhead = heap per message − its JSON payload bytes.
import { execFile } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { loadClient } from './dist.mjs'
import { interleave, median, message, ratio, sleep, spread, summarize, table } from './harness.mjs'

export const N = 100_000
const HOUR = 3_600_000

// Each contender: how to create the offline client, and how one message is queued on it.
// Only the library measured is imported, so each child starts quickly.
const contenders = {
  // The floor: nothing but the JSON strings in an array, what any queue must hold at least.
  'payload strings in an array': async () => {
    const queue = []
    return { client: queue, send: (data) => queue.push(JSON.stringify(data)) }
  },
  // The floor of any send() that returns a promise: the JSON strings and, for each, the one
  // resolver a queue must keep to settle that promise later (the resolver keeps the promise).
  'payload strings and a promise each': async () => {
    const queue = []
    return {
      client: queue,
      send: (data) => {
        let settle
        const promise = new Promise((resolve) => {
          settle = resolve
        })
        queue.push(JSON.stringify(data), settle)
        return promise
      },
    }
  },
  'tethersocket, tether mode': async (target) => {
    const sock = await tethersocket(target, {})
    return { client: sock, send: (data) => sock.send(data) }
  },
  'tethersocket, raw mode': async (target) => {
    const sock = await tethersocket(target, { mode: 'raw' })
    return { client: sock, send: (data) => sock.send(data) }
  },
  'reconnecting-websocket': async (target) => {
    const [{ default: ReconnectingWebSocket }, { WebSocket }] = await Promise.all([import('reconnecting-websocket'), import('ws')])
    const rws = new ReconnectingWebSocket(target, [], { WebSocket, minReconnectionDelay: HOUR, maxReconnectionDelay: HOUR })
    return { client: rws, send: (data) => rws.send(JSON.stringify(data)) }
  },
  partysocket: async (target) => {
    const [{ default: PartySocket }, { WebSocket }] = await Promise.all([import('partysocket/ws'), import('ws')])
    const ps = new PartySocket(target, undefined, { WebSocket, minReconnectionDelay: HOUR, maxReconnectionDelay: HOUR })
    return { client: ps, send: (data) => ps.send(JSON.stringify(data)) }
  },
  // Emits while disconnected wait in its sendBuffer.
  'socket.io-client': async (target) => {
    const { io } = await import('socket.io-client')
    const socket = io(target, { transports: ['websocket'], reconnectionDelay: HOUR, reconnectionDelayMax: HOUR })
    return { client: socket, send: (data) => socket.emit('msg', data) }
  },
}

async function tethersocket(target, options) {
  const [{ TetherSocket }, { WebSocket }] = await Promise.all([loadClient(), import('ws')])
  // Bounds raised to hold N (the defaults, 10,000 messages and 10 MiB, protect applications).
  const queue = { maxMessages: N, maxBytes: Number.POSITIVE_INFINITY }
  return new TetherSocket(target, { WebSocket, queue, reconnect: { minDelay: HOUR }, ...options })
}

/** A port nothing listens on: bound by the OS, then released. */
async function closedPort() {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

function heap() {
  // Twice: the first pass may leave objects with finalizers for the second.
  globalThis.gc()
  globalThis.gc()
  return process.memoryUsage().heapUsed
}

/** In the child: one measurement, printed as JSON. */
async function measure(name) {
  const { client, send } = await contenders[name](`ws://127.0.0.1:${await closedPort()}`)
  // Let the first connection attempt fail, so only the queue grows between the two readings.
  await sleep(100)
  let payload = 0
  for (let i = 0; i < N; i++) payload += JSON.stringify(message(i)).length
  const before = heap()
  for (let i = 0; i < N; i++) send(message(i))
  const after = heap()
  const perMessage = (after - before) / N
  // `client` stays referenced until here, so the queue is alive when measured.
  console.log(JSON.stringify({ name, perMessage, payload: payload / N, held: client !== undefined }))
  process.exit(0)
}

function spawnMeasurement(name) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), name], (error, stdout) => {
      if (error) reject(error)
      else resolve(JSON.parse(stdout.trim().split('\n').pop()))
    })
  })
}

export async function run({ rounds, log, select }) {
  const chosen = select(Object.keys(contenders).map((name) => ({ name })))
  const samples = await interleave(
    chosen.map(({ name }) => ({ name, run: () => spawnMeasurement(name) })),
    { rounds, log },
  )
  const payload = median(samples[chosen[0].name].map((s) => s.payload))
  const results = chosen.map(({ name }) => {
    const perMessage = summarize(samples[name].map((s) => s.perMessage))
    const overhead = summarize(samples[name].map((s) => s.perMessage - s.payload))
    return { name, perMessage, overhead }
  })
  const tetherOverhead = results.find((r) => r.name === 'tethersocket, tether mode')?.overhead.median
  const markdown = table(
    ['client', 'heap per message, bytes', 'overhead beyond payload, bytes', 'tether mode vs this'],
    results.map((r) => [r.name, spread(r.perMessage, 0), spread(r.overhead, 0), ratio(tetherOverhead / r.overhead.median)]),
  )
  return {
    title: `Memory per queued message, ${N.toLocaleString('en')} queued while offline`,
    markdown,
    notes: `Median (min–max) over the rounds. Payload: ${payload.toFixed(1)} bytes of JSON per message on average (\`{"type":"tick","n":i,"text":"hello, world"}\`). Heap is V8's heapUsed after a full GC, before and after queueing.`,
    results,
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await measure(process.argv[2])
