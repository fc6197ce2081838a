import { describe, expect, expectTypeOf, it, vi } from 'vitest'
import {
  AbortError,
  ClosedError,
  ConnectionError,
  DeliveryError,
  EncodeError,
  OptionError,
  PersistError,
  ProtocolError,
  QueueFullError,
  ReplyError,
  type ReplyErrorCode,
  TetherError,
  type TetherErrorCode,
  TimeoutError,
} from '../src/errors.js'
import * as api from '../src/index.js'

type ErrorClass = new (message: string, options?: { cause?: unknown; data?: unknown }) => TetherError

const classes: [ErrorClass, string, string][] = [
  [DeliveryError, 'DeliveryError', 'ERR_DELIVERY'],
  [TimeoutError, 'TimeoutError', 'ERR_TIMEOUT'],
  [QueueFullError, 'QueueFullError', 'ERR_QUEUE_FULL'],
  [ProtocolError, 'ProtocolError', 'ERR_PROTOCOL'],
  [ClosedError, 'ClosedError', 'ERR_CLOSED'],
  [AbortError, 'AbortError', 'ERR_ABORTED'],
  [ConnectionError, 'ConnectionError', 'ERR_CONNECTION'],
  [OptionError, 'OptionError', 'ERR_INVALID_OPTION'],
  [EncodeError, 'EncodeError', 'ERR_ENCODE'],
]

/**
 * Every member of TetherErrorCode, with what carries it. A `Record` over the union: the
 * typecheck fails when a code is added to the union but not here, or listed here but not in it.
 */
const carriers: Record<TetherErrorCode, string> = {
  ERR_TETHER: 'TetherError',
  ERR_DELIVERY: 'DeliveryError',
  ERR_TIMEOUT: 'TimeoutError',
  ERR_QUEUE_FULL: 'QueueFullError',
  ERR_PROTOCOL: 'ProtocolError',
  ERR_CLOSED: 'ClosedError',
  ERR_ABORTED: 'AbortError',
  ERR_CONNECTION: 'ConnectionError',
  ERR_INVALID_OPTION: 'OptionError',
  ERR_ENCODE: 'EncodeError',
  ERR_UNSUPPORTED: 'TetherError',
  ERR_CREATE: 'TetherError',
  ERR_PERSIST: 'PersistError',
}

describe('TetherError', () => {
  it('is an Error named TetherError with code ERR_TETHER by default', () => {
    const error = new TetherError('boom')
    expect(error).toBeInstanceOf(Error)
    expect(error).toBeInstanceOf(TetherError)
    expect(error.name).toBe('TetherError')
    expect(error.code).toBe('ERR_TETHER')
    expect(error.message).toBe('boom')
  })

  it('accepts an explicit name and code (for errors without a class of their own)', () => {
    const error = new TetherError('raw mode has no replies', undefined, 'TetherError', 'ERR_UNSUPPORTED')
    expect(error.code).toBe('ERR_UNSUPPORTED')
    expect(error.name).toBe('TetherError')
  })

  it('has neither data nor cause when none is given', () => {
    const error = new TetherError('boom', {})
    expect('data' in error).toBe(false)
    expect('cause' in error).toBe(false)
    expect(error.data).toBeUndefined()
    expect(error.cause).toBeUndefined()
  })
})

describe.each(classes)('%o', (ErrorClass, name, code) => {
  it(`is instanceof TetherError and Error`, () => {
    const error = new ErrorClass('it failed')
    expect(error).toBeInstanceOf(ErrorClass)
    expect(error).toBeInstanceOf(TetherError)
    expect(error).toBeInstanceOf(Error)
  })

  it(`is named ${name} with code ${code}`, () => {
    const error = new ErrorClass('it failed')
    expect(error.name).toBe(name)
    expect(error.code).toBe(code)
    expect(error.message).toBe('it failed')
    expect(String(error)).toBe(`${name}: it failed`)
  })

  it('carries the data and cause it was given', () => {
    const cause = new Error('underlying')
    const data = { type: 'chat', text: 'hi' }
    const error = new ErrorClass('it failed', { cause, data })
    expect(error.cause).toBe(cause)
    expect(error.data).toBe(data)
  })

  it('carries a falsy data or cause value as given', () => {
    const error = new ErrorClass('it failed', { cause: 0, data: null })
    expect('cause' in error).toBe(true)
    expect(error.cause).toBe(0)
    expect('data' in error).toBe(true)
    expect(error.data).toBeNull()
  })

  it('carries data alone without inventing a cause', () => {
    const error = new ErrorClass('it failed', { data: 'payload' })
    expect(error.data).toBe('payload')
    expect('cause' in error).toBe(false)
  })

  it('has a stack trace', () => {
    expect(typeof new ErrorClass('it failed').stack).toBe('string')
  })
})

describe('ReplyError', () => {
  it('is a TetherError named ReplyError whose code is the one the server gave', () => {
    const cause = new Error('handler threw')
    const error = new ReplyError('no such room', 'ROOM_NOT_FOUND', { data: { join: 'x' }, cause })
    expect(error).toBeInstanceOf(ReplyError)
    expect(error).toBeInstanceOf(TetherError)
    expect(error).toBeInstanceOf(Error)
    expect(error.name).toBe('ReplyError')
    expect(error.code).toBe('ROOM_NOT_FOUND')
    expect(error.message).toBe('no such room')
    expect(error.data).toEqual({ join: 'x' })
    expect(error.cause).toBe(cause)
  })

  it('is not an instance of the other error classes', () => {
    for (const [ErrorClass] of classes) expect(new ReplyError('x', 'E')).not.toBeInstanceOf(ErrorClass)
  })
})

describe('PersistError', () => {
  it('is a TetherError named PersistError with code ERR_PERSIST and the reason it was given', () => {
    const cause = new Error('QuotaExceededError')
    const error = new PersistError('storage is full', 'quota', { cause })
    expect(error).toBeInstanceOf(PersistError)
    expect(error).toBeInstanceOf(TetherError)
    expect(error).toBeInstanceOf(Error)
    expect(error).toMatchObject({ name: 'PersistError', code: 'ERR_PERSIST', reason: 'quota', message: 'storage is full' })
    expect(error.cause).toBe(cause)
    expect(carriers[error.code]).toBe('PersistError')
    expectTypeOf<PersistError['code']>().toEqualTypeOf<'ERR_PERSIST'>()
    expectTypeOf<PersistError['reason']>().toEqualTypeOf<'unavailable' | 'quota' | 'evicted' | 'version' | 'locked'>()
  })

  it('is not an instance of the other error classes', () => {
    for (const [ErrorClass] of classes) expect(new PersistError('x', 'evicted')).not.toBeInstanceOf(ErrorClass)
  })
})

describe('error classes', () => {
  it('are distinct: one is not an instance of another', () => {
    for (const [A] of classes) {
      for (const [B] of classes) {
        if (A !== B) expect(new A('x')).not.toBeInstanceOf(B)
      }
    }
  })

  it('have distinct codes', () => {
    const codes = classes.map(([, , code]) => code)
    expect(new Set(codes).size).toBe(codes.length)
  })

  it("AbortError keeps the platform name, so err.name === 'AbortError' checks keep working", () => {
    expect(new AbortError('aborted').name).toBe('AbortError')
  })
})

describe('the export list', () => {
  const exported = Object.entries(api).filter(
    ([, value]) => typeof value === 'function' && (value === TetherError || value.prototype instanceof TetherError),
  )

  it('exports every error class from the package entry, under its own name', () => {
    const names = exported.map(([name]) => name).sort()
    expect(names).toEqual([...classes.map(([, name]) => name), 'PersistError', 'ReplyError', 'TetherError'].sort())
    for (const [name, value] of exported) expect(new (value as ErrorClass)('x').name).toBe(name)
  })

  it('exports EncodeError, an instance of TetherError named EncodeError with code ERR_ENCODE', () => {
    expect(api.EncodeError).toBe(EncodeError)
    const error = new api.EncodeError('cannot send a bigint', { data: 1n })
    expect(error).toBeInstanceOf(api.TetherError)
    expect(error).toMatchObject({ name: 'EncodeError', code: 'ERR_ENCODE', data: 1n })
  })
})

describe('TetherErrorCode', () => {
  it("lists every class's code, each carried by the class that names it", () => {
    for (const [ErrorClass, name, code] of classes) {
      expect(carriers[new ErrorClass('x').code as TetherErrorCode]).toBe(name)
      expect(code in carriers).toBe(true)
    }
    expect(new TetherError('x').code).toBe('ERR_TETHER')
  })

  it("types each class's code as its literal, TetherError's as the union, ReplyError's as the server's string", () => {
    expectTypeOf<DeliveryError['code']>().toEqualTypeOf<'ERR_DELIVERY'>()
    expectTypeOf<EncodeError['code']>().toEqualTypeOf<'ERR_ENCODE'>()
    expectTypeOf<OptionError['code']>().toEqualTypeOf<'ERR_INVALID_OPTION'>()
    expectTypeOf<TetherError['code']>().toEqualTypeOf<TetherErrorCode | ReplyErrorCode>()
    expectTypeOf<ReplyError['code']>().toEqualTypeOf<ReplyErrorCode>()
    expectTypeOf<'ROOM_NOT_FOUND'>().toMatchTypeOf<ReplyError['code']>()
    expectTypeOf<'ERR_ENCODE'>().not.toMatchTypeOf<DeliveryError['code']>()
  })
})

describe('in a production build (NODE_ENV=production)', () => {
  /** src/errors.ts as a production build runs it: the flag is read when the module loads. */
  async function production(): Promise<typeof import('../src/errors.js')> {
    vi.stubEnv('NODE_ENV', 'production')
    vi.resetModules()
    try {
      return await import('../src/errors.js')
    } finally {
      vi.unstubAllEnvs()
      vi.resetModules()
    }
  }

  it('an error the library gives no message (it leaves them out there) says its code and where docs/ERRORS.md documents it', async () => {
    const built = await production()
    const data = { n: 1 }
    for (const [, name, code] of classes) {
      const ErrorClass = built[name as 'DeliveryError'] as unknown as ErrorClass
      const error = new ErrorClass('', { data })
      expect(error).toBeInstanceOf(built.TetherError)
      expect(error).toMatchObject({ name, code, data, message: `${code}: see docs/ERRORS.md#${code.toLowerCase()}` })
      expect(String(error)).toBe(`${name}: ${code}: see docs/ERRORS.md#${code.toLowerCase()}`)
    }
    expect(new built.TetherError('', undefined, 'TetherError', 'ERR_UNSUPPORTED').message).toBe(
      'ERR_UNSUPPORTED: see docs/ERRORS.md#err_unsupported',
    )
    expect(new built.PersistError('', 'quota')).toMatchObject({
      code: 'ERR_PERSIST',
      reason: 'quota',
      message: 'ERR_PERSIST: see docs/ERRORS.md#err_persist',
    })
    // A message given is kept (the server gives its own).
    expect(new built.QueueFullError('session queue full').message).toBe('session queue full')
  })
})
