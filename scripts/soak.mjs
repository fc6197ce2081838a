// The soak: one client and the reference server exchange numbered messages both ways for
// minutes through the chaos proxy (test/support/chaos-proxy.ts) with every fault kind on,
// then check that nothing was lost, duplicated or reordered. `npm run soak` builds first;
// `node scripts/soak.mjs` uses dist/ as it is (building only if it is missing).
//
//   --seconds N   how long to produce (env SOAK_SECONDS; default 180)
//   --rate N      messages per second, each way (env SOAK_RATE; default 70)
//   --seed N      the chaos proxy's seed (env CHAOS_SEED; default random, printed)
//
// Prints progress every 15 s and one summary line; exits 0 only when lost, duplicated and
// out-of-order are 0 in both directions and every send() resolved. Ctrl-C stops producing early
// and still drains and checks what was sent. docs/RELIABILITY.md records a run.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

function option(name, env, fallback) {
  const args = process.argv.slice(2)
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`))
  const raw = i < 0 ? process.env[env] : args[i].includes('=') ? args[i].slice(name.length + 3) : args[i + 1]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0) {
    console.error(`soak: --${name} (${env}) must be a number >= 0; got ${JSON.stringify(raw)}`)
    process.exit(2)
  }
  return value
}
const SECONDS = option('seconds', 'SOAK_SECONDS', 180)
const RATE = option('rate', 'SOAK_RATE', 70)
const seedOption = option('seed', 'CHAOS_SEED', undefined)

if (!existsSync(join(root, 'dist', 'index.mjs')) || !existsSync(join(root, 'dist', 'server.mjs'))) {
  console.log('building…')
  execFileSync(process.execPath, [join(root, 'node_modules', 'rollup', 'dist', 'bin', 'rollup'), '-c', '--silent'], {
    cwd: root,
    stdio: 'inherit',
  })
}
const { TetherSocket } = await import(pathToFileURL(join(root, 'dist', 'index.mjs')).href)
const { createTetherServer } = await import(pathToFileURL(join(root, 'dist', 'server.mjs')).href)
const { WebSocket } = await import('ws')

// The chaos proxy is TypeScript that imports only Node built-ins: transpile it and load it from memory.
const { default: ts } = await import('typescript')
const proxySource = readFileSync(join(root, 'test', 'support', 'chaos-proxy.ts'), 'utf8')
const { outputText } = ts.transpileModule(proxySource, {
  fileName: 'chaos-proxy.ts',
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
})
const { startChaosProxy, auditDelivery, makeRandom, seedFromEnv } = await import(
  `data:text/javascript;base64,${Buffer.from(outputText).toString('base64')}`
)

/** Every fault kind, at rates for a long run: a fault every few hundred milliseconds. */
const FAULTS = {
  kill: { rate: 1 },
  stall: { rate: 1, minMs: 150, maxMs: 2000, thenKill: 0.5 },
  split: { share: 0.3, maxPieces: 6, maxDelayMs: 5 },
  refuse: { rate: 0.3, minMs: 100, maxMs: 1000, unlisten: 0.5 },
}

const seed = seedOption === undefined ? seedFromEnv() : seedOption >>> 0
const random = makeRandom(seed ^ 0x5bd1e995)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const mb = (bytes) => `${(bytes / 1048576).toFixed(1)} MB`
const fail = (message) => {
  console.error(`soak: ${message} (seed ${seed})`)
  process.exit(1)
}

let peakHeap = 0
const sampleHeap = () => {
  peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)
}
const heapSampler = setInterval(sampleHeap, 500)

const server = await createTetherServer({ port: 0, host: '127.0.0.1', sessionTtl: 600000 })
const created = []
let resumes = 0
const atServer = []
server.on('session', (s) => created.push(s))
server.on('resume', () => resumes++)
server.on('message', (data) => atServer.push(data))
const proxy = await startChaosProxy({ target: server.port, seed })
const sock = new TetherSocket(`ws://127.0.0.1:${proxy.port}`, {
  WebSocket,
  heartbeat: { interval: 300, timeout: 300 },
  reconnect: { minDelay: 10, maxDelay: 200, connectTimeout: 2000 },
})
const atClient = []
const clientSessions = []
let heartbeatTimeouts = 0
const otherErrors = []
sock.on('message', (m) => atClient.push(m))
sock.on('session', (info) => clientSessions.push(info))
sock.on('error', (e) => {
  if (e.code === 'ERR_TIMEOUT') {
    if (/heartbeat/.test(e.message)) heartbeatTimeouts++
  } else otherErrors.push(e)
})

const openDeadline = Date.now() + 5000
while (!(sock.state === 'open' && created.length === 1)) {
  if (Date.now() > openDeadline) fail('the client did not open a session within 5 s')
  await sleep(5)
}
const session = created[0]

console.log(
  `soak: ${SECONDS} s at ${RATE} messages/s each way through the chaos proxy (seed ${seed}); replay the faults with --seed ${seed}`,
)
proxy.setFaults(FAULTS)
const start = Date.now()
let stopAt = start + SECONDS * 1000
process.once('SIGINT', () => {
  console.log('soak: interrupted; draining and checking what was sent')
  stopAt = Date.now()
})

let maxLatency = 0
const settled = { client: { resolved: 0, rejected: 0 }, server: { resolved: 0, rejected: 0 } }
const sent = { client: 0, server: 0 }
/** Emits the numbers due by now, in order, until stopAt; returns how many it sent. */
async function produce(side, emit) {
  while (Date.now() < stopAt) {
    const due = Math.floor(((Date.now() - start) / 1000) * RATE)
    while (sent[side] < due) emit(sent[side]++)
    await sleep(5 + random() * 20)
  }
}
const clientProducer = produce('client', (i) => {
  const at = performance.now()
  sock.send(i).then(
    () => {
      maxLatency = Math.max(maxLatency, performance.now() - at)
      settled.client.resolved++
    },
    () => settled.client.rejected++,
  )
})
const serverProducer = produce('server', (i) => {
  session.send(i).then(
    () => settled.server.resolved++,
    () => settled.server.rejected++,
  )
})

const progress = setInterval(() => {
  sampleHeap()
  const seconds = Math.round((Date.now() - start) / 1000)
  console.log(
    `[${String(seconds).padStart(4)} s] client→server ${atServer.length}/${sent.client}, server→client ${atClient.length}/${sent.server}; ` +
      `pending ${sock.pending}/${session.pending}; faults ${proxy.describe()}; heartbeat timeouts ${heartbeatTimeouts}; ` +
      `max latency ${Math.round(maxLatency)} ms; heap ${mb(process.memoryUsage().heapUsed)}`,
  )
}, 15000)

await Promise.all([clientProducer, serverProducer])
await sleep(1000) // the tail crosses faults too
proxy.calm()

// Drain: everything sent must settle and arrive (bounded).
const drainDeadline = Date.now() + 60000
const done = () =>
  settled.client.resolved + settled.client.rejected === sent.client &&
  settled.server.resolved + settled.server.rejected === sent.server &&
  atServer.length >= sent.client &&
  atClient.length >= sent.server
while (!done() && Date.now() < drainDeadline) await sleep(20)
await sleep(500) // a late duplicate would arrive in this time
clearInterval(progress)
sampleHeap()
clearInterval(heapSampler)

const toServer = auditDelivery(atServer, sent.client)
const toClient = auditDelivery(atClient, sent.server)
const lost = toServer.lost + toClient.lost
const duplicated = toServer.duplicated + toClient.duplicated
const outOfOrder = toServer.outOfOrder + toClient.outOfOrder
const unsettled = sent.client + sent.server - settled.client.resolved - settled.server.resolved
const elapsed = Math.round((Date.now() - start) / 1000)
console.log(
  `soak: messages=${sent.client}+${sent.server} in ${elapsed} s, seed=${seed} | faults: ${proxy.describe()}, ` +
    `heartbeat-timeouts=${heartbeatTimeouts}, resumes=${resumes} | lost=${lost} duplicated=${duplicated} out-of-order=${outOfOrder} ` +
    `unresolved-sends=${unsettled} | max send→ack latency=${Math.round(maxLatency)} ms | peak heap=${mb(peakHeap)}`,
)

const problems = []
if (lost || duplicated || outOfOrder) {
  problems.push(`client→server ${JSON.stringify(toServer)}, server→client ${JSON.stringify(toClient)}`)
}
if (unsettled) problems.push(`${unsettled} sends did not resolve (${JSON.stringify(settled)})`)
if (created.length !== 1 || clientSessions.length !== 1) problems.push(`the session was lost (${created.length} server sessions)`)
if (otherErrors.length) problems.push(`unexpected client errors: ${otherErrors.map((e) => e.message).join('; ')}`)

await Promise.race([Promise.all([sock.close(), proxy.close(), server.close()]), sleep(5000)])
if (problems.length) fail(`FAILED: ${problems.join('; ')}`)
console.log('soak: passed')
process.exit(0)
