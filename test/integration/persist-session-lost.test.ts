/**
 * A restored session the server no longer has (`persist`): the server restarted while the page
 * was away. The next page starts a new session (the `session` event names the old one), sends what
 * was pending in it (at-least-once across that boundary, as without a reload), and reports a
 * request whose reply was due as failed: the reply was lost with the old session.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { DeliveryError } from '../../src/errors.js'
import { Origin } from '../support/pages.js'
import { eventually, persistClient, received, stored } from '../support/persist.js'
import { cleanupTether, startTether, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

type Msg = Record<string, number>

describe('a restored session the server no longer has', () => {
  it('starts a new session, delivers what was pending, and reports the request whose reply was lost', async () => {
    const before = await startTether()
    before.onRequest(() => new Promise(() => {})) // never answered
    const port = before.port
    const origin = new Origin()
    const tab = origin.tab()
    const first = origin.page(tab)
    const a = persistClient<Msg, Msg>(first, urlOf(before))
    a.sock.request({ q: 1 }).catch(() => {})
    await eventually(async () => (await stored(origin))[0]?.session?.acked === 1, 5000, 'the request acknowledged')
    const old = a.sock.sessionId
    await before.close()
    await waitFor(() => a.sock.state !== 'open', 5000, 'disconnected')
    for (const n of [1, 2, 3]) a.sock.send({ n }).catch(() => {})
    await eventually(async () => (await stored(origin))[0]?.entries.length === 4, 5000, 'the messages stored')
    first.crash()

    const after = await startTether({ port })
    const got = received<Msg>(after)
    const b = persistClient<Msg, Msg>(origin.page(tab), urlOf(after))
    await waitFor(() => b.restored.length === 1, 5000, 'the restored report')
    expect(b.sessions).toEqual([expect.objectContaining({ previous: old, reason: 'unknown' })])
    expect(got).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }])
    const { delivered, failed } = b.restored[0]!
    expect(delivered).toEqual([{ data: { n: 1 } }, { data: { n: 2 } }, { data: { n: 3 } }])
    expect(failed).toEqual([{ data: { q: 1 }, error: expect.any(DeliveryError) }])
    // The new session is what is stored now, with nothing pending.
    await eventually(
      async () => {
        const [outbox] = await stored(origin)
        return outbox?.session?.id === b.sock.sessionId && outbox.entries.length === 0
      },
      5000,
      'the new session stored',
    )
  })
})
