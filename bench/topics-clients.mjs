// The clients of the topics section (bench/topics.mjs): thousands of connections from one
// process, pinned to the other core by the parent. Each client checks that it gets every
// message once and in order (the messages carry consecutive numbers `n`); the parent waits
// until every client has message n before it publishes the next.
//
// The tethersocket clients speak tether.v1 themselves (hello, then an ack for every `msg`
// frame), as cheap as the plain `ws` clients: 10,000 full TetherSocket clients would load the
// clients' core with work the server does not see.
import { io } from 'socket.io-client'
import { WebSocket } from 'ws'
import { inBatches, serve } from './pinned.mjs'

const TOPIC = 'room:1'

let clients = []
let arrivals = new Uint32Array(0)
const waiting = new Map()
let errors = 0
const samples = []
/** Messages delivered to any client: a wait fails only when this stops moving. */
let delivered = 0

function error(text) {
  errors++
  if (samples.length < 5) samples.push(text)
}

/** Client `client` got message `data`: in order, once, and (tether: `topic`, '' for none) in a frame that names its topic when it was published. */
function deliver(client, data, topic) {
  if (data.n !== client.next) return error(`client ${client.index} got message ${data.n}, expected ${client.next}`)
  if (topic !== undefined && topic !== (data.via === 'publish' ? TOPIC : ''))
    error(`client ${client.index}: message ${data.n} (${data.via}) came in a frame with tp ${JSON.stringify(topic)}`)
  client.next++
  delivered++
  if (++arrivals[data.n] === clients.length) {
    waiting.get(data.n)?.()
    waiting.delete(data.n)
  }
}

/** Each kind: opens one client, resolving once it can receive. */
const kinds = {
  ws: (url, client) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url)
      client.close = () => ws.terminate()
      ws.once('error', reject)
      ws.once('open', resolve)
      ws.on('message', (data) => deliver(client, JSON.parse(data)))
    }),
  tether: (url, client) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, 'tether.v1')
      client.close = () => ws.terminate()
      let rx = 0
      ws.once('error', reject)
      ws.once('open', () => ws.send('{"t":"hello","sid":null,"ack":0}'))
      ws.on('message', (raw) => {
        const frame = JSON.parse(raw)
        if (frame.t === 'welcome') return resolve()
        if (frame.t !== 'msg') return error(`client ${client.index} got a ${frame.t} frame: ${String(raw).slice(0, 80)}`)
        if (frame.s !== rx + 1) error(`client ${client.index}: frame starts at item ${frame.s}, expected ${rx + 1}`)
        for (const item of frame.d) deliver(client, item, frame.tp ?? '')
        rx = frame.s + frame.d.length - 1
        ws.send(`{"t":"ack","s":${rx}}`)
      })
    }),
  socketio: (url, client) =>
    new Promise((resolve, reject) => {
      const socket = io(url.replace(/^ws/, 'http'), { transports: ['websocket'], forceNew: true, reconnection: false })
      client.close = () => socket.disconnect()
      socket.once('connect_error', reject)
      socket.once('connect', resolve)
      socket.on('m', (data) => deliver(client, data))
    }),
}

const commands = {
  /** Opens `count` clients of `kind` to `port`, 500 at a time; `total` messages are to come. */
  async connect(kind, port, count, total) {
    clients = []
    arrivals = new Uint32Array(total)
    errors = 0
    samples.length = 0
    const url = `ws://127.0.0.1:${port}`
    return inBatches(count, (index) => {
      const client = { index, next: 0, close: () => {} }
      clients.push(client)
      return kinds[kind](url, client)
    })
  },
  /** Resolves once every client has message `n`; rejects when no client got anything for `stall` ms, saying how many have it. */
  expect(n, stall = 30_000) {
    if (arrivals[n] === clients.length) return
    return new Promise((resolve, reject) => {
      let seen = delivered
      const timer = setInterval(() => {
        if (delivered !== seen) {
          seen = delivered
          return
        }
        clearInterval(timer)
        waiting.delete(n)
        reject(
          new Error(
            `nothing arrived for ${stall} ms; ${arrivals[n]} of ${clients.length} clients had message ${n}; ${errors} errors: ${samples.join('; ')}`,
          ),
        )
      }, stall)
      waiting.set(n, () => {
        clearInterval(timer)
        resolve()
      })
    })
  },
  /** How many clients got every one of `total` messages once, in order; the errors seen. */
  report(total) {
    return { clients: clients.length, complete: clients.filter((c) => c.next === total).length, errors, samples }
  },
  close() {
    for (const client of clients) client.close()
    clients = []
  },
}

serve(commands)
