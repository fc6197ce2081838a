/**
 * `reconnect()` or `close()` while an attempt is still connecting, with Node's `ws`: the attempt's
 * WebSocket is let go without a word (ws reports "closed before the connection was established"
 * as an `error` event; nobody would hear it, and an unheard error event crashes the process).
 */
import { createServer, type Server, type Socket } from 'node:net'
import { afterEach, expect, it } from 'vitest'
import { cleanupTether, defer, tetherClient, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

/** A TCP server that accepts connections and never answers: every attempt stays connecting. */
async function silentServer(): Promise<{ server: Server; port: number; sockets: Socket[] }> {
  const sockets: Socket[] = []
  const server = createServer((socket) => sockets.push(socket))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  defer(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  )
  return { server, port: (server.address() as { port: number }).port, sockets }
}

it('reconnect() and close() during a connecting attempt raise nothing uncaught', async () => {
  const { port, sockets } = await silentServer()
  const uncaught: unknown[] = []
  const onUncaught = (error: unknown) => uncaught.push(error)
  process.on('uncaughtException', onUncaught)
  try {
    const { sock } = tetherClient(`ws://127.0.0.1:${port}`)
    await waitFor(() => sockets.length === 1, 5000, 'the first attempt connecting')
    sock.reconnect()
    await waitFor(() => sockets.length === 2, 5000, 'the second attempt connecting')
    await sock.close()
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(uncaught).toEqual([])
  } finally {
    process.off('uncaughtException', onUncaught)
  }
})
