/**
 * The `pending` event: one per tick in which the outbox's size changed, with the count at the
 * end of the tick, and nothing scheduled at all while nobody listens.
 */
import { WebSocket as MockWebSocket } from 'mock-socket'
import { describe, expect, it, vi } from 'vitest'
import { TetherSocket, type TetherSocketOptions } from '../../../src/index.js'
import { collect, createServer, flush, microtasks, rawSocket, useMockEnvironment } from '../../support/mock.js'

useMockEnvironment()

/** A socket that stays idle: every send waits in the outbox. */
const idle = (options: TetherSocketOptions<string, string> = {}) =>
  rawSocket<string, string>(createServer().url, { autoConnect: false, ...options })

describe('the pending event', () => {
  it('fires once per tick, with the count at the end of the tick', async () => {
    const sock = idle()
    const counts = collect<[number]>(sock, 'pending')
    void sock.send('a')
    void sock.send('b')
    void sock.send('c')
    expect(counts).toEqual([]) // not during the tick
    await microtasks()
    expect(counts).toEqual([[3]])
    void sock.send('d')
    await microtasks()
    expect(counts).toEqual([[3], [4]])
    expect(sock.pending).toBe(4)
  })

  it('reports the backlog written on open as one change to 0 (raw mode: written is finished)', async () => {
    const server = createServer()
    const sock = rawSocket<string, string>(server.url, { autoConnect: false })
    const counts = collect<[number]>(sock, 'pending')
    for (const m of ['a', 'b', 'c']) void sock.send(m)
    await microtasks()
    sock.connect()
    await flush()
    expect(server.received).toEqual(['a', 'b', 'c'])
    expect(counts).toEqual([[3], [0]])
  })

  it('reports three messages acknowledged by one ack as one change to 0 (tether mode)', async () => {
    const server = createServer({
      selectProtocol: () => 'tether.v1',
      onConnection: (client) => {
        client.on('message', (data) => {
          const frame = JSON.parse(String(data)) as { t: string; s?: number; d?: unknown[] }
          if (frame.t === 'hello') client.send(JSON.stringify({ t: 'welcome', sid: 'session-1', resumed: false, ack: 0, max: 1 << 20 }))
          // One cumulative ack for the whole batch.
          if (frame.t === 'msg') client.send(JSON.stringify({ t: 'ack', s: frame.s! + frame.d!.length - 1 }))
        })
      },
    })
    const sock = new TetherSocket<string, string>(server.url, { WebSocket: MockWebSocket })
    const counts = collect<[number]>(sock, 'pending')
    await flush()
    expect(sock.state).toBe('open')
    const sent = Promise.all(['a', 'b', 'c'].map((m) => sock.send(m)))
    await flush()
    await sent
    expect(counts).toEqual([[3], [0]])
  })

  it('fires nothing for a tick that ended where it started', async () => {
    const sock = idle({ queue: { maxMessages: 2 } })
    const counts = collect<[number]>(sock, 'pending')
    // Queued and aborted in the same tick.
    const controller = new AbortController()
    void sock.send('gone', { signal: controller.signal }).catch(() => {})
    controller.abort()
    await microtasks()
    expect(counts).toEqual([])
    // A keyed message replacing a queued one: one out, one in.
    void sock.send('v1', { key: 'k' })
    await microtasks()
    expect(counts).toEqual([[1]])
    void sock.send('v2', { key: 'k' })
    await microtasks()
    expect(counts).toEqual([[1]])
    // A message refused by a full queue changes nothing either.
    void sock.send('x')
    await microtasks()
    expect(counts).toEqual([[1], [2]])
    await expect(sock.send('refused')).rejects.toMatchObject({ code: 'ERR_QUEUE_FULL' })
    await microtasks()
    expect(counts).toEqual([[1], [2]])
    expect(sock.pending).toBe(2)
  })

  it('counts from when listening began: changes made before are not reported later', async () => {
    const sock = idle()
    void sock.send('a')
    void sock.send('b')
    await microtasks()
    const counts = collect<[number]>(sock, 'pending')
    const controller = new AbortController()
    void sock.send('gone', { signal: controller.signal }).catch(() => {})
    controller.abort()
    await microtasks()
    expect(counts).toEqual([])
    void sock.send('c')
    await microtasks()
    expect(counts).toEqual([[3]])
  })

  it('reports close emptying the outbox', async () => {
    const sock = idle()
    sock.on('error', () => {})
    const counts = collect<[number]>(sock, 'pending')
    void sock.send('a').catch(() => {})
    await microtasks()
    await sock.close()
    await microtasks()
    expect(counts).toEqual([[1], [0]])
  })

  it('schedules no microtask while nobody listens, and one per tick once somebody does', async () => {
    const sock = idle()
    const queued = vi.spyOn(globalThis, 'queueMicrotask')
    for (let i = 0; i < 100; i++) void sock.send(`m${i}`)
    expect(queued).not.toHaveBeenCalled()
    const counts = collect<[number]>(sock, 'pending')
    for (let i = 0; i < 100; i++) void sock.send(`n${i}`)
    expect(queued).toHaveBeenCalledTimes(1)
    await microtasks()
    expect(counts).toEqual([[200]])
    sock.removeAllListeners('pending')
    queued.mockClear()
    void sock.send('o')
    expect(queued).not.toHaveBeenCalled()
  })
})
