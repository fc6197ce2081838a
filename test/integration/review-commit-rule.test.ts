/**
 * Review of the commit rule (src/server/journal.ts `nextBatch`, src/server/sessions.ts
 * `sendEncoded`/`reply`, src/server/service.ts `letGo`) against a real redis-server.
 *
 * The journal records `rx` up to the last settled item, but an entry sent while items were being
 * handled is tagged with the LAST DELIVERED item (`Journal.handling`), not with the item whose
 * handler sent it, and a commit takes entries in order only up to the first one whose tag is not
 * settled. So an item can be recorded (and acknowledged) while a message its own handler sent, or
 * its request's reply, stays unrecorded behind a later item's entry. When the connection then
 * moves (or the node dies), that message is dropped (`letGo` rejects it "the item will be delivered
 * again", or drops a reply outright), and the item is NOT delivered again, since it was recorded:
 * the message is lost. docs/SCALING.md promises the opposite ("An echo or a request handler is
 * therefore exactly-once end to end across a node's death"; "the request, its reply and its
 * acknowledgement are recorded in one write").
 *
 * Both tests failed on the code before the fix, because of this bug (checked), and
 * pass once a commit never records an item while an entry that item's handler may have sent is
 * left behind.
 */
import { createClient } from 'redis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { redisStore } from '../../src/redis/index.js'
import type { TetherServer } from '../../src/server/index.js'
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanupTether, defer, sleep, startProxy, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

let redis: RedisServer
let prefixCount = 0

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => stopAllRedis())
afterEach(() => cleanupTether())

/** Two server nodes in this process sharing one store (a prefix of their own). */
async function twoNodes(): Promise<[TetherServer, TetherServer]> {
  const prefix = `rc${++prefixCount}-${Date.now()}`
  const nodes: TetherServer[] = []
  for (let i = 0; i < 2; i++) {
    const client = createClient({ url: redis.url })
    client.on('error', () => {})
    await client.connect()
    defer(() => client.close())
    const node = await startTether({ store: redisStore(client, { prefix }), heartbeatInterval: 0 })
    node.on('error', () => {})
    nodes.push(node)
  }
  return nodes as [TetherServer, TetherServer]
}

describe('review: what a handler sends is recorded with its own item', () => {
  it('an async echo handler that finishes while a later item is still being handled: its echo is not lost when the connection moves', async () => {
    const nodes = await twoNodes()
    // Node 0: an async echo, as an app with a database call would write it; each item waits for the test.
    const gates = new Map<number, () => void>()
    const echoed: number[] = []
    nodes[0].on('message', async (data, session) => {
      await new Promise<void>((resolve) => gates.set(data as number, resolve))
      session.send({ echo: data }).catch(() => {})
      echoed.push(data as number)
    })
    // Node 1: the same echo, at once.
    nodes[1].on('message', (data, session) => {
      session.send({ echo: data }).catch(() => {})
    })
    let target = nodes[0].port
    const proxy = await startProxy(() => target)
    const client = tetherClient<{ echo: number }, number>(urlOf(proxy))
    await waitFor(() => client.sock.sessionId, 5000, 'session on node 0')
    const sid = client.sock.sessionId
    void client.sock.send(1).catch(() => {})
    void client.sock.send(2).catch(() => {})
    await waitFor(() => gates.has(1) && gates.has(2), 5000, 'both items handed to the handler')
    // Handler 1 finishes (its echo sent); handler 2 is still waiting on its outside call.
    gates.get(1)?.()
    await waitFor(() => echoed.includes(1), 5000, 'handler 1 sent its echo')
    await sleep(200) // node 0 commits what it can: today, item 1 without its echo
    // The client's connection moves to node 1 (as after a network failure, or node 0 dying).
    target = nodes[1].port
    proxy.cutAll()
    await waitFor(() => client.messages.some((m) => m.echo === 2), 5000, 'the echo of item 2, from node 1')
    await sleep(300)
    expect(client.sock.sessionId).toBe(sid)
    // Each item's echo once. Before the fix: only [{ echo: 2 }]: echo 1 was rejected on node 0 as "will be
    // delivered again", and item 1 is not delivered again because it was recorded.
    expect(client.messages).toEqual([{ echo: 1 }, { echo: 2 }])
  })

  it('a request acknowledged before its reply was recorded: the reply is lost when the connection moves, and request() times out', async () => {
    const nodes = await twoNodes()
    let answer = () => {}
    let requestSeen = false
    let heldSeen = false
    nodes[0].onRequest(async () => {
      requestSeen = true
      await new Promise<void>((resolve) => {
        answer = resolve
      })
      return 'answer'
    })
    // A message whose handler sends, then holds its item on an outside call that does not finish.
    nodes[0].on('message', (_data, session) => {
      heldSeen = true
      session.send('noted').catch(() => {})
      return new Promise<void>(() => {})
    })
    nodes[1].onRequest(async () => 'answer')
    nodes[1].on('message', () => {})
    let target = nodes[0].port
    const proxy = await startProxy(() => target)
    const client = tetherClient<string, string>(urlOf(proxy))
    await waitFor(() => client.sock.sessionId, 5000, 'session on node 0')
    const reply = client.sock.request('question', { timeout: 4000 })
    reply.catch(() => {})
    void client.sock.send('hold').catch(() => {})
    await waitFor(() => requestSeen && heldSeen, 5000, 'request and message handed to the handlers')
    answer() // the reply is queued behind the message's 'noted', which waits for the held item
    await sleep(200) // node 0 commits what it can: today, the request's item without its reply
    target = nodes[1].port
    proxy.cutAll()
    // Before the fix the request was acknowledged with no reply recorded: node 1 does not run it again,
    // and request() rejects with TimeoutError after 4 s.
    await expect(reply).resolves.toBe('answer')
  })
})
