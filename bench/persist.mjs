// The durable outbox's cost (option `persist`), in headless Chromium with a profile on disk:
// acknowledged send() with and without `persist: indexedDBStore(name)`, side by side in one page.
//
// 1. Throughput: N small JSON messages sent at once, timed from the first send() until every
//    promise resolved (every message acknowledged), as the `acks` section does in Node.
// 2. One at a time: each send() awaited before the next, the latency a chat user sees.
// 3. IndexedDB alone, in the same page: what its requests and commits cost here, for records
//    shaped like the outbox's entries (where the time of 1 and 2 goes).
//
// Rounds are interleaved; every round with `persist` uses a store name of its own (nothing to
// restore or adopt) and deletes its database afterwards. The page counts the IndexedDB
// read-write transactions it starts (each one a commit) and the writes in them, and notes when
// the first frame leaves (write-ahead: once the messages are on disk); the server counts what
// it received: every round must deliver each message exactly once.
import { startBrowserBench } from './browser.mjs'
import { interleave, median, ratio, spread, summarize, table } from './harness.mjs'

export const N = 5_000
/** Messages of the one-at-a-time measurement. */
export const SEQUENTIAL = 200

/**
 * Runs in every page before its scripts: counts the read-write transactions it starts (each one
 * a commit of the durable outbox) and the write requests in them (puts and deletes), and notes
 * when the first frame after `window.firstFrame = undefined` goes on the wire.
 */
const instrument = `(() => {
  window.commits = 0
  window.requests = 0
  const transaction = IDBDatabase.prototype.transaction
  IDBDatabase.prototype.transaction = function (stores, mode, options) {
    if (mode === 'readwrite') window.commits++
    return transaction.call(this, stores, mode, options)
  }
  for (const method of ['put', 'add', 'delete']) {
    const original = IDBObjectStore.prototype[method]
    IDBObjectStore.prototype[method] = function (...args) {
      window.requests++
      return original.apply(this, args)
    }
  }
  const send = WebSocket.prototype.send
  WebSocket.prototype.send = function (data) {
    window.firstFrame ??= performance.now()
    return send.call(this, data)
  }
})()`

/**
 * Runs in the page: opens a socket (with `persist` when `store` is given), sends `n` messages,
 * all at once or one at a time, and resolves with the time from the first send until the last
 * acknowledgement, the commits and write requests started meanwhile, and when the first frame left. Self-contained: it is serialized into the page.
 */
async function sendInPage({ n, store, oneAtATime }) {
  const bounded = (promise, ms, what) =>
    Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms))])
  const { TetherSocket } = window.tethersocket
  const errors = []
  const sock = new TetherSocket(new URL('/ws', location.href), {
    // The default bounds (10,000 messages, 10 MiB) protect applications; they are not measured here.
    queue: { maxMessages: Number.POSITIVE_INFINITY, maxBytes: Number.POSITIVE_INFINITY },
    ...(store && { persist: window.persist.indexedDBStore(store) }),
  })
  sock.on('error', (error) => errors.push(`${error.name}: ${error.message}`))
  await bounded(new Promise((resolve) => sock.once('open', resolve)), 20000, 'connecting')
  // The sends start in a task of their own, as an app's do (an event handler), not in the
  // microtasks that follow the open: the tick they run in decides what one commit can carry.
  await new Promise((resolve) => setTimeout(resolve, 0))
  const before = { commits: window.commits, requests: window.requests }
  window.firstFrame = undefined
  const start = performance.now()
  if (oneAtATime) {
    for (let i = 0; i < n; i++) await bounded(sock.send({ type: 'tick', n: i, text: 'hello, world' }), 20000, 'one send')
  } else {
    const promises = new Array(n)
    for (let i = 0; i < n; i++) promises[i] = sock.send({ type: 'tick', n: i, text: 'hello, world' })
    await bounded(Promise.all(promises), 60000, `${n} sends`)
  }
  const ms = performance.now() - start
  const commits = window.commits - before.commits
  const requests = window.requests - before.requests
  const firstFrame = window.firstFrame - start
  await bounded(sock.close(), 10000, 'closing')
  if (store) {
    // Waits until the closed socket's last transaction is done and its connection closed (a
    // delete waits for both), so that no work of this round runs into the next.
    await bounded(
      new Promise((resolve, reject) => {
        const request = indexedDB.deleteDatabase(`tethersocket:${store}`)
        request.onsuccess = resolve
        request.onerror = () => reject(request.error)
      }),
      10000,
      'deleting the database',
    )
  }
  // A store failure means memory only: such a round measured the wrong thing.
  if (errors.length) throw new Error(`the socket reported: ${errors.join('; ')}`)
  return { ms, commits, requests, firstFrame }
}

/**
 * Runs in the page: what IndexedDB itself costs here, without tethersocket, for `n` records
 * shaped like the durable outbox's entries (key `[outbox, position]`, a small JSON payload), each
 * step one transaction with strict durability. Resolves with the ms of each step.
 */
async function indexedDBInPage({ n, name }) {
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open(name, 1)
    request.onupgradeneeded = () => {
      request.result.createObjectStore('entries', { keyPath: ['outbox', 'position'] })
      request.result.createObjectStore('batches')
    }
    request.onsuccess = () => resolve(request.result)
    request.onerror = () => reject(request.error)
  })
  const timed = async (store, body) => {
    const start = performance.now()
    await new Promise((resolve, reject) => {
      const tx = db.transaction(store, 'readwrite', { durability: 'strict' })
      body(tx.objectStore(store))
      tx.oncomplete = resolve
      tx.onabort = () => reject(tx.error)
    })
    return performance.now() - start
  }
  const entry = (i) => ({ outbox: 'o', position: i, seq: i + 1, payload: JSON.stringify({ type: 'tick', n: i, text: 'hello, world' }) })
  const putAll = (store) => {
    for (let i = 0; i < n; i++) store.put(entry(i))
  }
  const result = {
    onePut: await timed('entries', (store) => store.put(entry(-1))),
    puts: await timed('entries', putAll),
    deletes: await timed('entries', (store) => {
      for (let i = 0; i < n; i++) store.delete(['o', i])
    }),
  }
  await timed('entries', putAll)
  result.rangeDelete = await timed('entries', (store) => store.delete(IDBKeyRange.bound(['o', 0], ['o', n - 1])))
  result.oneRecord = await timed('batches', (store) =>
    store.put(
      Array.from({ length: n }, (_, i) => entry(i)),
      1,
    ),
  )
  db.close()
  await new Promise((resolve) => {
    const request = indexedDB.deleteDatabase(name)
    request.onsuccess = request.onerror = resolve
  })
  return result
}

export async function run({ rounds, log }) {
  let received = 0
  const bench = await startBrowserBench({
    // Without its rate limit: the default would close a burst of thousands of messages with 1013.
    tether: { rateLimit: false },
    setup: (server) => server.on('message', () => received++),
    initScript: instrument,
  })
  try {
    const { page, check } = await bench.open()
    let stores = 0
    const measure = (persist, oneAtATime) => async (warmUp) => {
      const n = (oneAtATime ? SEQUENTIAL : N) / (warmUp ? 10 : 1)
      received = 0
      const store = persist ? `bench-${++stores}` : undefined
      const sample = await page.evaluate(sendInPage, { n, store, oneAtATime })
      check()
      if (received !== n) throw new Error(`the server received ${received} messages of ${n}: each should arrive exactly once`)
      return sample
    }
    const contenders = (oneAtATime) => [
      { name: 'send(), memory only', run: measure(false, oneAtATime) },
      { name: 'send() with persist: indexedDBStore(name)', run: measure(true, oneAtATime) },
    ]
    const burst = await interleave(contenders(false), { rounds, log: (line) => log(`all at once: ${line}`) })
    const sequential = await interleave(contenders(true), { rounds, log: (line) => log(`one at a time: ${line}`) })
    const alone = []
    for (let round = 0; round <= rounds; round++) {
      const sample = await page.evaluate(indexedDBInPage, { n: N, name: `bench-idb-${round}` })
      if (round > 0) alone.push(sample)
    }
    log('IndexedDB alone: done')
    const version = bench.context.browser()?.version() ?? (await page.evaluate(() => navigator.userAgent))

    /** Per contender: time, rate, ratio to memory only, and per message what the store did. */
    const summarizeAll = (samples, n) => {
      const baseMs = median(Object.values(samples)[0].map((s) => s.ms))
      return Object.entries(samples).map(([name, runs]) => {
        const ms = summarize(runs.map((s) => s.ms))
        return {
          name,
          ms,
          rate: summarize(runs.map((s) => n / s.ms)),
          ratio: baseMs / ms.median,
          firstFrame: summarize(runs.map((s) => s.firstFrame)),
          commits: summarize(runs.map((s) => s.commits)),
          commitsPerSecond: summarize(runs.map((s) => (s.commits * 1000) / s.ms)),
          requestsPerMessage: median(runs.map((s) => s.requests)) / n,
        }
      })
    }
    const all = summarizeAll(burst, N)
    const one = summarizeAll(sequential, SEQUENTIAL)
    const stored = (r, text) => (r.commits.max === 0 ? '–' : text)
    const burstTable = table(
      [
        'client',
        'time, ms: median (min–max)',
        'k msg/s: median (min–max)',
        'vs memory only',
        'first frame leaves after, ms',
        'commits',
        'commits/s',
        'IndexedDB writes per message',
      ],
      all.map((r) => [
        r.name,
        spread(r.ms, 0),
        spread(r.rate, 1),
        ratio(r.ratio),
        spread(r.firstFrame, 0),
        stored(r, spread(r.commits, 0)),
        stored(r, spread(r.commitsPerSecond, 1)),
        stored(r, r.requestsPerMessage.toFixed(2)),
      ]),
    )
    const perMessage = (stats) => ({ median: stats.median / SEQUENTIAL, min: stats.min / SEQUENTIAL, max: stats.max / SEQUENTIAL })
    const oneTable = table(
      ['client', 'ms per message: median (min–max)', 'vs memory only', 'commits per message', 'commits/s'],
      one.map((r) => [
        r.name,
        spread(perMessage(r.ms), 2),
        ratio(r.ratio),
        stored(r, (r.commits.median / SEQUENTIAL).toFixed(2)),
        stored(r, spread(r.commitsPerSecond, 0)),
      ]),
    )
    const steps = [
      ['one put (a commit of one record)', 'onePut'],
      [`${N.toLocaleString('en')} puts`, 'puts'],
      [`${N.toLocaleString('en')} deletes, one per key`, 'deletes'],
      [`one delete of a key range over ${N.toLocaleString('en')} records`, 'rangeDelete'],
      [`one put of a record holding ${N.toLocaleString('en')} entries`, 'oneRecord'],
    ]
    const aloneTable = table(
      ['one transaction (strict durability) of', 'ms: median (min–max)', 'µs per entry'],
      steps.map(([label, key]) => {
        const stats = summarize(alone.map((sample) => sample[key]))
        return [label, spread(stats, 1), key === 'onePut' ? '–' : ((stats.median * 1000) / N).toFixed(1)]
      }),
    )
    return {
      title: `Durable outbox in Chromium: acknowledged send() with and without persist`,
      markdown: `${N.toLocaleString('en')} messages sent at once, awaiting all:\n\n${burstTable}\n\n${SEQUENTIAL} messages one at a time (each send() awaited before the next):\n\n${oneTable}\n\nIndexedDB alone in the same page, records shaped like the outbox's entries:\n\n${aloneTable}`,
      notes: `Headless Chromium ${version}, one page, a profile on disk (IndexedDB on disk, strict durability); the server in the benchmark's process.`,
      results: { burst: all, oneAtATime: one, indexedDB: alone, browser: version },
    }
  } finally {
    await bench.close()
  }
}
