import { describe, expect, it } from 'vitest'
import { ProtocolError, type TetherError } from '../../../src/index.js'
import { collect, createServer, flush, rawSocket, useMockEnvironment } from '../../support/mock.js'

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
