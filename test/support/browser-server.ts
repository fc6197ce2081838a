/**
 * The server side of the browser tests: one node:http server on 127.0.0.1 that serves the
 * built files from dist/, the test pages and the script-tag chat example, with the reference
 * tether server attached at /ws (so pages and socket are same-origin); and a TCP gate that
 * can refuse every connection for a while, to take the server away without losing its state.
 * Every wait is bounded.
 */
import { existsSync, readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { createRequire } from 'node:module'
import { createServer as createNetServer, connect as netConnect, type Socket } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createTetherServer, type Session, type TetherServer, type TetherServerOptions } from '../../src/server/index.js'
import { listen, withTimeout } from './servers.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
/** The build to serve: dist/, or TETHERSOCKET_DIST (a copy, when something else may rebuild dist/ during the run). */
const dist = process.env.TETHERSOCKET_DIST ? resolve(process.env.TETHERSOCKET_DIST) : join(root, 'dist')
/** eventemitter3's own ESM build (its `index.mjs` re-exports the CommonJS file, which a browser cannot import). */
const emitterEsm = join(dirname(createRequire(import.meta.url).resolve('eventemitter3/package.json')), 'dist', 'eventemitter3.esm.js')

const JS = 'text/javascript; charset=utf-8'
const HTML = 'text/html; charset=utf-8'

/** The page loading an IIFE build (`file`) with a script tag, plus the harness (test/support/browser-harness.js). */
const scriptTagPage = (file: string, build: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tethersocket: script tag</title></head>
<body>
<script src="/${file}"></script>
<script src="/harness.js"></script>
<script>window.harness = makeHarness(window.TetherSocket, '${build}')</script>
</body></html>
`

/**
 * The page importing the ESM build for browsers natively (dist/browser/: dist/index.mjs is for
 * bundlers and Node, and reads `process.env.NODE_ENV`, which a page has not); an import map
 * resolves the bare `eventemitter3`.
 */
const esmPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tethersocket: ESM</title>
<script type="importmap">${JSON.stringify({ imports: { eventemitter3: '/vendor/eventemitter3.mjs' } })}</script>
</head>
<body>
<script src="/harness.js"></script>
<script type="module">
  import * as lib from '/dist/browser/index.mjs'
  window.esmExports = Object.keys(lib).sort()
  window.harness = makeHarness(lib.TetherSocket, 'esm')
</script>
</body></html>
`

/** A page that imports the durable outbox entry (dist/browser/persist.mjs) as `window.persist`, and nothing else. */
const persistPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tethersocket: persist</title></head>
<body>
<script type="module">
  import * as persist from '/dist/browser/persist.mjs'
  window.persist = persist
  // ?open=<name>: opens that store at once, as a socket does when the page starts.
  const name = new URLSearchParams(location.search).get('open')
  if (name) window.opening = persist.indexedDBStore(name).open()
</script>
</body></html>
`

/**
 * A page with both ESM entries for browsers (dist/browser/index.mjs and persist.mjs) as `window.lib`, for sockets
 * with the durable outbox; the tests create the socket themselves, after every load.
 */
const persistSocketPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tethersocket: socket with persist</title>
<script type="importmap">${JSON.stringify({ imports: { eventemitter3: '/vendor/eventemitter3.mjs' } })}</script>
</head>
<body>
<script type="module">
  import { TetherSocket } from '/dist/browser/index.mjs'
  import { indexedDBStore } from '/dist/browser/persist.mjs'
  window.lib = { TetherSocket, indexedDBStore }
</script>
</body></html>
`

/**
 * The same for the script tag with the durable outbox (tethersocket.persist.global.js): `window.lib`
 * from `window.TetherSocket` and its statics, no module anywhere.
 */
const persistScriptTagPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tethersocket: script tag with persist</title></head>
<body>
<script src="/tethersocket.persist.global.js"></script>
<script>window.lib = { TetherSocket: window.TetherSocket, indexedDBStore: window.TetherSocket.indexedDBStore }</script>
</body></html>
`

/** Path → [content type, file or inline body]. `/dist/<file>` and `/dist/browser/<file>` are handled apart. */
const routes: Record<string, [string, { file: string } | { body: string }]> = {
  '/': [HTML, { file: join(root, 'examples', 'script-tag', 'index.html') }],
  '/tethersocket.global.js': [JS, { file: join(dist, 'tethersocket.global.js') }],
  '/tethersocket.global.prod.js': [JS, { file: join(dist, 'tethersocket.global.prod.js') }],
  '/tethersocket.persist.global.js': [JS, { file: join(dist, 'tethersocket.persist.global.js') }],
  '/vendor/eventemitter3.mjs': [JS, { file: emitterEsm }],
  '/harness.js': [JS, { file: join(root, 'test', 'support', 'browser-harness.js') }],
  '/script-tag.html': [HTML, { body: scriptTagPage('tethersocket.global.js', 'iife') }],
  '/script-tag-prod.html': [HTML, { body: scriptTagPage('tethersocket.global.prod.js', 'iife-prod') }],
  '/esm.html': [HTML, { body: esmPage }],
  '/persist.html': [HTML, { body: persistPage }],
  '/persist-socket.html': [HTML, { body: persistSocketPage }],
  '/persist-script-tag.html': [HTML, { body: persistScriptTagPage }],
}

/** Fails with a clear message when the build is missing (`npm test` builds first). */
function checkBuild(): void {
  for (const file of [
    'tethersocket.global.js',
    'tethersocket.global.prod.js',
    'tethersocket.persist.global.js',
    'browser/index.mjs',
    'browser/persist.mjs',
  ]) {
    if (!existsSync(join(dist, file))) throw new Error(`${join(dist, file)} is missing: run \`npm run build\` first (\`npm test\` builds)`)
  }
  if (!existsSync(emitterEsm)) throw new Error(`eventemitter3's ESM build is missing at ${emitterEsm}: run \`npm ci\``)
}

export interface PageServerOptions {
  /** Port to bind on 127.0.0.1; 0 (default) picks a free one. A fixed port is retried briefly while still in use. */
  port?: number
  /** Options of the reference server (attached at /ws). */
  tether?: Omit<TetherServerOptions, 'server' | 'path' | 'port' | 'host'>
  /** Called with the reference server before the port opens: handlers set here see the first client. */
  setup?: (tether: TetherServer) => void
}

/** A running page server with its reference server. */
export interface PageServer {
  readonly port: number
  /** `http://127.0.0.1:<port>` */
  readonly origin: string
  readonly http: Server
  readonly tether: TetherServer
  /** Time (Date.now()) of every WebSocket upgrade request on /ws, accepted or not. */
  readonly upgrades: number[]
  /** WebSocket connections on /ws open now. */
  openConnections(): number
  /** Destroys every WebSocket connection's TCP socket (no close frame, as a network failure would). Returns how many. */
  dropConnections(): number
  /** Crash-like stop: connections cut without a close frame, sessions gone, port released. Idempotent. */
  close(): Promise<void>
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * A page server whose reference server records what pages send and the sessions it starts, and
 * answers every request with `{ got: data }`: what the build tests (ESM, production script tag)
 * check a page against.
 */
export async function startRecordingPageServer(): Promise<{ server: PageServer; atServer: unknown[]; sessions: Session[] }> {
  const atServer: unknown[] = []
  const sessions: Session[] = []
  const server = await startPageServer({
    setup: (tether) => {
      tether.on('message', (data) => atServer.push(data))
      tether.on('session', (session) => sessions.push(session))
      tether.onRequest((data) => ({ got: data }))
    },
  })
  return { server, atServer, sessions }
}

export async function startPageServer(options: PageServerOptions = {}): Promise<PageServer> {
  checkBuild()
  const http = createServer((request, response) => {
    const { pathname: path, searchParams } = new URL(request.url ?? '/', 'http://localhost')
    let route = routes[path]
    const distFile = /^\/dist\/((?:browser\/)?[\w.-]+\.m?js)$/.exec(path)?.[1]
    if (!route && distFile && existsSync(join(dist, distFile))) route = [JS, { file: join(dist, distFile) }]
    if (!route) {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not found\n')
      return
    }
    const [type, source] = route
    let body: string | Buffer
    try {
      body = 'body' in source ? source.body : readFileSync(source.file)
    } catch (error) {
      // e.g. dist/ rebuilt meanwhile: the page reports the failed load; the test process goes on.
      response.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${(error as Error).message}\n`)
      return
    }
    // ?bfcache: a page the back-forward cache may keep (Chromium keeps no page served with no-store).
    const cache = searchParams.has('bfcache') ? 'no-cache' : 'no-store'
    response.writeHead(200, { 'Content-Type': type, 'Cache-Control': cache }).end(body)
  })
  const tcp = new Set<Socket>()
  http.on('connection', (socket) => {
    tcp.add(socket)
    socket.once('close', () => tcp.delete(socket))
  })
  const upgrades: number[] = []
  const wsSockets = new Set<Socket>()
  http.on('upgrade', (request, socket) => {
    if (new URL(request.url ?? '/', 'http://localhost').pathname !== '/ws') return
    upgrades.push(Date.now())
    const tcpSocket = socket as Socket
    wsSockets.add(tcpSocket)
    tcpSocket.once('close', () => wsSockets.delete(tcpSocket))
  })

  // The reference server is attached before listening: an upgrade that came earlier would hang.
  const tether = await createTetherServer({ ...options.tether, server: http, path: '/ws' })
  options.setup?.(tether)

  const requested = options.port ?? 0
  const deadline = Date.now() + 3000
  for (;;) {
    try {
      await listen(http, requested)
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || Date.now() > deadline) {
        await tether.close()
        throw new Error(`page server could not listen on 127.0.0.1:${requested}: ${(error as Error).message}`)
      }
      await sleep(25)
    }
  }
  const { port } = http.address() as { port: number }

  const dropConnections = () => {
    const all = [...wsSockets]
    for (const socket of all) socket.destroy()
    return all.length
  }
  let closing: Promise<void> | undefined
  const server: PageServer = {
    port,
    origin: `http://127.0.0.1:${port}`,
    http,
    tether,
    upgrades,
    openConnections: () => wsSockets.size,
    dropConnections,
    close() {
      closing ??= (async () => {
        dropConnections()
        await withTimeout(tether.close(), 3000, 'the tether server did not close')
        const closed = new Promise<void>((resolve) => http.close(() => resolve()))
        http.closeAllConnections()
        for (const socket of tcp) socket.destroy()
        await withTimeout(closed, 3000, `the page server on port ${port} did not close`)
      })()
      return closing
    },
  }
  return server
}

/** A TCP relay in front of a port that can refuse every connection for a while. */
export interface TcpGate {
  readonly port: number
  /** Connections relayed so far. */
  readonly relayed: number
  /** Connections cut at once because the gate was down. */
  readonly refused: number
  /** Cuts every relayed connection and refuses new ones until `up()`. */
  down(): void
  /** Relays new connections again. */
  up(): void
  close(): Promise<void>
}

export async function startTcpGate(targetPort: number): Promise<TcpGate> {
  const pairs = new Set<[Socket, Socket]>()
  let open = true
  let relayed = 0
  let refused = 0
  const server = createNetServer((client) => {
    if (!open) {
      refused++
      client.destroy()
      return
    }
    relayed++
    const upstream = netConnect(targetPort, '127.0.0.1')
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    const end = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    for (const socket of pair) {
      socket.on('error', end)
      socket.on('close', end)
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const cutAll = () => {
    for (const [client, upstream] of [...pairs]) {
      client.destroy()
      upstream.destroy()
    }
    pairs.clear()
  }
  let closing: Promise<void> | undefined
  return {
    port: (server.address() as { port: number }).port,
    get relayed() {
      return relayed
    },
    get refused() {
      return refused
    },
    down() {
      open = false
      cutAll()
    },
    up() {
      open = true
    },
    close() {
      closing ??= withTimeout(
        new Promise<void>((resolve) => {
          open = false
          server.close(() => resolve())
          cutAll()
        }),
        3000,
        'the TCP gate did not close',
      )
      return closing
    },
  }
}
