// Failover: two server nodes share one Redis behind HAProxy; a client (reconnect defaults)
// streams acknowledged sends, each echoed by the node's handler; the node that holds its
// session is SIGKILLed, again and again, and restarted each time. Measured per kill: from the
// kill to the client's close, to its open on the other node (welcome received: the session
// claimed there), and to the first send() acknowledged after that close (the client flowing
// again). Checked over the whole run: every send() resolves, one session throughout, each
// message handled once except where the node that handled it died before recording it (then
// again with `info.redelivered` and the same `info.id`), and every echo arrives once, in order.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { message, tether, url } from './clients.mjs'
import { startHaproxy } from './haproxy.mjs'
import { now, sleep } from './harness.mjs'
import { startNode } from './nodes.mjs'
import { makeDir, removeDir } from './services.mjs'

/** Sends kept in flight by the streaming client. */
const WINDOW = 10
/** Bound on every wait of one kill: a failover that takes longer is reported as a hang. */
const STEP_TIMEOUT = 30_000
/** The client's default `reconnect.resetAfter`, with a margin. */
const RESET_AFTER = 5_200

async function until(condition, what, timeoutMs = STEP_TIMEOUT) {
  const deadline = now() + timeoutMs
  while (!(await condition())) {
    if (now() > deadline) throw new Error(`failover: no ${what} within ${timeoutMs} ms`)
    await sleep(5)
  }
}

export async function measureFailover({ redisUrl, kills, log }) {
  const dir = makeDir('tethersocket-bench-failover-')
  const prefix = `failover-${Date.now()}`
  const config = (i, port) => ({ port, redis: redisUrl, prefix, log: join(dir, `node${i}.log`) })
  const nodes = []
  let proxy
  let sock
  try {
    for (const i of [0, 1]) {
      nodes.push(await startNode(config(i, 0)))
      await nodes[i].call('mode', 'echo')
    }
    const ports = nodes.map((node) => node.port)
    proxy = await startHaproxy(ports)
    const bothUp = async () => (await proxy.states()).every((status) => status === 'UP')
    await until(bothUp, 'backends up in HAProxy')

    // The client, with tethersocket's reconnect defaults.
    sock = tether(url(proxy.port))
    const client = { sent: 0, acked: 0, failed: [], sessions: [], echoes: 0, echoErrors: 0, nextEcho: 1, lastAckAt: 0 }
    const mark = { closeAt: 0, openAt: 0, firstAckAt: 0, delay: undefined, watching: false }
    sock.on('session', ({ id }) => client.sessions.push(id))
    sock.on('close', () => {
      if (mark.watching && !mark.closeAt) mark.closeAt = now()
    })
    sock.on('reconnecting', ({ delay }) => {
      if (mark.watching && mark.delay === undefined) mark.delay = delay
    })
    let openedAt = now()
    sock.on('open', () => {
      openedAt = now()
      if (mark.watching && mark.closeAt && !mark.openAt) mark.openAt = now()
    })
    sock.on('message', (data) => {
      client.echoes++
      if (data.n !== client.nextEcho) client.echoErrors++
      client.nextEcho = data.n + 1
    })
    let streaming = true
    let inFlight = 0
    const pump = () => {
      while (streaming && inFlight < WINDOW) {
        inFlight++
        const n = ++client.sent
        sock.send(message(n)).then(
          () => {
            inFlight--
            client.acked++
            const at = now()
            client.lastAckAt = at
            if (mark.watching && mark.closeAt && !mark.firstAckAt) mark.firstAckAt = at
            pump()
          },
          (error) => {
            inFlight--
            client.failed.push(`${n}: ${error}`)
            pump()
          },
        )
      }
    }
    await new Promise((resolve) => sock.once('open', resolve))
    pump()

    const samples = []
    for (let k = 1; k <= kills; k++) {
      // Both nodes up, and the connection open longer than the client's `resetAfter` (5 s by
      // default), so that each kill meets the backoff of a first retry, not a growing one; then
      // a random point of the stream.
      await until(bothUp, 'backends up in HAProxy')
      await sleep(Math.max(0, openedAt + RESET_AFTER - now()) + Math.random() * 500)
      const ackedBefore = client.acked
      await until(() => client.acked > ackedBefore, 'acknowledgement before the kill')
      const sid = sock.sessionId
      let holder
      await until(async () => {
        const held = await Promise.all(nodes.map((node) => node.call('holds', sid)))
        holder = held.indexOf(true)
        return holder >= 0
      }, 'node holding the session')

      Object.assign(mark, { closeAt: 0, openAt: 0, firstAckAt: 0, delay: undefined, watching: true })
      const killedAt = now()
      await nodes[holder].kill()
      await until(() => mark.firstAckAt > 0, 'send() acknowledged after the kill')
      mark.watching = false
      const sample = {
        close: mark.closeAt - killedAt,
        open: mark.openAt - killedAt,
        ack: mark.firstAckAt - killedAt,
        delay: mark.delay ?? Number.NaN,
      }
      samples.push(sample)
      log(`kill ${k}/${kills}: flowing again after ${sample.ack.toFixed(0)} ms (retry delay ${sample.delay.toFixed(0)} ms)`)
      nodes[holder] = await startNode(config(holder, ports[holder]))
      await nodes[holder].call('mode', 'echo')
    }

    // Every send() settles, and every echo arrives.
    streaming = false
    await until(() => inFlight === 0, 'settling of the last sends')
    await until(() => client.echoes >= client.acked, 'last echoes', 10_000).catch(() => {})
    const nodeErrors = (await Promise.all(nodes.map((node) => node.call('stats')))).flatMap((stats) => stats.errors)
    await sock.close()
    sock = undefined
    const check = verify(dir, client)
    return { samples, client, check, nodeErrors }
  } finally {
    await sock?.close()
    for (const node of nodes) await node.close()
    await proxy?.stop()
    removeDir(dir)
  }
}

/**
 * What the nodes' logs say about exactly-once: every message handled, and a message handled
 * again only as a redelivery (flagged, same id). Lines are `time id n redelivered`, the time
 * from the monotonic clock every process shares, so the logs merge in the order of handling.
 */
function verify(dir, client) {
  const lines = []
  for (const file of ['node0.log', 'node1.log']) {
    let text = ''
    try {
      text = readFileSync(join(dir, file), 'utf8')
    } catch {
      continue // that node handled nothing
    }
    for (const line of text.split('\n')) if (line) lines.push(line.split(' '))
  }
  lines.sort((a, b) => (BigInt(a[0]) < BigInt(b[0]) ? -1 : 1))
  const seen = new Map()
  const check = { handled: 0, duplicates: 0, unflagged: 0, idChanged: 0, missing: 0, sessions: 0 }
  const sids = new Set()
  for (const [, id, n, redelivered] of lines) {
    sids.add(id.slice(0, id.lastIndexOf(':')))
    const before = seen.get(n)
    if (before === undefined) {
      seen.set(n, id)
      continue
    }
    check.duplicates++
    if (redelivered !== '1') check.unflagged++
    if (before !== id) check.idChanged++
  }
  check.handled = seen.size
  check.sessions = sids.size
  for (let n = 1; n <= client.sent; n++) if (!seen.has(String(n))) check.missing++
  return check
}
