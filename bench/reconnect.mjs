// Reconnection: the server goes down (connections cut, as in a crash), the client queues
// 1,000 messages while it retries, the server comes back on the same port. Measured from the
// start of the connection attempt that succeeds: until the client reports itself open again
// (its own open/connect event, timed inside the listener), and until the server has all
// 1,000 queued messages. Every client retries every 50 ms without jitter, so the wait for the
// next retry is alike for all and is reported apart ("server up → open").
import { connected, message, once, party, reconnecting, shut, socketio, tether, url, WebSocket } from './clients.mjs'
import { interleave, metric, now, ratio, sleep, spread, summarize, table } from './harness.mjs'

export const QUEUED = 1_000
const RETRY = 50

/** A `ws` WebSocket that notes when each connection attempt starts. */
function timedWebSocket(timing) {
  return class TimedWebSocket extends WebSocket {
    constructor(...args) {
      timing.attempt = now()
      super(...args)
    }
  }
}

const json = (i) => JSON.stringify(message(i))
const fixedRetry = { minReconnectionDelay: RETRY, maxReconnectionDelay: RETRY, reconnectionDelayGrowFactor: 1 }

const libraries = [
  {
    name: 'tethersocket, tether mode',
    kind: 'tether',
    create: (target, timing) =>
      tether(target, { WebSocket: timedWebSocket(timing), reconnect: { minDelay: RETRY, maxDelay: RETRY, factor: 1, jitter: 0 } }),
    send: (sock, i) => sock.send(message(i)),
  },
  {
    name: 'tethersocket, raw mode',
    kind: 'count',
    create: (target, timing) =>
      tether(target, {
        mode: 'raw',
        WebSocket: timedWebSocket(timing),
        reconnect: { minDelay: RETRY, maxDelay: RETRY, factor: 1, jitter: 0 },
      }),
    send: (sock, i) => sock.send(message(i)),
  },
  {
    name: 'reconnecting-websocket',
    kind: 'count',
    create: (target, timing) => reconnecting(target, { WebSocket: timedWebSocket(timing), ...fixedRetry }),
    send: (rws, i) => rws.send(json(i)),
  },
  {
    name: 'partysocket',
    kind: 'count',
    create: (target, timing) => party(target, { WebSocket: timedWebSocket(timing), ...fixedRetry }),
    send: (ps, i) => ps.send(json(i)),
  },
  {
    name: 'socket.io-client',
    kind: 'socketio',
    create: (target, timing) => {
      const socket = socketio(target, { reconnectionDelay: RETRY, reconnectionDelayMax: RETRY, randomizationFactor: 0 })
      // Its engine takes no WebSocket class; the manager announces every attempt instead.
      socket.io.on('reconnect_attempt', () => {
        timing.attempt = now()
      })
      return socket
    },
    send: (socket, i) => socket.emit('msg', message(i)),
  },
]

export async function run({ servers, rounds, log, select }) {
  const ports = {}
  const listen = async (kind) => {
    ports[kind] = await servers.start(kind, ports[kind] ?? 0)
    return url(ports[kind])
  }

  // The floor: a fresh `ws` connection to a running server, then 1,000 sends.
  const floor = {
    name: 'raw ws (new connection, then sends)',
    async run() {
      const target = await listen('count')
      await servers.arm(QUEUED)
      const received = servers.wait()
      const attempt = now()
      const ws = new WebSocket(target)
      const opened = await once(ws, 'open', now)
      for (let i = 0; i < QUEUED; i++) ws.send(json(i))
      await received
      const delivered = now()
      ws.close()
      await servers.stop('count')
      return { open: opened - attempt, deliver: delivered - attempt, fromUp: Number.NaN }
    },
  }

  const contenders = select([floor, ...libraries.map(comeback)])
  function comeback(library) {
    const socketIo = library.kind === 'socketio'
    return {
      name: library.name,
      async run() {
        const timing = { attempt: 0 }
        const client = await connected(library.create(await listen(library.kind), timing))
        const lost = once(client, socketIo ? 'disconnect' : 'close')
        await servers.stop(library.kind)
        await lost
        for (let i = 0; i < QUEUED; i++) library.send(client, i)
        // A few refused attempts while the server is down; the random part puts the server's
        // return at a random point of the retry interval (a fixed sleep would phase-lock it).
        await sleep(3 * RETRY + Math.random() * RETRY)
        await servers.arm(QUEUED)
        const received = servers.wait()
        const reopened = once(client, socketIo ? 'connect' : 'open', now)
        await listen(library.kind)
        const up = now()
        const opened = await reopened
        await received
        const delivered = now()
        await shut(client)
        await servers.stop(library.kind)
        return { open: opened - timing.attempt, deliver: delivered - timing.attempt, fromUp: opened - up }
      },
    }
  }

  const samples = await interleave(contenders, { rounds, log })
  const base = summarize(metric(samples[floor.name], 'open'))
  const baseDeliver = summarize(metric(samples[floor.name], 'deliver'))
  const results = contenders.map(({ name }) => {
    const open = summarize(metric(samples[name], 'open'))
    const deliver = summarize(metric(samples[name], 'deliver'))
    const fromUp = summarize(metric(samples[name], 'fromUp'))
    return { name, open, deliver, fromUp, openRatio: open.median / base.median, deliverRatio: deliver.median / baseDeliver.median }
  })
  const markdown = table(
    [
      'client',
      'attempt → open, ms',
      'vs raw ws',
      `attempt → ${QUEUED.toLocaleString('en')} delivered, ms`,
      'vs raw ws',
      'server up → open, ms',
    ],
    results.map((r) => [
      r.name,
      spread(r.open, 2),
      ratio(r.openRatio),
      spread(r.deliver, 1),
      ratio(r.deliverRatio),
      Number.isNaN(r.fromUp.median) ? '—' : spread(r.fromUp, 1),
    ]),
  )
  return {
    title: `Reconnect after the server comes back, ${QUEUED.toLocaleString('en')} messages queued`,
    markdown,
    notes:
      'Median (min–max). Lower is better; ratios are to a fresh raw ws connection. "open" is each library\'s own event: reconnecting-websocket, partysocket and socket.io-client write their whole backlog before they emit it; tethersocket emits `open` first (in tether mode after the hello/welcome round trip) and writes the backlog right after. "server up → open" includes the wait for the next retry (every client retries every 50 ms here): about 25 ms on average plus the handshake.',
    results,
  }
}
