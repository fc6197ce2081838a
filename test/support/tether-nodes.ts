/**
 * Server nodes as child processes (test/support/tether-node.mjs on the built dist/), sharing a
 * Redis: started on a port of 127.0.0.1, killed with SIGKILL as a crash would, and replaced on
 * the same port. What a node reports (one JSON line each) is kept across its lives, so a test
 * can check every delivery any incarnation made. `stopAllNodes()` kills what is left.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { freePort } from './processes.js'

const script = fileURLToPath(new URL('./tether-node.mjs', import.meta.url))
const root = fileURLToPath(new URL('../..', import.meta.url))

/** A line a node reported; `at` is when (ms since the epoch, sub-millisecond), to order the lines of several nodes. */
export type NodeLine = { at: number } & (
  | { t: 'ready'; port: number }
  | { t: 'msg'; data: unknown; id: string; redelivered: boolean; sid: string }
  | { t: 'req'; data: unknown; id: string; redelivered: boolean }
  | { t: 'hold'; sid: string }
  | { t: 'expire'; sid: string; reason: string }
  | { t: 'error'; message: string }
  | { t: 'pub'; topic: string; data: unknown }
)

/** A node and everything its incarnations reported. */
export interface TetherNode {
  readonly port: number
  /** Every line, of every life of the node, in order. */
  readonly lines: NodeLine[]
  readonly running: boolean
  /** SIGKILL: no close frames, no last writes. Resolves once the process is gone. */
  kill(): Promise<void>
  /** Starts it again on the same port (after `kill()`). */
  restart(): Promise<void>
  /** Output that was not a report (stderr, crashes), for failure messages. */
  output(): string
}

export interface NodeOptions {
  redisUrl: string
  prefix: string
  sessionTtl?: number
  requestDelay?: number
  messageDelay?: number
  /** Send the echo after `messageDelay`, not before it. */
  echoAfterDelay?: boolean
  /** Topics the node publishes to (in turn, one every `publish.every` ms, while its clock is in [from, until)). */
  publish?: { topics: string[]; every: number; from: number; until: number }
  /** Messages each topic's log keeps. */
  topicMax?: number
}

const live = new Set<ChildProcess>()

/** Starts a node and waits (bounded) until it listens. */
export async function startNode(options: NodeOptions): Promise<TetherNode> {
  const port = await freePort()
  const lines: NodeLine[] = []
  let output = ''
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()

  const start = async () => {
    const proc = spawn(process.execPath, [script], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        REDIS_URL: options.redisUrl,
        PORT: String(port),
        PREFIX: options.prefix,
        SESSION_TTL: String(options.sessionTtl ?? 60000),
        REQUEST_DELAY: String(options.requestDelay ?? 0),
        MESSAGE_DELAY: String(options.messageDelay ?? 0),
        ECHO_AFTER_DELAY: options.echoAfterDelay ? '1' : '0',
        ...(options.publish && {
          PUBLISH_TOPICS: options.publish.topics.join(','),
          PUBLISH_EVERY: String(options.publish.every),
          PUBLISH_FROM: String(options.publish.from),
          PUBLISH_UNTIL: String(options.publish.until),
        }),
        ...(options.topicMax !== undefined && { TOPIC_MAX: String(options.topicMax) }),
      },
    })
    child = proc
    live.add(proc)
    exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    void exited.then(() => live.delete(proc))
    let pending = ''
    proc.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8')
      let newline = pending.indexOf('\n')
      while (newline >= 0) {
        const text = pending.slice(0, newline)
        pending = pending.slice(newline + 1)
        try {
          lines.push(JSON.parse(text) as NodeLine)
        } catch {
          output += `${text}\n`
        }
        newline = pending.indexOf('\n')
      }
    })
    proc.stderr?.on('data', (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-20000)
    })
    const readyBefore = lines.filter((line) => line.t === 'ready').length
    const deadline = Date.now() + 15000
    while (lines.filter((line) => line.t === 'ready').length === readyBefore) {
      if (proc.exitCode !== null) throw new Error(`node on port ${port} exited at start:\n${output}`)
      if (Date.now() > deadline) throw new Error(`node on port ${port} not ready within 15 s:\n${output}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  await start()
  return {
    port,
    lines,
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null
    },
    async kill() {
      child?.kill('SIGKILL')
      await exited
    },
    restart: start,
    output: () => output,
  }
}

/** Kills every node still running (for `afterEach`). */
export async function stopAllNodes(): Promise<void> {
  const all = [...live]
  for (const proc of all) proc.kill('SIGKILL')
  await Promise.all(
    all.map((proc) => (proc.exitCode !== null || proc.signalCode !== null ? undefined : new Promise((r) => proc.once('exit', r)))),
  )
}
