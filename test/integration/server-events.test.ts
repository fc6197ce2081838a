/**
 * The reference server's session events, in the order presence tracking relies on: a session
 * replaced by a newer connection of its own is never reported disconnected, and a session that
 * ends while connected is reported disconnected before it expires.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import type { Session, TetherServer } from '../../src/server/index.js'
import { cleanupTether, defer, serverSockets, sleep, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(cleanupTether)

/** Every session event, in order, as `event:sessionId`. */
function record(server: TetherServer) {
  const events: string[] = []
  const on = (name: string) => (session: Session) => events.push(`${name}:${session.id}`)
  server.on('session', on('session'))
  server.on('resume', on('resume'))
  server.on('disconnect', on('disconnect'))
  server.on('expire', on('expire'))
  return events
}

/** A raw tether.v1 client: says hello (resuming `sid`), resolves once welcomed. */
async function hello(server: TetherServer, sid: string | null) {
  const ws = new WebSocket(urlOf(server), ['tether.v1'])
  defer(() => ws.terminate())
  ws.on('error', () => {})
  let closed: number | undefined
  ws.on('close', (code) => {
    closed = code
  })
  let welcome: { sid: string; resumed: boolean } | undefined
  ws.on('message', (data) => {
    const frame = JSON.parse(String(data))
    if (frame.t === 'welcome') welcome = frame
  })
  await withTimeout(new Promise((resolve) => ws.once('open', resolve)), 3000, 'open')
  ws.send(JSON.stringify({ t: 'hello', sid, ack: 0 }))
  await waitFor(() => welcome, 3000, 'welcome')
  return { ws, welcome: welcome!, closed: () => closed }
}

describe('server events', () => {
  it('a session resumed on a new connection while its old one is attached: resume, and no disconnect for the replaced connection', async () => {
    const server = await startTether()
    const events = record(server)
    const first = await hello(server, null)
    const sid = first.welcome.sid
    const second = await hello(server, sid)
    expect(second.welcome).toMatchObject({ sid, resumed: true })
    // The replaced connection is closed, on both ends.
    await waitFor(() => first.closed() !== undefined, 2000, 'the replaced connection to close')
    expect(first.closed()).toBe(1000)
    await waitFor(() => serverSockets(server).length === 1, 2000, 'the server to let go of it')
    await sleep(50)
    expect(events).toEqual([`session:${sid}`, `resume:${sid}`])
    expect(server.sessions.get(sid)?.connected).toBe(true)
    // The connection that is attached does report its close.
    second.ws.close()
    await waitFor(() => events.length === 3, 2000, 'the disconnect')
    expect(events).toEqual([`session:${sid}`, `resume:${sid}`, `disconnect:${sid}`])
  })

  it('the same with the reference client: a second client resuming the session does not make the first one look offline', async () => {
    const server = await startTether()
    const events = record(server)
    const a = tetherClient(urlOf(server), { reconnect: false })
    await waitFor(() => a.sock.state === 'open', 3000, 'open')
    const sid = a.sock.sessionId!
    await hello(server, sid)
    await waitFor(() => a.closes.length > 0, 2000, 'the first client to be replaced')
    await waitFor(() => serverSockets(server).length === 1, 2000, 'the server to let go of it')
    await sleep(50)
    expect(events).toEqual([`session:${sid}`, `resume:${sid}`])
  })

  it('server.close(): every connected session is disconnected before it expires, once', async () => {
    const server = await startTether()
    const events = record(server)
    const a = tetherClient(urlOf(server))
    const b = tetherClient(urlOf(server))
    const away = await hello(server, null)
    await waitFor(() => a.sock.state === 'open' && b.sock.state === 'open', 3000, 'two clients')
    // One session is away already: it disconnected before, and only expires at the close.
    away.ws.close()
    const awaySid = away.welcome.sid
    await waitFor(() => events.includes(`disconnect:${awaySid}`), 2000, 'the away session to disconnect')
    await withTimeout(server.close(), 3000, 'server.close()')
    await sleep(50) // any late event from the closing connections would land here
    for (const sid of [a.sock.sessionId!, b.sock.sessionId!]) {
      const own = events.filter((e) => e.endsWith(`:${sid}`))
      expect(own).toEqual([`session:${sid}`, `disconnect:${sid}`, `expire:${sid}`])
    }
    expect(events.filter((e) => e.endsWith(`:${awaySid}`))).toEqual([`session:${awaySid}`, `disconnect:${awaySid}`, `expire:${awaySid}`])
  })

  it('session.end() while connected: disconnect, then expire', async () => {
    const server = await startTether()
    const events = record(server)
    const a = tetherClient(urlOf(server))
    await waitFor(() => a.sock.state === 'open', 3000, 'open')
    const sid = a.sock.sessionId!
    server.sessions.get(sid)?.end()
    await waitFor(() => a.closes.length > 0, 2000, 'the client to see the close')
    await sleep(50)
    expect(events.filter((e) => e.endsWith(`:${sid}`))).toEqual([`session:${sid}`, `disconnect:${sid}`, `expire:${sid}`])
  })
})

describe('server events: listeners that throw', () => {
  it.each(['session', 'resume', 'disconnect', 'expire'] as const)(
    'a %s listener that throws is reported as error; the process and the session go on',
    async (event) => {
      const server = await startTether()
      const errors: Error[] = []
      server.on('error', (error) => errors.push(error))
      server.on(event, () => {
        throw new Error(`${event} listener failed`)
      })
      const uncaught: unknown[] = []
      const onUncaught = (error: unknown) => uncaught.push(error)
      process.on('uncaughtException', onUncaught)
      defer(() => process.off('uncaughtException', onUncaught))
      const first = await hello(server, null)
      const sid = first.welcome.sid
      first.ws.terminate() // disconnect
      await waitFor(() => server.sessions.get(sid)?.connected === false, 2000, 'the disconnect')
      const second = await hello(server, sid) // resume
      expect(second.welcome).toMatchObject({ sid, resumed: true })
      server.sessions.get(sid)?.end() // expire
      await waitFor(() => errors.length > 0, 2000, 'the error event')
      // disconnect fires twice here (the terminate, then end() while connected): each is reported.
      expect(new Set(errors.map((e) => e.message))).toEqual(new Set([`${event} listener failed`]))
      expect(uncaught).toEqual([])
    },
  )
})
