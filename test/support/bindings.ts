/**
 * What the React and Vue binding tests share: mock-socket servers that record what they get,
 * a WebSocket that counts constructions and concurrent open sockets, and the cleanup.
 */
import { type Client, WebSocket as MockWebSocket, Server } from 'mock-socket'
import type { TetherServer } from '../../src/server/index.js'

let serial = 0
const servers: Server[] = []
/** Reference servers a test started; closed by `stopServers()`. */
export const tetherServers: TetherServer[] = []

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A mock-socket server and what happened on it. */
export interface TestServer {
  url: string
  connections: Client[]
  received: unknown[]
  /** Connections the client closed, in order. */
  closed: number
  /** Connections currently open. */
  open(): number
  broadcast(data: string): void
}

/** Starts a mock-socket server on a unique `ws://<host>/socket-N` URL. */
export function startServer(host: string): TestServer {
  const url = `ws://${host}/socket-${++serial}`
  const server = new Server(url, { mock: false })
  servers.push(server)
  const record: TestServer = {
    url,
    connections: [],
    received: [],
    closed: 0,
    open: () => record.connections.filter((c) => c.readyState === MockWebSocket.OPEN).length,
    broadcast: (data) => {
      for (const c of record.connections) if (c.readyState === MockWebSocket.OPEN) c.send(data)
    },
  }
  server.on('connection', (client) => {
    record.connections.push(client)
    client.on('message', (data) => record.received.push(data))
    client.on('close', () => {
      record.closed++
    })
  })
  return record
}

/** mock-socket's WebSocket, counting constructions and the most ever open at the same time. */
export function countingWebSocket() {
  const counts = { created: 0, maxOpen: 0 }
  const all: MockWebSocket[] = []
  class Counting extends MockWebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols)
      counts.created++
      all.push(this)
      this.addEventListener('open', () => {
        // close() moves a socket to CLOSING at once, so an old socket being replaced does not count.
        counts.maxOpen = Math.max(counts.maxOpen, all.filter((ws) => ws.readyState === MockWebSocket.OPEN).length)
      })
    }
  }
  return { WebSocket: Counting, counts }
}

/** Stops every server the test started. */
export async function stopServers(): Promise<void> {
  for (const server of servers.splice(0)) server.stop()
  for (const server of tetherServers.splice(0)) await server.close()
}
