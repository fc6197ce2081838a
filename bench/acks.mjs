// Acknowledged throughput: 50,000 messages all in flight at once, timed from the first send
// until every one of them is acknowledged (every promise resolved, every callback called).
import { connected, message, openRaw, socketio, tether, url } from './clients.mjs'
import { interleave, now, ratio, spread, summarize, table } from './harness.mjs'

export const N = 50_000

/**
 * The practical limit over raw `ws`, written by hand: one `{id,data}` frame per message and a
 * promise per message that the server's cumulative `{"ack":id}` (one per tick) resolves.
 */
function pipelined(ws) {
  let nextId = 0
  // Resolvers in id order from `head`; waiting[head] belongs to message `acked + 1`.
  let waiting = []
  let head = 0
  let acked = 0
  ws.on('message', (data) => {
    const { ack } = JSON.parse(data)
    while (acked < ack) {
      acked++
      waiting[head++]()
    }
    // Compacting now and then, not per ack, keeps this linear.
    if (head > 1024 && head * 2 > waiting.length) {
      waiting = waiting.slice(head)
      head = 0
    }
  })
  return (data) =>
    new Promise((resolve) => {
      waiting.push(resolve)
      ws.send(JSON.stringify({ id: ++nextId, data }))
    })
}

export async function run({ servers, rounds, log, select }) {
  const ackUrl = url(await servers.start('ack'))
  const tetherUrl = url(await servers.start('tether'))
  const ioUrl = url(await servers.start('socketio'))
  const contenders = select([
    {
      name: 'hand-written pipelined acks over raw ws',
      open: async () => {
        const ws = await openRaw(ackUrl)
        return { send: pipelined(ws), close: () => ws.close() }
      },
    },
    {
      name: 'tethersocket send()',
      open: async () => {
        const sock = await connected(tether(tetherUrl))
        return { send: (data) => sock.send(data), close: () => sock.close() }
      },
    },
    {
      name: 'socket.io-client emitWithAck',
      open: async () => {
        const socket = await connected(socketio(ioUrl))
        return { send: (data) => socket.emitWithAck('msg', data), close: () => socket.disconnect() }
      },
    },
    {
      // Its at-least-once mode: a queue that holds each packet until acknowledged, retrying on timeout.
      name: 'socket.io-client with retries',
      open: async () => {
        const socket = await connected(socketio(ioUrl, { retries: 3, ackTimeout: 10000 }))
        return { send: (data) => socket.emitWithAck('msg', data), close: () => socket.disconnect() }
      },
    },
  ]).map((c) => ({
    name: c.name,
    async run(warmUp) {
      const n = warmUp ? N / 10 : N
      const client = await c.open()
      const promises = new Array(n)
      const start = now()
      for (let i = 0; i < n; i++) promises[i] = client.send(message(i))
      await Promise.all(promises)
      const ms = now() - start
      await client.close()
      return ms
    },
  }))
  const samples = await interleave(contenders, { rounds, log })
  for (const kind of ['ack', 'tether', 'socketio']) await servers.stop(kind)

  const baseName = contenders[0].name
  const base = summarize(samples[baseName])
  const results = contenders.map(({ name }) => {
    const ms = summarize(samples[name])
    const rate = summarize(samples[name].map((t) => N / t))
    return { name, ms, rate, ratio: base.median / ms.median }
  })
  const markdown = table(
    ['client', 'time, ms: median (min–max)', 'k msg/s: median (min–max)', 'vs hand-written'],
    results.map((r) => [r.name, spread(r.ms, 0), spread(r.rate, 1), ratio(r.ratio)]),
  )
  return { title: `Acknowledged throughput, ${N.toLocaleString('en')} messages in flight`, markdown, results }
}
