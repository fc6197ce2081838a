/**
 * request()/reply against the real reference server: values, error replies, timeouts,
 * aborts, and replies that cross a connection drop.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { ReplyError as ReplyErrorClass } from '../../src/errors.js'
import * as api from '../../src/index.js'
import { AbortError, TetherError, TimeoutError } from '../../src/index.js'
import { RequestError, type Session } from '../../src/server/index.js'
import {
  cleanupTether,
  killConnections,
  sleep,
  startProxy,
  startTether,
  tetherClient,
  urlOf,
  waitFor,
  withTimeout,
} from '../support/tether.js'

afterEach(cleanupTether)

/** A promise and its resolver, for handlers that answer when the test says so. */
function gate<T = void>() {
  let open!: (value: T) => void
  const promise = new Promise<T>((resolve) => {
    open = resolve
  })
  return { promise, open }
}

describe('request/reply', () => {
  it('resolves with the value the handler returns, for concurrent requests answered out of order', async () => {
    const server = await startTether()
    server.onRequest(async (data) => {
      const n = data as number
      await sleep((20 - n) * 3) // later requests answer first
      return { n, square: n * n }
    })
    const { sock } = tetherClient(urlOf(server))
    const replies = await withTimeout(
      Promise.all(Array.from({ length: 20 }, (_, n) => sock.request<{ n: number; square: number }>(n))),
      3000,
      'replies',
    )
    expect(replies).toEqual(Array.from({ length: 20 }, (_, n) => ({ n, square: n * n })))
    expect(sock.pending).toBe(0)
  })

  it('hands the handler the session, and answers null when the handler returns nothing', async () => {
    const server = await startTether()
    const seen: Session[] = []
    server.onRequest((_data, session) => {
      seen.push(session)
    })
    const { sock } = tetherClient(urlOf(server))
    await expect(withTimeout(sock.request('x'), 3000, 'reply')).resolves.toBeNull()
    expect(seen).toHaveLength(1)
    expect(seen[0].id).toBe(sock.sessionId)
  })

  it('keeps sends and requests in one order at the server', async () => {
    const server = await startTether()
    const order: string[] = []
    server.on('message', (data) => order.push(`msg:${data}`))
    server.onRequest((data) => {
      order.push(`req:${data}`)
      return data
    })
    const { sock } = tetherClient(urlOf(server))
    await withTimeout(Promise.all([sock.send(1), sock.request(2), sock.send(3), sock.request(4), sock.send(5)]), 3000, 'all')
    expect(order).toEqual(['msg:1', 'req:2', 'msg:3', 'req:4', 'msg:5'])
  })

  it("a RequestError from the handler rejects the client's request with a ReplyError carrying the server's code", async () => {
    const server = await startTether()
    server.onRequest(() => {
      throw new RequestError('NOT_FOUND', 'no user 7')
    })
    const { sock } = tetherClient(urlOf(server))
    const error = await withTimeout(
      sock.request({ user: 7 }).then(
        () => undefined,
        (e: unknown) => e,
      ),
      3000,
      'the error reply',
    )
    expect(error).toBeInstanceOf(ReplyErrorClass)
    expect(error).toBeInstanceOf(TetherError)
    expect((error as ReplyErrorClass).code).toBe('NOT_FOUND')
    expect((error as ReplyErrorClass).message).toContain('no user 7')
    expect((error as ReplyErrorClass).data).toEqual({ user: 7 })
    // An error reply is an answer: the socket stays up and the next request works.
    server.onRequest(() => 'fine')
    await expect(withTimeout(sock.request(1), 3000, 'next reply')).resolves.toBe('fine')
  })

  it('ReplyError is exported from the package entry, so callers can test instanceof', () => {
    expect((api as Record<string, unknown>).ReplyError).toBe(ReplyErrorClass)
  })

  it('any other thrown error answers ERR_INTERNAL without leaking its message or stack', async () => {
    const server = await startTether()
    server.onRequest(async () => {
      throw new Error('secret: db password is hunter2')
    })
    const { sock } = tetherClient(urlOf(server))
    const error = (await withTimeout(
      sock.request('boom').then(
        () => undefined,
        (e: unknown) => e,
      ),
      3000,
      'the error reply',
    )) as ReplyErrorClass
    expect(error).toBeInstanceOf(ReplyErrorClass)
    expect(error.code).toBe('ERR_INTERNAL')
    expect(error.message).not.toMatch(/secret|hunter2/)
    expect(String(error.stack)).not.toMatch(/secret|hunter2/)
    expect(JSON.stringify({ ...error, message: error.message })).not.toMatch(/secret|hunter2/)
  })

  it("reports an unexpected request-handler error on the server's 'error' event (the only place it can be logged)", async () => {
    const server = await startTether()
    const serverErrors: Error[] = []
    server.on('error', (e) => serverErrors.push(e))
    const thrown = new Error('handler bug')
    server.onRequest(() => {
      throw thrown
    })
    const { sock } = tetherClient(urlOf(server))
    await expect(withTimeout(sock.request('x'), 3000, 'reply')).rejects.toMatchObject({ code: 'ERR_INTERNAL' })
    expect(serverErrors).toContain(thrown)
  })

  it('answers ERR_INTERNAL when the server has no request handler', async () => {
    const server = await startTether()
    const { sock } = tetherClient(urlOf(server))
    await expect(withTimeout(sock.request('x'), 3000, 'reply')).rejects.toMatchObject({ name: 'ReplyError', code: 'ERR_INTERNAL' })
  })

  it('rejects with TimeoutError when the handler never answers (per-call timeout and requestTimeout)', async () => {
    const server = await startTether()
    let calls = 0
    server.onRequest(() => {
      calls++
      return new Promise(() => {})
    })
    const { sock, errors } = tetherClient(urlOf(server), { requestTimeout: 200 })
    await waitFor(() => sock.state === 'open', 3000, 'open')

    let start = Date.now()
    await expect(withTimeout(sock.request('a', { timeout: 100 }), 2000, 'timeout')).rejects.toBeInstanceOf(TimeoutError)
    let elapsed = Date.now() - start
    expect(elapsed).toBeGreaterThanOrEqual(90)
    expect(elapsed).toBeLessThan(600)

    start = Date.now()
    await expect(withTimeout(sock.request('b'), 2000, 'timeout')).rejects.toBeInstanceOf(TimeoutError)
    elapsed = Date.now() - start
    expect(elapsed).toBeGreaterThanOrEqual(190)
    expect(elapsed).toBeLessThan(700)

    expect(calls).toBe(2) // the server did get them: the timeouts are about the reply
    expect(errors.filter((e) => e instanceof TimeoutError)).toHaveLength(2)
    expect(sock.state).toBe('open')
    expect(sock.pending).toBe(0)
  })

  it('ignores a reply that comes after the timeout, and goes on working', async () => {
    const server = await startTether()
    server.onRequest(async (data) => {
      if (data === 'slow') await sleep(250)
      return `re:${data}`
    })
    const { sock, errors } = tetherClient(urlOf(server))
    await expect(withTimeout(sock.request('slow', { timeout: 80 }), 2000, 'timeout')).rejects.toBeInstanceOf(TimeoutError)
    await sleep(300) // the late reply arrives now
    await expect(withTimeout(sock.request('fast'), 2000, 'reply')).resolves.toBe('re:fast')
    expect(errors.map((e) => e.name)).toEqual(['TimeoutError'])
    expect(sock.state).toBe('open')
  })

  it('rejects with AbortError when its signal aborts while waiting for the reply', async () => {
    const server = await startTether()
    const arrived = gate()
    server.onRequest(() => {
      arrived.open()
      return new Promise(() => {})
    })
    const { sock } = tetherClient(urlOf(server))
    const controller = new AbortController()
    const pending = sock.request('q', { signal: controller.signal })
    await withTimeout(arrived.promise, 3000, 'the request at the server')
    await sleep(30)
    controller.abort()
    const error = await withTimeout(
      pending.then(
        () => undefined,
        (e: unknown) => e,
      ),
      1000,
      'the abort',
    )
    expect(error).toBeInstanceOf(AbortError)
    expect((error as Error).name).toBe('AbortError')
    expect(sock.state).toBe('open')
  })

  it('rejects at once with AbortError for an already aborted signal; the handler never runs', async () => {
    const server = await startTether()
    let calls = 0
    server.onRequest(() => {
      calls++
      return 'x'
    })
    const { sock } = tetherClient(urlOf(server))
    await waitFor(() => sock.state === 'open', 3000, 'open')
    await expect(sock.request('q', { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError)
    await expect(withTimeout(sock.request('next'), 2000, 'next')).resolves.toBe('x')
    expect(calls).toBe(1)
  })

  it('gets a reply produced while the connection was down, once the session resumes', async () => {
    const server = await startTether()
    const release = gate<string>()
    const arrived = gate()
    let calls = 0
    let resumes = 0
    server.on('resume', () => resumes++)
    server.onRequest(async () => {
      calls++
      arrived.open()
      return release.promise
    })
    const { sock } = tetherClient(urlOf(server))
    const reply = sock.request<string>('work')
    await withTimeout(arrived.promise, 3000, 'the request at the server')
    expect(killConnections(server)).toBe(1)
    release.open('done') // the reply is queued in the session while no connection is attached
    await expect(withTimeout(reply, 3000, 'the reply after resume')).resolves.toBe('done')
    expect(resumes).toBe(1)
    expect(calls).toBe(1)
  })

  it('gets a reply that was lost on the wire, resent by the server on resume, exactly once', async () => {
    const server = await startTether()
    const release = gate<string>()
    const arrived = gate()
    let calls = 0
    server.onRequest(async () => {
      calls++
      arrived.open()
      return release.promise
    })
    const proxy = await startProxy(server.port)
    const { sock, errors } = tetherClient(urlOf(proxy))
    const reply = sock.request<string>('work')
    let settled = 0
    reply.then(
      () => settled++,
      () => settled++,
    )
    await withTimeout(arrived.promise, 3000, 'the request at the server')
    proxy.freeze() // the reply will be written by the server but never reach the client
    release.open('answer')
    await sleep(50)
    expect(settled).toBe(0)
    proxy.cutAll()
    await expect(withTimeout(reply, 3000, 'the resent reply')).resolves.toBe('answer')
    expect(calls).toBe(1)
    expect(proxy.accepted).toBe(2)
    // A later request still pairs with its own reply.
    server.onRequest(() => 'second')
    await expect(withTimeout(sock.request('again'), 2000, 'second reply')).resolves.toBe('second')
    expect(settled).toBe(1)
    expect(errors).toEqual([])
  })
})

describe('many requests at once', () => {
  it('150 concurrent request() calls (server maxPendingRequests 100) all get their reply: the client holds the rest', async () => {
    const server = await startTether()
    server.onRequest(async (n) => {
      await sleep(50)
      return n
    })
    const { sock } = tetherClient<unknown, number>(urlOf(server))
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const settled = await withTimeout(Promise.allSettled(Array.from({ length: 150 }, (_, i) => sock.request<number>(i))), 10000, 'replies')
    expect(settled.map((s) => (s.status === 'fulfilled' ? s.value : 'rejected'))).toEqual(Array.from({ length: 150 }, (_, i) => i))
    expect(sock.state).toBe('open')
  })
})
