// Acknowledged throughput with a session store: the `acks` workload (50,000 send() in flight,
// timed until every promise resolved) against the reference server with its in-memory default
// and with `redisStore` (Redis fsyncing its append-only file on every write, and once a
// second); the same with an echo handler (`session.send(data)` for every message; timed until
// every send() resolved and every echo arrived); the 50,000 spread over 100 sessions; and the
// 50,000 streamed by one session keeping 100, or 1,000, in flight (a new send() as each
// resolves). Then the latency of one acknowledged send() at a time, where nothing can be batched.
import { N } from './acks.mjs'
import { connected, message, tether, url } from './clients.mjs'
import { interleave, metric, now, percentile, ratio, spread, summarize, table } from './harness.mjs'

/** Round trips per latency run. */
export const ROUND_TRIPS = 2_000
/** Sessions of the many-sessions variant. */
export const SESSIONS = 100

const stores = [
  { label: 'in-memory store (default)', node: 'memory' },
  { label: 'redisStore, appendfsync always', node: 'redis', fsync: 'always' },
  { label: 'redisStore, appendfsync everysec', node: 'redis', fsync: 'everysec' },
]

/** Sends kept in flight by the windowed variants: a new send() as each one resolves. */
export const WINDOWS = [100, 1_000]

const variants = [
  { label: 'send(), 1 session', sessions: 1, mode: 'count' },
  { label: 'send() + echo, 1 session', sessions: 1, mode: 'echo' },
  { label: `send(), ${SESSIONS} sessions`, sessions: SESSIONS, mode: 'count' },
  ...WINDOWS.map((window) => ({
    label: `send(), ${window.toLocaleString('en')} in flight, 1 session`,
    sessions: 1,
    mode: 'count',
    window,
  })),
]

/** Sends `n` messages keeping `window` in flight; resolves when the last one is acknowledged. */
function windowed(sock, n, window) {
  return new Promise((resolve, reject) => {
    let sent = 0
    let acked = 0
    const pump = () => {
      while (sent < n && sent - acked < window) {
        sock.send(message(sent++)).then(() => {
          if (++acked === n) resolve()
          else pump()
        }, reject)
      }
    }
    pump()
  })
}

/**
 * `nodes.memory` and `nodes.redis` are running nodes (bench/nodes.mjs); `redis.setFsync(policy)`
 * sets the Redis's appendfsync before a Redis row runs; `redis.scripts()` says how long Redis
 * spent per script since the last call. Per Redis row, besides the time: the commits the node
 * made during the run, the median time from a commit's call to its result on the node, and the
 * time Redis spent running each script.
 */
export async function measureThroughput({ nodes, redis, rounds, log, select }) {
  const contenders = select(
    variants.flatMap((variant) =>
      stores.map((store) => ({
        name: `${variant.label}, ${store.label}`,
        variant,
        store,
        async run(warmUp) {
          const n = warmUp ? N / 10 : N
          const node = nodes[store.node]
          await node.call('mode', variant.mode)
          if (store.fsync) await redis.setFsync(store.fsync)
          const socks = await Promise.all(Array.from({ length: variant.sessions }, () => connected(tether(url(node.port)))))
          const echoes = variant.mode === 'echo' ? countEchoes(socks, n) : undefined
          await redis.scripts()
          await node.call('commits')
          const start = now()
          if (variant.window) await windowed(socks[0], n, variant.window)
          else {
            const per = n / variant.sessions
            const promises = []
            for (const sock of socks) for (let i = 0; i < per; i++) promises.push(sock.send(message(i)))
            await Promise.all(promises)
          }
          await echoes
          const ms = now() - start
          const { usec } = await redis.scripts()
          const commits = await node.call('commits')
          await Promise.all(socks.map((sock) => sock.close()))
          if (!store.fsync) return { ms, commits: Number.NaN, commitMs: Number.NaN, redisUs: Number.NaN }
          return { ms, commits: commits.count, commitMs: percentile(commits.times, 0.5), redisUs: usec }
        },
      })),
    ),
  )
  const samples = await interleave(contenders, { rounds, log })

  const results = contenders.map((c) => {
    const ms = summarize(metric(samples[c.name], 'ms'))
    const rate = summarize(metric(samples[c.name], 'ms').map((t) => N / t))
    const commits = summarize(metric(samples[c.name], 'commits'))
    const commitMs = summarize(metric(samples[c.name], 'commitMs'))
    const redisUs = summarize(metric(samples[c.name], 'redisUs'))
    return { name: c.name, variant: c.variant.label, store: c.store.label, ms, rate, commits, commitMs, redisUs }
  })
  // Each Redis row against the in-memory row of its variant.
  for (const r of results) {
    const base = results.find((b) => b.variant === r.variant && b.store === stores[0].label)
    r.ratio = base ? base.ms.median / r.ms.median : Number.NaN
  }
  const markdown = table(
    ['workload, store', 'time, ms: median (min–max)', 'k msg/s: median (min–max)', 'vs in-memory', 'commits', 'commit, µs', 'in Redis, µs'],
    results.map((r) => [
      r.name,
      spread(r.ms, 0),
      spread(r.rate, 1),
      Number.isNaN(r.ratio) ? '—' : ratio(r.ratio),
      ...(Number.isNaN(r.commits.median)
        ? ['—', '—', '—']
        : [r.commits.median.toFixed(0), (r.commitMs.median * 1000).toFixed(0), r.redisUs.median.toFixed(0)]),
    ]),
  )
  return { markdown, results }
}

/** Resolves once the sockets together received `n` messages. */
function countEchoes(socks, n) {
  let count = 0
  return new Promise((resolve) => {
    for (const sock of socks) {
      sock.on('message', () => {
        if (++count === n) resolve()
      })
    }
  })
}

/** One acknowledged send() at a time: p50 and p99 of `ROUND_TRIPS` per run. */
export async function measureLatency({ nodes, redis, rounds, log, select }) {
  const contenders = select(
    stores.map((store) => ({
      name: `await send(), ${store.label}`,
      store,
      async run(warmUp) {
        const n = warmUp ? ROUND_TRIPS / 10 : ROUND_TRIPS
        const node = nodes[store.node]
        await node.call('mode', 'count')
        if (store.fsync) await redis.setFsync(store.fsync)
        const sock = await connected(tether(url(node.port)))
        const times = new Float64Array(n)
        for (let i = 0; i < n; i++) {
          const start = now()
          await sock.send(message(i))
          times[i] = now() - start
        }
        await sock.close()
        return { p50: percentile(times, 0.5), p99: percentile(times, 0.99) }
      },
    })),
  )
  const samples = await interleave(contenders, { rounds, log })
  const base = summarize(metric(samples[contenders[0].name], 'p50'))
  const results = contenders.map(({ name }) => {
    const p50 = summarize(metric(samples[name], 'p50'))
    const p99 = summarize(metric(samples[name], 'p99'))
    return { name, p50, p99, ratio: p50.median / base.median }
  })
  const markdown = table(
    ['client, store', 'p50, µs: median (min–max)', 'p99, µs: median (min–max)', 'p50 vs in-memory'],
    results.map((r) => [r.name, spread(r.p50, 0, 1000), spread(r.p99, 0, 1000), ratio(r.ratio)]),
  )
  return { markdown, results }
}
