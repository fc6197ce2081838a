/**
 * Raw mode with `persist`, against a plain `ws` server (support/servers.ts): there is no session,
 * so the queue itself is kept: what was queued and not written when the page went away is written
 * by the next page, text and binary alike, ahead of what that page sends.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Origin } from '../support/pages.js'
import { eventually, persistClient, stored } from '../support/persist.js'
import { cleanup, startServer } from '../support/servers.js'
import { cleanupTether, freePort, waitFor } from '../support/tether.js'

afterEach(async () => {
  await cleanupTether()
  await cleanup()
})

const bytes = (data: unknown) => [...new Uint8Array(data as ArrayBuffer)]

describe('raw mode across a reload', () => {
  it('writes what was queued while disconnected after the reload: text, an ArrayBuffer and a Uint8Array view, in order', async () => {
    const port = await freePort()
    const origin = new Origin()
    const tab = origin.tab()
    const first = origin.page(tab)
    const a = persistClient<unknown, unknown>(first, `ws://127.0.0.1:${port}`, { mode: 'raw' })
    const backing = new Uint8Array([9, 4, 5, 6, 9])
    void a.sock.send('text')
    void a.sock.send(new Uint8Array([1, 2, 3]).buffer)
    void a.sock.send(backing.subarray(1, 4))
    void a.sock.send({ n: 1 })
    await eventually(async () => (await stored(origin))[0]?.entries.length === 4, 5000, 'the queue stored')
    first.crash()

    const server = await startServer({ port })
    const b = persistClient<unknown, unknown>(origin.page(tab), server.url, { mode: 'raw' })
    void b.sock.send('after')
    await waitFor(() => server.messages.length === 5, 5000, '5 messages at the server')
    expect(server.messages.map((m) => (m.isBinary ? [...(m.data as Buffer)] : m.data))).toEqual([
      'text',
      [1, 2, 3],
      [4, 5, 6],
      '{"n":1}',
      'after',
    ])
    await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
    const { from, delivered, failed } = b.restored[0]!
    expect(from).toBe('reload')
    expect(failed).toEqual([])
    expect(delivered[0]).toEqual({ data: 'text' })
    expect(bytes(delivered[1]!.data)).toEqual([1, 2, 3])
    expect(bytes(delivered[2]!.data)).toEqual([4, 5, 6])
    expect(delivered[3]).toEqual({ data: '{"n":1}' })
    // Written: nothing is kept any more.
    await eventually(async () => (await stored(origin))[0]?.entries.length === 0, 5000, 'the queue emptied in the store')
    expect(server.connections).toHaveLength(1)
  })

  it('writes nothing twice that a page wrote before it went away', async () => {
    const server = await startServer()
    const origin = new Origin()
    const tab = origin.tab()
    const first = origin.page(tab)
    const a = persistClient<unknown, unknown>(first, server.url, { mode: 'raw' })
    await waitFor(() => a.sock.state === 'open', 5000, 'open')
    for (let n = 0; n < 10; n++) void a.sock.send(`m${n}`)
    await waitFor(() => server.messages.length === 10, 5000, '10 at the server')
    await eventually(async () => (await stored(origin))[0]?.entries.length === 0, 5000, 'nothing stored')
    first.crash()

    const b = persistClient<unknown, unknown>(origin.page(tab), server.url, { mode: 'raw' })
    void b.sock.send('after')
    await waitFor(() => server.messages.length >= 11, 5000, 'the new page writing')
    expect(server.texts()).toEqual([...Array.from({ length: 10 }, (_, n) => `m${n}`), 'after'])
    expect(b.restored).toEqual([])
  })
})
