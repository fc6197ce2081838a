/**
 * The server's options that are timer delays: a value a timer cannot honour is refused at once,
 * naming the option, rather than firing at once (Node runs a timer of 2^31 ms or more after 1 ms).
 */
import { createServer } from 'node:http'
import { describe, expect, it } from 'vitest'
import { EncodeError, OptionError } from '../../src/errors.js'
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

describe('createTetherServer: option names and shapes', () => {
  it('an unknown option name is refused, suggesting the known one', async () => {
    await expect(createTetherServer({ prot: 1 } as never)).rejects.toThrow(
      'createTetherServer: options.prot is not an option (did you mean options.port?)',
    )
    await expect(createTetherServer({ server: createServer(), sesionTtl: 5 } as never)).rejects.toThrow('did you mean options.sessionTtl?')
    await expect(createTetherServer({ server: createServer(), rateLimit: { rate: 1, burst: 1, brust: 2 } } as never)).rejects.toThrow(
      'options.rateLimit.brust is not an option (did you mean options.rateLimit.burst?)',
    )
  })

  it.each([
    [{ port: 99999 }, 'options.port must be an integer from 0 to 65535 (0: any free port); got 99999'],
    [{ port: '80' }, 'options.port must be an integer from 0 to 65535 (0: any free port); got "80"'],
    [{ host: 7 }, 'options.host must be a host name or IP address; got 7'],
    [{ server: {} }, 'options.server must be an http.Server or https.Server to attach to'],
    [{ server: createServer(), port: 0 }, 'options.port must be left out with options.server'],
    [{ path: 'ws' }, 'options.path must be a path starting with "/"; got "ws"'],
    [{ static: 1 }, 'options.static must be a folder path; got 1'],
    [{ allowedOrigins: 'https://a.example' }, 'options.allowedOrigins must be an array of origins (strings) or a function'],
    [{ authenticate: true }, 'options.authenticate must be a function; got true'],
    [{ store: {} }, 'options.store must be a session store, such as redisStore(client) from tethersocket/redis'],
  ])('%j is an OptionError naming the option (not an error from net)', async (options, message) => {
    const refused = createTetherServer(options as never)
    await expect(refused).rejects.toThrow(OptionError)
    await expect(refused).rejects.toThrow(message)
  })
})

describe('createTetherServer: what clients are told must be valid', () => {
  it('maxPendingRequests, announced in welcome as reqs, must be an integer', async () => {
    await expect(createTetherServer({ server: createServer(), maxPendingRequests: 2.5 })).rejects.toThrow(
      'options.maxPendingRequests must be a positive integer (or Infinity for no limit); got 2.5',
    )
  })

  it('broadcast of a value JSON cannot carry throws an EncodeError, like send() rejects with one', async () => {
    const server = await createTetherServer({ server: createServer() })
    try {
      expect(() => server.broadcast(10n as never)).toThrow(EncodeError)
      expect(() => server.broadcast(undefined as never)).toThrow(/broadcast: message cannot be encoded as JSON/)
    } finally {
      await server.close()
    }
  })
})
