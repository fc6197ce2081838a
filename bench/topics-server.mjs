// The server of the topics section (bench/topics.mjs), one contender per process (a fresh heap
// each), pinned to one core by the parent. It times its own work: from the publish call until
// every write to the members' sockets is issued, and checks that every socket was written to.
import { createServer } from 'node:http'
import { performance } from 'node:perf_hooks'
import { loadServer } from './dist.mjs'
import { profiled, serve, settledHeap } from './pinned.mjs'

const TOPIC = 'room:1'

if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc')

/** What each contender publishes: a small chat message; `n` lets every client check it gets each one once, in order. */
const chat = (n, via) => ({ type: 'chat', room: TOPIC, from: 'ada', text: 'hello, everyone in the room', via, n })

/** Each kind attaches to the HTTP server: how many members it has, and how it publishes to them all. */
const kinds = {
  // The floor: `ws` itself, one JSON string written to every socket in a loop.
  ws: async (http) => {
    const { WebSocketServer } = await import('ws')
    const wss = new WebSocketServer({ server: http })
    return {
      members: () => wss.clients.size,
      publish: (data) => {
        const json = JSON.stringify(data)
        for (const client of wss.clients) client.send(json)
      },
    }
  },
  // The reference server with its defaults (the topics retention included): every session joins on arrival.
  tether: async (http) => {
    const { createTetherServer } = await loadServer()
    const server = await createTetherServer({ server: http })
    server.on('session', (session) => session.join(TOPIC))
    return {
      members: async () => (await server.presence(TOPIC)).filter((member) => member.connected).length,
      publish: (data) => server.publish(TOPIC, data),
      // For comparison, in the same process with the same sessions: every session, not a topic.
      broadcast: (data) => server.broadcast(data),
    }
  },
  // socket.io: every socket joins one room on connection.
  socketio: async (http) => {
    const { Server } = await import('socket.io')
    const io = new Server(http, { serveClient: false })
    io.on('connection', (socket) => socket.join(TOPIC))
    return {
      members: () => io.sockets.adapter.rooms.get(TOPIC)?.size ?? 0,
      publish: (data) => io.to(TOPIC).emit('m', data),
    }
  },
}

const sockets = new Set()
let contender

/**
 * Forgets a closed socket. One listener for every socket, added with `on`: a closure (and `once`'s
 * wrapper) per connection would be counted in every contender's heap per session (about 0.27 KiB).
 */
function forget() {
  sockets.delete(this)
}

const commands = {
  /** Starts the contender `kind`; resolves with its port and the heap before any connection. */
  async start(kind) {
    const http = createServer()
    // Every TCP connection, to see that a publish wrote to each of them.
    http.on('connection', (socket) => {
      sockets.add(socket)
      socket.on('close', forget)
    })
    await new Promise((resolve, reject) => {
      http.once('error', reject)
      http.listen(0, '127.0.0.1', resolve)
    })
    contender = await kinds[kind](http)
    return { port: http.address().port, heap: await settledHeap() }
  },
  members: () => contender.members(),
  heap: settledHeap,
  /**
   * One publish (or, `via` 'broadcast', a broadcast) of message `n`, timed from the call until
   * every write is issued and what the publish queued has run: its microtasks (the reference
   * server writes each session's frame in a microtask of that tick; ws and socket.io write within
   * the call) and `process.nextTick` callbacks (each socket's after-write callback, in all three).
   * A `setImmediate` marks that end: it runs once both queues are empty, before the next I/O
   * (the server is idle otherwise: every client had the previous message and acknowledged it).
   * Resolves with the time and how many sockets were written to. With `profile` (a file), the
   * publish runs under the CPU profiler (its time is then no measurement).
   */
  async publish(via, n, profile) {
    const list = [...sockets]
    const before = list.map((socket) => socket.bytesWritten)
    const data = chat(n, via)
    globalThis.gc()
    const timed = async () => {
      const started = performance.now()
      contender[via](data)
      await new Promise((resolve) => setImmediate(resolve))
      return performance.now() - started
    }
    const ms = profile ? await profiled(profile, timed) : await timed()
    let written = 0
    for (let i = 0; i < list.length; i++) if (list[i].bytesWritten > before[i]) written++
    return { ms, written }
  },
  /** Publishes messages `from` to `to - 1`, each in a turn of the event loop of its own (as separate events would). */
  async burst(from, to) {
    for (let n = from; n < to; n++) {
      contender.publish(chat(n, 'publish'))
      await new Promise((resolve) => setImmediate(resolve))
    }
  },
}

serve(commands)
