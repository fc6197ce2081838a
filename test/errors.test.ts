import { describe, expect, it } from 'vitest'
import {
  AbortError,
  ClosedError,
  ConnectionError,
  DeliveryError,
  OptionError,
  ProtocolError,
  QueueFullError,
  ReplyError,
  TetherError,
  TimeoutError,
} from '../src/errors.js'

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
]

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
    const error = new TetherError('could not encode', undefined, 'TetherError', 'ERR_ENCODE')
    expect(error.code).toBe('ERR_ENCODE')
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
