// The typed server: messages in, messages out and requests, all from messages.ts.
import { createTetherServer, type TetherServer } from 'tethersocket/server'
import type { ClientToServer, Requests, ServerToClient } from './messages.js'

export async function startChat(port = 0): Promise<TetherServer<ClientToServer, ServerToClient, Requests>> {
  const server = await createTetherServer<ClientToServer, ServerToClient, Requests>({ port, host: '127.0.0.1' })
  server.on('message', (msg, session) => {
    // msg is ClientToServer: narrowed by its type
    if (msg.type === 'chat') server.broadcast({ type: 'chat', from: session.id, text: msg.text })
    else server.broadcast({ type: 'typing', from: session.id })
  })
  // req is a request of Requests; the reply must be the reply of one of them
  server.onRequest(async (req, session) => (req.get === 'user' ? { id: session.id, name: `guest ${session.id.slice(0, 4)}` } : Date.now()))
  return server
}
