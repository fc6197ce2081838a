// The clients of the steady-load section (bench/steady.mjs): thousands of sessions from one
// process, pinned to the other core by the parent. Once `go` is called every session sends one
// message a second, the sessions' sends spread evenly over each second (session i at i/N of
// it), until `stop`; every acknowledgement's latency is recorded, from just before the send to
// the ack's arrival, and each client checks that each of its messages is acknowledged once.
//
// The tethersocket clients speak tether.v1 themselves (a hello, then one `msg` frame per
// message, numbered), as light as the plain `ws` clients: 10,000 full TetherSocket clients would
// load the clients' core with work the server does not see. socket.io's clients are its own
// (`emit` with an acknowledgement callback); the section reports this process's CPU to show
// whether it kept up.
import { performance } from 'node:perf_hooks'
import { io } from 'socket.io-client'
import { WebSocket } from 'ws'
import { message, now, percentile } from './harness.mjs'
import { inBatches, serve } from './pinned.mjs'

/** How often the schedule looks for sends that are due, ms: at 10,000 sessions about 10 sends a turn. */
const TICK = 1

let clients = []
let errors = 0
const samples = []
/** The measured window, by send time: latencies of the messages sent within it are kept. */
let windowStart = Number.POSITIVE_INFINITY
let windowEnd = Number.POSITIVE_INFINITY
let latencies = []
/** Acknowledgements received in all: a wait for the last ones fails only when this stops moving. */
let acknowledged = 0
let schedule

function error(text) {
  errors++
  if (samples.length < 5) samples.push(text)
}

/** Message sent at `sentAt` was acknowledged now. */
function acked(sentAt) {
  acknowledged++
  if (sentAt >= windowStart && sentAt < windowEnd) latencies.push(now() - sentAt)
}

/**
 * Each kind: opens one client, resolving once it can send. A client has `send(n)` (sends message
 * `n`, remembering when), `sent` and `acked` (how many of its messages were sent and acknowledged)
 * and `close()`; it counts every acknowledgement that is not the next one due as an error.
 */
const kinds = {
  // The baseline: `{"id":n,"d":…}` out, `{"ack":n}` back for each message, in order.
  ws: (url, client) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url)
      const times = []
      client.send = (n) => {
        times.push(now())
        ws.send(`{"id":${++client.sent},"d":${JSON.stringify(message(n))}}`)
      }
      client.close = () => ws.terminate()
      ws.once('error', reject)
      ws.once('open', resolve)
      ws.on('message', (raw) => {
        const { ack } = JSON.parse(raw)
        if (ack !== client.acked + 1) return error(`client ${client.index} got ack ${ack}, expected ${client.acked + 1}`)
        client.acked++
        acked(times.shift())
      })
      ws.on('close', (code) => client.open && error(`client ${client.index} closed with ${code}`))
    }),
  // tether.v1 by hand: a `msg` frame of one item per message; the server's acks are cumulative.
  tether: (url, client) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, 'tether.v1')
      const times = []
      client.send = (n) => {
        times.push(now())
        ws.send(`{"t":"msg","s":${++client.sent},"d":[${JSON.stringify(message(n))}]}`)
      }
      client.close = () => ws.terminate()
      ws.once('error', reject)
      ws.once('open', () => ws.send('{"t":"hello","sid":null,"ack":0}'))
      ws.on('message', (raw) => {
        const frame = JSON.parse(raw)
        if (frame.t === 'welcome') return resolve()
        if (frame.t !== 'ack') return error(`client ${client.index} got a ${frame.t} frame: ${String(raw).slice(0, 80)}`)
        if (frame.s <= client.acked || frame.s > client.sent)
          return error(`client ${client.index} got ack ${frame.s} with ${client.acked} acknowledged of ${client.sent} sent`)
        while (client.acked < frame.s) {
          client.acked++
          acked(times.shift())
        }
      })
      ws.on('close', (code) => client.open && error(`client ${client.index} closed with ${code}`))
    }),
  // socket.io-client: `emit` with an acknowledgement callback, which must be called once.
  socketio: (url, client) =>
    new Promise((resolve, reject) => {
      const socket = io(url.replace(/^ws/, 'http'), { transports: ['websocket'], forceNew: true, reconnection: false })
      client.send = (n) => {
        const sentAt = now()
        let called = false
        client.sent++
        socket.emit('m', message(n), () => {
          if (called) return error(`client ${client.index}: an acknowledgement callback was called twice`)
          called = true
          client.acked++
          acked(sentAt)
        })
      }
      client.close = () => socket.disconnect()
      socket.once('connect_error', reject)
      socket.once('connect', resolve)
      socket.on('disconnect', (reason) => client.open && error(`client ${client.index} disconnected: ${reason}`))
    }),
}

/** This process's CPU time and event-loop use from a mark on. */
const mark = () => ({ cpu: process.cpuUsage(), elu: performance.eventLoopUtilization(), at: now() })
let windowMark
/** How late the sends of the window went out against their schedule, ms. */
let lag = { max: 0, sum: 0, count: 0 }

const commands = {
  /** Opens `count` clients of `kind` to `port`, 500 at a time; resolves with the time taken, ms. */
  async connect(kind, port, count) {
    clients = []
    errors = 0
    samples.length = 0
    latencies = []
    acknowledged = 0
    windowStart = windowEnd = Number.POSITIVE_INFINITY
    const url = `ws://127.0.0.1:${port}`
    const ms = await inBatches(count, (index) => {
      const client = { index, sent: 0, acked: 0, open: true }
      clients.push(client)
      return kinds[kind](url, client)
    })
    return ms
  },
  /**
   * Starts sending: message k (counting from 0 over all sessions) goes from session k mod N at
   * k/N seconds after the start, so each session sends once a second and the sends of a second
   * are spread evenly over it.
   */
  go() {
    const count = clients.length
    const perMs = count / 1000
    const started = now()
    let next = 0
    schedule = setInterval(() => {
      const at = now()
      const due = Math.floor((at - started) * perMs)
      if (next <= due && at >= windowStart && at < windowEnd) {
        const late = at - (started + next / perMs)
        lag.max = Math.max(lag.max, late)
        lag.sum += late
        lag.count++
      }
      for (; next <= due; next++) clients[next % count].send(next)
    }, TICK)
  },
  /** Starts the measured window: latencies of the messages sent from now on, and this process's CPU. */
  begin() {
    windowMark = mark()
    windowStart = windowMark.at
    lag = { max: 0, sum: 0, count: 0 }
  },
  /** Ends the window: this process's CPU (user and system, µs) and event-loop use (0..1) over it, and how late the sends went out. */
  end() {
    windowEnd = now()
    const cpu = process.cpuUsage(windowMark.cpu)
    return {
      user: cpu.user,
      system: cpu.system,
      ms: windowEnd - windowMark.at,
      elu: performance.eventLoopUtilization(windowMark.elu).utilization,
      lagMax: lag.max,
      lagMean: lag.count ? lag.sum / lag.count : 0,
    }
  },
  /**
   * Stops sending and waits until every message sent is acknowledged (or, for `stall` ms, no
   * acknowledgement arrives); resolves with the counts, the errors and the window's latencies (ms).
   */
  async stop(stall = 10_000) {
    clearInterval(schedule)
    const sent = () => clients.reduce((sum, c) => sum + c.sent, 0)
    let seen = -1
    let since = now()
    while (acknowledged < sent() && now() - since < stall) {
      if (acknowledged !== seen) {
        seen = acknowledged
        since = now()
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    const p = (q) => (latencies.length ? percentile(latencies, q) : Number.NaN)
    return {
      clients: clients.length,
      sent: sent(),
      acknowledged,
      complete: clients.filter((c) => c.acked === c.sent).length,
      errors,
      samples,
      measured: latencies.length,
      p50: p(0.5),
      p99: p(0.99),
      max: latencies.reduce((a, b) => Math.max(a, b), 0),
    }
  },
  close() {
    for (const client of clients) {
      client.open = false
      client.close()
    }
    clients = []
  },
}

serve(commands)
