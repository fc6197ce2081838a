/**
 * The conformance kit (`tethersocket-conformance`, src/conformance/) as a user runs it: the built
 * bin in a child process against real servers on 127.0.0.1. The reference server's CLI in echo
 * mode passes every rule; a small independent server written from docs/PROTOCOL.md passes every
 * rule too; the same server broken in one way fails exactly the rules that way breaks, each with
 * its section. Uses the build output in dist/ (`npm test` builds first).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type Faults, type MiniTether, startMiniTether } from '../support/mini-tether.js'
import { waitFor, withTimeout } from '../support/tether.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const KIT = join(root, 'dist', 'conformance.mjs')
const CLI = join(root, 'dist', 'cli.mjs')

const children = new Set<ChildProcess>()
const servers = new Set<MiniTether>()

afterEach(async () => {
  await Promise.all(
    [...children].map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      await withTimeout(once(child, 'exit'), 3000, 'a child exiting on SIGTERM').catch(() => child.kill('SIGKILL'))
    }),
  )
  children.clear()
  await Promise.all([...servers].map((server) => server.close()))
  servers.clear()
})

beforeAll(() => {
  const missing = [KIT, CLI].filter((file) => !existsSync(file))
  if (missing.length > 0) {
    throw new Error(`the build output is missing (${missing.join(', ')}): run \`npm run build\` first (\`npm test\` builds before testing)`)
  }
})

/** A child Node process, its output collected as it comes. */
function node(args: string[]) {
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  const run = { child, stdout: '', stderr: '', exited: once(child, 'exit').then(([code]) => code as number | null) }
  child.stdout?.on('data', (chunk) => {
    run.stdout += String(chunk)
  })
  child.stderr?.on('data', (chunk) => {
    run.stderr += String(chunk)
  })
  return run
}

interface Line {
  status: 'pass' | 'FAIL' | 'skip'
  section: string
  text: string
}

/** Runs the kit against `url` (bounded), and parses its lines by rule id. */
async function runKit(url: string, args: string[] = []) {
  const run = node([KIT, ...args, url])
  const code = await withTimeout(run.exited, 60_000, `the kit against ${url} did not finish within 60 s`)
  const lines = new Map<string, Line>()
  for (const text of run.stdout.split('\n')) {
    const match = /^(pass|FAIL|skip) {2}(§[\d.]+)\s+(\S+) {2}(.*)$/.exec(text)
    if (match) lines.set(match[3], { status: match[1] as Line['status'], section: match[2], text: match[4] })
  }
  const report = `--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`
  return { code, lines, report, stdout: run.stdout }
}

/** The ids of the kit's rules, from `--list`. */
async function ruleIds(): Promise<string[]> {
  const run = node([KIT, '--list'])
  expect(await withTimeout(run.exited, 10_000, 'the kit listing its rules')).toBe(0)
  return run.stdout
    .trim()
    .split('\n')
    .map((line) => line.split(/\s+/)[1])
}

/** The reference server's CLI in echo mode on a free port, once it says where it listens. */
async function referenceServer(): Promise<string> {
  const server = node([CLI, '--conformance', '--port', '0', '--quiet'])
  const match = await waitFor(
    () => /listening on (ws:\/\/\S+)/.exec(server.stdout) ?? server.child.exitCode !== null,
    10_000,
    'the server listening',
  )
  expect(server.child.exitCode, server.stderr).toBeNull()
  return `${(match as RegExpExecArray)[1]}/`
}

async function mini(faults?: Faults): Promise<string> {
  const server = await startMiniTether(faults)
  servers.add(server)
  return server.url
}

/** Expects exactly the rules in `failing` to fail, each citing `section`; every other rule passes. */
function expectOnlyFailures(result: Awaited<ReturnType<typeof runKit>>, ids: string[], failing: Record<string, string>): void {
  expect(result.code, result.report).toBe(1)
  expect([...result.lines.keys()], result.report).toEqual(ids)
  for (const [id, line] of result.lines) {
    if (id in failing) {
      expect(line.status, `${id}\n${result.report}`).toBe('FAIL')
      expect(line.section, `${id}\n${result.report}`).toBe(failing[id])
    } else expect(line.status, `${id}\n${result.report}`).toBe('pass')
  }
}

describe('tethersocket-conformance', () => {
  it('the reference server in echo mode (tethersocket-server --conformance) passes every rule, none skipped', async () => {
    const ids = await ruleIds()
    expect(ids.length).toBeGreaterThanOrEqual(30)
    const result = await runKit(await referenceServer())
    expect(result.code, result.report).toBe(0)
    expect([...result.lines.keys()], result.report).toEqual(ids)
    expect(
      [...result.lines.values()].every((line) => line.status === 'pass'),
      result.report,
    ).toBe(true)
    expect(result.stdout).toContain(`${ids.length} rules: ${ids.length} passed, 0 failed, 0 skipped`)
  })

  it('an independent server written from PROTOCOL.md passes every rule as well', async () => {
    const ids = await ruleIds()
    const result = await runKit(await mini())
    expect(result.code, result.report).toBe(0)
    expect(
      [...result.lines.values()].every((line) => line.status === 'pass'),
      result.report,
    ).toBe(true)
    expect(result.lines.size).toBe(ids.length)
  })

  it('a server that delivers resent items again fails exactly the duplicate rules (§2.4)', async () => {
    const result = await runKit(await mini({ duplicates: true }))
    expectOnlyFailures(result, await ruleIds(), { 'seq.duplicates': '§2.4', 'resume.duplicates': '§2.4', 'req.duplicate': '§2.4' })
    expect(result.lines.get('seq.duplicates')?.text).toContain('got ["a","a","a","b","b","c"], expected ["a","b","c"]')
  })

  it('a server that closes with 1002 where 1007 is due fails exactly the 1007 rules (§1.5)', async () => {
    const result = await runKit(await mini({ notJsonCode: 1002 }))
    expectOnlyFailures(result, await ruleIds(), { 'frame.invalid-json': '§1.5', 'frame.binary': '§1.5' })
    expect(result.lines.get('frame.binary')?.text).toMatch(/closed with 1002 "refused"; expected 1007/)
  })

  it('a server that closes on unknown frame types fails exactly the rules that send them (§3.4, §4.1)', async () => {
    const result = await runKit(await mini({ strictTypes: true }))
    expectOnlyFailures(result, await ruleIds(), { 'hello.after-unknown-frames': '§4.1', 'frame.unknown-type': '§3.4' })
  })

  it('a server whose welcome.sent says how far the client acknowledged, not how far it sent, fails exactly resume.sent (§4.10)', async () => {
    const result = await runKit(await mini({ sentAcked: true }))
    expectOnlyFailures(result, await ruleIds(), { 'resume.sent': '§4.10' })
    expect(result.lines.get('resume.sent')?.text).toContain('the server resent item 2 after a welcome saying sent 1')
  })

  it('a server that says welcome.pa but ignores the acks riding on frames fails exactly ack.riding (§2.9)', async () => {
    const result = await runKit(await mini({ paIgnored: true }))
    expectOnlyFailures(result, await ruleIds(), { 'ack.riding': '§2.9' })
  })

  it('says how to use it: --help names echo mode, a bad URL or an unreachable server exits with 2', async () => {
    const help = node([KIT, '--help'])
    expect(await help.exited).toBe(0)
    expect(help.stdout).toContain('echo mode (PROTOCOL.md §12.2)')
    expect(help.stdout).toContain('tethersocket-server --conformance')
    const bad = node([KIT, 'http://127.0.0.1/'])
    expect(await bad.exited).toBe(2)
    expect(bad.stderr).toContain('must start with ws:// or wss://')
    const closedPort = await mini()
    await [...servers].at(-1)?.close()
    servers.clear()
    const unreachable = node([KIT, closedPort])
    expect(await withTimeout(unreachable.exited, 10_000, 'the kit giving up')).toBe(2)
    expect(unreachable.stderr).toMatch(/cannot reach .*ECONNREFUSED/)
  })

  it('PROTOCOL.md §12 and the package name the bin the kit is built as', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }
    expect(pkg.bin['tethersocket-conformance']).toBe('dist/conformance.mjs')
    expect(readFileSync(KIT, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true)
    expect(readFileSync(join(root, 'docs', 'PROTOCOL.md'), 'utf8')).toContain('npx tethersocket-conformance ws://')
  })
})
