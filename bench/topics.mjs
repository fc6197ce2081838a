// Publish to a topic of thousands of members: tethersocket's `server.publish(topic, data)` (every
// session joined), socket.io's `io.to(room).emit('m', data)` (every socket in one room) and a
// plain `ws` loop (`for (const c of clients) c.send(json)`), side by side.
//
// The server runs in a process of its own pinned to one core (a fresh one per contender), the
// clients in another pinned to the other core: on 2 cores the clients' CPU would distort
// end-to-end times, so the server times its own work, from the publish call until every write
// is issued (bench/topics-server.mjs says exactly where it stops). The clients confirm that each of them got every message once, in order.
//
//   npm run bench -- topics                          # 5,000 and 10,000 members
//   node --expose-gc bench/topics.mjs 1000 2000 [--publishes 40] [--only tether]   # on its own
//   TOPICS_PROFILE=prof node --expose-gc bench/topics.mjs 10000
//       profiles every timed publish instead (its times are then no measurement), one .cpuprofile
//       each: node bench/profile.mjs prof/topics-tether-10000-publish-*.cpuprofile --match dist/
import { mkdirSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { median, now, ratio, sleep, spread, summarize, table } from './harness.mjs'
import { canPin, openFileLimit, SPARE_FILES, startPinned, untilCount } from './pinned.mjs'

export const SIZES = [5000, 10000]
/** Publishes before the timed ones (JIT warm-up). */
const WARM_UP = 3
/** Publishes in all (the timed ones included, the rest in a burst) before the heap is read again. */
export const PUBLISHES = 40

const contenders = [
  { name: 'plain ws loop', kind: 'ws' },
  { name: 'tethersocket', kind: 'tether' },
  { name: 'socket.io', kind: 'socketio' },
]

const KiB = 1024
const load = () => loadavg()[0].toFixed(2)

/** One contender at one size, in a fresh server process: heap, timed publishes, a burst, heap again. */
async function measure({ kind }, size, { clients, timed, publishes, log }) {
  const profileDir = process.env.TOPICS_PROFILE && resolve(process.env.TOPICS_PROFILE)
  const server = await startPinned(new URL('./topics-server.mjs', import.meta.url), { cpu: 1, execArgv: ['--expose-gc'] })
  try {
    const { port, heap: empty } = await server.call('start', kind)
    // Broadcasts, for comparison, only on tethersocket's server: numbered among the publishes.
    const broadcasts = kind === 'tether' ? WARM_UP + timed : 0
    const total = publishes + broadcasts
    const connectMs = await clients.call('connect', kind, port, size, total)
    await untilCount(server, 'members', size)
    const connected = await server.call('heap')
    const connectedAt = now()
    const times = { publish: [], broadcast: [] }
    let n = 0
    const once = async (via, timedOne) => {
      const profile = profileDir && timedOne ? join(profileDir, `topics-${kind}-${size}-${via}-${n}.cpuprofile`) : undefined
      const [{ ms, written }] = await Promise.all([server.call('publish', via, n, profile), clients.call('expect', n)])
      if (written !== size) throw new Error(`${kind} ${via} of message ${n} wrote to ${written} of ${size} sockets`)
      n++
      // The clients' acknowledgements reach the server before the next publish.
      await sleep(30)
      return ms
    }
    if (profileDir) mkdirSync(profileDir, { recursive: true })
    for (let i = 0; i < WARM_UP + timed; i++) {
      const ms = await once('publish', i >= WARM_UP)
      if (i >= WARM_UP) times.publish.push(ms)
      if (broadcasts) {
        const ms = await once('broadcast', i >= WARM_UP)
        if (i >= WARM_UP) times.broadcast.push(ms)
      }
    }
    const timedAt = now()
    await Promise.all([server.call('burst', n, total), clients.call('expect', total - 1)])
    const burstAt = now()
    await sleep(200)
    const after = await server.call('heap')
    const report = await clients.call('report', total)
    const s = (ms) => `${(ms / 1000).toFixed(1)} s`
    log(
      `${kind} at ${size}: connected in ${s(connectMs)}, timed publishes ${s(timedAt - connectedAt)}, burst ${s(burstAt - timedAt)}; ` +
        `publish ${median(times.publish).toFixed(1)} ms`,
    )
    return {
      publish: summarize(times.publish),
      broadcast: broadcasts ? summarize(times.broadcast) : undefined,
      perSession: (connected - empty) / size,
      growth: (after - connected) / size,
      delivered: report,
      total,
    }
  } finally {
    await clients.call('close')
    await server.stop()
  }
}

export async function run({ rounds, log, select, sizes = SIZES, publishes = PUBLISHES }) {
  const chosen = select(contenders)
  const timed = 2 * rounds
  if (publishes < WARM_UP + timed)
    throw new Error(`publishes (${publishes}) must be at least the ${WARM_UP + timed} warm-up and timed ones`)
  const limit = openFileLimit()
  const fit = sizes.filter((size) => size + SPARE_FILES <= limit)
  const skipped = sizes.filter((size) => !fit.includes(size))
  const startLoad = load()
  const clients = await startPinned(new URL('./topics-clients.mjs', import.meta.url), { cpu: 0 })
  const rows = []
  const results = []
  try {
    for (const size of fit) {
      const measured = []
      for (const contender of chosen)
        measured.push({ ...contender, size, ...(await measure(contender, size, { clients, timed, publishes, log })) })
      const floor = measured[0].publish.median
      for (const m of measured) {
        const got = `${m.delivered.complete.toLocaleString('en')} of ${m.delivered.clients.toLocaleString('en')}${m.delivered.errors ? `, ${m.delivered.errors} errors: ${m.delivered.samples.join('; ')}` : ''}`
        const row = (name, stats, heapCells) => [
          name,
          size.toLocaleString('en'),
          spread(stats),
          ((stats.median * 1000) / size).toFixed(1),
          ratio(stats.median / floor),
          ...heapCells,
          got,
        ]
        rows.push(row(m.name, m.publish, [(m.perSession / KiB).toFixed(2), m.growth.toFixed(0)]))
        if (m.broadcast) rows.push(row('tethersocket, server.broadcast (same server)', m.broadcast, ['″', '″']))
        results.push(m)
      }
    }
  } finally {
    await clients.stop()
  }
  const markdown = table(
    [
      'server',
      'members',
      'publish, server-side ms: median (min–max)',
      'µs per member',
      'vs plain ws loop',
      'heap per connected session, KiB',
      `heap growth after ${publishes} publishes, bytes per session`,
      'clients that got every message once, in order',
    ],
    rows,
  )
  const notes = [
    `Server-side time of one publish to every member, from the call until every write is issued and the microtasks and \`process.nextTick\` callbacks it queued have run (a \`setImmediate\` marks the end; median and min–max of ${timed} publishes after ${WARM_UP} warm-up ones, a full GC before each; each publish waits until every client has the previous one). ` +
      `Server ${canPin() ? 'pinned to CPU 1, clients to CPU 0 (taskset)' : 'and clients not pinned (no taskset)'}; a fresh server process per contender, default options; all clients in one process. ` +
      `Heap: heapUsed after full GCs, before the clients connect, once all are members, and after ${publishes} publishes (the timed ones, then a burst, each publish in a turn of its own) once every client had them all (tethersocket: default retention, 1,000 messages or 1 MiB per topic). ` +
      'tethersocket\'s server.broadcast rows alternate with its publishes, in the same server with the same sessions. Message: `{"type":"chat","room":"room:1","from":"ada","text":"hello, everyone in the room","via":"publish","n":0}`.',
    `Load average ${startLoad} at the start of the section, ${load()} at its end.`,
  ]
  if (skipped.length)
    notes.push(
      `Not measured: ${skipped.map((s) => s.toLocaleString('en')).join(', ')} members (the open-file limit, \`ulimit -n\`, is ${limit}).`,
    )
  return {
    title: `Topics: publish to ${fit.map((s) => s.toLocaleString('en')).join(' and ')} members`,
    markdown,
    notes: notes.join('\n\n'),
    results,
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { publishes: { type: 'string' }, only: { type: 'string' } },
  })
  const result = await run({
    rounds: 5,
    log: (line) => console.error(`  topics: ${line}`),
    // As run.mjs's --only: the baseline and the contenders whose name contains the text.
    select: (list) => (values.only ? list.filter((c, i) => i === 0 || c.name.includes(values.only)) : list),
    sizes: positionals.length ? positionals.map(Number) : SIZES,
    publishes: Number(values.publishes ?? PUBLISHES),
  })
  console.log(`## ${result.title}\n\n${result.markdown}\n\n${result.notes}`)
  process.exit(0)
}
