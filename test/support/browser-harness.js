// Page side of the browser tests, served as /harness.js by test/support/browser-server.ts.
// `makeHarness(TetherSocket, build)` returns an object that creates one socket and records
// everything it does (plus the window's online/offline events) in plain arrays, which the
// tests read back with page.evaluate. Plain script, no module: it must run before the
// library in both the script-tag and the ESM page.
globalThis.makeHarness = (TetherSocket, build) => {
  const now = () => Date.now()
  const h = {
    build,
    sock: undefined,
    received: [],
    states: [],
    closes: [],
    sessions: [],
    errors: [],
    reconnecting: [],
    opens: [],
    acked: [],
    failed: [],
    // Date.now() of every WebSocket the client constructed: its connection attempts.
    attempts: [],
    network: [],
  }
  addEventListener('online', () => h.network.push({ type: 'online', at: now(), onLine: navigator.onLine }))
  addEventListener('offline', () => h.network.push({ type: 'offline', at: now(), onLine: navigator.onLine }))

  // options: { url?, path? ('/ws' on this origin by default), ...TetherSocket options }
  h.start = (options = {}) => {
    const { url, path = '/ws', ...rest } = options
    const Native = globalThis.WebSocket
    class CountingWebSocket extends Native {
      constructor(address, protocols) {
        h.attempts.push(now())
        super(address, protocols)
      }
    }
    const sock = new TetherSocket(url ?? new URL(path, location.href).href, { WebSocket: CountingWebSocket, ...rest })
    h.sock = sock
    sock.on('message', (m) => h.received.push(m))
    sock.on('state', (s) => h.states.push(s))
    sock.on('open', () => h.opens.push(now()))
    sock.on('close', (c) => h.closes.push({ code: c.code, willReconnect: c.willReconnect, at: now() }))
    sock.on('session', (s) => h.sessions.push({ id: s.id, previous: s.previous ?? null }))
    sock.on('reconnecting', (r) => h.reconnecting.push({ attempt: r.attempt, delay: r.delay, waitingFor: r.waitingFor, at: now() }))
    sock.on('error', (e) => h.errors.push(`${e.name}: ${e.message}`))
    return sock.state
  }

  // Sends one message; its outcome lands in `acked` or `failed`.
  h.send = (value) =>
    h.sock.send(value).then(
      () => {
        h.acked.push(value)
      },
      (e) => {
        h.failed.push({ value, error: `${e.name}: ${e.message}` })
      },
    )

  // Sends from, from+1, …, to-1 at once.
  h.sendRange = (from, to) => {
    for (let i = from; i < to; i++) h.send(i)
  }

  // Sends from … to-1 in random bursts of 1-8 with `gap` ms between bursts; resolves when all are handed to send().
  h.stream = (from, to, gap = 2) =>
    new Promise((resolve) => {
      let i = from
      const burst = () => {
        const end = Math.min(to, i + 1 + Math.floor(Math.random() * 8))
        while (i < end) h.send(i++)
        if (i < to) setTimeout(burst, gap)
        else resolve()
      }
      burst()
    })

  h.request = (value, timeout = 5000) => h.sock.request(value, { timeout })

  // For failure messages: where things stand.
  h.summary = () => ({
    build: h.build,
    state: h.sock?.state,
    sessionId: h.sock?.sessionId,
    pending: h.sock?.pending,
    received: h.received.length,
    acked: h.acked.length,
    failed: h.failed.slice(0, 3),
    errors: h.errors.slice(-3),
    attempts: h.attempts.length,
    opens: h.opens.length,
    closes: h.closes.slice(-3),
    network: h.network,
  })
  return h
}
