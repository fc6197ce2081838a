/**
 * What happens when the reference server's process state is lost: the TetherServer is stopped
 * (its connections cut without a close frame, as a crash would) and a new one starts on the
 * same port, knowing no session. The client's resume names a session the new server never
 * had, so it gets a new one (`session` event with `previous`) and resends everything not yet
 * acknowledged. Nothing is lost; what the old server delivered but had not yet acknowledged
 * when it died is delivered again (at-least-once across the session loss, README "What
 * delivered means"), and those are the only duplicates. Server → client messages the old
 * session had not had acknowledged are lost with it.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { ClosedError } from '../../src/index.js'
import type { Session, TetherServer } from '../../src/server/index.js'
import { startChaosProxy } from '../support/chaos-proxy.js'
import { cleanupTether, defer, killConnections, sleep, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(cleanupTether)

const noop = () => {}
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i)

/** A reference server that records what it delivered and the sessions it created. */
async function recordingServer(port = 0) {
  const server = await startTether({ port, sessionTtl: 60000 })
  const received: number[] = []
  const created: Session[] = []
  server.on('message', (data) => received.push(data as number))
  server.on('session', (s) => created.push(s))
  return { server, received, created }
}

/** The process dies: every connection is cut without a close frame, then the port is released. */
async function crash(server: TetherServer): Promise<void> {
  killConnections(server)
  await withTimeout(server.close(), 3000, 'the old server to release its port')
}

/** Numbers in both lists. */
const both = (a: readonly number[], b: readonly number[]) => {
  const inA = new Set(a)
  return b.filter((n) => inA.has(n))
}

describe('server restart (session state lost)', () => {
  it('resends the unacknowledged messages to the new server: the in-flight ones arrive twice, nothing is lost', async () => {
    const old = await recordingServer()
    const port = old.server.port
    const proxy = await startChaosProxy({ target: port, seed: 1 }) // no faults: a proxy that can hold acks
    defer(() => proxy.close())
    const { sock, sessions, messages } = tetherClient<string, number>(urlOf(proxy))
    await waitFor(() => sock.state === 'open' && old.created.length === 1, 3000, 'the first session')
    const first = old.created[0]
    await withTimeout(Promise.all(range(5, 1).map((i) => sock.send(i))), 3000, 'messages 1-5 acknowledged')
    await withTimeout(first.send('a1'), 3000, 'a server message acknowledged')

    // Server → client is held: 6-10 reach the old server and are delivered, but their acks
    // (and a server message) never reach the client. They are in flight when the server dies.
    proxy.freeze('down')
    let settled = 0
    const inFlight = range(5, 6).map((i) => sock.send(i))
    for (const p of inFlight) p.then(() => settled++, noop)
    const lostWithSession = first.send('a2')
    await waitFor(() => old.received.length === 10, 3000, 'the old server to deliver 6-10')
    await sleep(50)
    expect(settled).toBe(0)
    expect(sock.pending).toBe(5)

    await crash(old.server)
    // The held lane does not read, so the proxy would hide the server's close from the client;
    // a crashed server's connections do close, so the proxy passes that on.
    proxy.cutAll()
    await expect(lostWithSession).rejects.toBeInstanceOf(ClosedError)
    const restarted = await recordingServer(port)
    await waitFor(() => sessions.length === 2 && sock.state === 'open', 5000, 'a new session on the restarted server')
    await withTimeout(Promise.all(inFlight), 3000, 'the in-flight sends, acknowledged by the new server')
    await withTimeout(sock.send(11), 3000, 'a new message')
    await withTimeout(restarted.created[0].send('b1'), 3000, 'a message of the new session')

    expect(sessions).toEqual([
      { id: first.id, previous: undefined },
      { id: restarted.created[0].id, previous: first.id, reason: 'unknown' },
    ])
    expect(old.received).toEqual(range(10, 1))
    expect(restarted.received).toEqual(range(6, 6)) // 6-10 again, then 11
    const duplicates = both(old.received, restarted.received)
    expect(duplicates).toEqual(range(5, 6)) // exactly the five that were unacknowledged at the crash
    expect(messages).toEqual(['a1', 'b1']) // a2 was never acknowledged: lost with the old session
    expect(sock.pending).toBe(0)
  })

  it('under load: the only duplicates are messages sent before the crash and unacknowledged at that moment', async () => {
    const N = 1500
    const CRASH_AT = 600
    const old = await recordingServer()
    const port = old.server.port
    // Split and delayed segments keep acks in flight, so the crash finds some unacknowledged.
    const proxy = await startChaosProxy({ target: port, seed: 2, faults: { split: { share: 0.5, maxPieces: 4, maxDelayMs: 5 } } })
    defer(() => proxy.close())
    const { sock, sessions, messages } = tetherClient<number, number>(urlOf(proxy))
    await waitFor(() => sock.state === 'open' && old.created.length === 1, 3000, 'the first session')
    const first = old.created[0]
    let newSessionAt = 0
    sock.on('session', () => {
      newSessionAt = Date.now()
    })

    // Both directions run: the client sends 0 … N−1, the old session sends 0, 1, … until the crash.
    const unacked = new Set<number>()
    const sends: Promise<void>[] = []
    const oldSends: { n: number; outcome: 'pending' | 'acked' | 'failed' }[] = []
    let unackedAtCrash: Set<number> | undefined
    let oldSentAtCrash = 0
    let restarting: ReturnType<typeof recordingServer> | undefined
    let crashedAt = 0
    for (let i = 0; i < N; ) {
      for (let k = 0; k < 5 && i < N; k++, i++) {
        const n = i
        unacked.add(n)
        const sent = sock.send(n)
        sent.then(() => unacked.delete(n), noop)
        sends.push(sent)
        if (!unackedAtCrash) {
          const record = { n: oldSends.length, outcome: 'pending' as 'pending' | 'acked' | 'failed' }
          oldSends.push(record)
          first.send(record.n).then(
            () => {
              record.outcome = 'acked'
            },
            () => {
              record.outcome = 'failed'
            },
          )
        }
      }
      if (i >= CRASH_AT && !unackedAtCrash) {
        // Snapshot and crash in the same tick: no ack can arrive in between.
        unackedAtCrash = new Set(unacked)
        oldSentAtCrash = i
        crashedAt = Date.now()
        restarting = crash(old.server).then(() => recordingServer(port))
        restarting.catch(() => {}) // awaited below
      }
      await sleep(1)
    }
    const restarted = await withTimeout(restarting!, 5000, 'the restarted server')
    await withTimeout(Promise.all(sends), 10000, 'every client send() to resolve')
    await waitFor(() => sessions.length === 2 && restarted.created.length === 1, 3000, 'the new session')
    const newSession = restarted.created[0]
    const newSends = range(200).map((n) => newSession.send(1000000 + n))
    await withTimeout(Promise.all(newSends), 5000, "the new session's sends")
    await sleep(100)

    const atOld = old.received
    const atNew = restarted.received
    const duplicates = both(atOld, atNew)
    const fromOld = messages.filter((m) => m < 1000000)
    const fromNew = messages.filter((m) => m >= 1000000)
    const acked = oldSends.filter((s) => s.outcome === 'acked').map((s) => s.n)
    const failed = oldSends.filter((s) => s.outcome === 'failed').map((s) => s.n)
    const receivedAnyway = failed.filter((n) => fromOld.includes(n))
    console.log(
      `restart: client sent ${N} (${oldSentAtCrash} before the crash, ${unackedAtCrash!.size} of them unacknowledged at the crash); ` +
        `old server delivered ${atOld.length}, new server ${atNew.length}; duplicates ${duplicates.length}, lost ${N - new Set([...atOld, ...atNew]).size}; ` +
        `old session sent ${oldSends.length}: ${acked.length} acknowledged, ${failed.length} failed with the session ` +
        `(${receivedAnyway.length} of those had reached the client); new session ${newSessionAt - crashedAt} ms after the crash`,
    )

    // The client saw the session loss and moved to a new one.
    expect(sessions).toEqual([
      { id: first.id, previous: undefined },
      { id: newSession.id, previous: first.id, reason: 'unknown' },
    ])
    // Nothing lost: every number reached a server, and each server delivered in order, once.
    expect(new Set([...atOld, ...atNew]).size).toBe(N)
    expect(atOld).toEqual(range(atOld.length))
    const resent = atNew.filter((n) => n < oldSentAtCrash)
    expect(atNew).toEqual([...resent, ...range(N - oldSentAtCrash, oldSentAtCrash)])
    expect(resent).toEqual([...resent].sort((a, b) => a - b))
    // The only duplicates: sent before the crash and unacknowledged at that moment.
    for (const n of duplicates) {
      expect(n).toBeLessThan(oldSentAtCrash)
      expect(unackedAtCrash!.has(n)).toBe(true)
    }
    // Everything unacknowledged at the crash that the old server had not delivered went to the new one.
    for (const n of unackedAtCrash!) expect(atOld.includes(n) || atNew.includes(n)).toBe(true)
    // Server → client: the old session's messages arrived once and in order; every acknowledged
    // one arrived; the unacknowledged ones failed with the session (some may have arrived).
    expect(fromOld).toEqual(range(fromOld.length))
    for (const n of acked) expect(fromOld).toContain(n)
    expect(acked.length + failed.length).toBe(oldSends.length)
    expect(fromNew).toEqual(range(200, 1000000))
    expect(sock.pending).toBe(0)
  })
})
