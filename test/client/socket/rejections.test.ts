import { describe, expect, it } from 'vitest'
import {
  AbortError,
  ClosedError,
  ConnectionError,
  DeliveryError,
  OptionError,
  QueueFullError,
  TetherError,
  TimeoutError,
} from '../../../src/index.js'
import {
  advanceUntil,
  collect,
  createServer,
  flush,
  rawSocket,
  uniqueUrl,
  useMockEnvironment,
  watchUnhandledRejections,
} from '../../support/mock.js'

useMockEnvironment()

/** Errors emitted as `error` events, by class. */
function errorKinds(errors: [TetherError][]) {
  return errors.map(([e]) => e.constructor)
}

describe('an ignored send() that fails never raises an unhandled rejection, and is emitted as error', () => {
  it('QueueFullError (overflow reject and drop-oldest)', async () => {
    const watch = watchUnhandledRejections()
    const rejecting = rawSocket(uniqueUrl(), { autoConnect: false, queue: { maxMessages: 1 } })
    const dropping = rawSocket(uniqueUrl(), { autoConnect: false, queue: { maxMessages: 1, overflow: 'drop-oldest' } })
    const errors = [collect<[TetherError]>(rejecting, 'error'), collect<[TetherError]>(dropping, 'error')]
    rejecting.send('kept')
    rejecting.send('refused')
    dropping.send('dropped')
    dropping.send('kept')
    await flush()
    expect(errorKinds(errors[0]!)).toEqual([QueueFullError])
    expect(errorKinds(errors[1]!)).toEqual([QueueFullError])
    await watch.check()
  })

  it('ClosedError (closed with messages queued)', async () => {
    const watch = watchUnhandledRejections()
    const sock = rawSocket(uniqueUrl(), { autoConnect: false })
    const errors = collect<[TetherError]>(sock, 'error')
    sock.send('a')
    sock.send('b')
    await sock.close()
    expect(errorKinds(errors)).toEqual([ClosedError, ClosedError])
    await watch.check()
  })

  it('ClosedError (closed while open with a backlog held by the onOpen hook)', async () => {
    const watch = watchUnhandledRejections()
    const server = createServer()
    const sock = rawSocket(server.url, { onOpen: () => new Promise<void>(() => {}) })
    const errors = collect<[TetherError]>(sock, 'error')
    sock.send('held')
    await flush()
    sock.close()
    await flush()
    expect(errorKinds(errors)).toEqual([ClosedError])
    await watch.check()
  })

  it('DeliveryError (reconnection given up)', async () => {
    const watch = watchUnhandledRejections()
    const sock = rawSocket(uniqueUrl('nobody-listens'), { reconnect: { jitter: 0, minDelay: 10, maxRetries: 1 } })
    const errors = collect<[TetherError]>(sock, 'error')
    sock.send('a')
    await advanceUntil(() => sock.state === 'closed')
    expect(errorKinds(errors)).toEqual([ConnectionError, DeliveryError]) // the failed attempt says why, then the give-up
    await watch.check()
  })

  it('DeliveryError (reconnect: false and the connection dropped)', async () => {
    const watch = watchUnhandledRejections()
    const sock = rawSocket(uniqueUrl('nobody-listens'), { reconnect: false })
    const errors = collect<[TetherError]>(sock, 'error')
    sock.send('a')
    await flush()
    expect(sock.state).toBe('closed')
    expect(errorKinds(errors)).toEqual([ConnectionError, DeliveryError]) // the failed attempt says why, then the give-up
    await watch.check()
  })

  it('TimeoutError (ttl and timeout)', async () => {
    const watch = watchUnhandledRejections()
    const sock = rawSocket(uniqueUrl(), { autoConnect: false })
    const errors = collect<[TetherError]>(sock, 'error')
    sock.send('stale', { ttl: 100 })
    sock.send('slow', { timeout: 200 })
    await flush(300)
    expect(errorKinds(errors)).toEqual([TimeoutError, TimeoutError])
    await watch.check()
  })

  it('AbortError (signal aborted before or after queueing)', async () => {
    const watch = watchUnhandledRejections()
    const sock = rawSocket(uniqueUrl(), { autoConnect: false })
    const errors = collect<[TetherError]>(sock, 'error')
    const controller = new AbortController()
    sock.send('later', { signal: controller.signal })
    sock.send('already', { signal: AbortSignal.abort() })
    controller.abort()
    await flush()
    expect(errorKinds(errors)).toEqual([AbortError, AbortError])
    await watch.check()
  })

  it('encoding errors, invalid options and request() in raw mode', async () => {
    const watch = watchUnhandledRejections()
    const sock = rawSocket<unknown, unknown>(uniqueUrl(), { autoConnect: false })
    const errors = collect<[TetherError]>(sock, 'error')
    sock.send(1n)
    sock.send('x', { timeout: 0 })
    sock.request('ping')
    await flush()
    expect(errors).toHaveLength(3)
    for (const [e] of errors) expect(e).toBeInstanceOf(TetherError)
    expect(errors[1]![0]).toBeInstanceOf(OptionError)
    await watch.check()
  })

  it('a failure is emitted once, even when the caller also awaits the promise', async () => {
    const sock = rawSocket(uniqueUrl(), { autoConnect: false, queue: { maxMessages: 1 } })
    const errors = collect<[TetherError]>(sock, 'error')
    sock.send('kept')
    await expect(sock.send('refused')).rejects.toBeInstanceOf(QueueFullError)
    expect(errors).toHaveLength(1)
  })
})

describe("what a failed message's error carries back (error.data)", () => {
  it("in tether mode: the message as its JSON decodes (the caller's object is not kept while queued)", async () => {
    const sock = rawSocket(uniqueUrl(), { mode: 'tether', autoConnect: false })
    const sent = { at: new Date(0), text: 'hi', skipped: undefined }
    const outcome = sock.send(sent).catch((error: unknown) => error)
    await sock.close()
    const error = (await outcome) as ClosedError
    expect(error).toBeInstanceOf(ClosedError)
    // Decoded from the queued JSON: a copy, with what JSON made of it.
    expect(error.data).toEqual({ at: '1970-01-01T00:00:00.000Z', text: 'hi' })
    expect(error.data).not.toBe(sent)
  })

  it('in tether mode, an abort after queueing carries the message too', async () => {
    const sock = rawSocket(uniqueUrl(), { mode: 'tether', autoConnect: false })
    const controller = new AbortController()
    const outcome = sock.send({ n: 1 }, { signal: controller.signal }).catch((error: unknown) => error)
    controller.abort()
    const error = (await outcome) as AbortError
    expect(error).toBeInstanceOf(AbortError)
    expect(error.data).toEqual({ n: 1 })
    await sock.close()
  })

  it('in raw mode: the message itself (a string or binary payload is the message; an object is kept)', async () => {
    const sock = rawSocket(uniqueUrl(), { autoConnect: false })
    const object = { n: 1 }
    const bytes = new Uint8Array([1, 2])
    const outcomes = [sock.send('text'), sock.send(object), sock.send(bytes)].map((p) => p.catch((error: unknown) => error))
    await sock.close()
    const data = (await Promise.all(outcomes)).map((error) => (error as ClosedError).data)
    expect(data[0]).toBe('text')
    expect(data[1]).toBe(object)
    expect(data[2]).toBe(bytes)
  })
})
