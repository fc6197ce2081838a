/**
 * The request types shared by both halves (src/protocol/requests.ts), checked by the compiler
 * (`npm run typecheck` covers this file): a request's reply type follows from its request
 * type, on the client's `request()` and on the server's `onRequest()`.
 */
import { describe, expectTypeOf, it } from 'vitest'
import type { UseTetherSocketResult } from '../../src/bindings/react.js'
import type { UseTetherSocketReturn } from '../../src/bindings/vue.js'
import type { ReplyOf, RequestReply, TetherSocket } from '../../src/index.js'
import type { RequestHandler } from '../../src/server/index.js'

interface User {
  id: number
  name: string
}
type Requests = RequestReply<{ get: 'user'; id: number }, User> | RequestReply<{ get: 'time' }, number>
type Sock = TetherSocket<string, string, Requests>

describe('request types', () => {
  it('ReplyOf picks the reply of the kind a request fits; an open Requests gives unknown', () => {
    expectTypeOf<ReplyOf<Requests, { get: 'user'; id: 7 }>>().toEqualTypeOf<User>()
    expectTypeOf<ReplyOf<Requests, { get: 'time' }>>().toEqualTypeOf<number>()
    expectTypeOf<ReplyOf<Requests, { get: 'user'; id: number } | { get: 'time' }>>().toEqualTypeOf<User | number>()
    expectTypeOf<ReplyOf<RequestReply, 'anything'>>().toEqualTypeOf<unknown>()
  })

  it("request(): typed by the socket's Requests; R, when given, wins; the reply is never inferred from where it goes", () => {
    // Functions the compiler checks and nobody calls: these are type tests.
    const typed = async (sock: Sock) => {
      expectTypeOf(await sock.request({ get: 'user', id: 7 })).toEqualTypeOf<User>()
      expectTypeOf(await sock.request({ get: 'time' })).toEqualTypeOf<number>()
      expectTypeOf(await sock.request<string>({ get: 'time' })).toEqualTypeOf<string>()
      // @ts-expect-error not a request the server answers
      await sock.request({ get: 'nope' })
      // @ts-expect-error the reply to { get: 'time' } is a number
      const wrong: string = await sock.request({ get: 'time' })
      return wrong
    }
    const open = async (sock: TetherSocket) => {
      expectTypeOf(await sock.request('anything')).toEqualTypeOf<unknown>()
      expectTypeOf(await sock.request<number>(1)).toEqualTypeOf<number>()
    }
    expectTypeOf(typed).toBeFunction()
    expectTypeOf(open).toBeFunction()
  })

  it('onRequest(): the handler gets the requests and must answer with one of their replies', () => {
    expectTypeOf<Parameters<RequestHandler<Requests>>[0]>().toEqualTypeOf<{ get: 'user'; id: number } | { get: 'time' }>()
    const good: RequestHandler<Requests> = async (req) => (req.get === 'user' ? { id: req.id, name: 'x' } : Date.now())
    // @ts-expect-error a string is not a reply of Requests
    const bad: RequestHandler<Requests> = async () => 'no'
    expectTypeOf(good).toBeFunction()
    expectTypeOf(bad).toBeFunction()
  })
})

describe('request types through the bindings', () => {
  it("React's and Vue's request() are typed by the same Requests as the socket's", () => {
    const react = async (result: UseTetherSocketResult<string, string, Requests>) => {
      expectTypeOf(await result.request({ get: 'user', id: 1 })).toEqualTypeOf<User>()
      // @ts-expect-error not a request the server answers
      await result.request({ get: 'nope' })
    }
    const vue = async (result: UseTetherSocketReturn<string, string, Requests>) => {
      expectTypeOf(await result.request({ get: 'time' })).toEqualTypeOf<number>()
    }
    expectTypeOf(react).toBeFunction()
    expectTypeOf(vue).toBeFunction()
  })
})
