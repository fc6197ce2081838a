/**
 * The reference server's defaults against a plain app: an echo app (`session.send(data)` per
 * message) fed 25,000 messages by a real tethersocket client as fast as it sends them. The
 * defaults must let it answer every message at the admitted rate without a refusal.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { cleanupTether, sleep, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(cleanupTether)

describe('server defaults and an echo app', () => {
  it('25,000 messages as fast as the client sends them: every echo is queued (no QueueFullError) and arrives once, in order', async () => {
    const server = await startTether() // every server option at its default
    const refused: Error[] = []
    let mostPending = 0
    server.on('message', (data, session) => {
      session.send(data).catch((error: Error) => refused.push(error))
      mostPending = Math.max(mostPending, session.pending)
    })
    const total = 25_000
    // The client's queue must hold the whole burst; its other options are the defaults.
    const { sock, messages } = tetherClient<number, number>(urlOf(server), { queue: { maxMessages: total } })
    await waitFor(() => sock.state === 'open', 3000, 'open')
    const sends = Array.from({ length: total }, (_, i) => sock.send(i))
    // 10,000 at once and 10 s at 1,000/s are admitted; the client resends the rest after a 1013
    // (5–10 s later), and they come at the rate.
    await withTimeout(Promise.all(sends), 45_000, 'all sends acknowledged')
    await waitFor(() => messages.length >= total || refused.length > 0, 10_000, 'every echo')
    await sleep(100)
    // Before: maxQueue (10,000) was the burst itself, and a few dozen echoes were refused.
    expect(refused.map((error) => error.message).slice(0, 3)).toEqual([])
    expect(messages.length).toBe(total)
    expect(messages).toEqual(Array.from({ length: total }, (_, i) => i))
    console.log(`echo: 25,000 messages, most unacknowledged echoes at once: ${mostPending}`)
  }, 60_000)
})
