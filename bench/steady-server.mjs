// The server of the steady-load section (bench/steady.mjs), one contender per process (a fresh
// heap each), pinned to one core by the parent. It acknowledges every message the clients send,
// counts them, and measures its own CPU time (`process.cpuUsage()`, user and system) over the
// window the parent marks with `begin` and `end`.
import { createServer } from 'node:http'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { loadServer } from './dist.mjs'
import { serve, settledHeap, startProfiling } from './pinned.mjs'

if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc')

/** Messages handed to the application (the contender's message handler), since the start. */
let received = 0

/** Each kind attaches to the HTTP server and says how many sessions it has connected. */
const kinds = {
  // The baseline: `ws` itself; each message `{"id":n,"d":…}` is parsed and answered with `{"ack":n}`.
  ws: async (http) => {
    const { WebSocketServer } = await import('ws')
    const wss = new WebSocketServer({ server: http })
    wss.on('connection', (ws) =>
      ws.on('message', (raw) => {
        const { id } = JSON.parse(raw)
        received++
        ws.send(`{"ack":${id}}`)
      }),
    )
    return { sessions: () => wss.clients.size }
  },
  // The reference server with its defaults: it acknowledges each message once its handler ran.
  tether: async (http) => {
    const { createTetherServer } = await loadServer()
    const server = await createTetherServer({ server: http })
    // Every session is a fresh one (the clients never resume), and none ends during a run.
    let sessions = 0
    server.on('session', () => sessions++)
    server.on('message', () => received++)
    return { sessions: () => sessions }
  },
  // socket.io with its defaults: the client emits with an acknowledgement callback, the handler calls it.
  socketio: async (http) => {
    const { Server } = await import('socket.io')
    const io = new Server(http, { serveClient: false })
    io.on('connection', (socket) =>
      socket.on('m', (_data, ack) => {
        received++
        ack()
      }),
    )
    return { sessions: () => io.engine.clientsCount }
  },
}

let contender
/** The measured window: where its current lap started, and how to stop its profile when one is taken. */
let window

const mark = () => ({ cpu: process.cpuUsage(), elu: performance.eventLoopUtilization(), at: performance.now(), received })

const commands = {
  /** Starts the contender `kind`; resolves with its port and the heap before any connection. */
  async start(kind) {
    const http = createServer()
    await new Promise((resolve, reject) => {
      http.once('error', reject)
      http.listen(0, '127.0.0.1', resolve)
    })
    contender = await kinds[kind](http)
    return { port: http.address().port, heap: await settledHeap() }
  },
  sessions: () => contender.sessions(),
  received: () => received,
  heap: settledHeap,
  /**
   * Starts the measured window: CPU time, wall time and messages from now on. With `profile` (a
   * file), the window runs under the CPU profiler, sampled every millisecond (its CPU time then
   * includes the profiler's); `end` writes the profile.
   */
  async begin(profile) {
    const stopProfile = profile ? await startProfiling(1000) : undefined
    // How late a 10 ms timer fires: the longest a task (a heartbeat's loop, a GC) held the event loop.
    const delay = monitorEventLoopDelay({ resolution: 10 })
    delay.enable()
    window = { ...mark(), profile, stopProfile, delay }
  },
  /**
   * Ends a lap of the window and starts the next: resolves with the lap's CPU time (µs, user and
   * system), wall time (ms), event-loop use (0..1: busy wall time, so above the CPU share when
   * other processes take the core) and the messages handled in it.
   */
  lap() {
    const cpu = process.cpuUsage(window.cpu)
    const ms = performance.now() - window.at
    const elu = performance.eventLoopUtilization(window.elu).utilization
    const messages = received - window.received
    Object.assign(window, mark())
    return { user: cpu.user, system: cpu.system, ms, elu, messages }
  },
  /**
   * Ends the window with its last lap (resolved as `lap` does, with the event loop's delay over the
   * whole window, ms: p99 and max), and writes the profile when one is taken.
   */
  async end() {
    const last = commands.lap()
    const { delay } = window
    delay.disable()
    await window.stopProfile?.(window.profile)
    return { ...last, delayP99: delay.percentile(99) / 1e6, delayMax: delay.max / 1e6 }
  },
}

serve(commands)
