/**
 * The delivery promise under every fault at once: 2,000 numbered messages each way, client
 * `send()` and server `session.send()` concurrently, through the chaos proxy
 * (test/support/chaos-proxy.ts) killing, stalling, splitting and refusing connections. Nothing
 * may be lost, duplicated or reordered in either direction, and every send must resolve.
 *
 * A failing run prints its seed; `CHAOS_SEED=<seed> npx vitest run test/integration/chaos.test.ts`
 * replays the same fault decisions (the event loop's timing is not replayed).
 */
import { performance } from 'node:perf_hooks'
import { afterEach, describe, expect, it, onTestFailed } from 'vitest'
import { ConnectionError, TimeoutError } from '../../src/index.js'
import type { Session } from '../../src/server/index.js'
import { auditDelivery, type ChaosFaults, makeRandom, seedFromEnv, startChaosProxy } from '../support/chaos-proxy.js'
import { cleanupTether, defer, sleep, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(cleanupTether)

/** Every fault kind, at rates that give a few dozen faults in the run. */
const EVERY_FAULT: ChaosFaults = {
  kill: { rate: 2 },
  stall: { rate: 2, minMs: 150, maxMs: 1500, thenKill: 0.5 },
  split: { share: 0.3, maxPieces: 6, maxDelayMs: 4 },
  refuse: { rate: 0.8, minMs: 100, maxMs: 500, unlisten: 0.5 },
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

/** Calls `emit(0 … n−1)` in random bursts of 1–8, spread evenly over `durationMs`. */
async function produce(n: number, durationMs: number, random: () => number, emit: (i: number) => void): Promise<void> {
  const start = Date.now()
  for (let i = 0; i < n; ) {
    const burst = 1 + Math.floor(random() * 8)
    for (let k = 0; k < burst && i < n; k++) emit(i++)
    await sleep(Math.max(1, start + (i / n) * durationMs - Date.now()))
  }
}

describe('chaos: every fault kind at once', () => {
  it('delivers 2,000 messages each way exactly once and in order, and resolves every send', async () => {
    const N = 2000
    const PRODUCE_MS = 9000
    const seed = seedFromEnv()
    onTestFailed(() => {
      console.error(`chaos test failed with seed ${seed}; replay the fault pattern with CHAOS_SEED=${seed}`)
    })
    const random = makeRandom(seed ^ 0x5bd1e995) // the producers' bursts, apart from the proxy's stream
    const started = performance.now()

    const server = await startTether({ sessionTtl: 60000 })
    const created: Session[] = []
    let resumes = 0
    const atServer: number[] = []
    server.on('session', (s) => created.push(s))
    server.on('resume', () => resumes++)
    server.on('message', (data) => atServer.push(data as number))
    const proxy = await startChaosProxy({ target: server.port, seed })
    defer(() => proxy.close())
    const {
      sock,
      messages: atClient,
      sessions,
      errors,
    } = tetherClient<number, number>(urlOf(proxy), {
      heartbeat: { interval: 200, timeout: 200 },
      reconnect: { minDelay: 10, maxDelay: 100, connectTimeout: 2000 },
    })
    await waitFor(() => created.length === 1 && sock.state === 'open', 3000, 'the first session')
    const session = created[0]
    proxy.setFaults(EVERY_FAULT)

    let maxLatency = 0
    const clientSends: Promise<void>[] = []
    const serverSends: Promise<void>[] = []
    const clientSettled = { resolved: 0, rejected: 0 }
    const serverSettled = { resolved: 0, rejected: 0 }
    const count = (settled: { resolved: number; rejected: number }) => [() => settled.resolved++, () => settled.rejected++] as const
    await Promise.all([
      produce(N, PRODUCE_MS, random, (i) => {
        const sentAt = performance.now()
        const p = sock.send(i).then(() => {
          maxLatency = Math.max(maxLatency, performance.now() - sentAt)
        })
        p.then(...count(clientSettled))
        clientSends.push(p)
      }),
      produce(N, PRODUCE_MS, random, (i) => {
        const p = session.send(i)
        p.then(...count(serverSettled))
        serverSends.push(p)
      }),
    ])
    await sleep(500) // the tail crosses faults too
    proxy.calm()

    const drained = await withTimeout(
      Promise.allSettled([...clientSends, ...serverSends]),
      12000,
      `sends to settle (client ${clientSettled.resolved}/${N}, server ${serverSettled.resolved}/${N}); seed ${seed}`,
    )
    await waitFor(() => atServer.length >= N && atClient.length >= N, 5000, 'both sides to receive everything')
    await sleep(200) // a late duplicate would arrive in this time

    const toServer = auditDelivery(atServer, N)
    const toClient = auditDelivery(atClient, N)
    const faults = proxy.counts
    const heartbeatTimeouts = errors.filter((e) => e instanceof TimeoutError && /heartbeat/.test(e.message)).length
    console.log(
      `chaos: seed=${seed} messages=${N}+${N} faults: ${proxy.describe()} heartbeat-timeouts=${heartbeatTimeouts} resumes=${resumes} | ` +
        `client→server lost=${toServer.lost} duplicated=${toServer.duplicated} out-of-order=${toServer.outOfOrder} | ` +
        `server→client lost=${toClient.lost} duplicated=${toClient.duplicated} out-of-order=${toClient.outOfOrder} | ` +
        `max send→ack latency=${Math.round(maxLatency)} ms | ${((performance.now() - started) / 1000).toFixed(1)} s`,
    )

    // The faults really happened, and the client really had to recover from them.
    expect(faults.kill).toBeGreaterThan(0)
    expect(faults.stall).toBeGreaterThan(0)
    expect(faults.split).toBeGreaterThan(0)
    expect(faults.refuse).toBeGreaterThan(0)
    expect(heartbeatTimeouts).toBeGreaterThan(0) // some stall was noticed only by the heartbeat
    expect(resumes).toBeGreaterThan(5)

    expect(toServer).toEqual({ lost: 0, duplicated: 0, outOfOrder: 0 })
    expect(toClient).toEqual({ lost: 0, duplicated: 0, outOfOrder: 0 })
    expect(atServer).toEqual(range(N))
    expect(atClient).toEqual(range(N))
    expect(drained.filter((r) => r.status === 'rejected')).toEqual([])
    expect(clientSettled).toEqual({ resolved: N, rejected: 0 })
    expect(serverSettled).toEqual({ resolved: N, rejected: 0 })
    expect(sock.pending).toBe(0)
    expect(session.pending).toBe(0)
    // One session throughout: every reconnect resumed it.
    expect(created).toHaveLength(1)
    expect(sessions).toEqual([{ id: session.id, previous: undefined }])
    // heartbeat and connect timeouts, and the refused attempts' causes (ConnectionError)
    expect(errors.filter((e) => !(e instanceof TimeoutError || e instanceof ConnectionError))).toEqual([])
  }, 45000)
})
