/**
 * A real load balancer (Debian's HAProxy) for integration tests: TCP mode, round robin, no
 * stickiness, in front of servers on 127.0.0.1, with health checks fast enough that a killed
 * backend is out within about half a second and a replaced one is back as quickly.
 *
 * TCP mode forwards the WebSocket upgrade and every frame untouched, which is all a load balancer
 * in front of tether servers has to do. HAProxy runs in the foreground as whatever user runs the
 * tests: its configuration and admin socket live in a temporary folder, and it writes nowhere else
 * (no pidfile, no chroot, no user switch, no log). Every one started here is remembered until
 * `stopAllHaproxy()` (call it from `afterEach` or `afterAll`).
 */
import { writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import {
  findBinary,
  freePort,
  keepTempDir,
  makeTempDir,
  removeTempDir,
  ServiceStartError,
  serialQueue,
  spawnService,
  waitForService,
} from './processes.js'

/** How to start HAProxy. */
export interface HaproxyOptions {
  /**
   * Backend slots, at least as many as the backends given (default: that many). `setBackends()`
   * can later fill up to this many; the extra ones start in maintenance.
   */
  slots?: number
  /** Milliseconds between health checks of each backend. Default 200. */
  checkInterval?: number
  /** How long to wait for it to listen. Default 10000 ms. */
  startTimeout?: number
  /** Keep the folder (configuration, output) after `stop()`. Default false. */
  keepDir?: boolean
}

/** One backend slot as HAProxy sees it now. */
export interface BackendState {
  /** Its server name in the configuration: `node0`, `node1`, … */
  name: string
  /** The backend port on 127.0.0.1. */
  port: number
  /** HAProxy's status: `UP`, `DOWN`, `MAINT`, or a transition such as `UP 1/2`. */
  status: string
}

/** A HAProxy started by `startHaproxy()`. */
export interface Haproxy {
  /** The port on 127.0.0.1 where clients connect. */
  readonly port: number
  /** `ws://127.0.0.1:<port>` */
  readonly url: string
  /** Its folder: `haproxy.cfg` and the admin socket. */
  readonly dir: string
  /** The backend ports it balances over now, in slot order. */
  readonly backends: readonly number[]
  /** What it printed (health check changes show up here as warnings). */
  output(): string
  /**
   * Points the slots at these ports, in order, without a restart (open connections stay); slots
   * left over go to maintenance. Each new backend is in rotation once its first check passes.
   */
  setBackends(ports: number[]): Promise<void>
  /** Every slot's port and status, from HAProxy's statistics. */
  backendStates(): Promise<BackendState[]>
  /** Kills it (hard stop: every proxied connection is cut) and removes its folder. Idempotent. */
  stop(): Promise<void>
}

const BACKEND = 'nodes'
const instances = new Set<Haproxy>()

function checkPorts(ports: unknown, what: string): number[] {
  if (!Array.isArray(ports) || ports.some((port) => !Number.isInteger(port) || port < 1 || port > 65535)) {
    throw new TypeError(`${what} takes an array of TCP ports (integers 1–65535); got ${JSON.stringify(ports)}`)
  }
  return ports as number[]
}

const slotName = (slot: number) => `node${slot}`

function configuration(port: number, ports: number[], slots: number, checkInterval: number, socket: string): string {
  const servers = Array.from({ length: slots }, (_, slot) =>
    // port 1 for a spare slot: a placeholder it never connects to while in maintenance
    slot < ports.length ? `  server ${slotName(slot)} 127.0.0.1:${ports[slot]}` : `  server ${slotName(slot)} 127.0.0.1:1 disabled`,
  )
  return [
    'global',
    // explicit, or HAProxy sizes itself (and its memory) from the file descriptor limit
    '  maxconn 4096',
    '  nbthread 1',
    `  stats socket ${socket} mode 600 level admin`,
    '',
    'defaults',
    '  mode tcp',
    '  balance roundrobin',
    '  timeout connect 1s',
    // WebSockets live long and may be quiet between heartbeats
    '  timeout client 1h',
    '  timeout server 1h',
    '  timeout tunnel 1h',
    // a connection that lands on a dead backend before its check notices is tried on another
    '  retries 2',
    '  option redispatch 1',
    `  default-server check inter ${checkInterval} fall 1 rise 1`,
    '',
    'frontend clients',
    `  bind 127.0.0.1:${port}`,
    `  default_backend ${BACKEND}`,
    '',
    `backend ${BACKEND}`,
    ...servers,
    '',
  ].join('\n')
}

/** Sends one command to HAProxy's admin socket and returns its whole answer. */
function command(socket: string, line: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = ''
    const connection = connect(socket)
    const timer = setTimeout(() => {
      connection.destroy()
      reject(new Error(`HAProxy did not answer "${line}" within ${timeoutMs} ms`))
    }, timeoutMs)
    connection.on('connect', () => connection.write(`${line}\n`))
    connection.on('data', (chunk) => {
      answer += chunk.toString('utf8')
    })
    connection.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    // without "prompt", HAProxy answers one command and closes
    connection.on('close', () => {
      clearTimeout(timer)
      resolve(answer)
    })
  })
}

/** Rows of `show stat`, as objects keyed by the CSV header. */
async function statistics(socket: string): Promise<Record<string, string>[]> {
  const lines = (await command(socket, 'show stat')).split('\n').filter((line) => line.length > 0)
  const header = lines[0]?.replace(/^# /, '').split(',')
  if (!header?.includes('status')) throw new Error(`unexpected answer to "show stat": ${lines.join('\n').slice(0, 500)}`)
  return lines.slice(1).map((line) => {
    const cells = line.split(',')
    return Object.fromEntries(header.map((name, i) => [name, cells[i] ?? '']))
  })
}

const isBindFailure = (output: string) => /cannot bind socket|Address already in use/i.test(output)

/**
 * Starts Debian's HAProxy on a free port of 127.0.0.1, round robin over `backendPorts` on
 * 127.0.0.1 (TCP mode, health-checked), and waits (bounded) until its frontend is listening.
 */
export async function startHaproxy(backendPorts: number[], options: HaproxyOptions = {}): Promise<Haproxy> {
  checkPorts(backendPorts, 'startHaproxy()')
  if (backendPorts.length === 0) throw new TypeError('startHaproxy() needs at least one backend port')
  const slots = options.slots ?? backendPorts.length
  if (!Number.isInteger(slots) || slots < backendPorts.length) {
    throw new RangeError(`slots (${slots}) must be an integer no smaller than the number of backends (${backendPorts.length})`)
  }
  const checkInterval = options.checkInterval ?? 200
  if (!Number.isInteger(checkInterval) || checkInterval < 10) {
    throw new RangeError(`checkInterval must be an integer number of milliseconds, at least 10; got ${checkInterval}`)
  }
  const binary = findBinary('haproxy', 'haproxy')
  const startTimeout = options.startTimeout ?? 10_000
  const dir = await makeTempDir('tethersocket-haproxy-')
  const socket = join(dir, 'admin.sock')
  const config = join(dir, 'haproxy.cfg')

  // The frontend is up once HAProxy lists it OPEN. A probe connection would also tell, but it
  // would take a round-robin turn and reach a backend, which tests counting connections would see.
  const listening = async () => {
    try {
      return (await statistics(socket)).some((row) => row.svname === 'FRONTEND' && row.status === 'OPEN')
    } catch {
      return false
    }
  }

  const deadline = Date.now() + startTimeout
  let started: { port: number; service: ReturnType<typeof spawnService> } | undefined
  try {
    for (let attempt = 1; !started; attempt++) {
      const port = await freePort()
      await writeFile(config, configuration(port, backendPorts, slots, checkInterval, socket))
      // -db: foreground, no daemon, no master process
      const service = spawnService(`haproxy on 127.0.0.1:${port}`, binary, ['-db', '-f', config], dir)
      try {
        await waitForService(service, listening, Math.max(deadline - Date.now(), 1000), 'listening')
        started = { port, service }
      } catch (error) {
        await service.stop('SIGKILL', 2000)
        const retry = error instanceof ServiceStartError && error.exitedEarly && isBindFailure(error.output)
        if (!retry || attempt >= 10 || Date.now() >= deadline) throw error
      }
    }
  } catch (error) {
    await removeTempDir(dir)
    throw error
  }

  const { port, service } = started
  let backends = [...backendPorts]
  let stopped = false
  const serial = serialQueue()

  const proxy: Haproxy = {
    port,
    url: `ws://127.0.0.1:${port}`,
    dir,
    get backends() {
      return backends
    },
    output: () => service.output(),
    setBackends: (ports) =>
      serial(async () => {
        checkPorts(ports, 'setBackends()')
        if (stopped) throw new Error(`the HAProxy on port ${port} was stopped: start another one with startHaproxy()`)
        if (ports.length > slots) {
          throw new RangeError(
            `setBackends() got ${ports.length} ports, but this HAProxy has ${slots} slots: pass { slots } to startHaproxy()`,
          )
        }
        for (let slot = 0; slot < slots; slot++) {
          const server = `${BACKEND}/${slotName(slot)}`
          const answers =
            slot < ports.length
              ? [
                  await command(socket, `set server ${server} addr 127.0.0.1 port ${ports[slot]}`),
                  await command(socket, `set server ${server} state ready`),
                ]
              : [await command(socket, `set server ${server} state maint`)]
          // HAProxy answers these with nothing or a note on what changed; errors name the command
          const refused = answers.find((answer) => /unknown|invalid|error|not found|no such|require/i.test(answer))
          if (refused) throw new Error(`HAProxy refused to change ${server}: ${refused.trim()}`)
        }
        backends = [...ports]
      }),
    backendStates: async () =>
      (await statistics(socket))
        .filter((row) => row.pxname === BACKEND && row.svname !== 'BACKEND')
        .map((row) => ({ name: row.svname, port: Number(row.addr.split(':').pop()), status: row.status })),
    stop: () =>
      serial(async () => {
        if (stopped) return
        stopped = true
        instances.delete(proxy)
        try {
          // SIGTERM is HAProxy's hard stop; SIGUSR1 would wait for hour-long tunnels to end
          await service.stop('SIGTERM', 5000)
        } finally {
          if (options.keepDir) keepTempDir(dir)
          else await removeTempDir(dir)
        }
      }),
  }
  instances.add(proxy)
  return proxy
}

/** Stops every HAProxy started and not yet stopped (for `afterEach`/`afterAll`), and removes their folders. */
export async function stopAllHaproxy(): Promise<void> {
  const all = [...instances]
  instances.clear()
  const results = await Promise.allSettled(all.map((proxy) => proxy.stop()))
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected')
  if (failed) throw failed.reason
}
