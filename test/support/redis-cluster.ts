/**
 * A real Redis Cluster (Debian's redis-server and redis-cli) for integration tests: masters on
 * free ports of 127.0.0.1, no replicas, each with append-only persistence fsynced on every write
 * in a temporary folder of its own, joined with `redis-cli --cluster create` and waited on until
 * every node says `cluster_state:ok`.
 *
 * Every cluster started here is remembered until `stopAllRedisClusters()` (call it from
 * `afterAll` or `afterEach`).
 */
import { mkdir } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import {
  describeExit,
  findBinary,
  freePort,
  keepTempDir,
  makeTempDir,
  removeTempDir,
  type ServiceProcess,
  ServiceStartError,
  spawnService,
  waitForService,
} from './processes.js'

/** How to start a cluster. */
export interface RedisClusterOptions {
  /** How many masters (each holds a share of the 16384 slots). Default 3, the fewest Redis accepts. */
  masters?: number
  /** How long starting, joining and waiting for `cluster_state:ok` may take in all. Default 20000 ms. */
  startTimeout?: number
  /** How long a clean stop of each node may take before SIGKILL. Default 10000 ms. */
  stopTimeout?: number
  /** Keep the folder after `stop()`, to look at a failure's files. Default false. */
  keepDir?: boolean
}

/** One master of a cluster started by `startRedisCluster()`. */
export interface RedisClusterMaster {
  /** Its client port on 127.0.0.1. */
  readonly port: number
  /** Its cluster bus port on 127.0.0.1 (`--cluster-port`). */
  readonly busPort: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** Its working folder: the append-only files and `nodes-<port>.conf`. */
  readonly dir: string
  /** What it printed so far. */
  output(): string
}

/** A Redis Cluster started by `startRedisCluster()`. */
export interface RedisCluster {
  /** Its masters, in the order `redis-cli --cluster create` was given them (slots ascending). */
  readonly masters: readonly RedisClusterMaster[]
  /** Stops every node (SIGTERM, then SIGKILL) and removes the folder unless `keepDir`. Idempotent. */
  stop(): Promise<void>
}

const clusters = new Set<RedisCluster>()

/** A node-redis-free way to ask a node something: one command over RESP, the reply as text. */
function ask(port: number, args: string[], timeoutMs = 1000): Promise<string | undefined> {
  return new Promise((resolve) => {
    let reply = ''
    const socket = connect(port, '127.0.0.1')
    const finish = (text: string | undefined) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(text)
    }
    const timer = setTimeout(() => finish(undefined), timeoutMs)
    socket.on('error', () => finish(undefined))
    socket.on('close', () => finish(undefined))
    socket.on('connect', () => {
      socket.write(`*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`)
    })
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1')
      const head = reply.indexOf('\r\n')
      if (head < 0) return
      // A simple string or an error ends at its first line; a bulk string says its length.
      if (reply[0] !== '$') return finish(reply.slice(0, head))
      const length = Number(reply.slice(1, head))
      if (length < 0) return finish('')
      if (reply.length >= head + 2 + length + 2) finish(reply.slice(head + 2, head + 2 + length))
    })
  })
}

const isBindFailure = (output: string) => /Address already in use|Could not create server TCP listening socket/i.test(output)

/** Resolves when `service` exits, or rejects (after killing it) when `timeoutMs` passes first. */
async function finished(service: ServiceProcess, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), timeoutMs)
  })
  const outcome = await Promise.race([service.exited, late])
  clearTimeout(timer)
  if (outcome === 'late') {
    await service.stop('SIGKILL', 2000)
    throw new ServiceStartError(
      `${service.name} did not finish in ${timeoutMs} ms. Its output:\n${service.output() || '(none)'}`,
      service.output(),
      false,
    )
  }
  if (outcome.code !== 0) {
    throw new ServiceStartError(
      `${service.name} ${describeExit(outcome)}. Its output:\n${service.output() || '(none)'}`,
      service.output(),
      true,
    )
  }
}

/**
 * Starts `options.masters` (3) redis-server masters with cluster mode on, on free ports of
 * 127.0.0.1, each in a folder of its own with `appendonly yes` and `appendfsync always`; joins
 * them with `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`; and waits (bounded)
 * until `CLUSTER INFO` says `cluster_state:ok` on every node. Throws with what the processes
 * printed when a step fails, after stopping what it started.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const count = options.masters ?? 3
  if (!Number.isInteger(count) || count < 3)
    throw new TypeError(`masters must be an integer of at least 3 (Redis Cluster needs 3 masters), got ${count}`)
  const server = findBinary('redis-server', 'redis-server')
  const cli = findBinary('redis-cli', 'redis-tools')
  const deadline = Date.now() + (options.startTimeout ?? 20_000)
  const stopTimeout = options.stopTimeout ?? 10_000
  const left = () => Math.max(deadline - Date.now(), 1000)
  const root = await makeTempDir('tethersocket-redis-cluster-')
  const nodes: { service: ServiceProcess; master: RedisClusterMaster }[] = []
  let stopped = false

  const stopNodes = async () => {
    const results = await Promise.allSettled(nodes.map(({ service }) => service.stop('SIGTERM', stopTimeout)))
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected')
    if (failed) throw failed.reason
  }

  /** One master on free ports (picked again when another process takes one first). */
  const launch = async (index: number) => {
    const dir = join(root, `node-${index}`)
    await mkdir(dir)
    for (let attempt = 1; ; attempt++) {
      const port = await freePort()
      const busPort = await freePort()
      if (busPort === port) continue
      const args = [
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
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        // The bus port is by default the client port + 10000, which may be taken or above 65535.
        '--cluster-port',
        String(busPort),
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--loglevel',
        'warning',
      ]
      const service = spawnService(`redis-server (cluster node) on 127.0.0.1:${port}`, server, args, dir)
      try {
        await waitForService(service, async () => (await ask(port, ['PING'])) === '+PONG', left(), 'answering PING')
        const master: RedisClusterMaster = { port, busPort, url: `redis://127.0.0.1:${port}`, dir, output: () => service.output() }
        nodes.push({ service, master })
        return
      } catch (error) {
        await service.stop('SIGKILL', 2000)
        const retry =
          error instanceof ServiceStartError && error.exitedEarly && isBindFailure(error.output) && attempt < 10 && Date.now() < deadline
        if (!retry) throw error
      }
    }
  }

  try {
    for (let index = 0; index < count; index++) await launch(index)
    const addresses = nodes.map(({ master }) => `127.0.0.1:${master.port}`)
    const create = spawnService(
      'redis-cli --cluster create',
      cli,
      ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'],
      root,
    )
    await finished(create, left())
    for (const { service, master } of nodes) {
      await waitForService(
        service,
        async () => {
          const info = (await ask(master.port, ['CLUSTER', 'INFO'])) ?? ''
          return info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${count}\r\n`)
        },
        left(),
        `in a cluster of ${count} whose state is ok`,
      )
    }
  } catch (error) {
    await stopNodes().catch(() => {})
    if (options.keepDir) keepTempDir(root)
    else await removeTempDir(root)
    throw error
  }

  const cluster: RedisCluster = {
    masters: nodes.map(({ master }) => master),
    async stop() {
      if (stopped) return
      stopped = true
      clusters.delete(cluster)
      try {
        await stopNodes()
      } finally {
        if (options.keepDir) keepTempDir(root)
        else await removeTempDir(root)
      }
    },
  }
  clusters.add(cluster)
  return cluster
}

/** Stops every cluster started and not yet stopped (for `afterAll`/`afterEach`), and removes their folders. */
export async function stopAllRedisClusters(): Promise<void> {
  const all = [...clusters]
  clusters.clear()
  const results = await Promise.allSettled(all.map((cluster) => cluster.stop()))
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected')
  if (failed) throw failed.reason
}
