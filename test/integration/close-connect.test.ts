/**
 * Review of the client core against the reference server: defects that need a real
 * session on the other side to show their consequence.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { ClosedError } from '../../src/errors.js'
import { cleanupTether, freePort, startProxy, startTether, tetherClient, urlOf, waitFor, withTimeout } from '../support/tether.js'

afterEach(cleanupTether)

describe('close() then connect() on the same socket', () => {
  it('keeps working when close() dropped messages the server never received (no sequence gap, no 1002 loop)', async () => {
    const server = await startTether()
    const received: unknown[] = []
    server.on('message', (data) => received.push(data))
    let target = server.port
    const proxy = await startProxy(() => target)
    const { sock, closes, states } = tetherClient<unknown, string>(urlOf(proxy))
    await waitFor(() => sock.state === 'open', 3000, 'open')
    await sock.send('first')

    proxy.freeze()
    const lost = sock.send('lost in the network')
    lost.catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 50)) // written into the frozen connection
    // The connection is lost, and attempts are refused until close(): the socket cannot resume
    // (and resend) before close(), however the machine's load times things.
    target = await freePort()
    const before = states.length
    proxy.cutAll()
    await waitFor(() => states.slice(before).some((state) => state === 'reconnecting' || state === 'connecting'), 3000, 'connection lost')
    await sock.close()
    await expect(lost).rejects.toBeInstanceOf(ClosedError)

    target = server.port
    sock.connect() // the server still has the session: it is resumed
    await waitFor(() => sock.state === 'open', 3000, 'open again')
    await withTimeout(sock.send('after reconnect'), 3000, 'send after close() + connect() was never acknowledged')
    expect(received).toEqual(['first', 'after reconnect'])
    expect(closes.filter((c) => c.code === 1002)).toEqual([])
  })
})
