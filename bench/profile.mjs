// Summarizes a V8 .cpuprofile (from `node --cpu-prof`): self time per function, and per
// source file, so the hot path of one client shows without opening DevTools.
//
//   node --cpu-prof --cpu-prof-dir=prof bench/run.mjs throughput --only "raw mode"
//   node bench/profile.mjs prof/*.cpuprofile --match dist/ --top 15
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { match: { type: 'string', default: '' }, top: { type: 'string', default: '20' } },
})
if (!positionals.length) {
  console.error('usage: node bench/profile.mjs FILE.cpuprofile… [--match TEXT] [--top N]')
  process.exit(2)
}

const byFunction = new Map()
const byFile = new Map()
let total = 0
const add = (map, key, ms) => map.set(key, (map.get(key) ?? 0) + ms)

for (const file of positionals) {
  const { nodes, samples, timeDeltas } = JSON.parse(readFileSync(file, 'utf8'))
  const frames = new Map(nodes.map((node) => [node.id, node.callFrame]))
  // The time of sample i is the delta to the next one (the last sample has none).
  for (let i = 0; i < samples.length - 1; i++) {
    const ms = timeDeltas[i + 1] / 1000
    const { functionName, url, lineNumber } = frames.get(samples[i])
    const where = url ? url.replace(/^file:\/\/.*?\/(node_modules|dist|bench)\//, '$1/') : ''
    total += ms
    add(byFile, where || functionName, ms) // (garbage collector), (idle), (program) have no url
    if (where.includes(values.match)) add(byFunction, `${functionName || '(anonymous)'}  ${where}:${lineNumber + 1}`, ms)
  }
}

const top = Number(values.top)
const rows = (map) =>
  [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, ms]) => `${ms.toFixed(1).padStart(9)} ms ${((100 * ms) / total).toFixed(1).padStart(5)}%  ${key}`)
console.log(`total sampled: ${total.toFixed(0)} ms\n\nself time by file:\n${rows(byFile).join('\n')}`)
console.log(`\nself time by function${values.match ? ` (files matching "${values.match}")` : ''}:\n${rows(byFunction).join('\n')}`)
