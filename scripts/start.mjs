// The demo: builds the package if needed, then serves the script-tag chat example and the
// reference server on one port: the page at http://127.0.0.1:8080, tether.v1 at ws://127.0.0.1:8080/ws.
// `npm start`, then open the page; PORT and HOST change where it listens.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

// What a first build takes on a modest 2-core machine; a guess shown before it starts, so the
// wait is not silent. Update it when the build's duration changes.
const BUILD_SECONDS = 10

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const bundle = join(root, 'dist', 'tethersocket.global.js')
if (!['server.mjs', 'browser/persist.mjs'].every((file) => existsSync(join(root, 'dist', file))) || !existsSync(bundle)) {
  console.log(`building the package (about ${BUILD_SECONDS} s, first run only)…`)
  const started = performance.now()
  // --silent: rollup's progress and warnings are not for demo users; a failed build still prints its error.
  execFileSync(process.execPath, [join(root, 'node_modules', 'rollup', 'dist', 'bin', 'rollup'), '-c', '--silent'], {
    cwd: root,
    stdio: 'inherit',
  })
  console.log(`built in ${((performance.now() - started) / 1000).toFixed(1)} s`)
}
const { createTetherServer } = await import(join(root, 'dist', 'server.mjs'))
// After the build: the chat imports the server's RequestError from the package.
const { CHAT_OPTIONS, serveChat } = await import('../examples/script-tag/chat-server.mjs')

const port = Number(process.env.PORT ?? 8080)
const host = process.env.HOST ?? '127.0.0.1'
const files = {
  '/': ['text/html; charset=utf-8', join(root, 'examples', 'script-tag', 'index.html')],
  '/tethersocket.global.js': ['text/javascript; charset=utf-8', bundle],
}
const http = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname
  // The ES modules of the build too: the page imports the durable outbox (dist/browser/persist.mjs, the build for
  // browsers without a bundler), which imports its chunks.
  const distModule = /^\/dist\/((?:browser\/)?[\w.-]+\.mjs)$/.exec(path)?.[1]
  const file =
    files[path] ??
    (distModule && existsSync(join(root, 'dist', distModule))
      ? ['text/javascript; charset=utf-8', join(root, 'dist', distModule)]
      : undefined)
  if (!file) return res.writeHead(404).end('Not found\n')
  res.writeHead(200, { 'Content-Type': file[0], 'Cache-Control': 'no-cache' }).end(readFileSync(file[1]))
})

// Enter takes the chat away and brings it back while the page stays served, so that a page can
// be reloaded meanwhile: connections are cut (as by a network failure) and refused, and the
// server keeps its sessions, which the pages resume when it is back. (Ctrl-C then `npm start`
// is a restart instead: sessions and history are gone, and the pages start new sessions.)
let away = false
const connections = new Set()
// Before the tether server's listener: a refused socket is destroyed, which it then leaves alone.
// With a listener of its own on the HTTP server, the tether server leaves other paths to it.
http.prependListener('upgrade', (request, socket) => {
  if ((request.url ?? '/').split('?')[0] !== '/ws') return socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n')
  if (away) return socket.destroy()
  connections.add(socket)
  socket.once('close', () => connections.delete(socket))
})
process.stdin.on('data', (input) => {
  if (!input.includes(10)) return
  away = !away
  if (away) for (const socket of connections) socket.destroy()
  console.log(
    away
      ? 'chat away: WebSocket connections cut and refused, sessions kept, the page still served. Enter brings it back.'
      : 'chat back: the pages reconnect and resume their sessions.',
  )
})

const server = await createTetherServer({ ...CHAT_OPTIONS, server: http, path: '/ws' })
serveChat(server)
server.on('session', (session) => console.log(`session ${session.id.slice(0, 6)} opened (${server.sessions.size} sessions)`))
server.on('resume', (session) => console.log(`session ${session.id.slice(0, 6)} resumed`))
server.on('error', (error) => console.error(`server error: ${error.message}`))

// A busy or forbidden port is the user's to fix: say so in one line, without a stack trace.
http.once('error', (error) => {
  const next = port < 65535 ? port + 1 : 8080
  const why =
    error.code === 'EADDRINUSE'
      ? `port ${port} is in use: set PORT to another port, e.g. PORT=${next} npm start`
      : error.code === 'EACCES'
        ? `no permission to listen on port ${port}: set PORT to a port above 1023, e.g. PORT=8080 npm start`
        : `cannot listen on ${host}:${port} (${error.message}): check HOST and PORT`
  console.error(`tethersocket demo: ${why}`)
  process.exit(1)
})
http.listen(port, host, () => {
  const where = `${host.includes(':') ? `[${host}]` : host}:${http.address().port}`
  console.log(`tethersocket demo: open http://${where}  (WebSocket endpoint: ws://${where}/ws; Ctrl-C to stop)`)
  if (process.stdin.isTTY) console.log('Press Enter to take the chat away while the page stays served (type, reload, then Enter again).')
})
const stop = () => server.close().then(() => http.close(() => process.exit(0)))
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
