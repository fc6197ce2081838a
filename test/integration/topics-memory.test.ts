/**
 * A topic's memory, measured on a real server on 127.0.0.1 (heap after full garbage collections,
 * in this process): 2,000 abandoned members of one topic and 10,000 publishes of ~100-byte
 * messages. The topic's log holds each message once, within its retention (`maxMessages`
 * 1,000), and an away member holds only its place in the log, so the publishes grow the heap by
 * about 1,000 × (payload + the log's overhead per message), whatever the number of members:
 *
 * - bound for the publishes: PUBLISH_BOUND, 2 MiB: 1,000 kept × 2 KiB (a ~100-byte payload, its
 *   entry in the log, and a margin for the measurement). Measured (Node 20, x64): +0.2 to 0.5 MiB.
 * - bound for the members: SESSION_BOUND, 8 KiB per abandoned member (its session, outbox,
 *   limiter, expiry timer and place in the topic). Measured: about 3.8 KiB.
 * - what the bound catches: a reference per member per message, as a broadcast holds (one shared
 *   payload, an outbox entry per session), is 2,000 × 1,000 kept × 8 B = 16 MB at the very least
 *   (measured: 1,000 broadcasts to these 2,000 sessions grow the heap by 20 MiB), 10 times the
 *   bound; a copy per member, as `session.send()` to each, 2,000 × 1,000 × (100 + 320) B = 840 MB.
 *
 * Then one of the members, away since it joined, resumes: it is told that 9,000 messages were
 * dropped before it could have them (the `missed` event, in its place in the stream), then gets
 * the 1,000 kept, in order.
 */
import v8 from 'node:v8'
import vm from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import type { MissedInfo } from '../../src/client/wire/types.js'
import type { MessageInfo } from '../../src/index.js'
import type { Session } from '../../src/server/index.js'
import { cleanupTether, defer, sleep, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(cleanupTether)

const MiB = 1024 * 1024
const KiB = 1024
const MEMBERS = 2000
const PUBLISHES = 10_000
const KEPT = 1000
/** What the publishes may grow the heap by: the log's 1,000 kept messages, 2 KiB each with the margin. */
const PUBLISH_BOUND = KEPT * 2 * KiB
/** What one abandoned member may cost the heap. */
const SESSION_BOUND = 8 * KiB

/** The garbage collector, without restarting node with --expose-gc. */
function getGc(): () => void {
  v8.setFlagsFromString('--expose_gc')
  return vm.runInNewContext('gc') as () => void
}

/** The heap after full collections. */
async function heapAfterGc(gc: () => void): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

const mb = (bytes: number) => `${(bytes / MiB).toFixed(2)} MiB`

/** Raw clients not yet terminated (those terminated are let go, so the heap does not count them). */
const live = new Set<WebSocket>()

/** A raw tether.v1 client: connects, says hello, and resolves with the socket once `welcome` came. */
async function rawClient(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, 'tether.v1')
  ws.on('error', () => {})
  live.add(ws)
  await withTimeout(new Promise((resolve) => ws.once('open', resolve)), 5000, 'raw client open')
  const welcome = withTimeout(new Promise((resolve) => ws.once('message', resolve)), 5000, 'welcome')
  ws.send(JSON.stringify({ t: 'hello', sid: null, ack: 0 }))
  await welcome
  return ws
}

describe("a topic's memory", () => {
  it('2,000 abandoned members and 10,000 publishes: the heap holds the kept messages once; a member that resumes is told what it missed, then gets the rest', async () => {
    const gc = getGc()
    defer(() => {
      for (const ws of live) ws.terminate()
    })
    const server = await startTether({ heartbeatInterval: 0, sessionTtl: 600_000, topics: { maxMessages: KEPT } })
    const sessions: Session[] = []
    // Joined by the server, as an app would when a session starts.
    server.on('session', (session) => {
      session.join('feed')
      sessions.push(session)
    })
    const expired: string[] = []
    server.on('expire', (_session, reason) => expired.push(reason))
    const before = await heapAfterGc(gc)

    // One member is a real client that will come back; the others never do.
    const returning = tetherClient<{ n: number; text: string }>(urlOf(server))
    const infos: MessageInfo[] = []
    const missed: MissedInfo[] = []
    returning.sock.on('message', (_m, info) => infos.push(info))
    returning.sock.on('missed', (info) => missed.push(info))
    await waitFor(() => returning.sock.state === 'open' && sessions.length === 1, 5000, 'the returning member')
    await returning.sock.close()
    for (let i = 1; i < MEMBERS; i += 200) {
      const batch = await Promise.all(Array.from({ length: Math.min(200, MEMBERS - i) }, () => rawClient(urlOf(server))))
      for (const ws of batch) {
        ws.terminate()
        live.delete(ws)
      }
    }
    await waitFor(() => sessions.length === MEMBERS && sessions.every((s) => !s.connected), 10_000, 'every member away')
    expect((await server.presence('feed')).filter((m) => !m.connected)).toHaveLength(MEMBERS)
    const joined = await heapAfterGc(gc)

    const text = 'x'.repeat(80)
    for (let n = 0; n < PUBLISHES; n++) {
      expect(server.publish('feed', { n, text })).toBe(MEMBERS) // ~100 bytes of JSON each
      if (n % 1000 === 999) await sleep(1)
    }
    const published = await heapAfterGc(gc)
    const perSession = (joined - before) / MEMBERS
    const growth = published - joined
    console.log(
      `topic memory: ${MEMBERS} abandoned members: heap ${mb(before)} → ${mb(joined)} (${Math.round(perSession)} B each); ` +
        `${PUBLISHES} publishes of ~100 B, ${KEPT} kept: → ${mb(published)} (+${mb(growth)}; bound ${mb(PUBLISH_BOUND)})`,
    )
    expect(perSession).toBeLessThan(SESSION_BOUND)
    expect(growth).toBeLessThan(PUBLISH_BOUND)
    // Nothing was copied into any member's outbox, and nobody was evicted to make room.
    expect(sessions.every((s) => s.pending === 0)).toBe(true)
    expect(expired).toEqual([])

    // The returning member resumes its session: one missed report, then the kept messages in order.
    returning.sock.connect()
    await waitFor(() => infos.length === KEPT, 10_000, `the ${KEPT} kept messages (${infos.length} so far)`)
    await returning.sock.send({ n: -1, text: '' }) // a round trip: anything more would have come before its ack
    expect(returning.sessions).toHaveLength(1) // resumed, not a new session
    expect(missed).toEqual([expect.objectContaining({ topic: 'feed', count: PUBLISHES - KEPT, redelivered: false })])
    expect(returning.messages.map((m) => m.n)).toEqual(Array.from({ length: KEPT }, (_, i) => PUBLISHES - KEPT + i))
    expect(infos.every((info) => info.topic === 'feed')).toBe(true)
    // In the stream: the report first (nothing came before it), then the kept ones right after.
    expect(missed[0]?.seq).toBe(1)
    expect(infos.map((info) => info.seq)).toEqual(Array.from({ length: KEPT }, (_, i) => i + 2))
  }, 60_000)
})
