// Fire-and-forget throughput: 100,000 small JSON messages sent as fast as the client takes
// them, timed from the first send until the server has received the last one.
import { connected, message, openRaw, party, reconnecting, shut, tether, url } from './clients.mjs'
import { interleave, now, ratio, spread, summarize, table } from './harness.mjs'

export const N = 100_000

export async function run({ servers, rounds, log, select }) {
  const plain = url(await servers.start('count'))
  const tetherUrl = url(await servers.start('tether'))
  const json = (i) => JSON.stringify(message(i))
  const contenders = select([
    { name: 'raw ws', open: () => openRaw(plain), send: (ws, i) => ws.send(json(i)) },
    { name: 'tethersocket, raw mode', open: () => connected(tether(plain, { mode: 'raw' })), send: (s, i) => s.send(message(i)) },
    // Not awaited: each send() promise settles later, with the server's ack.
    { name: 'tethersocket, tether mode', open: () => connected(tether(tetherUrl)), send: (s, i) => s.send(message(i)) },
    { name: 'reconnecting-websocket', open: () => connected(reconnecting(plain)), send: (s, i) => s.send(json(i)) },
    { name: 'partysocket', open: () => connected(party(plain)), send: (s, i) => s.send(json(i)) },
  ]).map((c) => ({
    name: c.name,
    async run(warmUp) {
      const n = warmUp ? N / 10 : N
      const client = await c.open()
      await servers.arm(n)
      const received = servers.wait()
      const start = now()
      for (let i = 0; i < n; i++) c.send(client, i)
      await received
      const ms = now() - start
      await shut(client)
      return ms
    },
  }))
  const samples = await interleave(contenders, { rounds, log })
  await servers.stop('count')
  await servers.stop('tether')

  const base = summarize(samples['raw ws'] ?? [Number.NaN])
  const results = contenders.map(({ name }) => {
    const ms = summarize(samples[name])
    const rate = summarize(samples[name].map((t) => N / t))
    return { name, ms, rate, ratio: base.median / ms.median }
  })
  const markdown = table(
    ['client', 'time, ms: median (min–max)', 'k msg/s: median (min–max)', 'vs raw ws'],
    results.map((r) => [r.name, spread(r.ms, 0), spread(r.rate, 0), ratio(r.ratio)]),
  )
  return { title: `Fire-and-forget throughput, ${N.toLocaleString('en')} messages`, markdown, results }
}
