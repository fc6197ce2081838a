// Steady load: 10,000 sessions each sending one message a second for a minute, acknowledged.
// What it costs the server (CPU time per 1,000 messages) and what the clients wait (the
// acknowledgement's latency), side by side: tethersocket's reference server (tether.v1
// acknowledged sends), socket.io (`emit` with an acknowledgement callback) and a plain `ws`
// server answering each message with a tiny ack frame (the baseline).
//
// The server runs in a process of its own pinned to one core (a fresh one per contender) and
// measures its own CPU time over the measured window; the clients run in another pinned to the
// other core, spread each second's sends evenly over it, record every ack's latency and check
// that every message is acknowledged once. Their own CPU is reported: a saturated clients' core
// would make the latencies meaningless.
//
//   npm run bench -- steady                               # 10,000 sessions, 10 s warm-up, 60 s measured
//   STEADY_SESSIONS=2000 STEADY_SECONDS=10 npm run bench -- steady      # shorter (also STEADY_WARM_UP)
//   node bench/steady.mjs --sessions 2000 --seconds 10 [--warm-up 5] [--only tether]   # on its own
//   STEADY_PROFILE=prof node bench/steady.mjs --only tether
//       profiles each server over its measured window (sampled every millisecond), its numbers then
//       no measurement: node bench/profile.mjs prof/steady-tether-10000.cpuprofile --match dist/
//       The server is then not pinned: pinned to one core, the profiler's sampling thread waits
//       for the busy main thread to yield, and the samples land mostly when it is idle.
import { mkdirSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { now, ratio, sleep, spread, summarize, table } from './harness.mjs'
import { canPin, openFileLimit, SPARE_FILES, startPinned, untilCount } from './pinned.mjs'

export const SESSIONS = 10_000
/** The measured window, seconds. */
export const SECONDS = 60
/** Seconds of sending before the window opens, once every session is connected. */
export const WARM_UP = 10
/** Seconds per lap of the window: the server's CPU per message is measured per lap too. */
const LAP = 10

const contenders = [
  { name: 'plain ws, an ack frame per message', kind: 'ws' },
  { name: 'tethersocket', kind: 'tether' },
  { name: 'socket.io', kind: 'socketio' },
]

const KiB = 1024
const load = () => loadavg()[0].toFixed(2)
const count = (n) => n.toLocaleString('en')
/** How many laps a window of `seconds` has. */
const laps = (seconds) => Math.max(1, Math.round(seconds / LAP))

/** One contender in a fresh server process: heap once connected, then warm-up, the measured window, and the drain. */
async function measure({ kind }, { clients, sessions, seconds, warmUp, profileDir, log }) {
  const server = await startPinned(new URL('./steady-server.mjs', import.meta.url), {
    cpu: profileDir ? undefined : 1,
    execArgv: ['--expose-gc'],
  })
  try {
    const { port, heap: empty } = await server.call('start', kind)
    const connectMs = await clients.call('connect', kind, port, sessions)
    await untilCount(server, 'sessions', sessions)
    const connected = await server.call('heap')
    await clients.call('go')
    await sleep(warmUp * 1000)
    const profile = profileDir && join(profileDir, `steady-${kind}-${sessions}.cpuprofile`)
    const startLoad = load()
    await server.call('begin', profile)
    await clients.call('begin')
    // The window in laps, each measured on its own: a burst of load from elsewhere on the machine spoils a lap, not the median.
    const lapCount = laps(seconds)
    const started = now()
    const lapped = []
    for (let i = 1; i < lapCount; i++) {
      await sleep(started + (i * seconds * 1000) / lapCount - now())
      lapped.push(await server.call('lap'))
    }
    await sleep(started + seconds * 1000 - now())
    const [last, client] = await Promise.all([server.call('end'), clients.call('end')])
    lapped.push(last)
    const endLoad = load()
    const acks = await clients.call('stop')
    const received = await server.call('received')
    const after = await server.call('heap')
    const sum = (key) => lapped.reduce((total, lap) => total + lap[key], 0)
    const served = { user: sum('user'), system: sum('system'), ms: sum('ms'), messages: sum('messages') }
    const cpuMs = (served.user + served.system) / 1000
    const result = {
      sessions,
      perSecond: served.messages / (served.ms / 1000),
      cpuPer1000: cpuMs / (served.messages / 1000),
      lapsPer1000: summarize(lapped.map((lap) => (lap.user + lap.system) / lap.messages)),
      serverCpu: cpuMs / served.ms,
      serverElu: sum('elu') / lapped.length,
      systemShare: served.system / (served.user + served.system),
      perSession: (connected - empty) / sessions,
      growth: (after - connected) / sessions,
      delayP99: last.delayP99,
      delayMax: last.delayMax,
      clientsCpu: (client.user + client.system) / 1000 / client.ms,
      clientsElu: client.elu,
      lagMax: client.lagMax,
      lagMean: client.lagMean,
      acks,
      received,
      load: [startLoad, endLoad],
    }
    log(
      `${kind}: connected ${count(sessions)} in ${(connectMs / 1000).toFixed(1)} s; ${result.perSecond.toFixed(0)} msg/s, ` +
        `${result.cpuPer1000.toFixed(1)} ms CPU per 1,000 (laps ${spread(result.lapsPer1000)}), heap growth ${result.growth.toFixed(0)} B/session, ack p50 ${acks.p50.toFixed(2)} ms p99 ${acks.p99.toFixed(2)} ms; ` +
        `clients ${(100 * result.clientsCpu).toFixed(0)}% CPU, sends up to ${client.lagMax.toFixed(1)} ms late; load ${startLoad} -> ${endLoad}`,
    )
    return result
  } finally {
    await clients.call('close')
    await server.stop()
  }
}

/** Whether every message was acknowledged once and handled once by the server, as a table cell. */
function delivery({ acks, received }) {
  const parts = [`${count(acks.acknowledged)} of ${count(acks.sent)}`]
  if (received !== acks.sent) parts.push(`the server handled ${count(received)}`)
  if (acks.complete !== acks.clients) parts.push(`${count(acks.clients - acks.complete)} sessions incomplete`)
  if (acks.errors) parts.push(`${acks.errors} errors: ${acks.samples.join('; ')}`)
  return parts.join(', ')
}

/**
 * A setting from its option (`--sessions`) or environment variable (STEADY_SESSIONS), else
 * `fallback`: `whole` ones are integers of at least 1, the others numbers of at least 0.
 */
function setting(text, { option, variable, whole }, fallback) {
  const raw = text ?? process.env[variable]
  if (raw === undefined) return fallback
  const value = Number(raw)
  if (raw.trim() === '' || !(whole ? Number.isInteger(value) && value >= 1 : Number.isFinite(value) && value >= 0))
    throw new Error(
      `steady: ${option} (or ${variable}) must be ${whole ? 'a whole number of at least 1' : 'a number of seconds, 0 or more'}; got ${JSON.stringify(raw)}`,
    )
  return value
}
const SETTINGS = {
  sessions: { option: '--sessions', variable: 'STEADY_SESSIONS', whole: true },
  seconds: { option: '--seconds', variable: 'STEADY_SECONDS', whole: true },
  warmUp: { option: '--warm-up', variable: 'STEADY_WARM_UP', whole: false },
}

export async function run({
  log,
  select,
  sessions = setting(undefined, SETTINGS.sessions, SESSIONS),
  seconds = setting(undefined, SETTINGS.seconds, SECONDS),
  warmUp = setting(undefined, SETTINGS.warmUp, WARM_UP),
}) {
  const title = `Steady load: ${count(sessions)} sessions, one acknowledged message a second each`
  const limit = openFileLimit()
  if (sessions + SPARE_FILES > limit)
    return {
      title,
      markdown: 'Not measured.',
      notes: `The open-file limit (\`ulimit -n\`) is ${limit}: ${count(sessions)} sessions need at least ${count(sessions + SPARE_FILES)} in each process. Raise it, or run fewer sessions (STEADY_SESSIONS).`,
      results: [],
    }
  const profileDir = process.env.STEADY_PROFILE && resolve(process.env.STEADY_PROFILE)
  if (profileDir) mkdirSync(profileDir, { recursive: true })
  const startLoad = load()
  const clients = await startPinned(new URL('./steady-clients.mjs', import.meta.url), { cpu: 0 })
  const results = []
  try {
    for (const contender of select(contenders))
      results.push({ ...contender, ...(await measure(contender, { clients, sessions, seconds, warmUp, profileDir, log })) })
  } finally {
    await clients.stop()
  }
  const floor = results[0].lapsPer1000.median
  const ms = (value) => value.toFixed(2)
  const percent = (value) => `${(100 * value).toFixed(0)}%`
  const markdown = table(
    [
      'server',
      'messages/s handled',
      'server CPU, ms per 1,000 messages: median (min–max) of laps',
      'vs plain ws',
      'server CPU, share of its core (event loop busy)',
      'ack latency, ms: p50 / p99 / max',
      "server's event-loop delay, ms: p99 / max",
      'heap per connected session, KiB',
      "clients' CPU, share of their core (event loop busy)",
      'sends behind schedule, ms: mean / max',
      'messages acknowledged once',
    ],
    results.map((r) => [
      r.name,
      count(Math.round(r.perSecond)),
      spread(r.lapsPer1000),
      ratio(r.lapsPer1000.median / floor),
      `${percent(r.serverCpu)} (${percent(r.serverElu)})`,
      `${ms(r.acks.p50)} / ${ms(r.acks.p99)} / ${ms(r.acks.max)}`,
      `${r.delayP99.toFixed(1)} / ${r.delayMax.toFixed(1)}`,
      (r.perSession / KiB).toFixed(2),
      `${percent(r.clientsCpu)} (${percent(r.clientsElu)})`,
      `${r.lagMean.toFixed(1)} / ${r.lagMax.toFixed(0)}`,
      delivery(r),
    ]),
  )
  const notes = [
    `${count(sessions)} sessions, each sending one small JSON message a second (\`{"type":"tick","n":…,"text":"hello, world"}\`), session i at i/${count(sessions)} of every second, so the server gets an even ${count(sessions)} messages a second; ` +
      `${warmUp} s of sending once every session is connected, then ${seconds} s measured, one run per contender${profileDir ? ' (under the CPU profiler, the server not pinned: no measurement)' : ''}. ` +
      `Server ${!canPin() ? 'and clients not pinned (no taskset)' : profileDir ? 'not pinned, clients pinned to CPU 0 (taskset)' : 'pinned to CPU 1, clients to CPU 0 (taskset)'}; a fresh server process per contender, default options; all clients in one process.`,
    `Server CPU: \`process.cpuUsage()\` (user and system) of the server process over each lap of the measured window (${laps(seconds)} of ${(seconds / laps(seconds)).toFixed(0)} s), divided by the messages its handler got in it; the ratio is of the medians. The share of its core is its CPU time over the whole window's wall time. ` +
      "The event loop's busy share (`performance.eventLoopUtilization()`) counts wall time, so where it is well above the CPU share, other processes held the core (a loaded machine), and the latencies wait for them. " +
      'It includes everything the server did meanwhile: its heartbeats (the reference server pings every connection each 30 s, a tenth of them every 3 s; socket.io each 25 s; the plain `ws` server does not), timers and garbage collection. ' +
      "The server's event-loop delay (`monitorEventLoopDelay`, resolution 10 ms, over the whole window) is how late its timers fired: its max is the longest any one task held the event loop, and every message that arrived meanwhile waited for it. " +
      `System time (the kernel's reads and writes) was ${results.map((r) => `${percent(r.systemShare)} (${r.kind})`).join(', ')} of it.`,
    'Ack latency: in the clients, from just before the send to the arrival of its acknowledgement (tether.v1: the `ack` frame covering it; socket.io: the callback; plain ws: `{"ack":n}`), for every message sent in the window. ' +
      "The clients' CPU and event-loop use are theirs over the window; a busy share near 100% would mean their own delays are in the latencies. " +
      `How far behind its schedule each group of sends went out says the same from the clients' side: a clients' process that keeps up is behind by a millisecond or less on average. The schedule is looked at every millisecond, so the sends go out in groups of about ${count(Math.ceil(sessions / 1000))}, as a busy server's reads would group them anyway; fewer sessions mean smaller groups and more wake-ups per message, so the CPU per message is higher at fewer sessions.`,
    'Heap: `heapUsed` after full GCs, before the clients connect and once all are connected, the difference divided by the sessions. ' +
      `After the run (every message acknowledged) it had grown by ${results.map((r) => `${r.growth.toFixed(0)} (${r.kind})`).join(', ')} bytes per session. ` +
      'Delivery: every message of the run (warm-up included) acknowledged once, in order, and handled once by the server (its handler counted them).',
    `Load average ${startLoad} at the start of the section, ${load()} at its end; per contender over its window: ${results.map((r) => `${r.kind} ${r.load.join(' → ')}`).join(', ')}.`,
  ]
  return { title, markdown, notes: notes.join('\n\n'), results }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      sessions: { type: 'string' },
      seconds: { type: 'string' },
      'warm-up': { type: 'string' },
      only: { type: 'string' },
    },
  })
  const result = await run({
    log: (line) => console.error(`  steady: ${line}`),
    // As run.mjs's --only: the baseline and the contenders whose name contains the text.
    select: (list) => (values.only ? list.filter((c, i) => i === 0 || c.name.includes(values.only)) : list),
    sessions: setting(values.sessions, SETTINGS.sessions, SESSIONS),
    seconds: setting(values.seconds, SETTINGS.seconds, SECONDS),
    warmUp: setting(values['warm-up'], SETTINGS.warmUp, WARM_UP),
  })
  console.log(`## ${result.title}\n\n${result.markdown}\n\n${result.notes}`)
  process.exit(0)
}
