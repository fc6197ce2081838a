// Throughput in headless Chromium, both directions, small JSON messages (`{"n":123,"text":"hello"}`),
// one page, the contenders interleaved round by round:
//
// 1. Page to server: N messages sent in one synchronous loop. The native `WebSocket`
//    fire-and-forget (the baseline) and tethersocket raw mode (fire-and-forget `send()`, one frame
//    per message) to a plain `ws` server that sends `done` once it has all N; tether mode's
//    acknowledged `send()` to the reference server, until all N promises resolved.
// 2. Server to page: the page asks for N messages (one frame to the server) and counts them. A
//    plain `ws` server sends each as a frame of its own, to the native `onmessage` (the baseline)
//    and to raw mode's `message` listener; the reference server's `session.send()` for each (it
//    batches them into `msg` frames) to tether mode's `message` listener.
//
// Chromium runs without DevTools attached (bench/plain-chromium.mjs says why: playwright's
// instrumentation copies every WebSocket frame and would double what a frame costs), the servers
// in a Node process of their own (bench/browser-servers.mjs says why). The page takes its
// commands over a control WebSocket of its own, idle while a round runs: open a socket, measure,
// close. Every time is taken in the page, on its clock: from the first send() (or the request
// for the N messages) until the server's `done` arrived, every promise resolved, or the Nth
// message reached the listener. Each round checks that every message arrived once, in order,
// and that nothing more came in the 50 ms after; a round that fails stops the run at once.
//
//   npm run bench -- browser                               # also part of `npm run bench`
//   node --expose-gc bench/browser-throughput.mjs [--rounds 5] [--only raw]    # on its own
//   BROWSER_VIA=playwright node --expose-gc bench/browser-throughput.mjs
//       the same in playwright's page (bench/browser.mjs), to see what its instrumentation costs
//   BROWSER_PROFILE=prof node --expose-gc bench/browser-throughput.mjs --rounds 2
//       profiles every measured round with Chromium's CPU profiler (a DevTools connection with
//       the Profiler domain alone; the times then include the sampling), one .cpuprofile each:
//       node bench/profile.mjs prof/browser-out-raw-*.cpuprofile --match dist/   (named direction-client-messages-n)
//   BROWSER_N_OUT, BROWSER_N_IN, BROWSER_BATCHED: the message counts (see below)
import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { WebSocketServer } from 'ws'
import { interleave, median, ratio, spread, summarize, table } from './harness.mjs'
import { startPinned } from './pinned.mjs'
import { launchPlainChromium, profilerOf } from './plain-chromium.mjs'
import { cpuSpent, cpuTimes } from './process-cpu.mjs'

/** Page to server: about half a second for the native WebSocket here (2 cores, shared). */
export const N_OUT = Number(process.env.BROWSER_N_OUT ?? 20_000)
/** Server to page: about half a second for the native WebSocket here. */
export const N_IN = Number(process.env.BROWSER_N_IN ?? 20_000)
/** Tether mode batches: its rounds carry this many times the messages, so that they too last long enough to time. */
export const BATCHED = Number(process.env.BROWSER_BATCHED ?? 10)
/** After the last message, how long the page (or server) watches for a duplicate or a stray one. */
const SETTLE_MS = 50
/** Bound of one command to the page (a round of the slowest contender takes about a second). */
const COMMAND_MS = 90_000

const contenders = [
  { name: 'native WebSocket, fire-and-forget', direction: 'out', client: 'native' },
  { name: "tethersocket, mode: 'raw', send() not awaited", direction: 'out', client: 'raw' },
  { name: 'tethersocket, tether mode, every send() awaited', direction: 'out', client: 'tether', scale: BATCHED },
  // As many as the native rounds: short rounds, where what a round costs once (the first frame, the last ack) shows.
  { name: 'tethersocket, tether mode, every send() awaited, as many as native', direction: 'out', client: 'tether' },
  { name: 'native WebSocket, onmessage, one message per frame', direction: 'in', client: 'native' },
  { name: "tethersocket, mode: 'raw', message listener, one message per frame", direction: 'in', client: 'raw' },
  { name: "tethersocket, tether mode, message listener (server's session.send())", direction: 'in', client: 'tether', scale: BATCHED },
  { name: 'tethersocket, tether mode, message listener, as many as native', direction: 'in', client: 'tether' },
]

/** How many messages a round of `contender` carries. */
const count = ({ direction, scale = 1 }) => (direction === 'in' ? N_IN : N_OUT) * scale

const load = () => loadavg()[0].toFixed(2)

// ── in the page (serialized into it: each function self-contained) ─────────────────────────

/** Opens the contender's socket and sets up what the measurement needs, kept on `window.bench`. */
async function openInPage({ direction, client, n, url }) {
  const bounded = (promise, ms, what) =>
    Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms))])
  const state = { direction, client, n, errors: [], count: 0, bad: undefined, first: 0 }
  state.finished = new Promise((resolve, reject) => {
    state.finish = resolve
    state.fail = reject
  })
  state.finished.catch(() => {}) // awaited by measureInPage; a failure before that must not be unhandled
  // Server to page: the check and count of every message, as an app's listener would read it.
  const take = (value) => {
    // A gap or a duplicate ends the round at once (the last message may never come).
    if (value.n !== state.count && state.bad === undefined) {
      state.bad = `message ${state.count} was ${JSON.stringify(value)}`
      state.fail(new Error(`${client}: out of order or duplicated in the page: ${state.bad}`))
    }
    if (++state.count === 1) state.first = performance.now()
    if (state.count === n) state.finish(performance.now())
  }
  // Page to server, native and raw: the server says `done` once it has all N.
  const done = (data) => {
    if (data === 'done') state.finish(performance.now())
    else state.fail(new Error(`${client}: the server said ${String(data).slice(0, 200)}`))
  }
  if (client === 'native') {
    const ws = new WebSocket(url)
    ws.onmessage = direction === 'in' ? (event) => take(JSON.parse(event.data)) : (event) => done(event.data)
    await bounded(
      new Promise((resolve, reject) => {
        ws.onopen = resolve
        ws.onerror = () => reject(new Error(`the native WebSocket could not connect to ${url}`))
      }),
      20000,
      'connecting',
    )
    ws.onerror = () => state.errors.push('the native WebSocket reported an error')
    state.socket = ws
  } else {
    const sock = new window.tethersocket.TetherSocket(url, {
      mode: client === 'raw' ? 'raw' : 'tether',
      // The default bounds (10,000 messages, 10 MiB) protect applications; they are not measured here.
      queue: { maxMessages: Number.POSITIVE_INFINITY, maxBytes: Number.POSITIVE_INFINITY },
    })
    sock.on('error', (error) => state.errors.push(`${error.name}: ${error.message}`))
    // Raw mode hands over the frame's text, as the native onmessage: the listener parses it.
    if (direction === 'in') sock.on('message', client === 'raw' ? (data) => take(JSON.parse(data)) : take)
    else if (client === 'raw') sock.on('message', done)
    await bounded(new Promise((resolve) => sock.once('open', resolve)), 20000, 'connecting')
    state.socket = sock
  }
  window.bench = state
}

/**
 * The measurement itself, in a task of its own (as an app's sends start in an event handler).
 * Resolves with the ms from the first send (or the request) until the end, the ms of the
 * synchronous send loop, and, server to page, the ms until the first message and from it to the last.
 */
async function measureInPage() {
  const state = window.bench
  const { client, n, socket } = state
  await new Promise((resolve) => setTimeout(resolve, 0))
  const timeout = setTimeout(() => state.fail(new Error(`${client}: no end within 30 s (${state.count} of ${n} messages arrived)`)), 30000)
  const start = performance.now()
  let loopEnd
  if (state.direction === 'in') {
    if (client === 'native') socket.send(JSON.stringify({ go: n }))
    else socket.send({ go: n })
  } else if (client === 'native') {
    for (let i = 0; i < n; i++) socket.send(JSON.stringify({ n: i, text: 'hello' }))
  } else if (client === 'raw') {
    for (let i = 0; i < n; i++) socket.send({ n: i, text: 'hello' })
  } else {
    const promises = new Array(n)
    for (let i = 0; i < n; i++) promises[i] = socket.send({ n: i, text: 'hello' })
    loopEnd = performance.now()
    Promise.all(promises).then(() => state.finish(performance.now()), state.fail)
  }
  loopEnd ??= performance.now()
  try {
    const end = await state.finished
    return { ms: end - start, loop: loopEnd - start, first: state.first && state.first - start, spread: state.first && end - state.first }
  } finally {
    clearTimeout(timeout)
  }
}

/** Watches for strays, closes the socket and reports what arrived. */
async function closeInPage(settle) {
  const state = window.bench
  window.bench = undefined
  await new Promise((resolve) => setTimeout(resolve, settle))
  const { count, bad, errors, socket, client } = state
  if (client === 'native') {
    if (socket.readyState !== WebSocket.CLOSED) {
      await new Promise((resolve) => {
        socket.onclose = resolve
        socket.close()
      })
    }
  } else await socket.close()
  // The next round should not pay for this one's garbage (plain Chromium exposes gc()).
  window.gc?.()
  return { count, bad, errors }
}

/**
 * The page: the ESM build as `window.tethersocket`, the functions above, and the control socket
 * (its port in the query) that runs them on command, one at a time, and reports the page's
 * uncaught errors.
 */
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tethersocket browser throughput</title>
<link rel="icon" href="data:,">
<script type="importmap">${JSON.stringify({ imports: { eventemitter3: '/vendor/eventemitter3.mjs' } })}</script>
</head>
<body>
<script type="module">
  ${openInPage}
  ${measureInPage}
  ${closeInPage}
  // The build, which the user agent leaves out (it says 156.0.0.0).
  const version = async () => (await navigator.userAgentData?.getHighEntropyValues(['fullVersionList']))?.fullVersionList?.find((b) => /Chrom/.test(b.brand))?.version
  const commands = { open: openInPage, measure: measureInPage, close: closeInPage, version }
  window.tethersocket = await import('/dist/browser/index.mjs')
  const port = new URLSearchParams(location.search).get('control')
  const control = new WebSocket('ws://127.0.0.1:' + port + '/control')
  const report = (error) => control.send(JSON.stringify({ error: String(error?.stack ?? error) }))
  window.addEventListener('error', (event) => report(event.error ?? event.message))
  window.addEventListener('unhandledrejection', (event) => report(event.reason))
  control.onmessage = async (event) => {
    const { id, command, arg } = JSON.parse(event.data)
    try {
      control.send(JSON.stringify({ id, value: await commands[command](arg) }))
    } catch (error) {
      control.send(JSON.stringify({ id, error: error.name + ': ' + error.message }))
    }
  }
</script>
</body></html>
`

// ── in Node ─────────────────────────────────────────────────────────────────────────────────

/**
 * The control socket's server, in this process, and the page's end of it once it connects:
 * commands to the page, one at a time, each bounded; the page's uncaught errors fail the next.
 */
async function startControl() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/control' })
  await new Promise((resolve, reject) => {
    wss.once('listening', resolve)
    wss.once('error', reject)
  })
  const connected = new Promise((resolve) => wss.once('connection', resolve))
  return {
    port: wss.address().port,
    /** Resolves with the page's commands once it connected (bounded by the caller). */
    page: connected.then(pageControl),
    close: () => {
      for (const ws of wss.clients) ws.terminate()
      return new Promise((resolve) => wss.close(resolve))
    },
  }
}

/** Sends the page commands over its control socket; its uncaught errors fail the next command. */
function pageControl(ws) {
  let nextId = 0
  const pending = new Map()
  const pageErrors = []
  ws.on('message', (data) => {
    const { id, value, error } = JSON.parse(data)
    if (id === undefined) {
      pageErrors.push(error)
      return
    }
    const call = pending.get(id)
    pending.delete(id)
    if (error) call?.reject(new Error(`the benchmark page failed: ${error}`))
    else call?.resolve(value)
  })
  ws.on('close', () => {
    for (const { reject } of pending.values()) reject(new Error('the benchmark page closed its control socket'))
    pending.clear()
  })
  return {
    call(command, arg) {
      if (pageErrors.length) return Promise.reject(new Error(`the benchmark page failed: ${pageErrors.join('; ')}`))
      const id = ++nextId
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id)
          reject(new Error(`the benchmark page did not answer ${command} within ${COMMAND_MS / 1000} s`))
        }, COMMAND_MS)
        pending.set(id, {
          resolve(value) {
            clearTimeout(timer)
            resolve(value)
          },
          reject(error) {
            clearTimeout(timer)
            reject(error)
          },
        })
        ws.send(JSON.stringify({ id, command, arg }))
      })
    },
  }
}

/**
 * Opens the page: in plain Chromium (no DevTools), or for `via: 'playwright'` in playwright's
 * (bench/browser.mjs; its own page server stays idle). With `profile`, a CPU profiler on the
 * page: in plain Chromium a DevTools connection with the Profiler domain alone. Resolves once
 * the page is under control.
 */
async function openPage(url, control, { via, profile }) {
  let browser
  let playwright
  let profiler
  const close = async () => {
    profiler?.close()
    await browser?.close()
    await playwright?.close()
  }
  try {
    if (via === 'playwright') {
      const { startBrowserBench } = await import('./browser.mjs')
      playwright = await startBrowserBench()
      const page = await playwright.context.newPage()
      await page.goto(url)
      if (profile) {
        const cdp = await page.context().newCDPSession(page)
        await cdp.send('Profiler.enable')
        await cdp.send('Profiler.setSamplingInterval', { interval: 100 })
        profiler = {
          start: () => cdp.send('Profiler.start'),
          stop: async () => (await cdp.send('Profiler.stop')).profile,
          close: () => {},
        }
      }
    } else browser = launchPlainChromium(url, { profiler: profile })
    let timer
    const page = await Promise.race([
      control.page,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('the benchmark page did not connect within 30 s')), 30_000)
      }),
      ...(browser
        ? [browser.exited.then((code) => Promise.reject(new Error(`Chromium exited (code ${code}) before the page connected`)))]
        : []),
    ]).finally(() => clearTimeout(timer))
    if (profile && browser) profiler = await profilerOf(browser, url)
    return {
      page,
      profiler,
      // The page's user agent says only the major version; playwright knows the build.
      version: playwright?.context.browser()?.version(),
      close,
    }
  } catch (error) {
    await close()
    throw error
  }
}

export async function run({ rounds, log, select }) {
  const chosen = select(contenders.filter((c) => c.direction === 'out')).concat(select(contenders.filter((c) => c.direction === 'in')))
  const profileDir = process.env.BROWSER_PROFILE && resolve(process.env.BROWSER_PROFILE)
  const via = process.env.BROWSER_VIA === 'playwright' ? 'playwright' : 'plain'
  if (profileDir) mkdirSync(profileDir, { recursive: true })
  const startLoad = load()
  const servers = await startPinned(new URL('./browser-servers.mjs', import.meta.url), { execArgv: ['--expose-gc'] })
  const control = await startControl()
  let opened
  try {
    const { origin, plainPort } = await servers.call('start', {
      page,
      // Without its rate limit, and with room for a round's messages unacknowledged at once: the
      // defaults would close a burst of thousands with 1013 or refuse session.send() beyond 20,000.
      tether: { rateLimit: false, maxQueue: 2 * BATCHED * Math.max(N_IN, N_OUT), maxQueueBytes: 1 << 30 },
    })
    const url = (client) => (client === 'tether' ? `${origin.replace(/^http/, 'ws')}/ws` : `ws://127.0.0.1:${plainPort}`)
    opened = await openPage(`${origin}/browser-throughput.html?control=${control.port}`, control, { via, profile: Boolean(profileDir) })
    const { page: inPage, profiler } = opened
    let measured = 0
    const measure = (contender) => async (warmUp) => {
      const n = count(contender) / (warmUp ? 10 : 1)
      await servers.call('arm', n)
      await inPage.call('open', { direction: contender.direction, client: contender.client, n, url: url(contender.client) })
      const profiled = profileDir && !warmUp
      if (profiled) await profiler.start()
      const before = cpuTimes()
      const sample = await inPage.call('measure')
      sample.cpu = cpuSpent(before, cpuTimes())
      if (profiled) {
        const profile = await profiler.stop()
        const file = `browser-${contender.direction}-${contender.client}-${n}-${++measured}.cpuprofile`
        writeFileSync(join(profileDir, file), JSON.stringify(profile))
      }
      const got = await inPage.call('close', SETTLE_MS)
      const server = await servers.call('report')
      const what = `${contender.name}, ${n} messages`
      if (got.errors.length) throw new Error(`${what}: the page reported ${got.errors.join('; ')}`)
      if (server.failures.length) throw new Error(`${what}: the server reported ${server.failures.join('; ')}`)
      if (contender.direction === 'in') {
        if (got.bad) throw new Error(`${what}: out of order or duplicated in the page: ${got.bad}`)
        if (got.count !== n) throw new Error(`${what}: the page received ${got.count}: each should arrive exactly once`)
        sample.serverLoop = server.sendLoopMs
      } else {
        if (server.bad) throw new Error(`${what}: out of order or duplicated at the server: ${server.bad}`)
        if (server.received !== n) throw new Error(`${what}: the server received ${server.received}: each should arrive exactly once`)
      }
      return sample
    }
    const samples = await interleave(
      chosen.map((c) => ({ name: c.name, run: measure(c) })),
      { rounds, log },
    )
    const version = opened.version ?? (await inPage.call('version'))

    const results = chosen.map((c) => {
      const runs = samples[c.name]
      const n = count(c)
      const perMessage = (key) => summarize(runs.map((s) => (s[key] * 1000) / n))
      return {
        ...c,
        n,
        ms: summarize(runs.map((s) => s.ms)),
        rate: summarize(runs.map((s) => (n * 1000) / s.ms)),
        loop: perMessage('loop'),
        first: c.direction === 'in' ? summarize(runs.map((s) => s.first)) : undefined,
        // Server to page: the page's own share, from the first message to the last.
        receiving: c.direction === 'in' ? perMessage('spread') : undefined,
        serverLoop: c.direction === 'in' ? perMessage('serverLoop') : undefined,
        // CPU µs per message by process (Linux): where the time goes while the page waits.
        cpu: runs[0].cpu
          ? Object.fromEntries(Object.keys(runs[0].cpu).map((role) => [role, median(runs.map((s) => ((s.cpu[role] ?? 0) * 1000) / n))]))
          : undefined,
      }
    })
    for (const direction of ['out', 'in']) {
      const group = results.filter((r) => r.direction === direction)
      for (const r of group) r.ratio = r.rate.median / group[0].rate.median
    }
    const roles = ['renderer', 'network', 'browser', 'browser-servers']
    const cpuCell = ({ cpu }) => (cpu ? roles.map((role) => (cpu[role] ?? 0).toFixed(2)).join(' / ') : '–')
    const cpuHeader = 'CPU µs per message: page / network service / browser process / servers'
    const common = (r) => [r.name, r.n.toLocaleString('en'), spread(r.ms, 0), spread(r.rate, 1, 1 / 1000), ratio(r.ratio)]
    const header = ['client', 'messages', 'time, ms: median (min–max)', 'k msg/s: median (min–max)', 'vs native']
    const outTable = table(
      [...header, 'send loop, µs per message', cpuHeader],
      results.filter((r) => r.direction === 'out').map((r) => [...common(r), spread(r.loop, 2), cpuCell(r)]),
    )
    const inTable = table(
      [...header, "server's send loop, µs per message", 'first to last message in the page, µs per message', cpuHeader],
      results.filter((r) => r.direction === 'in').map((r) => [...common(r), spread(r.serverLoop, 2), spread(r.receiving, 2), cpuCell(r)]),
    )
    const notes = [
      `Headless Chromium ${version ?? ''}, one page, ${via === 'plain' ? "no DevTools attached (playwright's would copy every WebSocket frame)" : "opened by playwright, whose DevTools session copies every WebSocket frame: not what a user's browser pays"}. ` +
        'The servers in a Node process of their own, on 127.0.0.1: a plain `ws` server for the native WebSocket and raw mode, the reference server (`rateLimit: false`) for tether mode. ' +
        `Message \`{"n":0,"text":"hello"}\`, n counting up. Times are the page's (\`performance.now()\`): median and min–max of ${rounds} rounds after a warm-up round with a tenth of the messages, the contenders interleaved; a fresh socket every round, opened and closed outside the time, and the previous rounds' garbage collected first (page and servers). ` +
        `Tether mode carries ${BATCHED}× the messages (it batches: as many as the others make its round too short to time well), and as many in the rows that say so; rates compare as messages per second. ` +
        'Page to server: from the first send() until the plain server\'s `done` (sent once it has all) arrived, or every send() promise resolved (tether mode); "send loop" is the synchronous loop of send() calls alone. ' +
        "Server to page: from the page's request (one frame) until the listener has the last message; the server's send loop is its own loop of `ws.send()` or `session.send()` calls (tether mode's first frame leaves after it), and \"first to last\" the page's share once the messages flow. " +
        `Every round checks that each message arrived once, in order, and nothing more within ${SETTLE_MS} ms. ` +
        "CPU: the processes' time on a CPU during the round, per message (Linux /proc: the sum of their threads' schedstat).",
      `Load average ${startLoad} at the start of the section, ${load()} at its end.`,
    ]
    if (profileDir) notes.push(`Profiled (BROWSER_PROFILE=${profileDir}): the times include the profiler's cost and are no measurement.`)
    return {
      title: 'Throughput in Chromium: page to server and server to page',
      markdown: `Page to server, messages sent in one synchronous loop:\n\n${outTable}\n\nServer to page:\n\n${inTable}`,
      notes: notes.join('\n\n'),
      results: { contenders: results, browser: version, via },
    }
  } finally {
    await opened?.close()
    await control.close()
    await servers.call('close').catch(() => {})
    await servers.stop()
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, only: { type: 'string' } } })
  const result = await run({
    rounds: Number(values.rounds),
    log: (line) => console.error(`  browser: ${line}`),
    // As run.mjs's --only: the baseline and the contenders whose name contains the text.
    select: (list) => (values.only ? list.filter((c, i) => i === 0 || c.name.includes(values.only)) : list),
  })
  console.log(`## ${result.title}\n\n${result.markdown}\n\n${result.notes}`)
  process.exit(0)
}
