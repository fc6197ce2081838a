/**
 * The server's options that are timer delays: a value a timer cannot honour is refused at once,
 * naming the option, rather than firing at once (Node runs a timer of 2^31 ms or more after 1 ms).
 */
import { createServer } from 'node:http'
import { describe, expect, it } from 'vitest'
import { OptionError } from '../../src/errors.js'
import { createTetherServer } from '../../src/server/index.js'

describe('createTetherServer: timer options', () => {
  it.each(['sessionTtl', 'heartbeatInterval', 'helloTimeout'] as const)(
    '%s beyond the 32-bit timer limit (Infinity included) is refused with an error naming it',
    async (key) => {
      for (const value of [2 ** 31, Number.POSITIVE_INFINITY]) {
        const refused = createTetherServer({ server: createServer(), [key]: value })
        await expect(refused).rejects.toThrow(new RegExp(`options\\.${key} must be at most 2147483647 ms`))
        await expect(refused).rejects.toThrow(OptionError)
      }
    },
  )

  it('accepts the limit itself', async () => {
    const http = createServer()
    const server = await createTetherServer({ server: http, sessionTtl: 2 ** 31 - 1, heartbeatInterval: 2 ** 31 - 1 })
    await server.close()
  })
})
