/**
 * The lifecycle table: docs/ARCHITECTURE.md shows exactly `TRANSITIONS`, `checkTransition`
 * refuses everything else, and the socket makes every transition the table lists (so the
 * table is not wider than the code). That no test path makes a transition outside it is shown
 * by the whole suite: `setState` throws on one.
 */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { checkTransition, type SocketState, TRANSITIONS } from '../../src/client/lifecycle.js'
import type { TetherSocket } from '../../src/index.js'
import { createServer, flush, hangingWebSocket, microtasks, rawSocket, useMockEnvironment } from '../support/mock.js'

const STATES: SocketState[] = ['idle', 'connecting', 'open', 'reconnecting', 'closing', 'closed']
const pairs = (table: Readonly<Record<SocketState, readonly SocketState[]>>) =>
  STATES.flatMap((from) => table[from].map((to) => `${from} → ${to}`)).sort()

/** The rows (from, to) of the table in docs/ARCHITECTURE.md's "The connection's life" section. */
function documentedTransitions(): string[] {
  const doc = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../../docs/ARCHITECTURE.md'), 'utf8')
  const start = doc.indexOf("## The connection's life")
  expect(start, 'docs/ARCHITECTURE.md has a section "The connection\'s life"').toBeGreaterThanOrEqual(0)
  const end = doc.indexOf('\n## ', start + 1)
  const section = doc.slice(start, end === -1 ? undefined : end)
  const rows = section
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .map((line) => line.split('|').map((cell) => cell.trim()))
  const [header, rule, ...body] = rows
  expect(header?.slice(1, 3)).toEqual(['from', 'to'])
  expect(rule?.[1]).toMatch(/^-+$/)
  expect(body.length).toBeGreaterThan(0)
  return body.map(([, from, to]) => `${from} → ${to}`).sort()
}

describe('the lifecycle table', () => {
  it("docs/ARCHITECTURE.md's table lists exactly the transitions of TRANSITIONS", () => {
    const documented = documentedTransitions()
    expect(new Set(documented).size, 'no row twice').toBe(documented.length)
    expect(documented).toEqual(pairs(TRANSITIONS))
  })

  it('names only the six states, and nothing leads back to idle', () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...STATES].sort())
    for (const from of STATES) {
      for (const to of TRANSITIONS[from]) expect(STATES).toContain(to)
      expect(TRANSITIONS[from]).not.toContain('idle')
    }
  })

  it('checkTransition accepts every listed transition and throws an internal error for any other', () => {
    for (const from of STATES) {
      for (const to of STATES) {
        if (from === to) continue
        if (TRANSITIONS[from].includes(to)) expect(() => checkTransition(from, to)).not.toThrow()
        else expect(() => checkTransition(from, to)).toThrow(`tethersocket internal error: ${from} → ${to} is not in TRANSITIONS`)
      }
    }
  })
})

describe('the socket makes every transition of the table', () => {
  useMockEnvironment()

  const seen = new Set<string>()
  const watch = <S extends TetherSocket<unknown, unknown>>(sock: S): S => {
    sock.on('state', (next, prev) => seen.add(`${prev} → ${next}`))
    sock.on('error', () => {})
    return sock
  }

  /** Each scenario drives sockets through some transitions; `seen` collects them all. */
  const scenarios: [string, () => Promise<void>][] = []
  const scenario = (name: string, run: () => Promise<void>) => scenarios.push([name, run])

  scenario('idle → closed: close() before connecting', async () => {
    const sock = watch(rawSocket(createServer().url, { autoConnect: false }))
    await sock.close()
    expect(sock.state).toBe('closed')
  })

  scenario(
    'idle → connecting → open → connecting (reconnect()) → open → reconnecting (lost) → connecting → open → closing → closed → connecting',
    async () => {
      const server = createServer()
      // No jitter: a full-jitter delay under the 10 ms flushed below (1 time in 100) would be over before the check.
      const sock = watch(rawSocket(server.url, { autoConnect: false, reconnect: { jitter: 0 } }))
      sock.connect()
      await flush()
      expect(sock.state).toBe('open')
      sock.reconnect()
      expect(sock.state).toBe('connecting')
      await flush()
      expect(sock.state).toBe('open')
      server.open()[0]?.close({ code: 1011, reason: 'restart', wasClean: true })
      await flush()
      expect(sock.state).toBe('reconnecting')
      await flush(60_000)
      expect(sock.state).toBe('open')
      const closed = sock.close()
      expect(sock.state).toBe('closing')
      await flush()
      await closed
      expect(sock.state).toBe('closed')
      sock.connect()
      expect(sock.state).toBe('connecting')
    },
  )

  scenario('connecting → closed: close() while the URL is still being resolved', async () => {
    const sock = watch(rawSocket(async () => createServer().url))
    expect(sock.state).toBe('connecting')
    await sock.close()
    expect(sock.state).toBe('closed')
  })

  scenario(
    'connecting → closing: close() while the WebSocket opens; connecting → reconnecting: the attempt times out; reconnecting → closed: close()',
    async () => {
      const { WebSocket } = hangingWebSocket()
      const sock = watch(rawSocket('ws://127.0.0.1:1', { WebSocket, reconnect: { connectTimeout: 1000 } }))
      await microtasks()
      const closing = sock.close()
      expect(sock.state).toBe('closing')
      await flush()
      await closing
      sock.connect()
      await flush(1000)
      expect(sock.state).toBe('reconnecting')
      await sock.close()
      expect(sock.state).toBe('closed')
    },
  )

  scenario('connecting → closed and open → closed: the policy gives up', async () => {
    const { WebSocket } = hangingWebSocket()
    const failing = watch(rawSocket('ws://127.0.0.1:1', { WebSocket, reconnect: false }))
    await flush(30_000)
    expect(failing.state).toBe('closed')
    const server = createServer()
    const dropped = watch(rawSocket(server.url, { reconnect: false }))
    await flush()
    expect(dropped.state).toBe('open')
    server.open()[0]?.close({ code: 1011, reason: 'restart', wasClean: true })
    await flush()
    expect(dropped.state).toBe('closed')
  })

  it('every transition of the table is made by one of the scenarios above', async () => {
    for (const [name, run] of scenarios) {
      try {
        await run()
      } catch (error) {
        throw new Error(`scenario "${name}" failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error })
      }
    }
    expect([...seen].sort()).toEqual(pairs(TRANSITIONS))
  })
})
