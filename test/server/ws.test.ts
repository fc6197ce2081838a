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
import { attachConnection, type ConnectionHooks, PRE_HELLO_MAX } from '../../src/server/ws.js'

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

const heldItemsOf = (session: Session) => (session as unknown as { admission: { heldItems: number } }).admission.heldItems

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

  it('acks that move the acknowledged sequence forward cost nothing: a client that receives more frames than its rate is never slowed for acknowledging them', async () => {
    const t = await serverWith({ rateLimit: { rate: 100, burst: 100 } })
    const c = connect(t)
    // 200 frames a second for 30 s, each acknowledged at once, as a browser does.
    for (let i = 1; i <= 6000; i++) {
      void c.session.send(i)
      await vi.advanceTimersByTimeAsync(5)
      c.feed(`{"t":"ack","s":${i}}`)
      if (i % 1000 === 0) c.feed('{"t":"ping"}') // its own work goes through at once
    }
    await vi.advanceTimersByTimeAsync(0)
    expect(c.closes).toEqual([])
    expect(heldItemsOf(c.session)).toBe(0)
    expect(c.sent.filter((frame) => frame === '{"t":"pong"}')).toHaveLength(6)
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

describe('the decoding budget (rateLimit.bytesPerSecond)', () => {
  /** A `msg` frame of one message, `s`, padded to `bytes` (decoding cost goes with size). */
  const bigFrame = (s: number, bytes: number) => {
    const head = `{"t":"msg","s":${s},"d":[${s}]}`
    return head + ' '.repeat(bytes - head.length)
  }

  it('decodes a stream of big one-message frames at the byte rate, in order, nothing lost; acks and pings keep their place', async () => {
    const rateLimit = { rate: 1000, burst: 10_000, bytesPerSecond: 100_000, burstBytes: 200_000 }
    const t = await serverWith({ rateLimit, maxPayload: 100_000 })
    const delivered: unknown[] = []
    t.server.on('message', (data) => delivered.push(data))
    const c = connect(t)
    const sent = c.session.send('to the client')
    await vi.advanceTimersByTimeAsync(0)
    const parse = vi.spyOn(JSON, 'parse')
    // 20 frames of 50 kB, one message each: well within the message rate, 1 MB of decoding.
    for (let s = 1; s <= 10; s++) c.feed(bigFrame(s, 50_000))
    c.feed('{"t":"ping"}')
    for (let s = 11; s <= 20; s++) c.feed(bigFrame(s, 50_000))
    // The burst (200 kB) was decoded at once; the rest waits undecoded.
    expect(delivered).toEqual([1, 2, 3, 4])
    expect(parse.mock.calls.filter(([text]) => String(text).length > 64)).toHaveLength(4)
    // An ack behind the held frames is applied at once.
    c.feed('{"t":"ack","s":1}')
    await expect(sent).resolves.toBeUndefined()
    // Then 100 kB a second: two frames.
    await vi.advanceTimersByTimeAsync(1000)
    expect(delivered).toEqual([1, 2, 3, 4, 5, 6])
    await vi.advanceTimersByTimeAsync(1000)
    expect(delivered).toHaveLength(8)
    expect(c.sent).not.toContain('{"t":"pong"}')
    // The ping's turn comes right after frame 10 (it costs a token, and none of the byte budget).
    await vi.advanceTimersByTimeAsync(1000)
    expect(delivered).toHaveLength(10)
    expect(c.sent.filter((frame) => frame === '{"t":"pong"}')).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(5000)
    expect(delivered).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
    expect(parse.mock.calls.filter(([text]) => String(text).length > 64)).toHaveLength(20)
    expect(c.sent.at(-1)).toBe('{"t":"ack","s":20}')
    expect(c.closes).toEqual([])
  })

  it('takes no tokens for work behind a frame waiting for its bytes: the message rate is not spent while the byte budget holds', async () => {
    const rateLimit = { rate: 10, burst: 10, bytesPerSecond: 100_000, burstBytes: 100_000 }
    const t = await serverWith({ rateLimit, maxPayload: 100_000 })
    const delivered: unknown[] = []
    t.server.on('message', (data) => delivered.push(data))
    const c = connect(t)
    c.feed(bigFrame(1, 100_000))
    c.feed(bigFrame(2, 100_000))
    // Eight frames of 70 bytes (decoded in their turn): each waits 0.7 ms for its bytes, and takes one token.
    for (let s = 3; s <= 10; s++) c.feed(bigFrame(s, 70))
    expect(delivered).toEqual([1])
    await vi.advanceTimersByTimeAsync(1000)
    expect(delivered).toEqual([1, 2])
    await vi.advanceTimersByTimeAsync(20)
    expect(delivered).toEqual(Array.from({ length: 10 }, (_, i) => i + 1))
    expect(c.closes).toEqual([])
  })

  it('at the defaults: ordinary traffic is delivered at once, while 1 MiB frames beyond 4 MiB wait for 2 MiB a second', async () => {
    const t = await serverWith({})
    const delivered: unknown[] = []
    t.server.on('message', (data) => delivered.push(data))
    const c = connect(t)
    // A reconnecting client's backlog: 1,000 messages of 200 bytes, in frames of one.
    const ordinary = Array.from({ length: 1000 }, (_, i) => `${i}`.padStart(200, '.'))
    for (const [i, d] of ordinary.entries()) c.feed(`{"t":"msg","s":${i + 1},"d":["${d}"]}`)
    expect(delivered).toEqual(ordinary)
    delivered.length = 0
    // They cost 230 kB of the byte budget: refilled within a second.
    await vi.advanceTimersByTimeAsync(1000)
    // Six frames of just under 1 MiB, one message each: four are decoded at once (the burst), two wait.
    for (let s = 1001; s <= 1006; s++) c.feed(bigFrame(s, 1024 * 1024 - 16))
    expect(delivered).toEqual([1001, 1002, 1003, 1004])
    await vi.advanceTimersByTimeAsync(499)
    expect(delivered).toEqual([1001, 1002, 1003, 1004])
    await vi.advanceTimersByTimeAsync(1)
    expect(delivered).toEqual([1001, 1002, 1003, 1004, 1005])
    await vi.advanceTimersByTimeAsync(500)
    expect(delivered).toEqual([1001, 1002, 1003, 1004, 1005, 1006])
    expect(c.closes).toEqual([])
  })

  it('refuses (1013) frames the byte budget cannot decode within 10 s, once the held ones are delivered', async () => {
    const rateLimit = { rate: 1000, burst: 10_000, bytesPerSecond: 10_000, burstBytes: 100_000 }
    const t = await serverWith({ rateLimit, maxPayload: 100_000 })
    const delivered: unknown[] = []
    t.server.on('message', (data) => delivered.push(data))
    const c = connect(t)
    // 100 kB at once, then 10 s of 10 kB a second: four frames of 50 kB; the fifth is refused.
    for (let s = 1; s <= 6; s++) c.feed(bigFrame(s, 50_000))
    expect(delivered).toEqual([1, 2])
    await vi.advanceTimersByTimeAsync(5000)
    expect(delivered).toEqual([1, 2, 3])
    expect(c.closes).toEqual([])
    await vi.advanceTimersByTimeAsync(5000)
    expect(delivered).toEqual([1, 2, 3, 4])
    expect(c.closes).toEqual([{ code: 1013, reason: 'rate limit exceeded; slow down and resume' }])
    // What was delivered was acknowledged before the close: the client resends 5 and 6 on resume.
    expect(c.sent.filter((frame) => frame.startsWith('{"t":"ack"')).at(-1)).toBe('{"t":"ack","s":4}')
  })

  it('stops reading once maxHeldBytes of frames wait for the byte budget, and reads again under half of it', async () => {
    const rateLimit = { rate: 1000, burst: 10_000, bytesPerSecond: 200_000, burstBytes: 200_000 }
    const t = await serverWith({ rateLimit, maxPayload: 100_000 })
    const c = connect(t)
    const isPaused = () => (c.ws as unknown as { isPaused: boolean }).isPaused
    // maxHeldBytes is 1 MiB: two frames are decoded at once, ten more are held (1,000,000 bytes) ...
    for (let s = 1; s <= 12; s++) c.feed(bigFrame(s, 100_000))
    expect(isPaused()).toBe(false)
    // ... one more reaches it.
    c.feed(bigFrame(13, 100_000))
    expect(isPaused()).toBe(true)
    // Two frames a second are decoded: 600 kB still held after 2.5 s, 500 kB (under half) after 3 s.
    await vi.advanceTimersByTimeAsync(2500)
    expect(isPaused()).toBe(true)
    await vi.advanceTimersByTimeAsync(500)
    expect(isPaused()).toBe(false)
    await vi.advanceTimersByTimeAsync(2500)
    expect(c.sent.at(-1)).toBe('{"t":"ack","s":13}')
    expect(c.closes).toEqual([])
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

describe('before the hello', () => {
  it('a frame bigger than PRE_HELLO_MAX is refused with 1002 without being decoded: there is no rate limit yet', async () => {
    const t = await serverWith({})
    const c = fakeSocket()
    attachConnection(c.ws, undefined, t.hooks)
    const parse = vi.spyOn(JSON, 'parse')
    c.feed(`{"t":"future","p":"${'y'.repeat(PRE_HELLO_MAX)}"}`)
    expect(parse).not.toHaveBeenCalled()
    expect(c.closes.map((close) => close.code)).toEqual([1002])
  })

  it('a small frame of an unknown type is still ignored, and the hello that follows is served', async () => {
    const t = await serverWith({})
    const c = fakeSocket()
    attachConnection(c.ws, undefined, t.hooks)
    c.feed('{"t":"future","x":1}')
    c.feed('{"t":"hello","sid":null,"ack":0}')
    expect(c.closes).toEqual([])
    expect(t.server.sessions.size).toBe(1)
  })

  it('a hello that arrives once the server is closing the connection (server.close()) makes no session', async () => {
    const t = await serverWith({})
    const c = fakeSocket()
    attachConnection(c.ws, undefined, t.hooks)
    const events: string[] = []
    t.server.on('session', () => events.push('session'))
    c.ws.close(1001, 'server shutting down') // what server.close() does to a connection before its hello
    c.feed('{"t":"hello","sid":null,"ack":0}')
    expect(events).toEqual([])
    expect(t.server.sessions.size).toBe(0)
  })
})
