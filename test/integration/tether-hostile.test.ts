/**
 * Hostile and foreign peers: servers that do not speak tether.v1, a server sending malformed
 * frames to the client, and raw clients sending malformed frames to the reference server.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { type RawData, WebSocket, WebSocketServer } from 'ws'
import { ProtocolError } from '../../src/index.js'
import { cleanup as cleanupPlainServers, startServer } from '../support/servers.js'
import { cleanupTether, defer, sleep, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(async () => {
  await cleanupTether()
  await cleanupPlainServers()
})

const welcome = (sid: string) => JSON.stringify({ t: 'welcome', sid, resumed: false, ack: 0, max: 1048576 })

interface HostileConnection {
  ws: WebSocket
  /** Frames the client sent, as text. */
  frames: string[]
  closed?: { code: number; reason: string }
}

/**
 * A server that selects tether.v1 and, on each connection's `hello`, answers with a valid
 * `welcome` (a fresh session each time) followed by `script(index)`'s frames.
 */
async function hostileServer(script: (index: number) => (string | Buffer)[]) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'tether.v1' })
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()))
  const connections: HostileConnection[] = []
  wss.on('connection', (ws) => {
    const index = connections.length
    const connection: HostileConnection = { ws, frames: [] }
    connections.push(connection)
    ws.on('error', () => {})
    ws.on('close', (code, reason) => {
      connection.closed = { code, reason: String(reason) }
    })
    ws.on('message', (data: RawData) => {
      const text = String(data)
      connection.frames.push(text)
      if (connection.frames.length !== 1) return
      ws.send(welcome(`session-${index}`))
      for (const frame of script(index)) ws.send(frame)
    })
  })
  defer(async () => {
    for (const ws of wss.clients) ws.terminate()
    await new Promise<void>((resolve) => wss.close(() => resolve()))
  })
  const { port } = wss.address() as { port: number }
  return { port, connections }
}

describe('servers that do not speak tether.v1', () => {
  it('a server selecting no subprotocol: ProtocolError suggesting raw mode, closed, no retries', async () => {
    let connections = 0
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => false })
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()))
    wss.on('connection', (ws) => {
      connections++
      ws.on('error', () => {})
    })
    defer(async () => {
      for (const ws of wss.clients) ws.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    })
    const { sock, errors } = tetherClient(urlOf(wss.address() as { port: number }))
    const sent = sock.send('x')
    sent.catch(() => {})
    await waitFor(() => connections >= 1, 3000, 'a connection')
    await sleep(300)
    expect(connections).toBe(1)
    expect(sock.state).toBe('closed')
    const protocolErrors = errors.filter((e) => e instanceof ProtocolError)
    expect(protocolErrors).toHaveLength(1)
    expect(protocolErrors[0].message).toMatch(/mode: 'raw'/)
    await expect(sent).rejects.toThrow() // given up: the message is not left hanging
  })

  it('a plain ws server without handleProtocols (ws then echoes the offered tether.v1): ProtocolError suggesting raw mode, closed, exactly one connection', async () => {
    // The most common plain server: greets and echoes. `ws` selects the first offered
    // subprotocol when no handleProtocols is given, so the subprotocol alone proves nothing.
    const plain = await startServer({
      onConnection: ({ socket }) => {
        socket.send('Welcome to the chat!')
        socket.on('message', (data) => socket.send(String(data)))
      },
    })
    const { sock, errors } = tetherClient(plain.url)
    await waitFor(() => plain.connections.length >= 1, 3000, 'a connection')
    await sleep(300)
    expect(plain.connections).toHaveLength(1)
    expect(sock.state).toBe('closed')
    const protocolErrors = errors.filter((e) => e instanceof ProtocolError)
    expect(protocolErrors.length).toBeGreaterThanOrEqual(1)
    expect(protocolErrors.some((e) => /mode: 'raw'/.test(e.message))).toBe(true)
  })
})

describe('malformed frames from the server', () => {
  const cases: [string, (string | Buffer)[]][] = [
    ['not JSON', ['this is not json']],
    ['a JSON array', ['[1,2,3]']],
    ['JSON null', ['null']],
    ['an object without "t"', ['{"s":1,"d":[1]}']],
    ['a non-string "t"', ['{"t":5}']],
    ['msg with a non-numeric sequence', ['{"t":"msg","s":"x","d":[1]}']],
    ['msg with sequence 0', ['{"t":"msg","s":0,"d":[1]}']],
    ['msg with an empty payload list', ['{"t":"msg","s":1,"d":[]}']],
    ['a sequence gap', ['{"t":"msg","s":1,"d":["a"]}', '{"t":"msg","s":3,"d":["c"]}']],
    ['an ack for a message never sent', ['{"t":"ack","s":5}']],
    ['res with a malformed error', ['{"t":"res","s":1,"id":1,"err":"nope"}']],
    ['a second welcome', [welcome('again')]],
    ['a binary frame', [Buffer.from([0x7b, 0x7d, 0x00, 0xff])]],
  ]

  it.each(cases)('%s: ProtocolError, connection dropped with 4002, client reconnects', async (_name, garbage) => {
    const server = await hostileServer((index) => (index === 0 ? garbage : []))
    const { sock, errors, messages } = tetherClient(urlOf(server))
    await waitFor(() => server.connections.length === 2 && sock.state === 'open', 3000, 'a second, clean connection')
    await waitFor(() => server.connections[0].closed, 2000, 'the bad connection to close')
    expect(server.connections[0].closed!.code).toBe(4002)
    expect(errors).toHaveLength(1)
    expect(errors[0]).toBeInstanceOf(ProtocolError)
    expect(errors[0].message).toMatch(/malformed frame/)
    // Only a valid, in-sequence message before the bad frame may have been delivered.
    expect(messages).toEqual(garbage.length === 2 ? ['a'] : [])
    expect(sock.sessionId).toBe('session-1')
    await sleep(100)
    expect(server.connections).toHaveLength(2) // settled: no reconnect loop
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('survives a flood of garbage connection after connection and ends up connected', async () => {
    const garbage = ['}{', '[]', '{"t":"msg"}', '{"t":"ack","s":99}', '{"t":"msg","s":9,"d":[1]}']
    const server = await hostileServer((index) => (index < garbage.length ? [garbage[index]] : []))
    const { sock, errors, messages } = tetherClient(urlOf(server))
    await waitFor(() => server.connections.length === garbage.length + 1 && sock.state === 'open', 5000, 'a clean connection at last')
    expect(errors).toHaveLength(garbage.length)
    expect(errors.every((e) => e instanceof ProtocolError)).toBe(true)
    expect(messages).toEqual([])
    expect(server.connections.slice(0, garbage.length).every((c) => c.closed?.code === 4002)).toBe(true)
  })

  it('does not let "__proto__" keys pollute prototypes', async () => {
    const server = await hostileServer(() => [
      '{"__proto__":{"polluted":1},"t":"msg","s":1,"d":[1]}',
      '{"t":"msg","s":2,"d":[{"__proto__":{"polluted":2},"ok":true}]}',
    ])
    const { sock, errors, messages } = tetherClient<Record<string, unknown> | number>(urlOf(server))
    await waitFor(() => messages.length === 2, 3000, 'two messages')
    expect(messages[0]).toBe(1)
    expect((messages[1] as Record<string, unknown>).ok).toBe(true)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined()
    expect(errors).toEqual([])
    expect(sock.state).toBe('open')
  })

  it('ignores frames of unknown types and goes on', async () => {
    const server = await hostileServer(() => [
      '{"t":"future-feature","x":[1,2]}',
      '{"t":"hello","sid":null,"ack":0}',
      '{"t":"msg","s":1,"d":["after"]}',
    ])
    const { sock, errors, messages } = tetherClient(urlOf(server))
    await waitFor(() => messages.length === 1, 3000, 'the message after the unknown frames')
    await sleep(100)
    expect(messages).toEqual(['after'])
    expect(errors).toEqual([])
    expect(server.connections).toHaveLength(1)
    expect(sock.state).toBe('open')
    // The client acknowledged it.
    await waitFor(() => server.connections[0].frames.includes('{"t":"ack","s":1}'), 2000, 'the ack')
  })
})

/** What a raw `ws` client saw after sending `frames` to the server, one by one. */
async function sendRaw(
  port: number,
  frames: (string | Buffer)[],
  options: { protocols?: string[]; waitMs?: number } = {},
): Promise<{ close: { code: number; reason: string } | undefined; received: string[] }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, options.protocols ?? ['tether.v1'])
  defer(() => ws.terminate())
  const received: string[] = []
  let close: { code: number; reason: string } | undefined
  ws.on('error', () => {})
  ws.on('message', (data) => received.push(String(data)))
  ws.on('close', (code, reason) => {
    close = { code, reason: String(reason) }
  })
  await withTimeout(new Promise<void>((resolve) => ws.once('open', () => resolve())), 3000, 'raw client open')
  for (const frame of frames) {
    if (ws.readyState !== WebSocket.OPEN) break
    ws.send(frame)
    await sleep(5)
  }
  const deadline = Date.now() + (options.waitMs ?? 1500)
  while (!close && Date.now() < deadline) await sleep(5)
  return { close, received }
}

const hello = '{"t":"hello","sid":null,"ack":0}'

describe('malformed frames from a client', () => {
  const cases: [string, number, (string | Buffer)[]][] = [
    ['not JSON', 1007, ['not json']],
    ['not JSON after hello', 1007, [hello, '{"t":']],
    ['a binary frame', 1007, [Buffer.from('{"t":"hello","sid":null,"ack":0}')]],
    ['a binary frame after hello', 1007, [hello, Buffer.from([1, 2, 3])]],
    ['a JSON array', 1002, ['[1,2]']],
    ['an object without "t"', 1002, ['{"sid":null,"ack":0}']],
    ['hello with a numeric sid', 1002, ['{"t":"hello","sid":5,"ack":0}']],
    ['hello without ack', 1002, ['{"t":"hello","sid":null}']],
    ['msg before hello', 1002, ['{"t":"msg","s":1,"d":[1]}']],
    ['ping before hello', 1002, ['{"t":"ping"}']],
    ['a second hello', 1002, [hello, hello]],
    ['msg with a non-numeric sequence', 1002, [hello, '{"t":"msg","s":"x","d":[1]}']],
    ['msg with an empty payload list', 1002, [hello, '{"t":"msg","s":1,"d":[]}']],
    ['req without a payload', 1002, [hello, '{"t":"req","s":1,"id":1}']],
    ['a sequence gap', 1002, [hello, '{"t":"msg","s":1,"d":[1]}', '{"t":"msg","s":3,"d":[3]}']],
    ['an ack for a message never sent', 1002, [hello, '{"t":"ack","s":4}']],
  ]

  it.each(cases)('%s: closed with %i, and the handler sees nothing it should not', async (_name, code, frames) => {
    const server = await startTether()
    const handled: unknown[] = []
    server.on('message', (data) => handled.push(data))
    const result = await sendRaw(server.port, frames)
    expect(result.close?.code).toBe(code)
    // Only the in-sequence message before a gap reaches the handler.
    expect(handled).toEqual(frames.length === 3 ? [1] : [])
  })

  it('a frame over maxPayload: closed with 1009', async () => {
    const server = await startTether({ maxPayload: 1024 })
    const handled: unknown[] = []
    server.on('message', (data) => handled.push(data))
    const result = await sendRaw(server.port, [hello, JSON.stringify({ t: 'msg', s: 1, d: ['x'.repeat(4096)] })])
    expect(result.close?.code).toBe(1009)
    expect(handled).toEqual([])
    // The welcome told the client the limit.
    expect(JSON.parse(result.received[0])).toMatchObject({ t: 'welcome', max: 1024 })
  })

  it('a client that does not offer tether.v1: closed with 1002', async () => {
    const server = await startTether()
    const result = await sendRaw(server.port, [hello], { protocols: [] })
    expect(result.close?.code).toBe(1002)
    expect(server.sessions.size).toBe(0)
  })

  it('"__proto__" keys in client frames pollute nothing', async () => {
    const server = await startTether()
    const handled: unknown[] = []
    server.on('message', (data) => handled.push(data))
    const result = await sendRaw(
      server.port,
      ['{"__proto__":{"polluted":1},"t":"hello","sid":null,"ack":0}', '{"t":"msg","s":1,"d":[{"__proto__":{"polluted":2},"v":1}]}'],
      { waitMs: 100 },
    )
    expect(result.close).toBeUndefined()
    expect(handled).toHaveLength(1)
    expect((handled[0] as { v: number }).v).toBe(1)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('ignores unknown frame types and answers pings', async () => {
    const server = await startTether()
    const handled: unknown[] = []
    server.on('message', (data) => handled.push(data))
    const result = await sendRaw(server.port, [hello, '{"t":"something-new","x":1}', '{"t":"ping"}', '{"t":"msg","s":1,"d":["ok"]}'], {
      waitMs: 100,
    })
    expect(result.close).toBeUndefined()
    expect(handled).toEqual(['ok'])
    expect(result.received).toContain('{"t":"pong"}')
    expect(result.received).toContain('{"t":"ack","s":1}')
  })

  it('keeps serving other clients through all of the above, without crashing', async () => {
    const server = await startTether({ maxPayload: 4096 })
    const serverErrors: Error[] = []
    server.on('error', (e) => serverErrors.push(e))
    const handled: unknown[] = []
    server.on('message', (data) => handled.push(data))
    server.onRequest((data) => ({ echo: data }))
    const { sock, errors } = tetherClient(urlOf(server))
    await withTimeout(sock.send('before'), 3000, 'send before')
    const attacks = [
      ['garbage'],
      [Buffer.from([0, 1, 2])],
      ['[]'],
      ['{"t":"msg","s":1,"d":[1]}'],
      [hello, hello],
      [hello, '{"t":"msg","s":5,"d":[1]}'],
      [hello, 'x'.repeat(8192)],
      [`{"t":"hello","sid":${JSON.stringify(sock.sessionId)},"ack":999}`], // someone else's session, bogus ack
    ]
    const results = await Promise.all(attacks.map((frames) => sendRaw(server.port, frames)))
    const refused = results.slice(0, -1)
    expect(refused.every((r) => r.close !== undefined && r.close.code !== 1000 && r.close.code !== 1005)).toBe(true)
    // The bogus ack is not a protocol error (that would be a reconnect loop): a new session, told the old one was lost.
    expect(JSON.parse(results.at(-1)?.received[0] ?? '{}')).toMatchObject({ t: 'welcome', resumed: false, reason: 'lost' })
    await withTimeout(sock.send('after'), 3000, 'send after')
    await expect(withTimeout(sock.request(42), 3000, 'request after')).resolves.toEqual({ echo: 42 })
    expect(handled).toEqual(['before', 'after'])
    expect(errors).toEqual([])
    expect(serverErrors).toEqual([])
    expect(server.sessions.size).toBeGreaterThanOrEqual(1)
  })
})
