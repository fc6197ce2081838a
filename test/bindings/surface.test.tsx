/**
 * The React hook and the Vue composable return the same members, with the same names (React as
 * plain values, Vue as refs).
 */
import { cleanup, renderHook } from '@testing-library/react'
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest'
import { effectScope } from 'vue'
import { type UseTetherSocketResult, useTetherSocket as useReactSocket } from '../../src/bindings/react.js'
import { type UseTetherSocketReturn, useTetherSocket as useVueSocket } from '../../src/bindings/vue.js'

const MEMBERS = ['close', 'error', 'lastMessage', 'pending', 'reconnect', 'request', 'send', 'sessionId', 'socket', 'state']

afterEach(() => cleanup())

describe('the bindings’ surface', () => {
  it('is the same set of members in both types', () => {
    expectTypeOf<keyof UseTetherSocketResult>().toEqualTypeOf<keyof UseTetherSocketReturn>()
  })

  it('is the same set of members in both results', () => {
    const react = renderHook(() => useReactSocket(null)).result.current
    const scope = effectScope()
    const vue = scope.run(() => useVueSocket(null))!
    scope.stop()
    expect(Object.keys(react).sort()).toEqual(MEMBERS)
    expect(Object.keys(vue).sort()).toEqual(MEMBERS)
  })
})
