/**
 * Topics under connection kills, in one server: 50 real clients in 5 overlapping topics (each a
 * member of a seeded random 1–3 of them), 1,000 publishes per topic interleaved across topics in
 * bursts, a few direct `session.send()`s among them, while the server's connections are
 * terminated at random (all at once, or a few at a time). Every client must get exactly the
 * server's send order filtered to what was addressed to it: each message of its topics once, in
 * publish order across its topics, its direct messages in their places, nothing of the other
 * topics, and no `missed` report (the retention holds every message).
 *
 * A failing run prints its seed; `CHAOS_SEED=<seed> npx vitest run test/integration/topics-chaos.test.ts`
 * replays the same memberships, publish order and kill decisions (not the event loop's timing).
 */
import { performance } from 'node:perf_hooks'
import { afterEach, describe, expect, it, onTestFailed } from 'vitest'
import type { MissedInfo } from '../../src/client/wire/types.js'
import { ConnectionError, TimeoutError } from '../../src/index.js'
import type { Session } from '../../src/server/index.js'
import { makeRandom, seedFromEnv } from '../support/chaos-proxy.js'
import { cleanupTether, killConnections, serverSockets, sleep, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

const CLIENTS = 50
const TOPICS = ['t0', 't1', 't2', 't3', 't4']
const PER_TOPIC = 1000

interface Msg {
  n: number
}

/** One item as a client saw it, or as the server addressed it: `t2:17`, or `direct:3`. */
const item = (topic: string | undefined, n: number) => `${topic ?? 'direct'}:${n}`

describe('topics: chaos', () => {
  it('50 clients in 5 overlapping topics, 1,000 publishes per topic, connections killed at random: each gets exactly its part of the send order, once', async () => {
    const seed = seedFromEnv()
    onTestFailed(() => {
      console.error(`topics chaos failed with seed ${seed}; replay with CHAOS_SEED=${seed}`)
    })
    const random = makeRandom(seed)
    const pick = (n: number) => Math.floor(random() * n)
    const started = performance.now()

    // Retention above what one topic gets: a member that is away a while still has everything.
    const server = await startTether({ sessionTtl: 60_000, topics: { maxMessages: 2 * PER_TOPIC } })
    const created: Session<Msg>[] = []
    let resumes = 0
    server.on('session', (s) => created.push(s as Session<Msg>))
    server.on('resume', () => resumes++)

    const clients = Array.from({ length: CLIENTS }, () => {
      const c = tetherClient<Msg, Msg>(urlOf(server), { reconnect: { minDelay: 5, maxDelay: 50, connectTimeout: 2000 } })
      const got: string[] = []
      const missed: MissedInfo[] = []
      c.sock.on('message', (m, info) => got.push(item(info.topic, m.n)))
      c.sock.on('missed', (info) => missed.push(info))
      return { ...c, got, missed }
    })
    await waitFor(() => created.length === CLIENTS && clients.every((c) => c.sock.state === 'open'), 10_000, 'every client open')

    // Memberships: a seeded 1–3 distinct topics per session; what each must get, in send order.
    const sessionOf = new Map(created.map((s) => [s.id, s]))
    const members = clients.map((c) => {
      const session = sessionOf.get(c.sock.sessionId as string) as Session<Msg>
      const topics = new Set<string>()
      const count = 1 + pick(3)
      while (topics.size < count) topics.add(TOPICS[pick(TOPICS.length)] as string)
      for (const topic of topics) session.join(topic)
      return { client: c, session, topics, expected: [] as string[] }
    })
    for (const topic of TOPICS) {
      expect((await server.presence(topic)).length).toBe(members.filter((m) => m.topics.has(topic)).length)
    }

    // The killer: every 15–60 ms, all connections (one time in six) or one to five of them.
    let killing = true
    let kills = 0
    let massKills = 0
    const killer = (async () => {
      while (killing) {
        await sleep(15 + pick(45))
        if (!killing) break
        if (pick(6) === 0) {
          killConnections(server)
          massKills++
          continue
        }
        const sockets = serverSockets(server)
        for (let k = 1 + pick(5); k > 0 && sockets.length > 0; k--) {
          sockets.splice(pick(sockets.length), 1)[0]?.terminate()
          kills++
        }
      }
    })()

    // Publishes interleaved across topics (each topic's numbers in order), in bursts of 1–20
    // with 2–8 ms pauses (a few seconds of them); now and then a direct message to one session, which must keep its place.
    const next = new Map(TOPICS.map((t) => [t, 0]))
    let left = TOPICS.length * PER_TOPIC
    let directs = 0
    while (left > 0) {
      for (let burst = 1 + pick(20); burst > 0 && left > 0; burst--) {
        if (pick(25) === 0) {
          const member = members[pick(members.length)] as (typeof members)[number]
          const n = directs++
          member.session.send({ n }).catch(() => {}) // settled or not, the stream is what is checked
          member.expected.push(item(undefined, n))
          continue
        }
        const open = TOPICS.filter((t) => (next.get(t) as number) < PER_TOPIC)
        const topic = open[pick(open.length)] as string
        const n = next.get(topic) as number
        next.set(topic, n + 1)
        left--
        const reached = server.publish(topic, { n })
        expect(reached).toBe(members.filter((m) => m.topics.has(topic)).length)
        for (const m of members) if (m.topics.has(topic)) m.expected.push(item(topic, n))
      }
      await sleep(2 + pick(7))
    }
    await sleep(200) // the tail crosses kills too
    killing = false
    await killer

    await waitFor(
      () => members.every((m) => m.client.got.length >= m.expected.length),
      20_000,
      `every client to get its part (${members.filter((m) => m.client.got.length >= m.expected.length).length}/${CLIENTS} done); seed ${seed}`,
    )
    await sleep(200) // a late duplicate would arrive in this time
    const delivered = members.reduce((sum, m) => sum + m.client.got.length, 0)
    console.log(
      `topics chaos: seed=${seed} clients=${CLIENTS} publishes=${TOPICS.length * PER_TOPIC} directs=${directs} deliveries=${delivered} ` +
        `kills=${kills} mass-kills=${massKills} resumes=${resumes} | ${((performance.now() - started) / 1000).toFixed(1)} s`,
    )

    // The faults happened, and every client recovered from them by resuming its one session.
    expect(kills).toBeGreaterThan(20)
    expect(massKills).toBeGreaterThan(0)
    expect(resumes).toBeGreaterThan(CLIENTS)
    expect(created).toHaveLength(CLIENTS)
    for (const m of members) {
      // The whole stream: the server's send order filtered to this session, nothing else, once each.
      expect(m.client.got).toEqual(m.expected)
      expect(m.client.missed).toEqual([])
      expect(m.client.sessions).toEqual([{ id: m.session.id, previous: undefined }])
      expect(m.client.errors.filter((e) => !(e instanceof TimeoutError || e instanceof ConnectionError))).toEqual([])
    }
    // Per topic too (implied by the above; stated so a failure says which topic broke).
    for (const m of members) {
      for (const topic of TOPICS) {
        const mine = m.client.got.filter((g) => g.startsWith(`${topic}:`))
        expect(mine).toEqual(m.topics.has(topic) ? Array.from({ length: PER_TOPIC }, (_, n) => item(topic, n)) : [])
      }
    }
  }, 45_000)
})
