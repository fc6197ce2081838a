// The servers the benchmarks talk to, run in a child process of their own (bench/remote.mjs
// starts it): on a 2-core machine client and server then work on separate cores, as they
// would across a network, and the server's work is not counted as the client's.
//
// The parent drives it over IPC: start or stop a server, arm the message counter, wait
// until the armed number of messages has arrived.
import { createServer } from 'node:http'
import { Server as SocketIoServer } from 'socket.io'
import { WebSocketServer } from 'ws'
import { loadServer } from './dist.mjs'

const { createTetherServer } = await loadServer()

// One counter for every server: one contender runs at a time.
let count = 0
let target = Number.POSITIVE_INFINITY
let waiters = []

function counted() {
  if (++count < target) return
  for (const resolve of waiters) resolve(count)
  waiters = []
}

/** A plain `ws` server; `onConnection` gives it its behaviour. */
const plain = (onConnection) => (http) => {
  const wss = new WebSocketServer({ server: http })
  wss.on('connection', onConnection)
  return () => new Promise((resolve) => wss.close(() => resolve()))
}

/** Each kind attaches to an HTTP server and returns how to shut itself down. */
const kinds = {
  // Counts messages: raw ws, tethersocket raw mode, reconnecting-websocket, partysocket.
  count: plain((ws) => ws.on('message', counted)),
  // Answers every message with itself: ping-pong latency.
  echo: plain((ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))),
  // The hand-written pipelined ack protocol: `{id,data}` frames in, one cumulative
  // `{"ack":id}` out per event-loop turn (as the reference server coalesces its acks).
  ack: plain((ws) => {
    let last = 0
    let queued = false
    const ack = () => {
      queued = false
      ws.send(`{"ack":${last}}`)
    }
    ws.on('message', (data) => {
      last = JSON.parse(data).id
      counted()
      if (queued) return
      queued = true
      queueMicrotask(ack)
    })
  }),
  // The reference server, without its rate limit (its default would close a 100,000-message burst with 1013).
  tether: async (http) => {
    const server = await createTetherServer({ server: http, rateLimit: false })
    server.on('message', counted)
    server.onRequest((data) => data)
    return () => server.close()
  },
  socketio: (http) => {
    const io = new SocketIoServer(http, { serveClient: false })
    io.on('connection', (socket) => {
      socket.on('msg', (_data, ack) => {
        counted()
        ack?.()
      })
      socket.on('echo', (data, ack) => ack(data))
    })
    // Closes the HTTP server too; stop()'s own close of it then finds it closed already.
    return () => new Promise((resolve) => io.close(() => resolve()))
  },
}

const running = new Map()

async function start(kind, port = 0) {
  const http = createServer()
  // Every TCP connection, so that stop() can cut them like a crash would.
  const sockets = new Set()
  http.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise((resolve, reject) => {
    http.once('error', reject)
    http.listen(port, '127.0.0.1', resolve)
  })
  const shutDown = await kinds[kind](http)
  running.set(kind, { http, sockets, shutDown })
  return http.address().port
}

/** Stops a server the way a crash or a restart does: connections cut without a close frame. */
async function stop(kind) {
  const server = running.get(kind)
  if (!server) return
  running.delete(kind)
  for (const socket of server.sockets) socket.destroy()
  await server.shutDown()
  await new Promise((resolve) => server.http.close(() => resolve()))
}

const commands = {
  start,
  stop,
  arm(n) {
    count = 0
    target = n
  },
  wait: () => (count >= target ? count : new Promise((resolve) => waiters.push(resolve))),
  count: () => count,
}

process.on('message', async ({ id, command, args }) => {
  try {
    const result = await commands[command](...args)
    process.send({ id, result })
  } catch (error) {
    process.send({ id, error: error?.stack ?? String(error) })
  }
})
process.on('disconnect', () => process.exit(0))
process.send({ ready: true })
