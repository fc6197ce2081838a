// The session store section: the reference server with `redisStore` next to its in-memory
// default. It starts its own redis-server, HAProxy and server node processes (each node in a
// process of its own), and stops all of them however the section ends.
//
// 1. Acknowledged throughput and one-at-a-time latency (bench/store-throughput.mjs).
// 2. Failover behind HAProxy: SIGKILL of the node holding the session → flowing again
//    (bench/store-failover.mjs).
// 3. Redis memory per idle session and per queued message (bench/store-memory.mjs).
import { createClient } from 'redis'
import { median, ratio, summarize, table } from './harness.mjs'
import { startNode } from './nodes.mjs'
import { startRedis } from './redis-server.mjs'
import { measureFailover } from './store-failover.mjs'
import { measureMemory, QUEUED_EACH, QUEUED_SESSIONS, SESSIONS } from './store-memory.mjs'
import { measureLatency, measureThroughput, ROUND_TRIPS } from './store-throughput.mjs'

/** SIGKILLs of the failover measurement. */
const KILLS = 10
/** The issue's target: acknowledged throughput with Redis at least this share of in-memory. */
const TARGET = 0.5

/** The bench's own connection to Redis: settings, statistics, memory. */
async function adminOf(redis) {
  const client = createClient({ url: redis.url })
  client.on('error', () => {}) // only while Redis stops at the end
  await client.connect()
  const info = async (section) =>
    Object.fromEntries(
      (await client.sendCommand(['INFO', section]))
        .split('\r\n')
        .filter((line) => line.includes(':'))
        .map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]),
    )
  const field = (stat, name) => Number(new RegExp(`(?:^|,)${name}=(\\d+)`).exec(stat ?? '')?.[1] ?? 0)
  return {
    close: () => client.close(),
    setFsync: (policy) => client.sendCommand(['CONFIG', 'SET', 'appendfsync', policy]),
    /** Scripts Redis ran since the last call, and the µs it spent in each on average (EVALSHA and EVAL together). */
    async scripts() {
      const stats = await info('commandstats')
      await client.sendCommand(['CONFIG', 'RESETSTAT'])
      const calls = field(stats.cmdstat_evalsha, 'calls') + field(stats.cmdstat_eval, 'calls')
      const usec = field(stats.cmdstat_evalsha, 'usec') + field(stats.cmdstat_eval, 'usec')
      return { calls, usec: calls ? usec / calls : Number.NaN }
    },
    flush: () => client.sendCommand(['FLUSHALL', 'SYNC']),
    usedMemory: async () => Number((await info('memory')).used_memory),
    /** Sessions of `prefix` that no node holds (released), from their hashes' `o` field. */
    async releasedCount(prefix) {
      const keys = (await client.sendCommand(['KEYS', `${prefix}:{*}`])).filter((key) => !key.endsWith(':q'))
      const held = await Promise.all(keys.map((key) => client.sendCommand(['HGET', key, 'o'])))
      return held.filter((o) => o === '0').length
    },
  }
}

const ms = (values) => {
  const s = summarize(values)
  return `${s.median.toFixed(0)} (${s.min.toFixed(0)}–${s.max.toFixed(0)})`
}

export async function run({ rounds, log, select }) {
  const redis = await startRedis({ appendfsync: 'always' })
  let admin
  const nodes = []
  const stopNodes = async () => {
    for (const node of nodes.splice(0)) await node.close()
  }
  try {
    admin = await adminOf(redis)
    const parts = []
    const results = {}

    // 1. Throughput and latency: one node with the in-memory default, one with redisStore.
    const memory = await startNode({ port: 0, redis: null })
    nodes.push(memory)
    const shared = await startNode({ port: 0, redis: redis.url, prefix: 'bench' })
    nodes.push(shared)
    const pair = { memory, redis: shared }
    const throughput = await measureThroughput({ nodes: pair, redis: admin, rounds, log: (l) => log(`throughput ${l}`), select })
    const latency = await measureLatency({ nodes: pair, redis: admin, rounds, log: (l) => log(`latency ${l}`), select })
    const nodeErrors = (await Promise.all(nodes.map((node) => node.call('stats')))).flatMap((stats) => stats.errors)
    await stopNodes()
    results.throughput = throughput.results
    results.latency = latency.results
    const short = throughput.results.filter((r) => r.ratio < TARGET)
    parts.push(
      `### Acknowledged throughput, ${(50_000).toLocaleString('en')} messages in flight\n\n${throughput.markdown}\n\n` +
        `Target: Redis ≥ ${TARGET}× in-memory. ${short.length ? `Below it: ${short.map((r) => `${r.name} (${ratio(r.ratio)})`).join('; ')}.` : 'Every Redis row holds it.'} ` +
        "Per Redis row: the commits the node made in the timed run (at most one in flight per session: what arrives meanwhile goes in the next), the median time from a commit's call to its result on the node, and the time Redis spent running a script (`INFO commandstats`), medians over the rounds." +
        (nodeErrors.length ? `\n\nServer errors: ${nodeErrors.length}, first: ${nodeErrors[0].split('\n')[0]}` : ''),
    )
    parts.push(`### Latency, ${ROUND_TRIPS.toLocaleString('en')} acknowledged sends one at a time\n\n${latency.markdown}`)

    // 2. Failover, with Redis fsyncing every write.
    await admin.setFsync('always')
    const failover = await measureFailover({ redisUrl: redis.url, kills: KILLS, log: (l) => log(`failover ${l}`) })
    results.failover = failover
    const s = failover.samples
    const column = (key) => s.map((sample) => sample[key])
    const connect = s.map((sample) => sample.open - sample.close - sample.delay)
    const firstAck = s.map((sample) => sample.ack - sample.open)
    const c = failover.client
    const k = failover.check
    parts.push(
      `### Failover: SIGKILL of the node holding the session, ${KILLS} kills\n\n${table(
        ['kill → …', 'close seen', 'open on the other node', 'first send() acknowledged'],
        [
          ['median, ms', ...['close', 'open', 'ack'].map((key) => median(column(key)).toFixed(0))],
          ['max, ms', ...['close', 'open', 'ack'].map((key) => Math.max(...column(key)).toFixed(0))],
        ],
      )}\n\n` +
        `Of which: the client's retry delay (drawn by the default backoff, uniform in (0, 1000] ms) ${ms(column('delay'))} ms; ` +
        `close → open minus that delay (connect through HAProxy, hello, claim in Redis, welcome) ${ms(connect)} ms; ` +
        `open → first acknowledgement (resend, commit, ack) ${ms(firstAck)} ms; median (min–max).\n\n` +
        `Checked over the run: ${c.sent.toLocaleString('en')} sends, ${c.acked.toLocaleString('en')} acknowledged, ${c.failed.length} rejected; ` +
        `${c.sessions.length} session${c.sessions.length === 1 ? '' : 's'} seen by the client, ${k.sessions} by the nodes; ` +
        `${k.handled.toLocaleString('en')} distinct messages handled, ${k.missing} missing, ${k.duplicates} handled again ` +
        `(${k.unflagged} without \`info.redelivered\`, ${k.idChanged} with another \`info.id\`); ` +
        `${c.echoes.toLocaleString('en')} echoes received, ${c.echoErrors} out of order or repeated; ` +
        `${failover.nodeErrors.length} server errors.`,
    )

    // 3. Memory, each measurement on an emptied Redis.
    const node = await startNode({ port: 0, redis: redis.url, prefix: 'memory', heartbeatInterval: 0 })
    nodes.push(node)
    const memorySamples = []
    for (let round = 1; round <= rounds; round++) {
      memorySamples.push(await measureMemory({ node, redis: admin, prefix: 'memory' }))
      log(`memory round ${round}/${rounds}`)
    }
    await stopNodes()
    results.memory = memorySamples
    const bytes = (key) => {
      const stats = summarize(memorySamples.map((sample) => sample[key]))
      return `${stats.median.toFixed(0)} (${stats.min.toFixed(0)}–${stats.max.toFixed(0)})`
    }
    const payload = memorySamples[0].payload
    parts.push(
      `### Redis memory\n\n${table(
        ['what', 'bytes of used_memory each: median (min–max)'],
        [
          [`idle session, connected (${SESSIONS.toLocaleString('en')} sessions)`, bytes('connected')],
          [`idle session, disconnected and waiting for a resume (the same ${SESSIONS.toLocaleString('en')})`, bytes('released')],
          [
            `queued message (${QUEUED_SESSIONS} sessions × ${QUEUED_EACH} unacknowledged, ${payload.toFixed(1)}-byte JSON payload)`,
            bytes('queued'),
          ],
        ],
      )}`,
    )
    return { title: 'Session store (Redis)', markdown: parts.join('\n\n'), results }
  } finally {
    await stopNodes()
    await admin?.close().catch(() => {})
    await redis.stop()
  }
}
