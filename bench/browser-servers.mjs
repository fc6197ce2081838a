// The servers of the browser throughput section (bench/browser-throughput.mjs), in a process of
// their own: the section's own process drives the page and, when profiling, playwright, whose
// async context tracking makes every promise this process creates cost more (about 1.5–2×
// here), which would be charged to the reference server's session.send().
//
// One node:http server on 127.0.0.1 serves the page (given by the parent), the built package
// (dist/) and eventemitter3's ESM build, with the reference server at /ws (tether mode); a plain
// `ws` server on a port of its own serves the native WebSocket and raw mode. Both count and
// check what arrives (every message once, in order) and, asked with `{"go":n}`, send n
// messages: plain `ws` as one frame each, the reference server with `session.send()`, timing
// their own send loop.
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { WebSocketServer } from 'ws'
import { distDir, loadServer } from './dist.mjs'
import { serve } from './pinned.mjs'

/** eventemitter3's own ESM build (its `index.mjs` re-exports the CommonJS file, which a browser cannot import). */
const emitterEsm = join(dirname(createRequire(import.meta.url).resolve('eventemitter3/package.json')), 'dist', 'eventemitter3.esm.js')
const JS = 'text/javascript; charset=utf-8'

/** The round under way: how many messages, how many arrived, the first out of order, the server's send loop. */
const round = { n: 0, received: 0, bad: undefined, sendLoopMs: undefined }
const failures = []

/** Counts and checks a message from the page; returns how many of the round have arrived. */
function arrived(value) {
  if (value.n !== round.received && round.bad === undefined) round.bad = `message ${round.received} was ${JSON.stringify(value)}`
  return ++round.received
}

const message = (i) => ({ n: i, text: 'hello' })

let closeAll

async function start({ page, tether: tetherOptions }) {
  const { createTetherServer } = await loadServer()
  const http = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname
    // dist/browser/: the builds for native <script type="module"> pages (no process needed).
    const distFile = /^\/dist\/((?:browser\/)?[\w.-]+\.m?js)$/.exec(path)?.[1]
    let body
    if (path === '/browser-throughput.html') body = ['text/html; charset=utf-8', page]
    else if (distFile && existsSync(join(distDir, distFile))) body = [JS, readFileSync(join(distDir, distFile))]
    else if (path === '/vendor/eventemitter3.mjs') body = [JS, readFileSync(emitterEsm)]
    if (!body) {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not found\n')
      return
    }
    response.writeHead(200, { 'Content-Type': body[0], 'Cache-Control': 'no-store' }).end(body[1])
  })
  const tether = await createTetherServer({ ...tetherOptions, server: http, path: '/ws' })
  tether.on('message', (data, session) => {
    if (data.go === undefined) {
      arrived(data)
      return
    }
    const started = performance.now()
    for (let i = 0; i < data.go; i++) session.send(message(i)).catch((error) => failures.push(`session.send(): ${error.message}`))
    round.sendLoopMs = performance.now() - started
  })
  await new Promise((resolve, reject) => {
    http.once('error', reject)
    http.listen(0, '127.0.0.1', resolve)
  })

  const plain = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  plain.on('connection', (ws) =>
    ws.on('message', (data) => {
      const value = JSON.parse(data)
      if (value.go === undefined) {
        const bad = round.bad
        if (arrived(value) === round.n) ws.send('done')
        // A gap or a duplicate ends the round at once: the page stops waiting for `done`.
        else if (bad === undefined && round.bad !== undefined) ws.send(`out of order or duplicated at the server: ${round.bad}`)
        return
      }
      const started = performance.now()
      for (let i = 0; i < value.go; i++) ws.send(JSON.stringify(message(i)))
      round.sendLoopMs = performance.now() - started
    }),
  )
  await new Promise((resolve, reject) => {
    plain.once('listening', resolve)
    plain.once('error', reject)
  })
  closeAll = async () => {
    for (const ws of plain.clients) ws.terminate()
    await new Promise((resolve) => plain.close(resolve))
    await tether.close()
    http.closeAllConnections()
    await new Promise((resolve) => http.close(resolve))
  }
  return { origin: `http://127.0.0.1:${http.address().port}`, plainPort: plain.address().port }
}

serve({
  start,
  /** A new round of `n` messages; the previous rounds' garbage is collected first, outside the time. */
  arm(n) {
    Object.assign(round, { n, received: 0, bad: undefined, sendLoopMs: undefined })
    globalThis.gc?.()
  },
  report: () => ({ ...round, failures: failures.splice(0) }),
  close: () => closeAll?.(),
})
