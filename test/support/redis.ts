/**
 * A real redis-server (Debian's) for integration tests: on a free port of 127.0.0.1, with
 * append-only persistence fsynced on every write, in a temporary folder of its own.
 *
 * Every server started here is remembered until `stopAllRedis()` (call it from `afterEach` or
 * `afterAll`). A handle keeps its port and folder across `restart()`, `kill()` and `restore()`,
 * so a client reconnecting to `url` reaches the same Redis, knowing what its files say.
 */
import { cp, mkdir, rm, stat } from 'node:fs/promises'
import { connect } from 'node:net'
import { join, relative } from 'node:path'
import { createClient } from 'redis'
import {
  findBinary,
  freePort,
  keepTempDir,
  makeTempDir,
  removeTempDir,
  type ServiceProcess,
  ServiceStartError,
  serialQueue,
  spawnService,
  waitForService,
} from './processes.js'
import { defer } from './tether.js'

/** How to start a Redis. */
export interface RedisOptions {
  /** Keep the folder after `stop()`, to look at a failure's files. Default false. */
  keepDir?: boolean
  /** More redis-server arguments, after the defaults (a later one wins), such as `['--maxmemory', '64mb']`. */
  args?: string[]
  /** How long to wait for it to answer PING, on every start. Default 10000 ms. */
  startTimeout?: number
  /** How long a clean stop may take before SIGKILL. Default 10000 ms. */
  stopTimeout?: number
}

/** A copy of the append-only files at one moment, from `snapshot()`; give it back to `restore()`. */
export interface RedisSnapshot {
  /** The copy of the append-only folder. */
  readonly path: string
  /** The handle that made it. */
  readonly owner: RedisServer
}

/** A redis-server started by `startRedis()`. */
export interface RedisServer {
  /** Its port on 127.0.0.1, the same across restarts. */
  readonly port: number
  /** `redis://127.0.0.1:<port>`, for `createClient({ url })`. */
  readonly url: string
  /** Its working folder (`--dir`); the append-only files are in `appendonlydir/` inside it. */
  readonly dir: string
  /** Whether the process is up (false after `kill()` until `restart()`). */
  readonly running: boolean
  /** Whether `stop()` has run: the handle can no longer be started. */
  readonly stopped: boolean
  /** What the current (or last) process printed. */
  output(): string
  /** Stops it cleanly (SIGTERM, as SHUTDOWN) and removes its folder unless `keepDir`. Idempotent. */
  stop(): Promise<void>
  /** Ends it with SIGKILL, as a crash would; the files stay for `restart()`. */
  kill(): Promise<void>
  /** Stops it cleanly if it runs, then starts it again on the same port with the same files. */
  restart(): Promise<void>
  /**
   * Copies the append-only files as they are now. Every acknowledged write is in them, since each
   * is fsynced before Redis answers (`appendfsync always`).
   */
  snapshot(): Promise<RedisSnapshot>
  /**
   * Stops it cleanly, puts back the append-only files of `snapshot`, and starts it again on the
   * same port: it comes back knowing only what it knew then, as after a restore from an older file.
   */
  restore(snapshot: RedisSnapshot): Promise<void>
}

const servers = new Set<RedisServer>()

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// Redis 7 keeps its append-only files (a base, increments and a manifest naming them) here.
const APPEND_ONLY_DIR = 'appendonlydir'

/** Whether a Redis on `port` answers PING with PONG (not LOADING, not refused), within 1 s. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    let reply = ''
    const socket = connect(port, '127.0.0.1')
    const finish = (ok: boolean) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => finish(false), 1000)
    socket.on('error', () => finish(false))
    socket.on('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1')
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG'))
    })
    socket.on('close', () => finish(false))
  })
}

const isBindFailure = (output: string) => /Address already in use|Could not create server TCP listening socket/i.test(output)

/**
 * Starts Debian's redis-server on a free port of 127.0.0.1, with append-only persistence
 * (`appendfsync always`) and no snapshots, in a new temporary folder, and waits (bounded) until
 * it answers PING. Throws with the server's output when it does not start.
 */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const binary = findBinary('redis-server', 'redis-server')
  const startTimeout = options.startTimeout ?? 10_000
  const stopTimeout = options.stopTimeout ?? 10_000
  const root = await makeTempDir('tethersocket-redis-')
  const dir = join(root, 'data')
  const snapshots = join(root, 'snapshots')
  await mkdir(dir)
  let snapshotCount = 0

  const argsFor = (port: number) => [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--protected-mode',
    'no',
    '--daemonize',
    'no',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'yes',
    '--appendfsync',
    'always',
    // A rewrite replaces the files and the manifest while running: off, so that snapshot() copies
    // a consistent set at any moment. The files only grow, which no test here minds.
    '--auto-aof-rewrite-percentage',
    '0',
    '--loglevel',
    'warning',
    ...(options.args ?? []),
  ]

  let proc: ServiceProcess | undefined
  let last: ServiceProcess | undefined
  let port = 0

  /** Starts the process on `fixedPort`, or on a free port (retried when another process takes it first). */
  const launch = async (fixedPort?: number) => {
    const deadline = Date.now() + startTimeout
    for (let attempt = 1; ; attempt++) {
      const candidate = fixedPort ?? (await freePort())
      const service = spawnService(`redis-server on 127.0.0.1:${candidate}`, binary, argsFor(candidate), dir)
      try {
        await waitForService(service, () => ping(candidate), Math.max(deadline - Date.now(), 1000), 'answering PING')
        proc = service
        last = service
        port = candidate
        return
      } catch (error) {
        await service.stop('SIGKILL', 2000)
        const retry = error instanceof ServiceStartError && error.exitedEarly && isBindFailure(error.output) && Date.now() < deadline
        if (!retry) throw error
        // a fixed port still held by another process: wait for it; a picked one: pick again
        if (fixedPort !== undefined) await sleep(50)
        else if (attempt >= 10) throw error
      }
    }
  }

  const halt = async (signal: NodeJS.Signals) => {
    const current = proc
    proc = undefined
    if (current) await current.stop(signal, stopTimeout)
  }

  let stopped = false
  const serial = serialQueue()
  const usable = () => {
    if (stopped) throw new Error(`the Redis on port ${port} was stopped: start another one with startRedis()`)
  }

  try {
    await launch()
  } catch (error) {
    await removeTempDir(root)
    throw error
  }

  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    get running() {
      return proc?.running ?? false
    },
    get stopped() {
      return stopped
    },
    output: () => last?.output() ?? '',
    stop: () =>
      serial(async () => {
        if (stopped) return
        stopped = true
        servers.delete(server)
        try {
          await halt('SIGTERM')
        } finally {
          if (options.keepDir) keepTempDir(root)
          else await removeTempDir(root)
        }
      }),
    kill: () =>
      serial(async () => {
        usable()
        await halt('SIGKILL')
      }),
    restart: () =>
      serial(async () => {
        usable()
        await halt('SIGTERM')
        await launch(port)
      }),
    snapshot: () =>
      serial(async () => {
        usable()
        const source = join(dir, APPEND_ONLY_DIR)
        await stat(source).catch(() => {
          throw new Error(`${source} does not exist: is appendonly off in this Redis's args?`)
        })
        const path = join(snapshots, String(++snapshotCount))
        await cp(source, path, { recursive: true })
        return { path, owner: server }
      }),
    restore: (snapshot) =>
      serial(async () => {
        usable()
        if (snapshot?.owner !== server || relative(snapshots, snapshot.path).startsWith('..')) {
          throw new TypeError('restore() takes a snapshot made by snapshot() of the same Redis handle')
        }
        await halt('SIGTERM')
        const target = join(dir, APPEND_ONLY_DIR)
        await rm(target, { recursive: true, force: true })
        await cp(snapshot.path, target, { recursive: true })
        await launch(port)
      }),
  }
  servers.add(server)
  return server
}

/** Stops every Redis started and not yet stopped (for `afterEach`/`afterAll`), and removes their folders. */
export async function stopAllRedis(): Promise<void> {
  const all = [...servers]
  servers.clear()
  const results = await Promise.allSettled(all.map((server) => server.stop()))
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected')
  if (failed) throw failed.reason
}

/**
 * A connected node-redis client of `url`, closed by `cleanupTether()` (before the Redis it talks
 * to is stopped). Its errors are ignored: a test that restarts Redis sees it reconnect, every
 * `reconnectEvery` ms when given (node-redis's own backoff otherwise).
 */
export async function connectedClient(url: string, options: { reconnectEvery?: number } = {}) {
  const { reconnectEvery } = options
  const client = createClient(reconnectEvery === undefined ? { url } : { url, socket: { reconnectStrategy: () => reconnectEvery } })
  client.on('error', () => {})
  await client.connect()
  defer(() => client.close())
  return client
}
