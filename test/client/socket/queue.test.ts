import { describe, expect, it } from 'vitest'
import { AbortError, EncodeError, OptionError, QueueFullError, TetherError, TimeoutError } from '../../../src/index.js'
import { collect, createServer, flush, rawSocket, rejection, settled, uniqueUrl, useMockEnvironment } from '../../support/mock.js'

useMockEnvironment()

describe('queueing while not open', () => {
  it('holds messages sent before the first open and writes them in order on open', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false })
    const sends = ['a', 'b', 'c'].map((m) => sock.send(m))
    await flush(60_000)
    expect(server.received).toEqual([])
    expect(sock.pending).toBe(3)
    sock.connect()
    await flush()
    expect(server.received).toEqual(['a', 'b', 'c'])
    await Promise.all(sends)
    expect(sock.pending).toBe(0)
  })

  it('writes the backlog before anything sent after open, including sends from an open listener', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url)
    sock.send('queued-1')
    sock.send('queued-2')
    sock.on('open', () => {
      sock.send('from-open-listener')
    })
    await flush()
    sock.send('after-open')
    await flush()
    expect(server.received).toEqual(['queued-1', 'queued-2', 'from-open-listener', 'after-open'])
  })

  it('queues sends made while reconnecting and writes them, in order, on the next connection', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { reconnect: { jitter: 0, minDelay: 1000 } })
    await flush()
    sock.send('first')
    await flush()
    server.connections[0]!.close({ code: 1001, reason: '', wasClean: true })
    await flush()
    expect(sock.state).toBe('reconnecting')
    const later = [sock.send('second'), sock.send('third')]
    await flush(500)
    expect(sock.pending).toBe(2)
    expect(await settled(Promise.all(later))).toBe(false)
    await flush(600)
    expect(sock.state).toBe('open')
    await Promise.all(later)
    expect(server.received).toEqual(['first', 'second', 'third'])
    expect(server.connections[1]).toBeDefined()
  })

  it('counts queued messages in pending and in stats.queued', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { autoConnect: false })
    expect(sock.pending).toBe(0)
    sock.send('x')
    sock.send('y')
    expect(sock.pending).toBe(2)
    expect(sock.stats.queued).toBe(2)
    expect(sock.stats.pending).toBe(2)
    sock.connect()
    await flush()
    expect(sock.pending).toBe(0)
    expect(sock.stats.queued).toBe(0)
  })
})

describe('send() in raw mode', () => {
  it('resolves once the message is handed to the open socket, not before', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { autoConnect: false })
    const sent = sock.send('hello')
    expect(await settled(sent)).toBe(false)
    sock.connect()
    await flush()
    expect(await settled(sent)).toBe(true)
    await expect(sent).resolves.toBeUndefined()
    expect(server.received).toEqual(['hello'])
  })

  it('writes at once when open', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    await expect(sock.send('now')).resolves.toBeUndefined()
    await flush()
    expect(server.received).toEqual(['now'])
  })

  it('sends strings as they are, and other values as JSON', async () => {
    const server = createServer()
    const sock = rawSocket<unknown, unknown>(server.url)
    await flush()
    await sock.send('plain')
    await sock.send({ type: 'chat', text: 'hi' })
    await sock.send([1, 2])
    await flush()
    expect(server.received).toEqual(['plain', '{"type":"chat","text":"hi"}', '[1,2]'])
  })

  it('rejects with an EncodeError, the thrown error as cause, when options.serialize throws', async () => {
    const server = createServer()
    const failure = new Error('no')
    const sock = rawSocket<unknown, unknown>(server.url, {
      autoConnect: false,
      serialize: () => {
        throw failure
      },
    })
    const error = await rejection(sock.send('x'))
    expect(error).toBeInstanceOf(EncodeError)
    expect(error).toMatchObject({ code: 'ERR_ENCODE', data: 'x', cause: failure })
    expect((error as EncodeError).message).toContain('could not encode the message: no')
    expect(sock.pending).toBe(0)
  })

  it('a message that cannot be encoded is refused for that, before its per-call options are checked', async () => {
    const server = createServer()
    const sock = rawSocket<unknown, unknown>(server.url, { autoConnect: false })
    const errors = collect<[TetherError]>(sock, 'error')
    const error = await rejection(sock.send(10n, { timeout: -1 }))
    expect(error).toBeInstanceOf(EncodeError)
    expect(errors.map(([e]) => e)).toEqual([error])
    expect(sock.pending).toBe(0)
  })

  it('rejects with an EncodeError when options.serialize returns neither a string nor binary', async () => {
    const server = createServer()
    const sock = rawSocket<unknown, unknown>(server.url, { autoConnect: false, serialize: () => 42 as never })
    const error = await rejection(sock.send({ n: 1 }))
    expect(error).toBeInstanceOf(EncodeError)
    expect(error).toMatchObject({ name: 'EncodeError', code: 'ERR_ENCODE', data: { n: 1 } })
  })

  it('uses options.serialize when given', async () => {
    const server = createServer()
    const sock = rawSocket<unknown, { n: number }>(server.url, { serialize: (m) => `n=${m.n}` })
    await flush()
    await sock.send({ n: 7 })
    await flush()
    expect(server.received).toEqual(['n=7'])
  })

  it('rejects a message that cannot be encoded at once (ERR_ENCODE), without queueing it', async () => {
    const server = createServer()
    const sock = rawSocket<unknown, unknown>(server.url, { autoConnect: false })
    const errors = collect<[TetherError]>(sock, 'error')
    const error = await rejection(sock.send(10n))
    expect(error).toBeInstanceOf(EncodeError)
    expect(error).toBeInstanceOf(TetherError)
    expect((error as TetherError).code).toBe('ERR_ENCODE')
    expect(errors.map(([e]) => e)).toEqual([error])
    expect(sock.pending).toBe(0)
  })

  it('rejects with TimeoutError when not written within its timeout', async () => {
    const sock = rawSocket(uniqueUrl('nobody-listens'), { reconnect: { minDelay: 100_000, jitter: 0 } })
    const sent = sock.send('late', { timeout: 500 })
    await flush(499)
    expect(await settled(sent)).toBe(false)
    await flush(1)
    expect(await rejection(sent)).toBeInstanceOf(TimeoutError)
    expect(sock.pending).toBe(0)
  })

  it('rejects invalid per-call options with OptionError', async () => {
    const sock = rawSocket(uniqueUrl(), { autoConnect: false })
    const error = await rejection(sock.send('x', { ttl: -1 }))
    expect((error as TetherError).code).toBe('ERR_INVALID_OPTION')
    expect(sock.pending).toBe(0)
  })

  it.each([
    ['timeout', { timeout: null }],
    ['timeout', { timeout: '5s' }],
    ['ttl', { ttl: null }],
    ['key', { key: null }],
    ['key', { key: 7 }],
    ['signal', { signal: null }],
    ['signal', { signal: {} }],
    ['signal', { signal: 'abort' }],
  ])('rejects a bad per-call %s (%j) with OptionError, and never throws', async (name, options) => {
    const sock = rawSocket(uniqueUrl(), { autoConnect: false })
    let sent: Promise<void> | undefined
    expect(() => {
      sent = sock.send('x', options as never)
    }).not.toThrow()
    const error = await rejection(sent as Promise<void>)
    expect(error).toBeInstanceOf(OptionError)
    expect((error as OptionError).message).toMatch(new RegExp(`^send options: ${name} must be .*; got `))
    expect(sock.pending).toBe(0)
  })
})

describe('queue bounds', () => {
  it("rejects the newest message with QueueFullError when maxMessages is reached (overflow 'reject')", async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false, queue: { maxMessages: 2 } })
    const errors = collect<[TetherError]>(sock, 'error')
    const a = sock.send('a')
    const b = sock.send('b')
    const c = sock.send('c')
    const error = await rejection(c)
    expect(error).toBeInstanceOf(QueueFullError)
    expect((error as QueueFullError).data).toBe('c')
    expect(errors.map(([e]) => e)).toEqual([error])
    expect(sock.pending).toBe(2)
    sock.connect()
    await flush()
    await Promise.all([a, b])
    expect(server.received).toEqual(['a', 'b'])
  })

  it("rejects the newest message when maxBytes would be exceeded (overflow 'reject')", async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false, queue: { maxBytes: 10 } })
    const a = sock.send('12345')
    const b = sock.send('123456')
    const c = sock.send('12345')
    expect(await rejection(b)).toBeInstanceOf(QueueFullError)
    sock.connect()
    await flush()
    await Promise.all([a, c])
    expect(server.received).toEqual(['12345', '12345'])
  })

  it('counts bytes as UTF-8', async () => {
    const sock = rawSocket<string, string>(uniqueUrl(), { autoConnect: false, queue: { maxBytes: 4 } })
    const ok = sock.send('é') // 2 bytes
    const tooBig = sock.send('éé') // 4 more bytes
    expect(await settled(ok)).toBe(false)
    expect(await rejection(tooBig)).toBeInstanceOf(QueueFullError)
  })

  it("drops the oldest queued message with QueueFullError to make room (overflow 'drop-oldest')", async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false, queue: { maxMessages: 2, overflow: 'drop-oldest' } })
    const errors = collect<[TetherError]>(sock, 'error')
    const a = sock.send('a')
    const b = sock.send('b')
    const c = sock.send('c')
    const error = await rejection(a)
    expect(error).toBeInstanceOf(QueueFullError)
    expect((error as QueueFullError).data).toBe('a')
    expect(errors.map(([e]) => e)).toEqual([error])
    sock.connect()
    await flush()
    await Promise.all([b, c])
    expect(server.received).toEqual(['b', 'c'])
  })

  it("drops as many old messages as needed for the bytes of a new one (overflow 'drop-oldest')", async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false, queue: { maxBytes: 10, overflow: 'drop-oldest' } })
    const sends = ['aaaa', 'bbbb', 'cc'].map((m) => sock.send(m))
    const big = sock.send('dddddddd')
    expect(await rejection(sends[0]!)).toBeInstanceOf(QueueFullError)
    expect(await rejection(sends[1]!)).toBeInstanceOf(QueueFullError)
    sock.connect()
    await flush()
    await Promise.all([sends[2], big])
    expect(server.received).toEqual(['cc', 'dddddddd'])
  })

  it("rejects a single message larger than maxBytes even with 'drop-oldest', keeping the queue", async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false, queue: { maxBytes: 4, overflow: 'drop-oldest' } })
    const small = sock.send('ab')
    const huge = sock.send('abcdefgh')
    expect(await rejection(huge)).toBeInstanceOf(QueueFullError)
    sock.connect()
    await flush()
    await small
    expect(server.received).toEqual(['ab'])
  })

  it('never drops a message silently: every send either arrives or rejects', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false, queue: { maxMessages: 3, overflow: 'drop-oldest' } })
    const messages = Array.from({ length: 10 }, (_, i) => `m${i}`)
    const sends = messages.map((m) => sock.send(m))
    sock.connect()
    await flush()
    const results = await Promise.allSettled(sends)
    const delivered = messages.filter((_, i) => results[i]!.status === 'fulfilled')
    const rejected = results.filter((r) => r.status === 'rejected')
    expect(delivered).toEqual(server.received)
    expect(delivered).toEqual(['m7', 'm8', 'm9'])
    expect(rejected).toHaveLength(7)
    for (const r of rejected) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(QueueFullError)
  })
})

describe('per-message options', () => {
  it('removes a queued message whose signal aborts (AbortError); the others still arrive', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false })
    const controller = new AbortController()
    const a = sock.send('a')
    const b = sock.send('b', { signal: controller.signal })
    const c = sock.send('c')
    controller.abort()
    const error = await rejection(b)
    expect(error).toBeInstanceOf(AbortError)
    expect((error as Error).name).toBe('AbortError')
    expect(sock.pending).toBe(2)
    sock.connect()
    await flush()
    await Promise.all([a, c])
    expect(server.received).toEqual(['a', 'c'])
  })

  it('rejects at once a send whose signal is already aborted', async () => {
    const sock = rawSocket(uniqueUrl(), { autoConnect: false })
    const error = await rejection(sock.send('x', { signal: AbortSignal.abort() }))
    expect(error).toBeInstanceOf(AbortError)
    expect(sock.pending).toBe(0)
  })

  it('ignores an abort after the message was written', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    const controller = new AbortController()
    const sent = sock.send('x', { signal: controller.signal })
    await expect(sent).resolves.toBeUndefined()
    controller.abort()
    await flush()
    expect(server.received).toEqual(['x'])
  })

  it('drops a message still queued after its ttl with TimeoutError, and never sends it later', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false })
    const errors = collect<[TetherError]>(sock, 'error')
    const stale = sock.send('stale', { ttl: 1000 })
    const fresh = sock.send('fresh')
    await flush(999)
    expect(await settled(stale)).toBe(false)
    await flush(1)
    const error = await rejection(stale)
    expect(error).toBeInstanceOf(TimeoutError)
    expect(errors.map(([e]) => e)).toEqual([error])
    expect(sock.pending).toBe(1)
    sock.connect()
    await flush()
    await fresh
    expect(server.received).toEqual(['fresh'])
  })

  it('applies queue.ttl as the default ttl of every message', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false, queue: { ttl: 500 } })
    const first = sock.send('first')
    await flush(300)
    const second = sock.send('second')
    await flush(200)
    expect(await rejection(first)).toBeInstanceOf(TimeoutError)
    expect(await settled(second)).toBe(false)
    sock.connect()
    await flush()
    await second
    expect(server.received).toEqual(['second'])
  })

  it('keeps only the newest queued message per key; the replaced sends resolve when the newest is written', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false })
    const v1 = sock.send('pos=1', { key: 'pos' })
    const other = sock.send('chat', { key: 'chat' })
    const v2 = sock.send('pos=2', { key: 'pos' })
    const v3 = sock.send('pos=3', { key: 'pos' })
    expect(sock.pending).toBe(2)
    expect(await settled(v1)).toBe(false)
    expect(await settled(v2)).toBe(false)
    sock.connect()
    await flush()
    await expect(Promise.all([v1, v2, v3, other])).resolves.toEqual([undefined, undefined, undefined, undefined])
    expect(server.received).toEqual(['chat', 'pos=3'])
  })

  it('rejects the replaced sends with the newest one when it fails', async () => {
    const sock = rawSocket<string, string>(uniqueUrl(), { autoConnect: false })
    const v1 = sock.send('pos=1', { key: 'pos' })
    const v2 = sock.send('pos=2', { key: 'pos', ttl: 100 })
    await flush(100)
    const [e1, e2] = await Promise.all([rejection(v1), rejection(v2)])
    expect(e2).toBeInstanceOf(TimeoutError)
    expect(e1).toBe(e2)
  })

  it('does not replace a keyed message that was already written', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url)
    await flush()
    await sock.send('pos=1', { key: 'pos' })
    await sock.send('pos=2', { key: 'pos' })
    await flush()
    expect(server.received).toEqual(['pos=1', 'pos=2'])
  })
})

describe('request() in raw mode', () => {
  it('rejects with a clear error saying it needs tether mode, also emitted as error', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    const errors = collect<[TetherError]>(sock, 'error')
    const error = await rejection(sock.request('ping'))
    expect(error).toBeInstanceOf(TetherError)
    expect((error as TetherError).code).toBe('ERR_UNSUPPORTED')
    expect((error as TetherError).message).toMatch(/tether/)
    expect(errors.map(([e]) => e)).toEqual([error])
    await flush()
    expect(server.received).toEqual([])
    expect(sock.pending).toBe(0)
  })
})
