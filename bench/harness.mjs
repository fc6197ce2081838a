// What every section shares: interleaved rounds, summary statistics and Markdown tables.
import { performance } from 'node:perf_hooks'

export const now = () => performance.now()
/** A small JSON message, different for every `i`, as an application would send. */
export const message = (i) => ({ type: 'tick', n: i, text: 'hello, world' })

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Collects garbage between runs (when node runs with --expose-gc), so one run's garbage is not the next one's pause. */
export function collect() {
  globalThis.gc?.()
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** The value below which `p` (0..1) of the samples lie (nearest rank). */
export function percentile(values, p) {
  const sorted = Float64Array.from(values).sort()
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]
}

export function summarize(values) {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), runs: values }
}

/**
 * Runs every contender once to warm it up, then `rounds` rounds of every contender in turn
 * (interleaved, so a slow phase of the machine hits all of them alike rather than one).
 * A contender's `run(warmUp)` returns one sample: a number or an object of named numbers;
 * with `warmUp` true it may do a smaller amount of work (JIT warm-up needs no full run).
 * Returns, per contender name, the samples of the measured rounds.
 */
export async function interleave(contenders, { rounds, log }) {
  const samples = Object.fromEntries(contenders.map((c) => [c.name, []]))
  for (let round = 0; round <= rounds; round++) {
    for (const contender of contenders) {
      collect()
      const sample = await contender.run(round === 0)
      if (round > 0) samples[contender.name].push(sample)
    }
    log?.(round === 0 ? 'warm-up done' : `round ${round}/${rounds}`)
  }
  return samples
}

/** Picks one metric out of samples that are objects. */
export const metric = (samples, key) => samples.map((s) => (typeof s === 'number' ? s : s[key]))

/** A Markdown table. */
export function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

/** `median (min–max)` with a fixed number of decimals. */
export function spread(stats, digits = 1, scale = 1) {
  const f = (v) => (v * scale).toFixed(digits)
  return `${f(stats.median)} (${f(stats.min)}–${f(stats.max)})`
}

export const ratio = (value) => `${value.toFixed(2)}×`
