import { WebSocket as MockWebSocket, Server } from 'mock-socket'
import { afterEach, beforeEach, expect, it, vi } from 'vitest'
import { TetherSocket } from '../src/index.js'

beforeEach(() => vi.useFakeTimers())
afterEach(() => vi.useRealTimers())

it('smoke', async () => {
  const server = new Server('ws://localhost:1234')
  const got: string[] = []
  server.on('connection', (s) => s.on('message', (d) => got.push(String(d))))
  const sock = new TetherSocket('ws://localhost:1234', { mode: 'raw', WebSocket: MockWebSocket as never })
  const p = sock.send('a')
  await vi.advanceTimersByTimeAsync(10)
  console.log('state', sock.state, got)
  await p
  console.log('sent')
  expect(got).toEqual(['a'])
  expect(sock.state).toBe('open')
  const c = sock.close()
  await vi.advanceTimersByTimeAsync(10)
  await c
  server.stop()
})
