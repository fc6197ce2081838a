/**
 * Tether mode against the real reference server: exactly-once, in-order delivery in both
 * directions while connections die, acknowledgement semantics of send(), and the heartbeat.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { TimeoutError } from '../../src/index.js'
import type { Session } from '../../src/server/index.js'
import {
  cleanupTether,
  killConnections,
  serverSockets,
  sleep,
  startProxy,
  startTether,
  tcpSocketOf,
  tetherClient,
  urlOf,
  waitFor,
  withTimeout,
} from '../support/tether.js'

afterEach(cleanupTether)

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i)

/** Calls `emit(0..n-1)` in small random bursts, yielding to the event loop between bursts. */
async function produce(n: number, emit: (i: number) => void): Promise<void> {
  for (let i = 0; i < n; ) {
    const burst = 1 + Math.floor(Math.random() * 6)
    for (let k = 0; k < burst && i < n; k++) emit(i++)
    await sleep(1)
  }
}

describe('exactly-once delivery under connection chaos', () => {
  it('delivers 3,000 messages each way exactly once and in order while connections are killed at random', async () => {
    const N = 3000
    const server = await startTether()
    const atServer: number[] = []
    const newSessions: Session[] = []
    let resumes = 0
    server.on('session', (s) => newSessions.push(s))
    server.on('resume', () => resumes++)
    server.on('message', (data) => atServer.push(data as number))
    const { sock, messages: atClient, sessions } = tetherClient<number, number>(urlOf(server))
    await waitFor(() => newSessions.length === 1 && sock.state === 'open', 3000, 'the first session')
    const session = newSessions[0]

    let stop = false
    let kills = 0
    let clientDrops = 0
    const chaos = (async () => {
      while (!stop) {
        await sleep(10 + Math.random() * 40)
        if (stop) break
        if (Math.random() < 0.25) {
          if (sock.state === 'open') {
            sock.reconnect()
            clientDrops++
          }
        } else {
          kills += killConnections(server)
        }
      }
    })()

    const clientSends: Promise<void>[] = []
    const serverSends: Promise<void>[] = []
    await Promise.all([produce(N, (i) => clientSends.push(sock.send(i))), produce(N, (i) => serverSends.push(session.send(i)))])
    // Keep killing a little after the last send, so the tail also crosses drops.
    await sleep(150)
    stop = true
    await chaos

    await withTimeout(Promise.all(clientSends), 10000, 'client send() promises')
    await withTimeout(Promise.all(serverSends), 10000, 'server session.send() promises')
    await waitFor(() => atServer.length >= N && atClient.length >= N, 5000, 'both sides to receive everything')
    await sleep(100) // a duplicate arriving late would show here

    expect(kills + clientDrops).toBeGreaterThan(10) // the run really crossed many drops
    expect(resumes).toBeGreaterThan(5)
    expect(atServer).toEqual(range(N))
    expect(atClient).toEqual(range(N))
    expect(clientSends).toHaveLength(N)
    expect(serverSends).toHaveLength(N)
    expect(sock.pending).toBe(0)
    expect(session.pending).toBe(0)
    // One session throughout: every reconnect resumed it.
    expect(newSessions).toHaveLength(1)
    expect(sessions).toEqual([{ id: session.id, previous: undefined }])
    expect(sock.sessionId).toBe(session.id)
    expect(server.sessions.size).toBe(1)
  }, 20000)

  it('keeps several clients apart: each session gets its own messages, in order, despite drops', async () => {
    const N = 300
    const server = await startTether()
    const bySession = new Map<string, number[]>()
    server.on('message', (data, s) => {
      const list = bySession.get(s.id) ?? []
      list.push(data as number)
      bySession.set(s.id, list)
    })
    const clients = range(3).map(() => tetherClient<number, number>(urlOf(server)).sock)
    await waitFor(() => clients.every((c) => c.state === 'open'), 3000, 'three clients open')
    let stop = false
    const chaos = (async () => {
      while (!stop) {
        await sleep(20 + Math.random() * 30)
        killConnections(server)
      }
    })()
    const sends: Promise<void>[] = []
    await Promise.all(clients.map((c, k) => produce(N, (i) => sends.push(c.send(k * 10000 + i)))))
    stop = true
    await chaos
    await withTimeout(Promise.all(sends), 8000, 'all sends')
    for (const [k, c] of clients.entries()) {
      expect(bySession.get(c.sessionId!)).toEqual(range(N, k * 10000))
    }
    expect(bySession.size).toBe(3)
  })
})

describe('acknowledgement semantics', () => {
  it('send() resolves only after the server handler ran; pending counts unacknowledged messages', async () => {
    const server = await startTether()
    const handled: number[] = []
    server.on('message', (data) => handled.push(data as number))
    const { sock } = tetherClient<unknown, number>(urlOf(server))
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const [connection] = serverSockets(server)
    tcpSocketOf(connection).pause() // the frames are written, but the server does not read them yet

    const handledWhenResolved: boolean[] = []
    const settled: number[] = []
    const sends = range(5, 1).map((i) =>
      sock.send(i).then(() => {
        settled.push(i)
        handledWhenResolved.push(handled.includes(i))
      }),
    )
    expect(sock.pending).toBe(5)
    await sleep(150)
    // Written to the socket is not delivered: nothing may resolve yet.
    expect(settled).toEqual([])
    expect(handled).toEqual([])
    expect(sock.pending).toBe(5)

    tcpSocketOf(connection).resume()
    await withTimeout(Promise.all(sends), 3000, 'sends after the server read them')
    expect(handled).toEqual([1, 2, 3, 4, 5])
    expect(settled).toEqual([1, 2, 3, 4, 5])
    expect(handledWhenResolved).toEqual([true, true, true, true, true])
    expect(sock.pending).toBe(0)
  })

  it('pending counts messages queued before the first connection and drops to 0 once acknowledged', async () => {
    const server = await startTether()
    const handled: string[] = []
    server.on('message', (data) => handled.push(data as string))
    const { sock } = tetherClient<unknown, string>(urlOf(server), { autoConnect: false })
    const sends = ['a', 'b', 'c'].map((m) => sock.send(m))
    expect(sock.state).toBe('idle')
    expect(sock.pending).toBe(3)
    await sleep(50)
    expect(handled).toEqual([])
    sock.connect()
    await withTimeout(Promise.all(sends), 3000, 'queued sends')
    expect(handled).toEqual(['a', 'b', 'c'])
    expect(sock.pending).toBe(0)
  })

  it('session.send() on the server resolves only once the client acknowledged', async () => {
    const server = await startTether()
    const sessions: Session[] = []
    server.on('session', (s) => sessions.push(s))
    const proxy = await startProxy(server.port)
    const { sock, messages } = tetherClient<string, unknown>(urlOf(proxy))
    await waitFor(() => sock.state === 'open' && sessions.length === 1, 3000, 'open')
    proxy.freeze() // the client cannot receive (nor acknowledge) anything
    let resolved = false
    const sent = sessions[0].send('hello').then(() => {
      resolved = true
    })
    await sleep(150)
    expect(resolved).toBe(false)
    expect(sessions[0].pending).toBe(1)
    proxy.thaw()
    await withTimeout(sent, 3000, 'session.send() after the client acknowledged')
    expect(messages).toEqual(['hello'])
    expect(sessions[0].pending).toBe(0)
  })
})

describe('frame size limits', () => {
  it("batches messages into frames within the server's maxPayload, and refuses a message that cannot fit", async () => {
    const server = await startTether({ maxPayload: 1024 })
    const received: string[] = []
    server.on('message', (data) => received.push(data as string))
    const { sock, closes } = tetherClient<unknown, string>(urlOf(server))
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const messages = range(60).map((i) => `${i}:${'x'.repeat(100)}`)
    await withTimeout(Promise.all(messages.map((m) => sock.send(m))), 3000, 'sixty 100-byte messages')
    expect(received).toEqual(messages)
    expect(closes).toEqual([]) // never a frame over the limit (the server would close with 1009)

    const tooBig = sock.send('y'.repeat(2000))
    await expect(tooBig).rejects.toThrow(/maximum frame size/)
    await withTimeout(sock.send('small again'), 2000, 'a small message after')
    expect(received.at(-1)).toBe('small again')
    expect(received).not.toContain('y'.repeat(2000))
  })
})

describe('heartbeat', () => {
  it('replaces a connection whose server stops reading within interval + timeout, and loses nothing', async () => {
    const server = await startTether()
    const received: number[] = []
    let resumes = 0
    server.on('message', (data) => received.push(data as number))
    server.on('resume', () => resumes++)
    const { sock, errors, sessions } = tetherClient<unknown, number>(urlOf(server), { heartbeat: { interval: 100, timeout: 100 } })
    await waitFor(() => sock.state === 'open', 3000, 'open')
    await sock.send(0)

    // A healthy connection answers pings and is kept, over several intervals.
    await sleep(450)
    expect(errors).toEqual([])
    expect(resumes).toBe(0)
    expect(serverSockets(server)).toHaveLength(1)

    const [hung] = serverSockets(server)
    tcpSocketOf(hung).pause() // alive at TCP level, but never answers again
    const pausedAt = Date.now()
    const sends = range(5, 1).map((i) => sock.send(i))
    const timeout = await waitFor(() => errors.find((e) => e instanceof TimeoutError), 2000, 'a heartbeat TimeoutError')
    const detectedAfter = Date.now() - pausedAt
    expect(detectedAfter).toBeLessThanOrEqual(100 + 100 + 200)
    expect(timeout.message).toMatch(/heartbeat/)

    await waitFor(() => resumes === 1, 2000, 'a new connection resuming the session')
    await withTimeout(Promise.all(sends), 3000, 'the sends made while the connection hung')
    expect(sock.state).toBe('open')

    // The hung connection wakes up and the server reads its stale frames: no duplicates.
    tcpSocketOf(hung).resume()
    await sleep(150)
    expect(received).toEqual([0, 1, 2, 3, 4, 5])
    expect(sessions).toHaveLength(1)
    expect(sock.pending).toBe(0)
  })

  it('replaces a connection through a proxy that stops forwarding, resending both ways exactly once', async () => {
    const server = await startTether()
    const received: number[] = []
    const sessions: Session[] = []
    let resumes = 0
    server.on('session', (s) => sessions.push(s))
    server.on('resume', () => resumes++)
    server.on('message', (data) => received.push(data as number))
    const proxy = await startProxy(server.port)
    const { sock, errors, messages } = tetherClient<number, number>(urlOf(proxy), { heartbeat: { interval: 100, timeout: 100 } })
    await waitFor(() => sock.state === 'open' && sessions.length === 1, 3000, 'open')
    await sock.send(0)
    await sessions[0].send(100)

    proxy.freeze()
    const frozenAt = Date.now()
    const clientSends = range(3, 1).map((i) => sock.send(i))
    const serverSends = range(3, 101).map((i) => sessions[0].send(i))
    await waitFor(() => errors.some((e) => e instanceof TimeoutError), 2000, 'a heartbeat TimeoutError')
    expect(Date.now() - frozenAt).toBeLessThanOrEqual(100 + 100 + 200)
    await waitFor(() => resumes === 1, 2000, 'a resume over a new proxied connection')
    expect(proxy.accepted).toBe(2)
    await withTimeout(Promise.all([...clientSends, ...serverSends]), 3000, 'the sends made while frozen')

    proxy.thaw() // the stale connection's buffered frames now reach both ends
    await sleep(150)
    expect(received).toEqual([0, 1, 2, 3])
    expect(messages).toEqual([100, 101, 102, 103])
    expect(sessions).toHaveLength(1)
    expect(errors.every((e) => e instanceof TimeoutError)).toBe(true)
  })
})
