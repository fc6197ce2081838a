/**
 * Chaos for the durable outbox (`persist`): a stream both ways against a real reference server
 * (the page sends numbered messages; the server echoes each with `session.send` and pushes its
 * own numbered messages) while the tab's page crashes and reloads at random points, from a
 * seeded random (TETHER_CHAOS_SEED overrides it, to explore).
 *
 * What must hold: the server's handler gets every message a page made durable exactly once, in
 * order (a message the page sent but had not yet made durable when it went away is lost with it,
 * as a browser loses it: the next page sends on from the last durable one); across all pages,
 * every server message is delivered at least once, in order within a page, and one a page gets
 * a second time is flagged `info.redelivered`, with the same `info.id` and data.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { MessageInfo } from '../../src/client/wire/types.js'
import { Origin } from '../support/pages.js'
import { gated, persistClient } from '../support/persist.js'
import { cleanupTether, sleep, startTether, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

type Out = { n: number }
type In = { e: number } | { p: number }

/** A small seeded PRNG (mulberry32): the same seed, the same run. */
function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const SEED = Number(process.env.TETHER_CHAOS_SEED ?? 20240514)
const RELOADS = 5
const TOTAL = 400

/** The highest message number a page's completed commits hold (what the next page restores or the server has). */
function durableUpTo(store: ReturnType<typeof gated>): number {
  let max = -1
  for (const changes of store.durable) {
    for (const entry of changes.put ?? []) {
      if (typeof entry.payload === 'string') max = Math.max(max, (JSON.parse(entry.payload) as Out).n)
    }
  }
  return max
}

describe('chaos: a stream both ways while the page reloads at random points', () => {
  it(`delivers every durable client message once in order, and every server message at least once (seed ${SEED})`, async () => {
    const rand = random(SEED)
    const between = (min: number, max: number) => min + Math.floor(rand() * (max - min + 1))
    const server = await startTether()
    const handled: number[] = []
    server.on('message', (data, session) => {
      const { n } = data as Out
      handled.push(n)
      session.send({ e: n }).catch(() => {})
    })
    let sid: string | undefined
    let pushed = 0
    const pusher = setInterval(() => {
      if (sid) server.sendTo(sid, { p: pushed++ }).catch(() => {})
    }, 4)

    const origin = new Origin()
    const tab = origin.tab()
    /** What each page delivered, in order. */
    const pages: { data: In; info: MessageInfo }[][] = []
    let next = 0
    try {
      for (let reload = 0; reload <= RELOADS; reload++) {
        const last = reload === RELOADS
        const page = origin.page(tab)
        // A slow disk now and then widens the windows between a change and its commit.
        const store = gated(page, () => (rand() < 0.3 ? between(1, 15) : 0))
        const c = persistClient<In, Out>(page, urlOf(server), { store: store.store })
        const delivered: { data: In; info: MessageInfo }[] = []
        pages.push(delivered)
        let alive = true
        // Some pages go away while delivering a frame, between two of its messages.
        const crashInListener = !last && rand() < 0.4
        const crash = () => {
          alive = false
          page.crash()
        }
        c.sock.on('message', (data, info) => {
          if (!alive) return
          delivered.push({ data, info })
          if (crashInListener && delivered.length > 5 && rand() < 0.05) crash()
        })
        // Sends in bursts at random gaps, until the page goes away (or, on the last page, until all are sent).
        const sending = (async () => {
          while (alive && next < TOTAL) {
            for (let i = between(1, 6); i > 0 && next < TOTAL; i--) c.sock.send({ n: next++ }).catch(() => {})
            await sleep(between(0, 8))
          }
        })()
        if (last) {
          await sending
          await waitFor(() => c.sock.pending === 0 && handled.length >= TOTAL, 15000, 'every message at the server')
          clearInterval(pusher)
          const session = server.sessions.get(sid!)
          await waitFor(() => session!.pending === 0, 15000, 'every server message acknowledged')
          expect(c.sessions).toEqual([])
          break
        }
        if (reload === 0) {
          await waitFor(() => c.sock.sessionId, 5000, 'a session')
          sid = c.sock.sessionId
        }
        const lifetime = Date.now() + between(20, 150)
        await waitFor(() => !alive || Date.now() >= lifetime, 5000, 'the page to go away')
        if (alive) crash()
        await sending
        // A transaction running as the page went away may still complete: the next page finds what it wrote.
        await waitFor(() => store.settled() === store.commits.length, 5000, 'the last commits settled')
        next = Math.max(durableUpTo(store), Math.max(-1, ...handled)) + 1
        expect(c.sessions.filter((s) => s.previous !== undefined)).toEqual([])
      }
    } finally {
      clearInterval(pusher)
    }

    // Client to server: every message once, in order.
    expect(handled).toEqual(Array.from({ length: TOTAL }, (_, n) => n))

    // Server to client: every item of the session reached some page; in order per page; repeats flagged.
    const seen = new Map<string, In>()
    for (const delivered of pages) {
      let previous = 0
      for (const { data, info } of delivered) {
        expect(info.seq).toBeGreaterThan(previous)
        previous = info.seq as number
        expect(info.id).toBe(`${sid}:${info.seq}`)
        const before = seen.get(info.id as string)
        if (before !== undefined) {
          expect(info.redelivered, `${info.id} delivered again unflagged`).toBe(true)
          expect(data).toEqual(before)
        }
      }
      for (const { data, info } of delivered) seen.set(info.id as string, data)
    }
    const sent = TOTAL + pushed
    expect(seen.size).toBe(sent)
    for (let seq = 1; seq <= sent; seq++) expect(seen.has(`${sid}:${seq}`), `item ${seq} delivered`).toBe(true)
    const echoes = [...seen.values()].filter((m): m is { e: number } => 'e' in m).map((m) => m.e)
    expect(echoes.sort((a, b) => a - b)).toEqual(handled)
  })
})
