/**
 * Requests across a reload (`persist`), against a real reference server whose request handler
 * waits for a signal the test gives: a request acknowledged before the reload is answered after
 * it (the next page's `restored` lists the reply), one not acknowledged is sent again and
 * answered once, and the next page's request ids never collide with the previous page's.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { TetherServer } from '../../src/server/index.js'
import { Origin } from '../support/pages.js'
import { eventually, persistClient, recordingWebSocket, stored } from '../support/persist.js'
import { cleanupTether, freePort, startTether, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

interface Q {
  q: number
}

/** A request handler that answers `{ echo }` once the test lets that request go (`answer(q)`); `calls` lists every call. */
function heldReplies(server: TetherServer) {
  const calls: number[] = []
  const waiting = new Map<number, () => void>()
  const let_ = new Set<number>()
  server.onRequest(async (data) => {
    const { q } = data as Q
    calls.push(q)
    if (!let_.has(q)) await new Promise<void>((resolve) => waiting.set(q, resolve))
    return { echo: q }
  })
  return {
    calls,
    answer(q: number) {
      let_.add(q)
      waiting.get(q)?.()
    },
  }
}

const reqIds = (frames: string[]) => frames.filter((f) => f.startsWith('{"t":"req"')).map((f) => (JSON.parse(f) as { id: number; d: Q }).id)

describe('a request across a reload', () => {
  it('acknowledged before the reload, answered after it: the next page lists it delivered with its reply', async () => {
    const server = await startTether()
    const replies = heldReplies(server)
    const origin = new Origin()
    const tab = origin.tab()
    const first = origin.page(tab)
    const a = persistClient<unknown, Q>(first, urlOf(server))
    a.sock.request({ q: 1 }).catch(() => {})
    await waitFor(() => replies.calls.length === 1, 5000, 'the handler called')
    await eventually(async () => (await stored(origin))[0]?.session?.acked === 1, 5000, 'the acknowledgement recorded')
    first.crash()

    const b = persistClient<unknown, Q>(origin.page(tab), urlOf(server))
    await waitFor(() => b.sock.state === 'open', 5000, 'open')
    expect(b.restored).toEqual([])
    replies.answer(1)
    await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
    expect(b.restored[0]).toEqual({ from: 'reload', delivered: [{ data: { q: 1 }, reply: { echo: 1 } }], failed: [] })
    expect(replies.calls).toEqual([1])
    // Answered: nothing of it is kept any more.
    await eventually(async () => (await stored(origin))[0]?.entries.length === 0, 5000, 'the request gone from the store')
  })

  it('written but not acknowledged (the page went away as the server took it): sent again, handled once, answered', async () => {
    const server = await startTether()
    const origin = new Origin()
    const tab = origin.tab()
    const first = origin.page(tab)
    const calls: number[] = []
    server.onRequest((data) => {
      calls.push((data as Q).q)
      first.crash() // before the server's ack can reach the page
      return { echo: (data as Q).q }
    })
    const a = persistClient<unknown, Q>(first, urlOf(server))
    await waitFor(() => a.sock.state === 'open', 5000, 'open')
    a.sock.request({ q: 1 }).catch(() => {})
    await waitFor(() => calls.length === 1, 5000, 'the handler called')
    expect((await stored(origin))[0]?.session?.acked).toBe(0)

    const b = persistClient<unknown, Q>(origin.page(tab), urlOf(server))
    await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
    expect(b.restored[0]).toEqual({ from: 'reload', delivered: [{ data: { q: 1 }, reply: { echo: 1 } }], failed: [] })
    expect(calls).toEqual([1])
  })

  it('never written (made while the server was down): sent after the reload and answered', async () => {
    const port = await freePort()
    const origin = new Origin()
    const tab = origin.tab()
    const first = origin.page(tab)
    const a = persistClient<unknown, Q>(first, `ws://127.0.0.1:${port}`)
    a.sock.request({ q: 1 }).catch(() => {})
    a.sock.request({ q: 2 }).catch(() => {})
    await eventually(async () => (await stored(origin))[0]?.entries.length === 2, 5000, 'the requests stored')
    first.crash()

    const server = await startTether({ port })
    const replies = heldReplies(server)
    replies.answer(1)
    replies.answer(2)
    const b = persistClient<unknown, Q>(origin.page(tab), urlOf(server))
    await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
    expect(b.restored[0]!.delivered).toEqual([
      { data: { q: 1 }, reply: { echo: 1 } },
      { data: { q: 2 }, reply: { echo: 2 } },
    ])
    expect(replies.calls).toEqual([1, 2])
  })
})

describe('request ids across a reload', () => {
  for (const when of ['once the store is open', 'before the store opened'] as const) {
    it(`a new page's requests made ${when} never take the id of the previous page's pending one`, async () => {
      const server = await startTether()
      const replies = heldReplies(server)
      const origin = new Origin()
      const tab = origin.tab()
      const first = origin.page(tab)
      const firstWire = recordingWebSocket(first)
      const a = persistClient<unknown, Q>(first, urlOf(server), { WebSocket: firstWire.WebSocket })
      a.sock.request({ q: 1 }).catch(() => {})
      await waitFor(() => replies.calls.length === 1, 5000, 'the handler called')
      await eventually(async () => (await stored(origin))[0]?.session?.acked === 1, 5000, 'the acknowledgement recorded')
      first.crash()

      const second = origin.page(tab)
      const wire = recordingWebSocket(second)
      const b = persistClient<unknown, Q>(second, urlOf(server), { WebSocket: wire.WebSocket })
      if (when === 'once the store is open') await waitFor(() => b.sock.state === 'open', 5000, 'open')
      replies.answer(2)
      const reply = b.sock.request({ q: 2 })
      await expect(reply).resolves.toEqual({ echo: 2 })
      replies.answer(1)
      await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
      expect(b.restored[0]!.delivered).toEqual([{ data: { q: 1 }, reply: { echo: 1 } }])
      const old = reqIds(firstWire.frames)
      expect(old).toHaveLength(1)
      expect(reqIds(wire.frames)).toHaveLength(1)
      expect(old).not.toContain(reqIds(wire.frames)[0])
    })
  }
})
