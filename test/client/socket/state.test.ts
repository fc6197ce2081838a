import { describe, expect, it } from 'vitest'
import { OptionError, type SocketState } from '../../../src/index.js'
import { collect, createDroppingServer, createServer, flush, rawSocket, uniqueUrl, useMockEnvironment } from '../../support/mock.js'

useMockEnvironment()

describe('state machine (raw mode)', () => {
  it('starts idle with autoConnect: false and makes no attempt until connect()', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { autoConnect: false })
    expect(sock.state).toBe('idle')
    await flush(60_000)
    expect(sock.state).toBe('idle')
    expect(server.connections).toHaveLength(0)
    expect(sock.stats.attempts).toBe(0)
  })

  it('connects at construction by default: connecting at once, open once the server accepts', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    expect(sock.state).toBe('connecting')
    await flush()
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(1)
  })

  it('goes idle → connecting → open, emitting state with (next, prev) and then open', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { autoConnect: false })
    const events: string[] = []
    sock.on('state', (next, prev) => events.push(`state ${prev}→${next}`))
    sock.on('open', () => events.push('open'))
    sock.connect()
    expect(sock.state).toBe('connecting')
    expect(events).toEqual(['state idle→connecting'])
    await flush()
    expect(events).toEqual(['state idle→connecting', 'state connecting→open', 'open'])
  })

  it('reports the new state through the state getter by the time a state listener runs', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { autoConnect: false })
    const seen: [SocketState, SocketState][] = []
    sock.on('state', (next) => seen.push([next, sock.state]))
    sock.connect()
    await flush()
    expect(seen).toEqual([
      ['connecting', 'connecting'],
      ['open', 'open'],
    ])
  })

  it('ignores connect() while connecting', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    const states = collect(sock, 'state')
    sock.connect()
    sock.connect()
    await flush()
    expect(sock.stats.attempts).toBe(1)
    expect(server.connections).toHaveLength(1)
    expect(states.map(([next]) => next)).toEqual(['open'])
  })

  it('ignores connect() while open', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    const states = collect(sock, 'state')
    sock.connect()
    await flush(1000)
    expect(sock.state).toBe('open')
    expect(states).toEqual([])
    expect(sock.stats.attempts).toBe(1)
    expect(server.connections).toHaveLength(1)
  })

  it('ignores connect() while reconnecting (the backoff wait is kept)', async () => {
    const server = createDroppingServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 1000 } })
    await flush()
    expect(sock.state).toBe('reconnecting')
    sock.connect()
    expect(sock.state).toBe('reconnecting')
    await flush(500)
    expect(server.connections).toHaveLength(1)
    expect(sock.stats.attempts).toBe(1)
  })

  it('goes open → closing → closed on close(), with a close event that will not reconnect', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    const states = collect<[SocketState, SocketState]>(sock, 'state')
    const closes = collect(sock, 'close')
    const done = sock.close()
    expect(sock.state).toBe('closing')
    await flush()
    await done
    expect(sock.state).toBe('closed')
    expect(states).toEqual([
      ['closing', 'open'],
      ['closed', 'closing'],
    ])
    expect(closes).toEqual([[{ code: 1000, reason: '', wasClean: true, willReconnect: false }]])
  })

  it('connects again with connect() after close()', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    await Promise.all([sock.close(), flush()])
    expect(sock.state).toBe('closed')
    const states = collect<[SocketState, SocketState]>(sock, 'state')
    sock.connect()
    await flush()
    expect(sock.state).toBe('open')
    expect(states).toEqual([
      ['connecting', 'closed'],
      ['open', 'connecting'],
    ])
    expect(server.connections).toHaveLength(2)
    await expect(sock.send('again')).resolves.toBeUndefined()
    await flush()
    expect(server.received).toEqual(['again'])
  })

  it('goes open → reconnecting → connecting → open when the server drops the connection', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { reconnect: { jitter: 0, minDelay: 100 } })
    await flush()
    const states = collect<[SocketState, SocketState]>(sock, 'state')
    server.connections[0]!.close({ code: 1001, reason: 'going away', wasClean: true })
    await flush()
    expect(sock.state).toBe('reconnecting')
    await flush(100)
    expect(sock.state).toBe('open')
    expect(states).toEqual([
      ['reconnecting', 'open'],
      ['connecting', 'reconnecting'],
      ['open', 'connecting'],
    ])
  })

  it('emits close with the server code and reason and willReconnect: true when it will retry', async () => {
    const server = createServer()
    const sock = rawSocket(server.url)
    await flush()
    const closes = collect(sock, 'close')
    server.connections[0]!.close({ code: 4000, reason: 'maintenance', wasClean: false })
    await flush()
    expect(closes).toEqual([[{ code: 4000, reason: 'maintenance', wasClean: false, willReconnect: true }]])
  })

  it('never reconnects with reconnect: false: a dropped connection ends in closed', async () => {
    const server = createServer()
    const sock = rawSocket(server.url, { reconnect: false })
    await flush()
    const closes = collect(sock, 'close')
    server.connections[0]!.close({ code: 1001, reason: '', wasClean: true })
    await flush(60_000)
    expect(sock.state).toBe('closed')
    expect(closes).toEqual([[expect.objectContaining({ code: 1001, willReconnect: false })]])
    expect(server.connections).toHaveLength(1)
  })

  it('delivers messages from the server to message listeners', async () => {
    const server = createServer()
    const sock = rawSocket<string>(server.url)
    const messages = collect(sock, 'message')
    await flush()
    server.connections[0]!.send('hello')
    server.connections[0]!.send('world')
    await flush()
    expect(messages).toEqual([
      ['hello', { id: undefined, seq: undefined, redelivered: false }],
      ['world', { id: undefined, seq: undefined, redelivered: false }],
    ])
  })

  it('rejects an invalid URL at construction with OptionError', () => {
    expect(() => rawSocket('ftp://example.test/')).toThrow(OptionError)
    expect(() => rawSocket('ws://example.test:99999/')).toThrow(OptionError)
  })

  it('maps http(s) URLs to ws(s)', async () => {
    const url = uniqueUrl()
    const server = createServer({}, url)
    const sock = rawSocket(url.replace(/^ws:/, 'http:'))
    await flush()
    expect(sock.state).toBe('open')
    expect(server.connections).toHaveLength(1)
  })
})
