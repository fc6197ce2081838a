// Request/reply latency: one round trip at a time, the next sent when the previous answer is
// in. Percentiles per run; the table shows their median (min–max) over the rounds.
import { connected, message, once, openRaw, socketio, tether, url } from './clients.mjs'
import { interleave, metric, now, percentile, ratio, spread, summarize, table } from './harness.mjs'

export const ROUND_TRIPS = 5_000

export async function run({ servers, rounds, log, select }) {
  const echoUrl = url(await servers.start('echo'))
  const tetherUrl = url(await servers.start('tether'))
  const ioUrl = url(await servers.start('socketio'))
  const contenders = select([
    {
      name: 'raw ws ping-pong',
      open: async () => {
        const ws = await openRaw(echoUrl)
        return {
          roundTrip: (data) => {
            const answer = once(ws, 'message')
            ws.send(JSON.stringify(data))
            return answer
          },
          close: () => ws.close(),
        }
      },
    },
    {
      name: 'tethersocket raw mode ping-pong',
      open: async () => {
        const sock = await connected(tether(echoUrl, { mode: 'raw' }))
        return {
          roundTrip: (data) => {
            const answer = once(sock, 'message')
            sock.send(data)
            return answer
          },
          close: () => sock.close(),
        }
      },
    },
    {
      name: 'tethersocket request()',
      open: async () => {
        const sock = await connected(tether(tetherUrl))
        return { roundTrip: (data) => sock.request(data), close: () => sock.close() }
      },
    },
    {
      name: 'tethersocket await send()',
      open: async () => {
        const sock = await connected(tether(tetherUrl))
        return { roundTrip: (data) => sock.send(data), close: () => sock.close() }
      },
    },
    {
      name: 'socket.io-client emitWithAck',
      open: async () => {
        const socket = await connected(socketio(ioUrl))
        return { roundTrip: (data) => socket.emitWithAck('echo', data), close: () => socket.disconnect() }
      },
    },
  ]).map((c) => ({
    name: c.name,
    async run(warmUp) {
      const client = await c.open()
      const times = new Float64Array(warmUp ? ROUND_TRIPS / 5 : ROUND_TRIPS)
      for (let i = 0; i < times.length; i++) {
        const start = now()
        await client.roundTrip(message(i))
        times[i] = now() - start
      }
      await client.close()
      return { p50: percentile(times, 0.5), p99: percentile(times, 0.99) }
    },
  }))
  const samples = await interleave(contenders, { rounds, log })
  for (const kind of ['echo', 'tether', 'socketio']) await servers.stop(kind)

  const base = summarize(metric(samples[contenders[0].name], 'p50'))
  const results = contenders.map(({ name }) => {
    const p50 = summarize(metric(samples[name], 'p50'))
    const p99 = summarize(metric(samples[name], 'p99'))
    return { name, p50, p99, ratio: p50.median / base.median }
  })
  const markdown = table(
    ['client', 'p50, µs: median (min–max)', 'p99, µs: median (min–max)', 'p50 vs raw ws'],
    results.map((r) => [r.name, spread(r.p50, 0, 1000), spread(r.p99, 0, 1000), ratio(r.ratio)]),
  )
  return {
    title: `Request/reply latency, ${ROUND_TRIPS.toLocaleString('en')} round trips one at a time`,
    markdown,
    notes: 'Lower is better; the ratio is the p50 relative to raw ws (1.50× = 50% slower).',
    results,
  }
}
