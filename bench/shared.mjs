// One connection for all tabs (option `shared`), in headless Chromium: what a tab's acknowledged
// send() costs when the connection it goes through is held by a tab (its own page, or another),
// against a socket of its own with the same durable outbox (`persist`), side by side.
//
// 1. Throughput: N small JSON messages sent at once, timed from the first send() until every
//    promise resolved (every message acknowledged by the server, and the ack passed to the tab).
// 2. One at a time: each send() awaited before the next, the latency a chat user sees.
//
// Contenders, interleaved round by round, all with `persist` (which `shared` needs):
// - a socket of its own (as the `persist` section's);
// - `shared`, sent from the tab that holds the connection: its socket is a follower of its own
//   page's holder (a BroadcastChannel hop each way, within the page);
// - `shared`, sent from a second page while the first holds the connection: the tab's messages
//   cross to the other page and its acks come back.
// Every round uses a group and a store of its own (nothing to adopt) and deletes its database;
// the server counts what it received: every round must deliver each message exactly once, in one
// session per group.
import { startBrowserBench } from './browser.mjs'
import { interleave, median, ratio, spread, summarize, table } from './harness.mjs'

export const N = 5_000
/** Messages of the one-at-a-time measurement. */
export const SEQUENTIAL = 200

/** Runs in a page: opens socket `key` (shared in group `group` when given) with store `store`, until it is open; resolves with its part. */
async function openInPage({ key, store, group }) {
  const bounded = (promise, ms, what) =>
    Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms))])
  const { TetherSocket } = window.tethersocket
  window.socks ??= {}
  const errors = []
  const sock = new TetherSocket(new URL('/ws', location.href), {
    // The default bounds (10,000 messages, 10 MiB) protect applications; they are not measured here.
    queue: { maxMessages: Number.POSITIVE_INFINITY, maxBytes: Number.POSITIVE_INFINITY },
    persist: window.persist.indexedDBStore(store),
    ...(group && { shared: group }),
  })
  sock.on('error', (error) => errors.push(`${error.name}: ${error.message}`))
  window.socks[key] = { sock, errors }
  await bounded(new Promise((resolve) => (sock.state === 'open' ? resolve() : sock.once('open', resolve))), 20000, 'connecting')
  return sock.shared?.role ?? 'own'
}

/** Runs in a page: sends `n` messages on socket `key`, all at once or one at a time; resolves with the ms from the first send until the last acknowledgement. */
async function sendInPage({ key, n, oneAtATime }) {
  const bounded = (promise, ms, what) =>
    Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms))])
  const { sock, errors } = window.socks[key]
  // The sends start in a task of their own, as an app's do (an event handler).
  await new Promise((resolve) => setTimeout(resolve, 0))
  const start = performance.now()
  if (oneAtATime) {
    for (let i = 0; i < n; i++) await bounded(sock.send({ type: 'tick', n: i, text: 'hello, world' }), 20000, 'one send')
  } else {
    const promises = new Array(n)
    for (let i = 0; i < n; i++) promises[i] = sock.send({ type: 'tick', n: i, text: 'hello, world' })
    await bounded(Promise.all(promises), 60000, `${n} sends`)
  }
  const ms = performance.now() - start
  if (errors.length) throw new Error(`the socket reported: ${errors.join('; ')}`)
  return ms
}

/** Runs in a page: closes socket `key`. */
async function closeInPage({ key }) {
  const { sock } = window.socks[key]
  delete window.socks[key]
  await Promise.race([sock.close(), new Promise((resolve) => setTimeout(resolve, 10000))])
}

/** Runs in a page: deletes the database of `store`, once every connection to it closed. */
function deleteInPage({ store }) {
  return new Promise((resolve, reject) => {
    const request = indexedDB.deleteDatabase(`tethersocket:${store}`)
    request.onsuccess = resolve
    request.onerror = () => reject(request.error)
  })
}

export async function run({ rounds, log }) {
  let received = 0
  const sessions = new Set()
  const bench = await startBrowserBench({
    // Without its rate limit: the default would close a burst of thousands of messages with 1013.
    tether: { rateLimit: false },
    setup: (server) =>
      server.on('message', (_data, session) => {
        received++
        sessions.add(session.id)
      }),
  })
  try {
    const first = await bench.open()
    const second = await bench.open()
    let groups = 0
    /** One round: `from` 'own' (a socket of its own), 'holder' (the first page's shared socket) or 'follower' (the second page's, the first holding). */
    const measure = (from, oneAtATime) => async (warmUp) => {
      const n = (oneAtATime ? SEQUENTIAL : N) / (warmUp ? 10 : 1)
      const k = ++groups
      const store = `bench-shared-${k}`
      const group = from === 'own' ? undefined : `bench-${k}`
      received = 0
      sessions.clear()
      const holderPart = await first.page.evaluate(openInPage, { key: 'a', store, group })
      if (from !== 'own' && holderPart !== 'holder') throw new Error(`the first page's socket is ${holderPart}, not the holder`)
      let sender = first
      if (from === 'follower') {
        const part = await second.page.evaluate(openInPage, { key: 'b', store, group })
        if (part !== 'follower') throw new Error(`the second page's socket is ${part}, not a follower`)
        sender = second
      }
      const ms = await sender.page.evaluate(sendInPage, { key: sender === first ? 'a' : 'b', n, oneAtATime })
      if (from === 'follower') await second.page.evaluate(closeInPage, { key: 'b' })
      await first.page.evaluate(closeInPage, { key: 'a' })
      await first.page.evaluate(deleteInPage, { store })
      first.check()
      second.check()
      if (received !== n) throw new Error(`the server received ${received} messages of ${n}: each should arrive exactly once`)
      if (sessions.size !== 1) throw new Error(`the messages came in ${sessions.size} sessions: a group has one`)
      return { ms }
    }
    const contenders = (oneAtATime) => [
      { name: 'a socket of its own, with persist', run: measure('own', oneAtATime) },
      { name: 'shared, from the tab holding the connection', run: measure('holder', oneAtATime) },
      { name: 'shared, from another tab', run: measure('follower', oneAtATime) },
    ]
    const burst = await interleave(contenders(false), { rounds, log: (line) => log(`all at once: ${line}`) })
    const sequential = await interleave(contenders(true), { rounds, log: (line) => log(`one at a time: ${line}`) })
    const version = bench.context.browser()?.version() ?? (await first.page.evaluate(() => navigator.userAgent))

    const rows = (samples, n, perMessage) => {
      const baseMs = median(Object.values(samples)[0].map((s) => s.ms))
      return Object.entries(samples).map(([name, runs]) => {
        const ms = summarize(runs.map((s) => s.ms))
        const shown = perMessage ? { median: ms.median / n, min: ms.min / n, max: ms.max / n } : ms
        return { name, ms, shown, rate: summarize(runs.map((s) => n / s.ms)), ratio: baseMs / ms.median }
      })
    }
    const all = rows(burst, N, false)
    const one = rows(sequential, SEQUENTIAL, true)
    const burstTable = table(
      ['client', 'time, ms: median (min–max)', 'k msg/s: median (min–max)', 'vs its own socket'],
      all.map((r) => [r.name, spread(r.shown, 0), spread(r.rate, 1), ratio(r.ratio)]),
    )
    const oneTable = table(
      ['client', 'ms per message: median (min–max)', 'vs its own socket'],
      one.map((r) => [r.name, spread(r.shown, 2), ratio(r.ratio)]),
    )
    return {
      title: 'One connection for all tabs (shared) in Chromium: acknowledged send() through the holder',
      markdown: `${N.toLocaleString('en')} messages sent at once, awaiting all:\n\n${burstTable}\n\n${SEQUENTIAL} messages one at a time (each send() awaited before the next):\n\n${oneTable}`,
      notes: `Headless Chromium ${version} (playwright, as the persist section), two pages of one context, a profile on disk; the server in the benchmark's process. Every contender has persist: indexedDBStore(name), which shared needs.`,
      results: { burst: all, oneAtATime: one, browser: version },
    }
  } finally {
    await bench.close()
  }
}
