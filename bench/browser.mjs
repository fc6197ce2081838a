// The browser harness of the benchmarks: headless Chromium (Debian's, or CHROME_PATH) driven by
// playwright-core, and one node:http server on 127.0.0.1 in this process that serves the built
// package (dist/) and the benchmark pages, with the reference server attached at /ws, so that
// pages and socket are same-origin.
//
// Chromium runs with a profile on disk (a persistent context, not an incognito one): an
// incognito context keeps IndexedDB in memory, and a benchmark of durable writes must pay for
// the disk. The profile is a fresh temporary directory, deleted by close().
//
// The client's work happens in Chromium's processes; this process only serves, so the server
// runs here (as the test pages' server does) rather than in bench/servers.mjs.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { chromium } from 'playwright-core'
import { distDir, loadServer } from './dist.mjs'

/** As test/support/chromium.ts: the flags headless Chromium needs in a container without a desktop or outside network. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** `CHROME_PATH`, or Debian's chromium; a clear message when there is none. */
export function chromiumExecutable() {
  const path = process.env.CHROME_PATH || '/usr/bin/chromium'
  if (!existsSync(path)) {
    throw new Error(
      process.env.CHROME_PATH
        ? `the browser benchmarks need Chromium: CHROME_PATH is ${path}, which does not exist`
        : `the browser benchmarks need Chromium: none at ${path}. Install it (\`apt-get install -y chromium\` on Debian/Ubuntu) or set CHROME_PATH to a Chromium or Chrome binary`,
    )
  }
  return path
}

/** eventemitter3's own ESM build (its `index.mjs` re-exports the CommonJS file, which a browser cannot import). */
const emitterEsm = join(dirname(createRequire(import.meta.url).resolve('eventemitter3/package.json')), 'dist', 'eventemitter3.esm.js')

/**
 * The page every benchmark can start from: the ESM build as `window.tethersocket` and the durable
 * outbox entry as `window.persist` (one copy of the shared chunks, so one set of error classes),
 * then `window.ready`. An import map resolves the bare `eventemitter3`.
 */
const benchPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tethersocket benchmark</title>
<link rel="icon" href="data:,">
<script type="importmap">${JSON.stringify({ imports: { eventemitter3: '/vendor/eventemitter3.mjs' } })}</script>
</head>
<body>
<script type="module">
  window.tethersocket = await import('/dist/browser/index.mjs')
  window.persist = await import('/dist/browser/persist.mjs')
  window.ready = true
</script>
</body></html>
`

const JS = 'text/javascript; charset=utf-8'
const HTML = 'text/html; charset=utf-8'

/**
 * Starts the page server (with the reference server at /ws) and Chromium.
 * @param {object} [options]
 * @param {object} [options.tether] options of the reference server (the benchmarks pass `rateLimit: false`)
 * @param {(server: import('../dist/server.mjs').TetherServer) => void} [options.setup] handlers on the reference server, set before it listens
 * @param {Record<string, string>} [options.pages] more pages: path → HTML
 * @param {string} [options.initScript] runs in every page before its own scripts (e.g. counters)
 */
export async function startBrowserBench({ tether: tetherOptions = {}, setup, pages = {}, initScript } = {}) {
  const { createTetherServer } = await loadServer()
  const routes = {
    '/bench.html': [HTML, benchPage],
    ...Object.fromEntries(Object.entries(pages).map(([path, html]) => [path, [HTML, html]])),
  }
  const http = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname
    let route = routes[path]
    // dist/browser/: the builds for native <script type="module"> pages (no process needed).
    const distFile = /^\/dist\/((?:browser\/)?[\w.-]+\.m?js)$/.exec(path)?.[1]
    if (!route && distFile && existsSync(join(distDir, distFile))) route = [JS, readFileSync(join(distDir, distFile))]
    if (!route && path === '/vendor/eventemitter3.mjs') route = [JS, readFileSync(emitterEsm)]
    if (!route) {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not found\n')
      return
    }
    response.writeHead(200, { 'Content-Type': route[0], 'Cache-Control': 'no-store' }).end(route[1])
  })
  const tether = await createTetherServer({ ...tetherOptions, server: http, path: '/ws' })
  setup?.(tether)
  await new Promise((resolve, reject) => {
    http.once('error', reject)
    http.listen(0, '127.0.0.1', resolve)
  })
  const origin = `http://127.0.0.1:${http.address().port}`

  const profile = mkdtempSync(join(tmpdir(), 'tethersocket-bench-'))
  let context
  try {
    context = await chromium.launchPersistentContext(profile, { executablePath: chromiumExecutable(), args: CHROMIUM_ARGS, timeout: 20000 })
    if (initScript) await context.addInitScript(initScript)
  } catch (error) {
    await tether.close()
    http.closeAllConnections()
    await new Promise((resolve) => http.close(resolve))
    rmSync(profile, { recursive: true, force: true })
    throw error
  }
  context.setDefaultTimeout(60000)

  return {
    origin,
    tether,
    context,
    /** A new page on `path` (default the bench page), once its `window.ready` is set; uncaught errors in it throw at the next `check()`. */
    async open(path = '/bench.html') {
      const page = await context.newPage()
      const errors = []
      page.on('pageerror', (error) => errors.push(`${error.name}: ${error.message}`))
      await page.goto(`${origin}${path}`)
      await page.waitForFunction(() => window.ready === true, undefined, { timeout: 20000 })
      return {
        page,
        check() {
          if (errors.length) throw new Error(`the benchmark page failed: ${errors.join('; ')}`)
        },
      }
    },
    async close() {
      await context.close().catch(() => {})
      await tether.close()
      http.closeAllConnections()
      await new Promise((resolve) => http.close(resolve))
      rmSync(profile, { recursive: true, force: true })
    },
  }
}
