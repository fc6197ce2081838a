/**
 * Pages with a durable-outbox socket for the browser tests (/persist-socket.html of
 * test/support/browser-server.ts), and what they did, as the test process saw it.
 *
 * A page reports every event (a send handed to the socket, its outcome, a message received with
 * its info, a `restored` report, an error) to the test's report server with a synchronous
 * request at the end of the task it happened in: a page reloaded or closed in the middle of its
 * work has told the test everything it did. (Console lines or exposed functions are not enough: the last ones of
 * a page that is going away may never reach the test.)
 */
import { createServer } from 'node:http'
import type { Page } from 'playwright-core'
import type { TetherSocket, TetherSocketOptions } from '../../src/index.js'
import type * as Persist from '../../src/persist/index.js'
import { databaseName, LOG, tabKey } from '../../src/persist/schema.js'
import { type BrowserSuite, waitInPage } from '../support/browser.js'
import { listen, withTimeout } from '../support/servers.js'

declare global {
  interface Window {
    /** Set by /persist-socket.html once both entries are imported (by /persist-script-tag.html from the script tag). */
    lib?: { TetherSocket: typeof TetherSocket; indexedDBStore: typeof Persist.indexedDBStore }
    /** The socket of this load and what the test drives it with (set by `start`). */
    t?: {
      sock: TetherSocket<unknown, unknown>
      send(value: unknown): void
      /** Sends from … to-1 in bursts of `burst` every `gap` ms; resolves when all are handed to send(). */
      stream(from: number, to: number, burst: number, gap: number): Promise<void>
      /** Stops a running stream. */
      stop(): void
      /** The last value handed to send(). */
      last(): unknown
      /** Sends a request, reporting its reply (`replied`) or failure (`failed`). */
      request(value: unknown): void
    }
  }
}

/** What a page reported: the event's data, which page load (`start`'s `load`), its place among that load's reports (`i`) and when (Date.now() in the page). */
export type Report = { load: number; i: number; at: number } & (
  | { kind: 'sent'; data: unknown }
  | { kind: 'acked'; data: unknown }
  | { kind: 'failed'; data: { value: unknown; error: string } }
  | { kind: 'received'; data: { msg: unknown; id: string | undefined; redelivered: boolean } }
  | { kind: 'restored'; data: { from: 'reload' | 'adopted'; delivered: unknown[]; failed: { data: unknown; error: string }[] } }
  | { kind: 'error'; data: { name: string; message: string; code?: string; reason?: string } }
  | { kind: 'session'; data: string }
  | { kind: 'state'; data: string }
  | { kind: 'shared'; data: { role: 'holder' | 'follower' | 'alone'; reason?: string } }
  | { kind: 'replied'; data: { value: unknown; reply: unknown } }
)

type Kind = Report['kind']
type DataOf<K extends Kind> = Extract<Report, { kind: K }>['data']

/** Everything the pages reported, each tagged with the page load that did it: in the order each load reported, the loads' reports in the order they came. */
export interface Reports {
  readonly all: Report[]
  /** Where pages post their reports (cross-origin: the server allows every origin). */
  readonly url: string
  /** The data of every report of `kind` (of load `load` only, when given). */
  of<K extends Kind>(kind: K, load?: number): DataOf<K>[]
}

/** Starts a report server on 127.0.0.1, closed after the test. */
export async function startReports(suite: BrowserSuite): Promise<Reports> {
  const all: Report[] = []
  // A page that may not make a synchronous request (hidden, frozen or closing) sends a beacon,
  // and beacons may come in any order: a report goes before the later ones of its load.
  const add = (report: Report) => {
    let at = all.length
    for (let k = all.length - 1; k >= 0; k--) {
      const other = all[k]!
      if (other.load !== report.load) continue
      if (other.i < report.i) break
      at = k
    }
    all.splice(at, 0, report)
  }
  const http = createServer((request, response) => {
    let body = ''
    request.setEncoding('utf8')
    request.on('data', (chunk: string) => {
      body += chunk
    })
    request.on('end', () => {
      if (request.method === 'POST') for (const report of JSON.parse(body) as Report[]) add(report)
      response.writeHead(204, { 'Access-Control-Allow-Origin': '*' }).end()
    })
  })
  await listen(http, 0)
  suite.defer(() => {
    const closed = new Promise<void>((resolve) => http.close(() => resolve()))
    http.closeAllConnections()
    return withTimeout(closed, 3000, 'the report server did not close')
  })
  const { port } = http.address() as { port: number }
  return {
    all,
    url: `http://127.0.0.1:${port}/report`,
    of: <K extends Kind>(kind: K, load?: number) =>
      all.filter((r) => r.kind === kind && (load === undefined || r.load === load)).map((r) => r.data as DataOf<K>),
  }
}

/** Loads `path` (the ESM entries: /persist-socket.html; the script tag: /persist-script-tag.html) and waits until the page has `window.lib`. */
export async function loadPage(page: Page, origin: string, path = '/persist-socket.html'): Promise<void> {
  await page.goto(`${origin}${path}`)
  await waitForLib(page)
}

/** Waits until the page (just loaded or reloaded) has imported both entries. */
export const waitForLib = (page: Page) =>
  waitInPage(page, () => typeof window.lib === 'object', 'the page to define window.lib (TetherSocket and indexedDBStore)')

/** What `start` gives the socket. */
export interface StartOptions {
  /** Tags every report of this page load. */
  load: number
  /** Where the page reports (`Reports.url`). */
  reports: string
  url: string
  /** The persist store's name (default 'chat'). */
  store?: string
  reconnect?: TetherSocketOptions['reconnect']
  /** Option `shared`: the socket shares one connection with the other tabs of the group (its `shared` events are reported). */
  shared?: true | string
}

/** What `start` needs of a page: playwright's, or one driven over DevTools directly (test/support/cdp-browser.ts). */
export interface Evaluating {
  evaluate<R, A>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R>
}

/** Creates the page's socket with `persist: indexedDBStore(store)`, reporting what it does to `options.reports`. */
export function start(page: Evaluating, options: StartOptions): Promise<void> {
  return page.evaluate(
    ({ load, reports, url, store, reconnect, shared }) => {
      // What happens in one task is posted at its end with a synchronous request: at the test
      // before any later task of the page runs (a reload or close takes its own tasks).
      let queue: unknown[] = []
      let reported = 0
      const flush = () => {
        const batch = JSON.stringify(queue)
        queue = []
        const request = new XMLHttpRequest()
        request.open('POST', reports, false)
        try {
          request.send(batch)
        } catch {
          // A page being closed may not make synchronous requests (its pagehide handlers run
          // then): a beacon is what the browser still sends for it.
          navigator.sendBeacon(reports, batch)
        }
      }
      const report = (kind: string, data: unknown) => {
        if (queue.length === 0) queueMicrotask(flush)
        queue.push({ load, kind, data, i: ++reported, at: Date.now() })
      }
      const { TetherSocket, indexedDBStore } = window.lib!
      const sock = new TetherSocket<unknown, unknown>(url, { persist: indexedDBStore(store), reconnect, shared })
      sock.on('message', (msg, info) => report('received', { msg, id: info.id, redelivered: info.redelivered }))
      sock.on('restored', (r) =>
        report('restored', {
          from: r.from,
          delivered: r.delivered.map((m) => m.data),
          failed: r.failed.map((f) => ({ data: f.data, error: `${f.error.name}: ${f.error.message}` })),
        }),
      )
      sock.on('error', (e) =>
        report('error', {
          name: e.name,
          message: e.message,
          code: (e as { code?: string }).code,
          reason: (e as { reason?: string }).reason,
        }),
      )
      sock.on('session', (s) => report('session', s.id))
      sock.on('state', (state) => report('state', state))
      sock.on('shared', (part) => report('shared', part))
      let stopped = false
      let last: unknown
      const send = (value: unknown) => {
        last = value
        report('sent', value)
        sock.send(value).then(
          () => report('acked', value),
          (e: Error) => report('failed', { value, error: `${e.name}: ${e.message}` }),
        )
      }
      window.t = {
        sock,
        send,
        stream: (from, to, burst, gap) =>
          new Promise((resolve) => {
            let i = from
            const tick = () => {
              if (stopped) return resolve()
              const end = Math.min(to, i + burst)
              while (i < end) send(i++)
              if (i < to) setTimeout(tick, gap)
              else resolve()
            }
            tick()
          }),
        stop: () => {
          stopped = true
        },
        last: () => last,
        request: (value) => {
          sock.request(value as never).then(
            (reply) => report('replied', { value, reply }),
            (e: Error) => report('failed', { value, error: `${e.name}: ${e.message}` }),
          )
        },
      }
    },
    { store: 'chat', reconnect: { minDelay: 50, maxDelay: 200 }, ...options },
  )
}

/** `from`, `from`+1, …, `to`-1. */
export const span = (from: number, to: number): number[] => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i)

/**
 * How many entries stored outboxes of `store` hold (read with a connection of their own, by
 * replaying the log as the store does: a snapshot resets an outbox, a delta puts and removes):
 * this tab's (`tab`, the default; 0 when the tab has none yet), or every outbox's (`all`).
 */
export function storedEntries(page: Page, store = 'chat', which: 'tab' | 'all' = 'tab'): Promise<number> {
  return page.evaluate(
    ({ database, log, key, all }) =>
      new Promise<number>((resolve, reject) => {
        const id = sessionStorage.getItem(key)
        if (id === null && !all) return resolve(0)
        const open = indexedDB.open(database)
        open.onerror = () => reject(open.error)
        open.onsuccess = () => {
          const db = open.result
          if (!db.objectStoreNames.contains(log)) {
            db.close()
            return resolve(0) // not created yet
          }
          const range = all ? undefined : IDBKeyRange.bound([id, -Infinity], [id, Infinity])
          const read = db.transaction(log, 'readonly').objectStore(log).getAll(range)
          read.onsuccess = () => {
            db.close()
            type Entry = { position: number }
            type Row = { outbox: string; snapshot?: true; entries?: Entry[]; put?: Entry[]; remove?: number[] }
            const live = new Map<string, Set<number>>()
            for (const row of read.result as Row[]) {
              if (row.snapshot) live.set(row.outbox, new Set((row.entries ?? []).map((entry) => entry.position)))
              else {
                const positions = live.get(row.outbox) ?? new Set<number>()
                live.set(row.outbox, positions)
                for (const entry of row.put ?? []) positions.add(entry.position)
                for (const position of row.remove ?? []) positions.delete(position)
              }
            }
            resolve([...live.values()].reduce((sum, positions) => sum + positions.size, 0))
          }
          read.onerror = () => {
            db.close()
            reject(read.error)
          }
        }
      }),
    { database: databaseName(store), log: LOG, key: tabKey(store), all: which === 'all' },
  )
}

/** Waits (5 s at most) until this tab's stored outbox of `store` holds `count` entries. */
export async function waitForStored(page: Page, count: number, store = 'chat'): Promise<void> {
  const deadline = Date.now() + 5000
  let stored = await storedEntries(page, store)
  while (stored !== count) {
    if (Date.now() > deadline) throw new Error(`the page's stored outbox holds ${stored} entries, not ${count}, after 5 s`)
    await new Promise((resolve) => setTimeout(resolve, 20))
    stored = await storedEntries(page, store)
  }
}
