// The benchmark suite: `npm run bench` runs every section; `npm run bench -- throughput acks`
// runs some. Options: `--rounds N` (default 5), `--only TEXT` (keep the baseline and the
// contenders whose name contains TEXT, e.g. for a --cpu-prof of one client), `--json`
// (also writes bench/results.json). Tables are printed as Markdown, ready for docs/PERFORMANCE.md.
import { writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { startServers } from './remote.mjs'

const sections = {
  throughput: () => import('./throughput.mjs'),
  acks: () => import('./acks.mjs'),
  latency: () => import('./latency.mjs'),
  reconnect: () => import('./reconnect.mjs'),
  memory: () => import('./memory.mjs'),
  size: () => import('./size.mjs'),
  store: () => import('./store.mjs'),
  persist: () => import('./persist.mjs'),
  shared: () => import('./shared.mjs'),
  topics: () => import('./topics.mjs'),
  browser: () => import('./browser-throughput.mjs'),
  steady: () => import('./steady.mjs'),
}
// Sections that need the server process.
const networked = new Set(['throughput', 'acks', 'latency', 'reconnect'])

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: 'string', default: '5' }, only: { type: 'string' }, json: { type: 'boolean', default: false } },
})
const chosen = positionals.length ? positionals : Object.keys(sections)
for (const name of chosen) {
  if (!sections[name]) {
    console.error(`unknown section ${JSON.stringify(name)}; sections: ${Object.keys(sections).join(', ')}`)
    process.exit(2)
  }
}
const rounds = Number(values.rounds)
if (!(Number.isInteger(rounds) && rounds >= 1)) {
  console.error('--rounds must be a positive integer')
  process.exit(2)
}
// The first contender of a section is its baseline and always runs.
const select = (contenders) => (values.only ? contenders.filter((c, i) => i === 0 || c.name.includes(values.only)) : contenders)

const machine = `Node ${process.version}, ${process.platform}/${process.arch}, ${cpus().length} cores (${cpus()[0]?.model.trim()})`
// Other work on the machine skews every number: the load average is part of the record.
const load = () => loadavg()[0].toFixed(2)
console.log(
  `# tethersocket benchmarks\n\n${machine}; ${rounds} measured rounds after one warm-up, interleaved; load average ${load()} at the start.\n`,
)

const servers = chosen.some((name) => networked.has(name)) ? await startServers() : undefined
const report = { machine, rounds, date: new Date().toISOString(), sections: {} }
const started = Date.now()
for (const name of chosen) {
  const section = await sections[name]()
  const sectionStart = Date.now()
  const log = (line) => console.error(`  ${name}: ${line}`)
  const result = await section.run({ servers, rounds, log, select })
  console.log(`## ${result.title}\n\n${result.markdown}\n`)
  if (result.notes) console.log(`${result.notes}\n`)
  console.error(`  ${name}: ${((Date.now() - sectionStart) / 1000).toFixed(1)} s`)
  report.sections[name] = result
}
await servers?.close()
console.log(`Total ${((Date.now() - started) / 1000).toFixed(0)} s; load average ${load()} at the end.`)
if (values.json) {
  const file = new URL('./results.json', import.meta.url)
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
  console.error(`wrote ${file.pathname}`)
}
// Clients of the peer libraries may keep timers alive; the run is over.
process.exit(0)
