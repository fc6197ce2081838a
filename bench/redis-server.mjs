// A redis-server of the benchmark's own: a free port of 127.0.0.1, append-only persistence
// (fsync `always` unless told otherwise; `CONFIG SET appendfsync` changes it while running), no
// snapshots, in a temporary folder removed when it stops.
import { connect } from 'node:net'
import { join } from 'node:path'
import { findBinary, freePort, makeDir, removeDir, spawnService, waitReady } from './services.mjs'

/** Whether a Redis answers PING on `port` (a bounded probe). */
function ping(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    const done = (ok) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.on('error', () => done(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (data) => done(data.toString().startsWith('+PONG')))
  })
}

/**
 * Starts redis-server; resolves with `{ port, url, pid, stop() }` once it answers PING.
 * @param options.appendfsync - 'always' (default), 'everysec' or 'no'
 */
export async function startRedis({ appendfsync = 'always' } = {}) {
  const binary = findBinary('redis-server', 'redis-server')
  const dir = makeDir('tethersocket-bench-redis-')
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const args = [
      ...['--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'no', '--daemonize', 'no'],
      ...['--dir', join(dir), '--save', '', '--appendonly', 'yes', '--appendfsync', appendfsync],
      // No rewrite in the middle of a measurement.
      ...['--auto-aof-rewrite-percentage', '0', '--loglevel', 'warning'],
    ]
    const service = spawnService(`redis-server on 127.0.0.1:${port}`, binary, args, dir)
    try {
      await waitReady(service, () => ping(port), 10_000, 'answering PING')
    } catch (error) {
      await service.stop('SIGKILL')
      // Another process took the port between the probe and the bind: pick another.
      if (attempt < 5 && /Address already in use/i.test(service.output())) continue
      removeDir(dir)
      throw error
    }
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      pid: service.child.pid,
      output: service.output,
      async stop() {
        await service.stop('SIGTERM', 10_000)
        removeDir(dir)
      },
    }
  }
}
