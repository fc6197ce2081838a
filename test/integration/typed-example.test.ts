/**
 * The typed example (examples/typed): one declaration of the app's messages types the client
 * and the server. It type-checks under --strict against the built package's declarations (as a
 * user's project would see them), and it runs: a typed request gets its typed reply.
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest'
import { WebSocket } from 'ws'
import { connect, serverTime, whoAmI } from '../../examples/typed/client.js'
import type { User } from '../../examples/typed/messages.js'
import { startChat } from '../../examples/typed/server.js'
import { cleanupTether, defer, urlOf, waitFor } from '../support/tether.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const tsc = fileURLToPath(new URL('../../node_modules/typescript/bin/tsc', import.meta.url))

afterEach(() => cleanupTether())

describe('examples/typed', () => {
  it('type-checks under --strict against the built declarations', async () => {
    const run = await new Promise<{ code: number; output: string }>((done) => {
      execFile(process.execPath, [tsc, '-p', 'examples/typed'], { cwd: root, timeout: 60000 }, (error, stdout, stderr) =>
        done({ code: error ? 1 : 0, output: stdout + stderr }),
      )
    })
    expect(run.output).toBe('')
    expect(run.code).toBe(0)
  }, 70000)

  it('runs: typed messages both ways, and typed replies to typed requests', async () => {
    const server = await startChat()
    defer(() => server.close())
    const sock = connect(urlOf(server), { WebSocket, reconnect: false })
    defer(() => sock.close())
    const heard: unknown[] = []
    sock.on('message', (msg) => heard.push(msg))
    await sock.send({ type: 'chat', text: 'hello' })
    await waitFor(() => heard.length === 1, 3000, 'the broadcast')
    expect(heard).toEqual([{ type: 'chat', from: sock.sessionId, text: 'hello' }])
    const user = await whoAmI(sock)
    expectTypeOf(user).toEqualTypeOf<User>()
    expect(user.id).toBe(sock.sessionId)
    const time = await serverTime(sock)
    expectTypeOf(time).toEqualTypeOf<number>()
    expect(Math.abs(time - Date.now())).toBeLessThan(5000)
  })
})
