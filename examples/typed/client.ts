// The typed client: the same declaration, seen from the other side.
import { TetherSocket, type TetherSocketOptions } from 'tethersocket'
import type { ClientToServer, Requests, ServerToClient, User } from './messages.js'

export function connect(url: string, options: TetherSocketOptions<ServerToClient, ClientToServer> = {}) {
  const sock = new TetherSocket<ServerToClient, ClientToServer, Requests>(url, options)
  sock.on('message', (msg) => {
    // msg is ServerToClient
    if (msg.type === 'chat') console.log(`${msg.from}: ${msg.text}`)
  })
  return sock
}

/** A request typed by Requests: the reply is a User, without a cast. */
export async function whoAmI(sock: TetherSocket<ServerToClient, ClientToServer, Requests>): Promise<User> {
  const user = await sock.request({ get: 'user' })
  return user
}

export async function serverTime(sock: TetherSocket<ServerToClient, ClientToServer, Requests>): Promise<number> {
  return sock.request({ get: 'time' })
}
