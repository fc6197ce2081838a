#!/usr/bin/env node
/**
 * `tethersocket-conformance`: checks a tether.v1 server against docs/PROTOCOL.md.
 *
 * ```
 * npx tethersocket-conformance ws://127.0.0.1:8080/
 * ```
 * Prints one line per rule (pass, FAIL or skip, with its section of PROTOCOL.md) and exits
 * with 0 only when no rule failed. The server must run in echo mode (PROTOCOL.md §12.2).
 * @module
 */
import { parseArgs } from 'node:util'
import { Peer } from './peer.js'
import { RULES } from './rules.js'
import { type Result, type Rule, runRules } from './run.js'

const USAGE = `Usage: tethersocket-conformance [--timeout MS] [--only IDS] [--list] ws://host:port/path

Checks a tether.v1 server against the rules of the tethersocket protocol document
(docs/PROTOCOL.md), one rule at a time, over a few dozen connections.
  --timeout MS   how long to wait for each thing the server should do   default 3000
  --only IDS     run only these rules: ids or id prefixes, comma-separated (e.g. seq,resume.welcome)
  --list         list the rules with their sections, and exit
  --help, -h     show this

The server under test must run in echo mode (PROTOCOL.md §12.2):
  - each message it receives is sent back to the same session, as one message,
    before the next item is delivered;
  - a request with payload P is answered with {"echo": P}; if P has a string member
    "fail", with an error reply whose code is that string; if P has a number member
    "delay" (0 to 10000), that many ms after the request was delivered;
  - no authentication; welcome.max of at least 64 KiB; sessions kept at least 10 s.
The reference server runs so with: npx tethersocket-server --conformance

Prints one line per rule: pass, FAIL (with what was seen) or skip (with why), each with
the section of PROTOCOL.md it checks. Exit status: 0 when no rule failed (skipped rules do
not fail), 1 when a rule failed, 2 for a usage error or a server that cannot be reached.`

const DEFAULT_TIMEOUT = 3000

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse()
  } catch (error) {
    return usageError((error as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help) {
    console.log(USAGE)
    return 0
  }
  const rules = selectRules(values.only)
  if (typeof rules === 'string') return usageError(rules)
  if (values.list) {
    const width = Math.max(...rules.map((rule) => rule.id.length))
    for (const rule of rules) console.log(`${rule.section.padEnd(6)} ${rule.id.padEnd(width)}  ${rule.title}`)
    return 0
  }
  if (positionals.length !== 1) return usageError(`give one server URL; got ${positionals.length}`)
  const url = positionals[0]
  if (!/^wss?:\/\/[^/]/.test(url)) return usageError(`the server URL must start with ws:// or wss://; got ${url}`)
  const timeout = Number(values.timeout)
  if (!Number.isInteger(timeout) || timeout <= 0) return usageError(`--timeout must be a whole number of ms above 0; got ${values.timeout}`)

  const unreachable = await reachable(url, timeout)
  if (unreachable) {
    console.error(`tethersocket-conformance: cannot reach ${url}: ${unreachable}`)
    return 2
  }
  console.log(`tethersocket-conformance: ${rulesOf(rules.length)} of PROTOCOL.md against ${url}`)
  const width = Math.max(...rules.map((rule) => rule.id.length))
  const results = await runRules(url, rules, { timeout, report: (result) => console.log(line(result, width)) })
  const count = (status: Result['status']) => results.filter((result) => result.status === status).length
  const failed = count('fail')
  console.log(`${rulesOf(results.length)}: ${count('pass')} passed, ${failed} failed, ${count('skip')} skipped`)
  return failed > 0 ? 1 : 0
}

function parse() {
  return parseArgs({
    allowPositionals: true,
    options: {
      timeout: { type: 'string', default: String(DEFAULT_TIMEOUT) },
      only: { type: 'string' },
      list: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
}

/** The rules `--only` names (ids or id prefixes), or a message saying which name matches none. */
function selectRules(only: string | undefined): readonly Rule[] | string {
  if (only === undefined) return RULES
  const names = only
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean)
  const matches = (rule: Rule, name: string) => rule.id === name || rule.id.startsWith(`${name}.`)
  const unknown = names.filter((name) => !RULES.some((rule) => matches(rule, name)))
  if (unknown.length > 0) return `--only names no rule: ${unknown.join(', ')} (--list shows them)`
  return RULES.filter((rule) => names.some((name) => matches(rule, name)))
}

/** Why `url` cannot be reached at all (no TCP, no WebSocket), or undefined. An HTTP refusal is for the rules to report. */
async function reachable(url: string, timeout: number): Promise<string | undefined> {
  try {
    const peer = await Peer.open(url, ['tether.v1'], timeout)
    if (peer instanceof Peer) peer.terminate()
    return undefined
  } catch (error) {
    return (error as Error).message
  }
}

/** One result as one line: status, section, rule id, then the title (pass) or what happened. */
function line(result: Result, width: number): string {
  const status = { pass: 'pass', fail: 'FAIL', skip: 'skip' }[result.status]
  const text = result.status === 'pass' ? result.rule.title : `${result.rule.title}: ${result.detail}`
  return `${status}  ${result.section.padEnd(6)} ${result.rule.id.padEnd(width)}  ${text}`
}

const rulesOf = (count: number): string => `${count} ${count === 1 ? 'rule' : 'rules'}`

function usageError(message: string): number {
  console.error(`${message}\n\n${USAGE}`)
  return 2
}

main().then(
  (code) => {
    process.exitCode = code
    // Every connection is cut by now; should anything linger, it does not hold the exit.
    setTimeout(() => process.exit(), 1000).unref()
  },
  (error: Error) => {
    console.error(`tethersocket-conformance: ${error.stack ?? error.message}`)
    process.exit(2)
  },
)
