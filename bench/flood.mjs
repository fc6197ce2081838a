// What one client streaming 1 MiB frames of nested arrays costs the reference server, and
// another client: `node --expose-gc bench/flood.mjs [--seconds 4] [--shape items|one] [--no-byte-budget]`.
//
// 1. The cost of decoding one such frame here: JSON.parse time (median of 5) and the heap the
//    decoded frame holds (after a full GC, with the frame kept).
// 2. The request/reply round trip of a well-behaved client, one at a time, measured with no
//    flood, then while a flooder (another connection, its own session) writes such frames as
//    fast as its socket takes them. The server runs in this process with its defaults (dist/,
//    built if missing); each client runs in a child process of its own, so its work is not the
//    server's. The well-behaved client sends a request every 5 ms or so (its acks count against
//    the rate limit too: it stays well within the default 1000 frames a second).
//
// Shapes: `items` (default): a `msg` frame whose `d` holds ~116,000 items `[[[[]]]]`, each a
// message; `one`: the same bytes as one message (`d: [[[[[]]]], …]]`). The first is held back by
// the token bucket (a token per message), the second, one token per frame, by the decoding budget
// (`rateLimit.bytesPerSecond`, 2 MiB/s by default). `--no-byte-budget` runs the server with the
// default rate but without that budget (`bytesPerSecond: Infinity`): the cost it takes away.
import { fork } from 'node:child_process'
import { parseArgs } from 'node:util'
import { WebSocket } from 'ws'
import { loadServer } from './dist.mjs'

const MiB = 1024 * 1024
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    shape: { type: 'string', default: 'items' },
    'no-byte-budget': { type: 'boolean', default: false },
    role: { type: 'string' },
    port: { type: 'string' },
  },
})

/** The `d` of a `msg` frame of just under `bytes`: nested arrays; and how many items (messages) it holds. */
function floodBody(shape, bytes = MiB - 1024) {
  const unit = '[[[[]]]]'
  const count = Math.floor((bytes - 40) / (unit.length + 1))
  const list = Array(count).fill(unit).join(',')
  return shape === 'one' ? { body: `[[${list}]]`, items: 1 } : { body: `[${list}]`, items: count }
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

const url = `ws://127.0.0.1:${values.port}`
/** Opens a tether.v1 connection and says hello (a new session). */
const open = (onFrame) =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['tether.v1'])
    ws.on('error', reject)
    ws.on('message', (data) => onFrame(JSON.parse(String(data)), ws))
    ws.on('open', () => {
      ws.send('{"t":"hello","sid":null,"ack":0}')
      resolve(ws)
    })
  })

if (values.role === 'flooder') {
  // Writes frames as fast as its socket takes them (up to 4 MiB buffered), until told to stop.
  const { body, items } = floodBody(values.shape)
  let closed
  let sent = 0
  const flooder = await open(() => {})
  flooder.on('close', (code) => {
    closed = { code, afterFrames: sent }
  })
  let s = 1
  const pump = () => {
    while (!closed && flooder.readyState === WebSocket.OPEN && flooder.bufferedAmount < 4 * MiB) {
      flooder.send(`{"t":"msg","s":${s},"d":${body}}`)
      s += items
      sent++
    }
    if (!closed) setTimeout(pump, 5)
  }
  pump()
  process.on('message', () => {
    process.send({ flooderClosed: closed ?? null, framesSent: sent })
    flooder.terminate()
    process.exit(0)
  })
  process.send('flooding')
} else if (values.role === 'victim') {
  // Request/reply round trips, one at a time, for `seconds`, when asked; reports their percentiles.
  let answer
  let seq = 0
  const victim = await open((frame, ws) => {
    if (frame.t !== 'res') return
    ws.send(`{"t":"ack","s":${frame.s}}`)
    answer?.()
  })
  const roundTrips = async (ms) => {
    const times = []
    const until = performance.now() + ms
    while (performance.now() < until) {
      const started = performance.now()
      await new Promise((resolve) => {
        answer = resolve
        seq++
        victim.send(`{"t":"req","s":${seq},"id":${seq},"d":${seq}}`)
      })
      times.push(performance.now() - started)
      // 200 requests a second (and as many acks): well within the default rate limit.
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    return times.sort((a, b) => a - b)
  }
  await roundTrips(500) // warm-up
  process.on('message', async () => {
    const times = await roundTrips(Number(values.seconds) * 1000)
    process.send({ n: times.length, p50: percentile(times, 50), p99: percentile(times, 99), max: times.at(-1) })
  })
  process.send('ready')
}

// The parent: decoding cost, then the server and the clients.
if (!values.role) {
  const text = `{"t":"msg","s":1,"d":${floodBody(values.shape).body}}`
  const times = []
  let heap = 0
  /** The decoded frame, kept alive while the heap is measured. */
  const kept = []
  for (let i = 0; i < 5; i++) {
    globalThis.gc?.()
    const before = process.memoryUsage().heapUsed
    const started = performance.now()
    kept.push(JSON.parse(text))
    times.push(performance.now() - started)
    globalThis.gc?.()
    heap = process.memoryUsage().heapUsed - before
    kept.length = 0
  }
  times.sort((a, b) => a - b)
  console.log(
    `decoding one frame (${(text.length / MiB).toFixed(2)} MiB, shape ${values.shape}): ${times[2].toFixed(0)} ms (median of 5), ` +
      `${(heap / 1e6).toFixed(1)} MB of heap held by the decoded frame${globalThis.gc ? '' : ' (run with --expose-gc for the heap)'}`,
  )
  const { createTetherServer } = await loadServer()
  const noByteBudget = values['no-byte-budget']
  const rateLimit = noByteBudget ? { rate: 1000, burst: 10000, bytesPerSecond: Number.POSITIVE_INFINITY } : undefined
  console.log(`server: default options${noByteBudget ? ', but no decoding budget (rateLimit.bytesPerSecond: Infinity)' : ''}`)
  const server = await createTetherServer({ port: 0, host: '127.0.0.1', rateLimit })
  server.onRequest((data) => data)
  let delivered = 0
  server.on('message', () => delivered++)
  const child = (role) =>
    fork(new URL(import.meta.url), ['--role', role, '--port', String(server.port), '--seconds', values.seconds, '--shape', values.shape])
  const next = (proc) => new Promise((resolve) => proc.once('message', resolve))
  const victim = child('victim')
  await next(victim)
  victim.send('go')
  const quiet = await next(victim)
  const flooder = child('flooder')
  await next(flooder)
  victim.send('go')
  const flooded = await next(victim)
  flooder.send('stop')
  const result = await next(flooder)
  victim.kill()
  const fmt = (r) => `p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, max ${r.max.toFixed(0)} ms (${r.n} round trips)`
  console.log(`request latency, no flood:    ${fmt(quiet)}`)
  console.log(`request latency, under flood: ${fmt(flooded)}`)
  console.log(
    `flooder: ${result.framesSent} frames written, ${delivered} messages delivered to the handler; ` +
      (result.flooderClosed ? `closed with ${result.flooderClosed.code} after ${result.flooderClosed.afterFrames} frames` : 'not closed'),
  )
  await server.close()
}
