// @vitest-environment node
/**
 * The `ws` adapter (src/server/ws.ts) on a fake socket, wired to a real server's hooks, on fake
 * time: every frame counts against the rate limit before it is decoded (acks and frames of
 * unknown types included), frames held over the limit are decoded only in their turn, and a
 * connection that never says hello is closed after `helloTimeout`.
 */
import { EventEmitter } from 'node:events'
import { createServer } from 'node:http'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { WebSocket } from 'ws'
import { createTetherServer, type Session, type TetherServer, type TetherServerOptions } from '../../src/server/index.js'
import { attachConnection, type ConnectionHooks } from '../../src/server/ws.js'

let servers: TetherServer[] = []

beforeEach(() => {
  // The bucket's clock is performance.now(): fake too.
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] })
})

afterEach(async () => {
  vi.useRealTimers()
  await Promise.all(servers.map((server) => server.close()))
  servers = []
  vi.restoreAllMocks()
})

/** A server attached to an HTTP server that never listens: real hooks, no network. */
async function serverWith(options: TetherServerOptions) {
  const server = await createTetherServer({ server: createServer(), heartbeatInterval: 0, ...options })
  servers.push(server)
  return { server, hooks: (server as unknown as { hooks: ConnectionHooks }).hooks }
}

/** A fake `ws` socket: records what is sent and how it was closed. */
function fakeSocket() {
  const emitter = new EventEmitter()
  const sent: string[] = []
  const closes: { code: number; reason: string }[] = []
  const ws = Object.assign(emitter, {
    protocol: 'tether.v1',
    readyState: 1,
    isPaused: false,
    send: (frame: string) => sent.push(frame),
    close: (code: number, reason: string) => {
      closes.push({ code, reason })
      ws.readyState = 2
    },
    terminate: () => {},
    pause: () => {
      ws.isPaused = true
    },
    resume: () => {
      ws.isPaused = false
    },
  })
  const feed = (text: string) => emitter.emit('message', Buffer.from(text), false)
  return { ws: ws as unknown as WebSocket, emitter, sent, closes, feed }
}

/** Opens a connection and says hello; returns the socket and the new session. */
function connect(target: { server: TetherServer; hooks: ConnectionHooks }) {
  const fake = fakeSocket()
  attachConnection(fake.ws, undefined, target.hooks)
  let session: Session | undefined
  target.server.once('session', (s) => {
    session = s
  })
  fake.feed('{"t":"hello","sid":null,"ack":0}')
  expect(session).toBeDefined()
  return { ...fake, session: session! }
}

const heldItemsOf = (session: Session) => (session as unknown as { heldItems: number }).heldItems

describe('every frame counts against the rate limit', () => {
  it('an ack flood is held to the rate and, beyond 10 s of it, refused (1013); the acks themselves are applied at once', async () => {
    const rate = 10
    const burst = 5
    const t = await serverWith({ rateLimit: { rate, burst } })
    const c = connect(t)
    const sends = [c.session.send('a'), c.session.send('b')]
    await vi.advanceTimersByTimeAsync(0)
    c.feed('{"t":"ack","s":2}')
    await expect(Promise.all(sends)).resolves.toBeDefined()
    // The burst, then 10 s of the rate are taken; the rest of a long flood is refused.
    for (let i = 0; i < 10_000; i++) c.feed('{"t":"ack","s":2}')
    expect(heldItemsOf(c.session)).toBe((rate * 10_000) / 1000)
    expect(c.closes).toEqual([])
    await vi.advanceTimersByTimeAsync(10_000)
    expect(c.closes).toEqual([{ code: 1013, reason: 'rate limit exceeded; slow down and resume' }])
  })

  it('frames of unknown types count too', async () => {
    const t = await serverWith({ rateLimit: { rate: 10, burst: 5 } })
    const c = connect(t)
    for (let i = 0; i < 1000; i++) c.feed('{"t":"future","x":1}')
    expect(heldItemsOf(c.session)).toBe(100)
    await vi.advanceTimersByTimeAsync(10_000)
    expect(c.closes.map((close) => close.code)).toEqual([1013])
  })

  it('a message flood is decoded no faster than the rate: frames held over the limit are decoded in their turn', async () => {
    const t = await serverWith({ rateLimit: { rate: 10, burst: 2 } })
    const delivered: unknown[] = []
    t.server.on('message', (data) => delivered.push(data))
    const c = connect(t)
    const parse = vi.spyOn(JSON, 'parse')
    const pad = ' '.repeat(1000)
    for (let s = 1; s <= 50; s++) c.feed(`{"t":"msg","s":${s},"d":[${s}]}${pad}`)
    // The burst was decoded and delivered; the rest waits undecoded.
    expect(parse).toHaveBeenCalledTimes(2)
    expect(delivered).toEqual([1, 2])
    await vi.advanceTimersByTimeAsync(1000)
    expect(delivered).toHaveLength(12)
    expect(parse.mock.calls.length).toBeLessThanOrEqual(13)
    await vi.advanceTimersByTimeAsync(5000)
    expect(delivered).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
    expect(c.closes).toEqual([])
  })

  it('a bad frame held over the limit closes when its turn comes, after the work before it', async () => {
    const t = await serverWith({ rateLimit: { rate: 10, burst: 1 } })
    const delivered: unknown[] = []
    t.server.on('message', (data) => delivered.push(data))
    const c = connect(t)
    c.feed('{"t":"msg","s":1,"d":[1,2,3]}')
    c.feed(`{"t":"msg","s":4,"d":[4]} not JSON ${'x'.repeat(100)}`)
    expect(c.closes).toEqual([])
    await vi.advanceTimersByTimeAsync(1000)
    expect(delivered).toEqual([1, 2, 3])
    expect(c.closes).toEqual([{ code: 1007, reason: 'frame is not valid JSON' }])
  })
})

describe('refusing', () => {
  it('stops reading from a client that floods on after its work was refused, once maxHeldBytes of frames were ignored', async () => {
    const t = await serverWith({ rateLimit: { rate: 10, burst: 1 }, maxPayload: 256 * 1024 })
    const c = connect(t)
    // More than 10 s of work: the rest is refused, and 1013 follows once the held work is delivered.
    c.feed(`{"t":"msg","s":1,"d":[${Array.from({ length: 200 }, (_, i) => i).join(',')}]}`)
    expect(heldItemsOf(c.session)).toBe(100)
    const big = (s: number) => `{"t":"msg","s":${s},"d":[0]}${' '.repeat(250 * 1024)}`
    // maxHeldBytes is 1 MiB: four such frames are ignored and reading goes on (acks are still read) ...
    for (let s = 102; s < 106; s++) c.feed(big(s))
    expect((c.ws as unknown as { isPaused: boolean }).isPaused).toBe(false)
    // ... the fifth stops it.
    c.feed(big(106))
    expect((c.ws as unknown as { isPaused: boolean }).isPaused).toBe(true)
    await vi.advanceTimersByTimeAsync(10_000)
    expect(c.closes.map((close) => close.code)).toEqual([1013])
    // Resumed for the close handshake.
    expect((c.ws as unknown as { isPaused: boolean }).isPaused).toBe(false)
  })
})

describe('the hello deadline', () => {
  it('closes a connection that has not said hello within helloTimeout (1002), frames of unknown types notwithstanding', async () => {
    const t = await serverWith({ helloTimeout: 3000 })
    const c = fakeSocket()
    attachConnection(c.ws, undefined, t.hooks)
    await vi.advanceTimersByTimeAsync(1000)
    c.feed('{"t":"future"}')
    await vi.advanceTimersByTimeAsync(1999)
    expect(c.closes).toEqual([])
    await vi.advanceTimersByTimeAsync(1)
    expect(c.closes).toEqual([{ code: 1002, reason: 'no "hello" within 3000 ms' }])
    expect(t.server.sessions.size).toBe(0)
  })

  it('leaves a connection that said hello in time alone, and clears its timer', async () => {
    const t = await serverWith({ helloTimeout: 3000 })
    const c = fakeSocket()
    attachConnection(c.ws, undefined, t.hooks)
    await vi.advanceTimersByTimeAsync(2999)
    c.feed('{"t":"hello","sid":null,"ack":0}')
    expect(vi.getTimerCount()).toBe(0)
    await vi.advanceTimersByTimeAsync(60_000)
    expect(c.closes).toEqual([])
  })

  it('defaults to 5 s, and refuses a helloTimeout that is not a positive number of ms', async () => {
    const t = await serverWith({})
    const c = fakeSocket()
    attachConnection(c.ws, undefined, t.hooks)
    await vi.advanceTimersByTimeAsync(5000)
    expect(c.closes.map((close) => close.code)).toEqual([1002])
    for (const helloTimeout of [0, -1, Number.NaN, 2 ** 31]) {
      await expect(createTetherServer({ server: createServer(), helloTimeout })).rejects.toThrow(/helloTimeout/)
    }
  })
})
