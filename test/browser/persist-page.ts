/**
 * Pages with a durable-outbox socket for the browser tests (/persist-socket.html of
 * test/support/browser-server.ts), and what they did, as the test process saw it.
 *
 * A page reports everything (a send handed to the socket, its outcome, a message received with
 * its info, a `restored` report, an error) the moment it happens, as one console line per
 * event: a page reloaded or closed in the middle of its work has already told the test what it
 * did, which reading the page's state afterwards could not give.
 */
import type { Page } from 'playwright-core'
import type { TetherSocket, TetherSocketOptions } from '../../src/index.js'
import type * as Persist from '../../src/persist/index.js'
import { waitInPage } from '../support/browser.js'

/** The prefix of a page's report lines on the console. */
const PREFIX = 'persist-test '

declare global {
  interface Window {
    /** Set by /persist-socket.html once both entries are imported. */
    lib?: { TetherSocket: typeof TetherSocket; indexedDBStore: typeof Persist.indexedDBStore }
    /** The socket of this load and what the test drives it with (set by `start`). */
    t?: {
      sock: TetherSocket<unknown, unknown>
      send(value: unknown): void
      /** Sends from … to-1 in bursts of `burst` every `gap` ms; resolves when all are handed to send(). */
      stream(from: number, to: number, burst: number, gap: number): Promise<void>
      /** Stops a running stream. */
      stop(): void
    }
  }
}

/** One event of a page load. */
export type Report =
  | { load: number; kind: 'sent' | 'acked'; data: unknown }
  | { load: number; kind: 'failed'; data: { value: unknown; error: string } }
  | { load: number; kind: 'received'; data: { msg: unknown; id: string | undefined; redelivered: boolean } }
  | {
      load: number
      kind: 'restored'
      data: { from: 'reload' | 'adopted'; delivered: unknown[]; failed: { data: unknown; error: string }[] }
    }
  | { load: number; kind: 'error'; data: { name: string; message: string; code?: string; reason?: string } }
  | { load: number; kind: 'session'; data: string }

type Kind = Report['kind']
type DataOf<K extends Kind> = Extract<Report, { kind: K }>['data']

/** Everything the pages it watches reported, in order, tagged with the page load that did it. */
export class Reports {
  readonly all: Report[] = []

  /** Collects the reports of `page`, over all its loads. */
  watch(page: Page): void {
    page.on('console', (message) => {
      const text = message.text()
      if (text.startsWith(PREFIX)) this.all.push(JSON.parse(text.slice(PREFIX.length)) as Report)
    })
  }

  /** The data of every report of `kind` (of load `load` only, when given). */
  of<K extends Kind>(kind: K, load?: number): DataOf<K>[] {
    return this.all.filter((r) => r.kind === kind && (load === undefined || r.load === load)).map((r) => r.data as DataOf<K>)
  }
}

/** Loads /persist-socket.html (optionally with a query) and waits until both entries are imported. */
export async function loadPage(page: Page, origin: string): Promise<void> {
  await page.goto(`${origin}/persist-socket.html`)
  await waitForLib(page)
}

/** Waits until the page (just loaded or reloaded) has imported both entries. */
export const waitForLib = (page: Page) =>
  waitInPage(page, () => typeof window.lib === 'object', 'dist/index.mjs and dist/persist.mjs to load')

/** What `start` gives the socket. */
export interface StartOptions {
  /** Tags every report of this page load. */
  load: number
  url: string
  /** The persist store's name (default 'chat'). */
  store?: string
  reconnect?: TetherSocketOptions['reconnect']
}

/** Creates the page's socket with `persist: indexedDBStore(store)`, reporting what it does on the console. */
export function start(page: Page, options: StartOptions): Promise<void> {
  return page.evaluate(
    ({ load, url, store, reconnect, prefix }) => {
      const report = (kind: string, data: unknown) => console.log(prefix + JSON.stringify({ load, kind, data }))
      const { TetherSocket, indexedDBStore } = window.lib!
      const sock = new TetherSocket<unknown, unknown>(url, { persist: indexedDBStore(store), reconnect })
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
      let stopped = false
      const send = (value: unknown) => {
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
      }
    },
    { store: 'chat', reconnect: { minDelay: 50, maxDelay: 200 }, ...options, prefix: PREFIX },
  )
}

/** `from`, `from`+1, …, `to`-1. */
export const span = (from: number, to: number): number[] => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i)
