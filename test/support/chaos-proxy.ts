/**
 * A fault-injecting TCP proxy on 127.0.0.1, for the chaos test and the soak (scripts/soak.mjs).
 * It sits between a client and a server and, at seeded-random moments, does what networks do:
 *
 * - `kill`: destroys a connection, both sides at once;
 * - `stall`: stops forwarding on a connection in both directions without closing it (half-open:
 *   only a heartbeat can tell), then after a while forwards again or destroys it;
 * - `split`: forwards a chunk in small pieces, each after a small random delay, order kept
 *   (WebSocket frames and even their headers arrive cut up and late);
 * - `refuse`: for a while turns new connections away, either accepting and destroying them at
 *   once, or not listening at all (the client sees ECONNREFUSED).
 *
 * Every decision comes from one seeded PRNG, and the seed is reported, so a failing run's fault
 * pattern can be replayed (`CHAOS_SEED`); the timing of the event loop is not replayed.
 * `counts` says how many faults of each kind were injected. `close()` destroys every socket.
 *
 * This file imports only Node built-ins: scripts/soak.mjs loads it without a TypeScript runner.
 */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net'

/** The kinds of fault the proxy injects. */
export type FaultKind = 'kill' | 'stall' | 'split' | 'refuse'

/** Which faults to inject, and how often. A kind left out is off. */
export interface ChaosFaults {
  /** Destroy a random open connection that is not stalled (both sides): on average `rate` per second. */
  kill?: { rate: number }
  /**
   * Stop forwarding on a random open connection, both ways, sockets kept open: on average `rate`
   * per second, each stall lasting `minMs`–`maxMs`. Afterwards the connection is destroyed with
   * probability `thenKill` (default 0.5), otherwise it forwards again (the stale data flows on).
   */
  stall?: { rate: number; minMs: number; maxMs: number; thenKill?: number }
  /**
   * Forward this share (0–1) of the chunks read in pieces: 2–`maxPieces` pieces cut at random
   * (sometimes within the first bytes, splitting frame headers), each piece held 0–`maxDelayMs`.
   */
  split?: { share: number; maxPieces: number; maxDelayMs: number }
  /**
   * Turn new connections away for `minMs`–`maxMs`, on average `rate` times per second: with
   * probability `unlisten` (default 0.5) by closing the listener (ECONNREFUSED), otherwise by
   * accepting and destroying each new connection at once.
   */
  refuse?: { rate: number; minMs: number; maxMs: number; unlisten?: number }
}

/** Faults injected so far, by kind; `refused` counts connections turned away while accepting-and-destroying. */
export interface FaultCounts {
  /** Connections destroyed by the `kill` fault. */
  kill: number
  /** Connections stalled. */
  stall: number
  /** Chunks forwarded in pieces. */
  split: number
  /** Refusal windows. */
  refuse: number
  /** Connections accepted and destroyed during refusal windows (ECONNREFUSED ones are not seen). */
  refused: number
}

export interface ChaosProxyOptions {
  /** The port on 127.0.0.1 to forward to. */
  target: number
  /** PRNG seed (32-bit integer). Default: `seedFromEnv()`. */
  seed?: number
  /** Faults active from the start. Default: none (a plain proxy until `setFaults`). */
  faults?: ChaosFaults
  /** How often the fault scheduler runs, in ms. Default 10. */
  tickMs?: number
}

export interface ChaosProxy {
  readonly port: number
  readonly seed: number
  /** Faults injected so far (a snapshot). */
  readonly counts: FaultCounts
  /** Client connections accepted (refused ones included). */
  readonly accepted: number
  /** Connections open now. */
  readonly open: number
  /** Replaces the active faults. */
  setFaults(faults: ChaosFaults): void
  /** Stops injecting: no new faults, stalled connections forward again, refusing ends; pieces already cut still go out in order. */
  calm(): void
  /** Stops forwarding on the connections open now, in one direction (`down`: server → client) or both; newer connections flow. */
  freeze(direction?: 'up' | 'down' | 'both'): void
  /** Forwards again on every frozen connection. */
  thaw(): void
  /** Destroys every open connection (not counted as faults). */
  cutAll(): void
  /** `kill=… stall=… split=… refuse=… (refused …)` */
  describe(): string
  /** Destroys every socket, stops listening and clears every timer. */
  close(): Promise<void>
}

/** mulberry32: a small, fast 32-bit PRNG; returns floats in [0, 1). */
export function makeRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `CHAOS_SEED` from the environment when set, else a fresh random seed. */
export function seedFromEnv(): number {
  const given = process.env.CHAOS_SEED
  if (given !== undefined && given !== '') {
    const seed = Number(given)
    if (!Number.isInteger(seed)) throw new Error(`CHAOS_SEED must be an integer; got ${JSON.stringify(given)}`)
    return seed >>> 0
  }
  return Math.floor(Math.random() * 4294967296) >>> 0
}

/** What a numbered stream (0 … expected−1) looked like on arrival. */
export interface DeliveryAudit {
  /** Numbers never received. */
  lost: number
  /** Receptions of a number already received. */
  duplicated: number
  /** First receptions of a number smaller than one received before it. */
  outOfOrder: number
}

/** Counts lost, duplicated and out-of-order receptions of the numbers 0 … expected−1. */
export function auditDelivery(received: readonly number[], expected: number): DeliveryAudit {
  const seen = new Set<number>()
  let duplicated = 0
  let outOfOrder = 0
  let highest = -1
  for (const n of received) {
    if (seen.has(n)) {
      duplicated++
      continue
    }
    seen.add(n)
    if (n < highest) outOfOrder++
    else highest = n
  }
  let lost = 0
  for (let n = 0; n < expected; n++) if (!seen.has(n)) lost++
  return { lost, duplicated, outOfOrder }
}

/** Pieces waiting longer than this make the proxy stop reading from their source. */
const HIGH_WATER = 256

/** One direction of one connection: reads `from`, writes `to`, in order, pieces and delays included. */
class Lane {
  private readonly queue: { data: Buffer; delay: number }[] = []
  private timer: ReturnType<typeof setTimeout> | undefined
  private blocked = false
  /** Frozen by `freeze()`; a stall holds both lanes through `conn.stalled`. */
  held = false

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly isStalled: () => boolean,
    private readonly cut: (chunk: Buffer) => { data: Buffer; delay: number }[] | undefined,
  ) {
    from.on('data', (chunk: Buffer) => {
      const pieces = this.cut(chunk)
      if (pieces) this.queue.push(...pieces)
      else this.queue.push({ data: chunk, delay: 0 })
      this.pump()
    })
    to.on('drain', () => {
      this.blocked = false
      this.pump()
    })
  }

  pump(): void {
    const stopped = () => this.held || this.isStalled() || this.to.destroyed
    while (!stopped() && !this.blocked && !this.timer && this.queue.length) {
      const head = this.queue[0]
      if (head.delay > 0) {
        const delay = head.delay
        head.delay = 0
        this.timer = setTimeout(() => {
          this.timer = undefined
          this.pump()
        }, delay)
        break
      }
      this.queue.shift()
      if (!this.to.write(head.data)) this.blocked = true
    }
    // Flow control: read only while forwarding and not far behind.
    if (stopped() || this.blocked || this.queue.length > HIGH_WATER) this.from.pause()
    else if (!this.from.destroyed) this.from.resume()
  }

  dispose(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.queue.length = 0
  }
}

interface Conn {
  client: Socket
  upstream: Socket
  up: Lane
  down: Lane
  stalled: boolean
  stallTimer: ReturnType<typeof setTimeout> | undefined
}

/** Starts a chaos proxy on 127.0.0.1 (a free port) forwarding to `127.0.0.1:target`. */
export async function startChaosProxy(options: ChaosProxyOptions): Promise<ChaosProxy> {
  const seed = (options.seed ?? seedFromEnv()) >>> 0
  const random = makeRandom(seed)
  const between = (min: number, max: number) => min + random() * (max - min)
  const pick = <T>(items: readonly T[]): T | undefined => (items.length ? items[Math.floor(random() * items.length)] : undefined)
  let faults: ChaosFaults = options.faults ?? {}
  const counts: FaultCounts = { kill: 0, stall: 0, split: 0, refuse: 0, refused: 0 }
  const conns = new Set<Conn>()
  const sockets = new Set<Socket>()
  let accepted = 0
  let closed = false
  /** End of the current refusal window (ms since epoch), 0 when accepting. */
  let refusingUntil = 0
  let refuseMode: 'reset' | 'unlisten' = 'reset'
  let refuseTimer: ReturnType<typeof setTimeout> | undefined
  let relistenTimer: ReturnType<typeof setTimeout> | undefined

  const track = (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => {}) // resets are the point here; 'close' follows
  }

  /** Splits a chunk into pieces with delays, or undefined to forward it whole. */
  const cut = (chunk: Buffer): { data: Buffer; delay: number }[] | undefined => {
    const split = faults.split
    if (!split || chunk.length < 2 || random() >= split.share) return undefined
    counts.split++
    const pieces = 2 + Math.floor(random() * Math.max(1, split.maxPieces - 1))
    const points = new Set<number>()
    // Often cut within the first bytes, so a frame header arrives in parts.
    if (random() < 0.3) points.add(1 + Math.floor(random() * Math.min(chunk.length - 1, 6)))
    while (points.size < Math.min(pieces - 1, chunk.length - 1)) points.add(1 + Math.floor(random() * (chunk.length - 1)))
    const sorted = [...points].sort((a, b) => a - b)
    const result: { data: Buffer; delay: number }[] = []
    let start = 0
    for (const end of [...sorted, chunk.length]) {
      result.push({ data: chunk.subarray(start, end), delay: random() < 0.5 ? 0 : Math.ceil(random() * split.maxDelayMs) })
      start = end
    }
    return result
  }

  const destroy = (conn: Conn) => {
    if (!conns.delete(conn)) return
    clearTimeout(conn.stallTimer)
    conn.up.dispose()
    conn.down.dispose()
    conn.client.destroy()
    conn.upstream.destroy()
  }

  const server: Server = createServer((client) => {
    accepted++
    track(client)
    if (closed || (refusingUntil && Date.now() < refusingUntil)) {
      if (!closed) counts.refused++
      client.destroy()
      return
    }
    const upstream = netConnect(options.target, '127.0.0.1')
    track(upstream)
    const conn: Conn = { client, upstream, stalled: false, stallTimer: undefined } as Conn
    conn.up = new Lane(client, upstream, () => conn.stalled, cut)
    conn.down = new Lane(upstream, client, () => conn.stalled, cut)
    // Nothing is read from the client until the upstream connection is there.
    client.pause()
    upstream.once('connect', () => conn.up.pump())
    conns.add(conn)
    client.once('close', () => destroy(conn))
    upstream.once('close', () => destroy(conn))
  })
  server.on('error', () => {}) // a failed re-listen is retried below

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => reject(error)
      server.once('error', onError)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', onError)
        resolve()
      })
    })
  await listen(0)
  const { port } = server.address() as { port: number }

  /** Listens again after an `unlisten` window; retried briefly if the port is momentarily taken. */
  const relisten = (attempt = 0) => {
    if (closed || server.listening) return
    listen(port).catch(() => {
      if (attempt < 200) relistenTimer = setTimeout(() => relisten(attempt + 1), 10)
    })
  }

  const endRefusal = () => {
    clearTimeout(refuseTimer)
    refuseTimer = undefined
    if (refusingUntil && refuseMode === 'unlisten') relisten()
    refusingUntil = 0
  }

  const unstall = (conn: Conn) => {
    clearTimeout(conn.stallTimer)
    conn.stallTimer = undefined
    if (!conn.stalled) return
    conn.stalled = false
    conn.up.pump()
    conn.down.pump()
  }

  const inject = {
    kill() {
      // A stalled connection is left for the client's heartbeat to find.
      const conn = pick([...conns].filter((c) => !c.stalled))
      if (!conn) return
      counts.kill++
      destroy(conn)
    },
    stall(spec: NonNullable<ChaosFaults['stall']>) {
      const conn = pick([...conns].filter((c) => !c.stalled))
      if (!conn) return
      counts.stall++
      conn.stalled = true
      conn.up.pump() // pauses both sockets
      conn.down.pump()
      conn.stallTimer = setTimeout(
        () => {
          conn.stallTimer = undefined
          if (random() < (spec.thenKill ?? 0.5)) destroy(conn)
          else unstall(conn)
        },
        between(spec.minMs, spec.maxMs),
      )
    },
    refuse(spec: NonNullable<ChaosFaults['refuse']>) {
      if (refusingUntil) return
      counts.refuse++
      const duration = between(spec.minMs, spec.maxMs)
      refusingUntil = Date.now() + duration
      refuseMode = random() < (spec.unlisten ?? 0.5) ? 'unlisten' : 'reset'
      if (refuseMode === 'unlisten') server.close() // existing connections stay
      refuseTimer = setTimeout(endRefusal, duration)
    },
  }

  // The scheduler: each rate-based fault fires with probability 1 − e^(−rate·Δt) per tick,
  // Δt measured, so a late tick does not lower the rates.
  let last = Date.now()
  const scheduler = setInterval(() => {
    const now = Date.now()
    const dt = (now - last) / 1000
    last = now
    const fires = (rate: number | undefined) => rate !== undefined && rate > 0 && random() < 1 - Math.exp(-rate * dt)
    if (fires(faults.kill?.rate)) inject.kill()
    if (faults.stall && fires(faults.stall.rate)) inject.stall(faults.stall)
    if (faults.refuse && fires(faults.refuse.rate)) inject.refuse(faults.refuse)
  }, options.tickMs ?? 10)
  scheduler.unref()

  const proxy: ChaosProxy = {
    port,
    seed,
    get counts() {
      return { ...counts }
    },
    get accepted() {
      return accepted
    },
    get open() {
      return conns.size
    },
    setFaults(next) {
      faults = next
    },
    calm() {
      faults = {}
      endRefusal()
      for (const conn of conns) unstall(conn)
    },
    freeze(direction = 'both') {
      for (const conn of conns) {
        if (direction !== 'down') conn.up.held = true
        if (direction !== 'up') conn.down.held = true
        conn.up.pump()
        conn.down.pump()
      }
    },
    thaw() {
      for (const conn of conns) {
        conn.up.held = conn.down.held = false
        conn.up.pump()
        conn.down.pump()
      }
    },
    cutAll() {
      for (const conn of [...conns]) destroy(conn)
    },
    describe() {
      return `kill=${counts.kill} stall=${counts.stall} split=${counts.split} refuse=${counts.refuse} (refused ${counts.refused} connections)`
    },
    close() {
      if (closed) return Promise.resolve()
      closed = true
      faults = {}
      clearInterval(scheduler)
      clearTimeout(refuseTimer)
      clearTimeout(relistenTimer)
      for (const conn of [...conns]) destroy(conn)
      for (const socket of sockets) socket.destroy()
      if (!server.listening) return Promise.resolve()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return proxy
}
