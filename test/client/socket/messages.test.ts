import { describe, expect, it } from 'vitest'
import { ProtocolError, type TetherError } from '../../../src/index.js'
import { collect, createServer, createTetherMockServer, flush, rawSocket, useMockEnvironment } from '../../support/mock.js'

useMockEnvironment()

describe('incoming messages in raw mode', () => {
  it('delivers text frames to message listeners as strings, in order', async () => {
    const server = createServer()
    const sock = rawSocket<string>(server.url)
    const messages = collect<[string]>(sock, 'message')
    await flush()
    for (const m of ['one', 'two', 'three']) server.connections[0]!.send(m)
    await flush()
    expect(messages.map(([m]) => m)).toEqual(['one', 'two', 'three'])
  })

  it('delivers binary frames as ArrayBuffer', async () => {
    const server = createServer()
    const sock = rawSocket<ArrayBuffer | string>(server.url)
    const messages = collect<[ArrayBuffer]>(sock, 'message')
    await flush()
    server.connections[0]!.send(new Uint8Array([1, 2, 3]).buffer)
    await flush()
    expect(messages).toHaveLength(1)
    expect(messages[0]![0]).toBeInstanceOf(ArrayBuffer)
    expect([...new Uint8Array(messages[0]![0])]).toEqual([1, 2, 3])
  })

  it('passes every message through options.deserialize', async () => {
    const server = createServer()
    const sock = rawSocket<{ n: number }>(server.url, { deserialize: (data) => JSON.parse(String(data)) })
    const messages = collect<[{ n: number }]>(sock, 'message')
    await flush()
    server.connections[0]!.send('{"n":1}')
    await flush()
    expect(messages).toEqual([[{ n: 1 }, { id: undefined, seq: undefined, redelivered: false }]])
  })

  it('skips a message deserialize throws on, with a ProtocolError event, and stays open', async () => {
    const server = createServer()
    const sock = rawSocket<unknown>(server.url, { deserialize: (data) => JSON.parse(String(data)) })
    const messages = collect(sock, 'message')
    const errors = collect<[TetherError]>(sock, 'error')
    await flush()
    server.connections[0]!.send('{not json')
    server.connections[0]!.send('2')
    await flush()
    expect(errors).toHaveLength(1)
    expect(errors[0]![0]).toBeInstanceOf(ProtocolError)
    expect(messages).toEqual([[2, { id: undefined, seq: undefined, redelivered: false }]])
    expect(sock.state).toBe('open')
  })

  it('delivers messages from every connection across reconnects', async () => {
    const server = createServer()
    const sock = rawSocket<string>(server.url, { reconnect: { jitter: 0, minDelay: 100 } })
    const messages = collect<[string]>(sock, 'message')
    await flush()
    server.connections[0]!.send('before')
    await flush()
    server.connections[0]!.close({ code: 1001, reason: '', wasClean: true })
    await flush(110)
    expect(sock.state).toBe('open')
    server.connections[1]!.send('after')
    await flush()
    expect(messages.map(([m]) => m)).toEqual(['before', 'after'])
  })
})

describe('topics in tether mode (PROTOCOL.md §13)', () => {
  it("delivers a topic's messages with info.topic and a miss as the missed event, in stream order, and acknowledges both", async () => {
    const server = createTetherMockServer((client) => {
      client.send('{"t":"msg","s":1,"d":["direct"]}')
      client.send('{"t":"msg","s":2,"tp":"room","d":["a"]}')
      client.send('{"t":"miss","s":3,"tp":"room","n":12}')
      client.send('{"t":"msg","s":4,"tp":"room","d":["z"]}')
    })
    const sock = rawSocket<string>(server.url, { mode: 'tether' })
    const seen: unknown[] = []
    sock.on('message', (data, { id, topic }) => seen.push({ message: data, id, topic }))
    sock.on('missed', ({ topic, count, id, seq, redelivered }) => seen.push({ missed: topic, count, id, seq, redelivered }))
    await flush(50)
    expect(seen).toEqual([
      { message: 'direct', id: 'S:1', topic: undefined },
      { message: 'a', id: 'S:2', topic: 'room' },
      { missed: 'room', count: 12, id: 'S:3', seq: 3, redelivered: false },
      { message: 'z', id: 'S:4', topic: 'room' },
    ])
    // Everything arrived in one tick: one cumulative ack covers the messages and the miss.
    expect(server.received.map((frame) => JSON.parse(String(frame)))).toEqual([
      { t: 'hello', sid: null, ack: 0, acked: 0, sent: 0, pa: true },
      { t: 'ack', s: 4 },
    ])
  })

  it('raw mode: info.topic is undefined, and no frame is read as a miss', async () => {
    const server = createServer()
    const sock = rawSocket<string>(server.url)
    const messages = collect<[string, { topic: unknown }]>(sock, 'message')
    const missed = collect(sock, 'missed')
    await flush()
    server.connections[0]!.send('{"t":"miss","s":1,"tp":"room","n":1}')
    await flush()
    expect(messages.map(([data, info]) => [data, info.topic])).toEqual([['{"t":"miss","s":1,"tp":"room","n":1}', undefined]])
    expect(missed).toEqual([])
  })
})
