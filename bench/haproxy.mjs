// Debian's HAProxy in front of server nodes, for the failover measurement: TCP mode (the
// WebSocket upgrade and frames pass untouched), round robin, no stickiness, health checks
// every 200 ms that take a backend out after one failure and back after one success.
import { writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { findBinary, freePort, makeDir, removeDir, spawnService, waitReady } from './services.mjs'

function configuration(port, backends, socket) {
  return [
    'global',
    // Explicit, or HAProxy sizes itself (and its memory) from the file descriptor limit.
    '  maxconn 4096',
    '  nbthread 1',
    `  stats socket ${socket} mode 600 level admin`,
    '',
    'defaults',
    '  mode tcp',
    '  balance roundrobin',
    '  timeout connect 1s',
    '  timeout client 1h',
    '  timeout server 1h',
    '  timeout tunnel 1h',
    // A connection that lands on a dead backend before its check notices is tried on another.
    '  retries 2',
    '  option redispatch 1',
    '  default-server check inter 200 fall 1 rise 1',
    '',
    'frontend clients',
    `  bind 127.0.0.1:${port}`,
    '  default_backend nodes',
    '',
    'backend nodes',
    ...backends.map((backend, i) => `  server node${i} 127.0.0.1:${backend}`),
    '',
  ].join('\n')
}

/** One command on the admin socket; its whole answer (HAProxy closes after one command). */
function command(socket, line) {
  return new Promise((resolve, reject) => {
    let answer = ''
    const connection = connect(socket)
    connection.setTimeout(2000, () => {
      connection.destroy()
      reject(new Error(`HAProxy did not answer "${line}" within 2 s`))
    })
    connection.on('connect', () => connection.write(`${line}\n`))
    connection.on('data', (chunk) => {
      answer += chunk
    })
    connection.on('error', reject)
    connection.on('close', () => resolve(answer))
  })
}

/** Rows of `show stat` as objects keyed by its CSV header. */
async function statistics(socket) {
  const lines = (await command(socket, 'show stat')).split('\n').filter(Boolean)
  const header = lines[0].replace(/^# /, '').split(',')
  return lines.slice(1).map((line) => {
    const cells = line.split(',')
    return Object.fromEntries(header.map((name, i) => [name, cells[i] ?? '']))
  })
}

/** Starts HAProxy on a free port; resolves with `{ port, states(), stop() }` once its frontend is open. */
export async function startHaproxy(backends) {
  const binary = findBinary('haproxy', 'haproxy')
  const dir = makeDir('tethersocket-bench-haproxy-')
  const socket = join(dir, 'admin.sock')
  const file = join(dir, 'haproxy.cfg')
  // Asking the stats socket, not connecting: a probe connection would take a round-robin turn.
  const open = async () => {
    try {
      return (await statistics(socket)).some((row) => row.svname === 'FRONTEND' && row.status === 'OPEN')
    } catch {
      return false
    }
  }
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    writeFileSync(file, configuration(port, backends, socket))
    // -db: in the foreground, no daemon.
    const service = spawnService(`haproxy on 127.0.0.1:${port}`, binary, ['-db', '-f', file], dir)
    try {
      await waitReady(service, open, 10_000, 'listening')
    } catch (error) {
      await service.stop('SIGKILL')
      if (attempt < 5 && /cannot bind socket|Address already in use/i.test(service.output())) continue
      removeDir(dir)
      throw error
    }
    return {
      port,
      /** Each backend's HAProxy status (`UP`, `DOWN`, …), in configuration order. */
      states: async () =>
        (await statistics(socket)).filter((row) => row.pxname === 'nodes' && row.svname !== 'BACKEND').map((row) => row.status),
      output: service.output,
      async stop() {
        // SIGTERM is HAProxy's hard stop (SIGUSR1 would wait for the hour-long tunnels).
        await service.stop('SIGTERM')
        removeDir(dir)
      },
    }
  }
}
