import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  type CloseInfo,
  checkSendOptions,
  DEFAULTS,
  defaultShouldReconnect,
  normalizeUrl,
  resolveOptions,
  type TetherSocketOptions,
} from '../../src/client/options.js'
import { OptionError } from '../../src/errors.js'

class FakeWebSocket {
  readonly readyState = 0
  send(): void {}
  close(): void {}
}
const WebSocket = FakeWebSocket as unknown as NonNullable<TetherSocketOptions['WebSocket']>

/** Resolves with a WebSocket given, so the tests do not depend on the environment's global. */
const resolve = (options: Record<string, unknown> = {}) => resolveOptions({ WebSocket, ...options } as TetherSocketOptions)

/** The OptionError that resolving `options` throws. */
function optionError(options: Record<string, unknown>): OptionError {
  try {
    resolve(options)
  } catch (error) {
    expect(error).toBeInstanceOf(OptionError)
    return error as OptionError
  }
  throw new Error(`resolveOptions accepted ${JSON.stringify(options)}`)
}

afterEach(() => {
  vi.unstubAllGlobals()
})

describe('resolveOptions: defaults', () => {
  it('applies every documented default when no option is given', () => {
    const resolved = resolve()
    expect(resolved).toEqual({
      WebSocket,
      protocols: undefined,
      mode: 'tether',
      reconnect: {
        minDelay: 1000,
        maxDelay: 30000,
        factor: 2,
        jitter: 1,
        maxRetries: Number.POSITIVE_INFINITY,
        connectTimeout: 10000,
        resetAfter: 5000,
        busyDelay: 5000,
        shouldReconnect: defaultShouldReconnect,
      },
      queue: { maxMessages: 10000, maxBytes: 10 * 1024 * 1024, overflow: 'reject', ttl: Number.POSITIVE_INFINITY },
      ackTimeout: Number.POSITIVE_INFINITY,
      requestTimeout: 30000,
      heartbeat: { interval: 25000, timeout: 10000 },
      autoConnect: true,
      onOpen: undefined,
      serialize: undefined,
      deserialize: undefined,
    })
  })

  it('resolveOptions() with no argument uses the global WebSocket and the defaults', () => {
    const resolved = resolveOptions()
    expect(resolved.WebSocket).toBe(globalThis.WebSocket)
    expect(resolved.mode).toBe('tether')
    expect(resolved.autoConnect).toBe(true)
  })

  it('defaults the global WebSocket when none is passed', () => {
    expect(typeof globalThis.WebSocket).toBe('function')
    expect(resolveOptions({}).WebSocket).toBe(globalThis.WebSocket)
  })

  it('fills in the defaults of a partial reconnect, queue and heartbeat', () => {
    const resolved = resolve({ reconnect: { minDelay: 50 }, queue: { maxMessages: 5 }, heartbeat: { interval: 1000 } })
    expect(resolved.reconnect).toMatchObject({ minDelay: 50, maxDelay: 30000, factor: 2, jitter: 1, busyDelay: 5000 })
    expect(resolved.queue).toEqual({ maxMessages: 5, maxBytes: 10 * 1024 * 1024, overflow: 'reject', ttl: Number.POSITIVE_INFINITY })
    expect(resolved.heartbeat).toEqual({ interval: 1000, timeout: 10000 })
  })

  it('raises the default maxDelay to minDelay when minDelay is above 30000', () => {
    expect(resolve({ reconnect: { minDelay: 60000 } }).reconnect).toMatchObject({ minDelay: 60000, maxDelay: 60000 })
  })

  it('keeps every value given', () => {
    const shouldReconnect = () => false
    const onOpen = () => {}
    const serialize = (d: unknown) => String(d)
    const deserialize = (d: unknown) => d
    const protocols = () => ['a', 'b']
    const resolved = resolve({
      protocols,
      mode: 'raw',
      reconnect: {
        minDelay: 10,
        maxDelay: 20,
        factor: 1.5,
        jitter: 0.5,
        maxRetries: 3,
        connectTimeout: 100,
        resetAfter: 0,
        busyDelay: 0,
        shouldReconnect,
      },
      queue: { maxMessages: 1, maxBytes: 1, overflow: 'drop-oldest', ttl: 5 },
      ackTimeout: 7,
      requestTimeout: 8,
      heartbeat: { interval: 9, timeout: 10 },
      autoConnect: false,
      onOpen,
      serialize,
      deserialize,
    })
    expect(resolved).toEqual({
      WebSocket,
      protocols,
      mode: 'raw',
      reconnect: {
        minDelay: 10,
        maxDelay: 20,
        factor: 1.5,
        jitter: 0.5,
        maxRetries: 3,
        connectTimeout: 100,
        resetAfter: 0,
        busyDelay: 0,
        shouldReconnect,
      },
      queue: { maxMessages: 1, maxBytes: 1, overflow: 'drop-oldest', ttl: 5 },
      ackTimeout: 7,
      requestTimeout: 8,
      heartbeat: { interval: 9, timeout: 10 },
      autoConnect: false,
      onOpen,
      serialize,
      deserialize,
    })
  })

  it('reconnect: false and heartbeat: false turn them off', () => {
    const resolved = resolve({ reconnect: false, heartbeat: false })
    expect(resolved.reconnect).toBe(false)
    expect(resolved.heartbeat).toBe(false)
  })

  it.each([
    ['a string', 'chat.v2'],
    ['an array of strings', ['chat.v2', 'chat.v1']],
    ['an empty array', []],
  ])('accepts protocols as %s', (_, protocols) => {
    expect(resolve({ protocols }).protocols).toEqual(protocols)
  })

  it('accepts the edge values: jitter 0 and 1, factor 1, maxDelay equal to minDelay, maxRetries 0 and Infinity', () => {
    expect(resolve({ reconnect: { jitter: 0 } }).reconnect).toMatchObject({ jitter: 0 })
    expect(resolve({ reconnect: { jitter: 1 } }).reconnect).toMatchObject({ jitter: 1 })
    expect(resolve({ reconnect: { factor: 1 } }).reconnect).toMatchObject({ factor: 1 })
    expect(resolve({ reconnect: { minDelay: 500, maxDelay: 500 } }).reconnect).toMatchObject({ maxDelay: 500 })
    expect(resolve({ reconnect: { maxRetries: 0 } }).reconnect).toMatchObject({ maxRetries: 0 })
    expect(resolve({ reconnect: { maxRetries: Number.POSITIVE_INFINITY } }).reconnect).toMatchObject({
      maxRetries: Number.POSITIVE_INFINITY,
    })
  })

  it('does not modify the options object it was given', () => {
    const options = { WebSocket, reconnect: { minDelay: 5 }, queue: {} }
    const copy = structuredClone({ reconnect: options.reconnect, queue: options.queue })
    resolveOptions(options)
    expect({ reconnect: options.reconnect, queue: options.queue }).toEqual(copy)
  })
})

describe('resolveOptions: every bad value is an OptionError naming the option', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['reconnect.minDelay', { reconnect: { minDelay: -1 } }],
    ['reconnect.minDelay', { reconnect: { minDelay: 'x' } }],
    ['reconnect.minDelay', { reconnect: { minDelay: Number.NaN } }],
    ['reconnect.minDelay', { reconnect: { minDelay: null } }],
    ['reconnect.maxDelay', { reconnect: { maxDelay: -5 } }],
    ['reconnect.maxDelay', { reconnect: { maxDelay: '30000' } }],
    ['reconnect.factor', { reconnect: { factor: 0.5 } }],
    ['reconnect.factor', { reconnect: { factor: Number.NaN } }],
    ['reconnect.jitter', { reconnect: { jitter: 2 } }],
    ['reconnect.jitter', { reconnect: { jitter: -0.1 } }],
    ['reconnect.jitter', { reconnect: { jitter: Number.NaN } }],
    ['reconnect.maxRetries', { reconnect: { maxRetries: 1.5 } }],
    ['reconnect.maxRetries', { reconnect: { maxRetries: -1 } }],
    ['reconnect.connectTimeout', { reconnect: { connectTimeout: 0 } }],
    ['reconnect.resetAfter', { reconnect: { resetAfter: -1 } }],
    ['reconnect.busyDelay', { reconnect: { busyDelay: 'soon' } }],
    ['reconnect.shouldReconnect', { reconnect: { shouldReconnect: true } }],
    ['reconnect', { reconnect: 'yes' }],
    ['reconnect', { reconnect: null }],
    ['queue.overflow', { queue: { overflow: 'nope' } }],
    ['queue.maxMessages', { queue: { maxMessages: 0 } }],
    ['queue.maxMessages', { queue: { maxMessages: 2.5 } }],
    ['queue.maxBytes', { queue: { maxBytes: 0 } }],
    ['queue.maxBytes', { queue: { maxBytes: '1mb' } }],
    ['queue.ttl', { queue: { ttl: 0 } }],
    ['queue', { queue: 5 }],
    ['mode', { mode: 'x' }],
    ['mode', { mode: 'TETHER' }],
    ['protocols', { protocols: 5 }],
    ['protocols', { protocols: ['ok', 5] }],
    ['protocols', { protocols: null }],
    ['onOpen', { onOpen: 'x' }],
    ['serialize', { serialize: {} }],
    ['deserialize', { deserialize: 1 }],
    ['heartbeat.interval', { heartbeat: { interval: 0 } }],
    ['heartbeat.timeout', { heartbeat: { timeout: -1 } }],
    ['heartbeat', { heartbeat: 'on' }],
    ['ackTimeout', { ackTimeout: 0 }],
    ['ackTimeout', { ackTimeout: '5s' }],
    ['requestTimeout', { requestTimeout: -1 }],
    ['autoConnect', { autoConnect: 'yes' }],
    ['autoConnect', { autoConnect: 1 }],
    ['WebSocket', { WebSocket: 'ws' }],
    ['WebSocket', { WebSocket: {} }],
    // null is a wrong value like any other: only undefined means "the default"
    ['WebSocket', { WebSocket: null }],
    ['mode', { mode: null }],
    ['queue.overflow', { queue: { overflow: null } }],
    ['autoConnect', { autoConnect: null }],
    ['ackTimeout', { ackTimeout: null }],
    ['heartbeat', { heartbeat: null }],
  ]

  it.each(cases)('%s: %j', (name, options) => {
    const error = optionError(options)
    expect(error.code).toBe('ERR_INVALID_OPTION')
    expect(error.name).toBe('OptionError')
    expect(error.message).toContain(`options.${name} `)
  })

  it('says what it got and what is accepted', () => {
    const error = optionError({ reconnect: { minDelay: -1 } })
    expect(error.message).toContain('-1')
    expect(error.message).toContain('>= 0')
    expect(optionError({ queue: { overflow: 'nope' } }).message).toMatch(/'reject' or 'drop-oldest'.*"nope"/)
    expect(optionError({ onOpen: () => 1, serialize: 'x' }).message).toContain('a function')
  })

  it('rejects maxDelay below minDelay, naming reconnect.maxDelay', () => {
    const error = optionError({ reconnect: { minDelay: 5000, maxDelay: 1000 } })
    expect(error.message).toContain('options.reconnect.maxDelay')
    expect(error.message).toContain('5000')
  })

  it('rejects options that are not an object', () => {
    for (const options of [null, 'ws://x', 5]) {
      expect(() => resolveOptions(options as never)).toThrow(OptionError)
    }
  })

  it('names the options object itself as "options" when it is not an object', () => {
    expect(() => resolveOptions(null as never)).toThrow(/^options must be an object/)
  })

  it('describes a function value as "a function", never by its source', () => {
    const error = optionError({ protocols: undefined, autoConnect: () => true })
    expect(error.message).toContain('options.autoConnect')
    expect(error.message).toContain('a function')
  })

  it('survives a value JSON cannot show (a BigInt, a cycle, a symbol)', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(optionError({ mode: 10n }).message).toContain('options.mode')
    expect(optionError({ mode: cyclic }).message).toContain('options.mode')
    expect(optionError({ mode: Symbol('m') }).message).toContain('options.mode')
  })
})

describe('resolveOptions: a missing WebSocket implementation', () => {
  it('is an OptionError that says to pass WebSocket from ws', () => {
    const descriptor = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket')
    // the global must be absent, not merely undefined
    delete (globalThis as { WebSocket?: unknown }).WebSocket
    try {
      expect('WebSocket' in globalThis).toBe(false)
      let error: unknown
      try {
        resolveOptions({})
      } catch (e) {
        error = e
      }
      expect(error).toBeInstanceOf(OptionError)
      expect((error as OptionError).message).toContain('ws')
      expect((error as OptionError).message).toMatch(/WebSocket/)
      // passing one makes it work
      expect(resolveOptions({ WebSocket }).WebSocket).toBe(WebSocket)
    } finally {
      if (descriptor) Object.defineProperty(globalThis, 'WebSocket', descriptor)
    }
    expect(typeof globalThis.WebSocket).toBe('function')
  })
})

describe('defaultShouldReconnect', () => {
  const close = (code: number): CloseInfo => ({ code, reason: '', wasClean: code !== 1006 })

  it.each([1008, 4400, 4401, 4403, 4404, 4499])('does not retry after %i (retrying cannot help)', (code) => {
    expect(defaultShouldReconnect(close(code))).toBe(false)
  })

  it.each([1000, 1001, 1006, 1011, 1012, 1013, 4000, 4399, 4500, 4999])('retries after %i', (code) => {
    expect(defaultShouldReconnect(close(code))).toBe(true)
  })

  it('is the default shouldReconnect', () => {
    const reconnect = resolve().reconnect
    expect(reconnect === false ? undefined : reconnect.shouldReconnect).toBe(defaultShouldReconnect)
  })
})

describe('normalizeUrl', () => {
  it.each([
    ['ws://example.com/socket', 'ws://example.com/socket'],
    ['wss://example.com:8443/a/b?token=x', 'wss://example.com:8443/a/b?token=x'],
    ['ws://127.0.0.1:8080', 'ws://127.0.0.1:8080/'],
  ])('keeps ws: and wss: URLs: %s', (url, expected) => {
    expect(normalizeUrl(url)).toBe(expected)
  })

  it.each([
    ['http://example.com/socket', 'ws://example.com/socket'],
    ['http://example.com:8080/s?x=1', 'ws://example.com:8080/s?x=1'],
    ['https://example.com/socket', 'wss://example.com/socket'],
    ['HTTPS://Example.com/Socket', 'wss://example.com/Socket'],
  ])('maps http to ws and https to wss: %s', (url, expected) => {
    expect(normalizeUrl(url)).toBe(expected)
  })

  it('accepts a URL object', () => {
    expect(normalizeUrl(new URL('https://example.com/live'))).toBe('wss://example.com/live')
  })

  it('strips the hash, which a WebSocket URL must not have', () => {
    expect(normalizeUrl('wss://example.com/socket?room=1#section')).toBe('wss://example.com/socket?room=1')
    expect(normalizeUrl('ws://example.com/#')).toBe('ws://example.com/')
    expect(normalizeUrl(new URL('http://example.com/x#y'))).toBe('ws://example.com/x')
  })

  it.each(['ftp://example.com/file', 'file:///tmp/socket', 'mailto:someone@example.com', 'javascript:alert(1)', 'data:text/plain,hi'])(
    'rejects other schemes with an OptionError naming the scheme: %s',
    (url) => {
      let error: unknown
      try {
        normalizeUrl(url)
      } catch (e) {
        error = e
      }
      expect(error).toBeInstanceOf(OptionError)
      expect((error as OptionError).message).toContain(new URL(url).protocol)
      expect((error as OptionError).message).toContain('ws://')
    },
  )

  it.each(['http://', 'ws://exa mple.com/', 'wss://[::1', 'ws://:80'])('rejects a malformed URL with an OptionError: %j', (url) => {
    let error: unknown
    try {
      normalizeUrl(url)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(OptionError)
    expect((error as OptionError).message).toContain('invalid URL')
    expect((error as OptionError).cause).toBeDefined()
  })

  it("resolves a relative URL against the page's location (jsdom)", () => {
    const page = new URL(globalThis.location.href)
    const expectedScheme = page.protocol === 'https:' ? 'wss:' : 'ws:'
    expect(normalizeUrl('/socket')).toBe(`${expectedScheme}//${page.host}/socket`)
    expect(normalizeUrl('socket?x=1#h')).toBe(new URL(`socket?x=1`, page.href).href.replace(page.protocol, expectedScheme))
  })

  it('resolves relative URLs against an https page to wss, keeping the path and port', () => {
    vi.stubGlobal('location', { href: 'https://app.example.com:8443/dir/page.html?q=1#top' })
    expect(normalizeUrl('live')).toBe('wss://app.example.com:8443/dir/live')
    expect(normalizeUrl('/live')).toBe('wss://app.example.com:8443/live')
    expect(normalizeUrl('//other.example.com/live')).toBe('wss://other.example.com/live')
    expect(normalizeUrl('ws://absolute.example.com/')).toBe('ws://absolute.example.com/')
  })

  it('rejects a relative URL where there is no page (Node)', () => {
    vi.stubGlobal('location', undefined)
    expect(() => normalizeUrl('/socket')).toThrow(OptionError)
    expect(() => normalizeUrl('garbage')).toThrow(OptionError)
    expect(normalizeUrl('wss://example.com/')).toBe('wss://example.com/')
  })
})

describe('DEFAULTS', () => {
  it('is what resolveOptions applies when no option is given', () => {
    const { WebSocket: _, protocols: __, onOpen, serialize, deserialize, reconnect, ...resolved } = resolve()
    expect({ onOpen, serialize, deserialize }).toEqual({ onOpen: undefined, serialize: undefined, deserialize: undefined })
    const { shouldReconnect, ...backoff } = reconnect as Exclude<typeof reconnect, false>
    expect(shouldReconnect).toBe(defaultShouldReconnect)
    expect({ ...resolved, reconnect: backoff }).toEqual(DEFAULTS)
  })

  it('keeps maxDelay at least minDelay when only minDelay is given', () => {
    const reconnect = resolve({ reconnect: { minDelay: DEFAULTS.reconnect.maxDelay * 2 } }).reconnect
    expect(reconnect).toMatchObject({ maxDelay: DEFAULTS.reconnect.maxDelay * 2 })
  })

  it('is named, with its value, in the TSDoc of every option that has a default', () => {
    const source = readFileSync('src/client/options.ts', 'utf8') // vitest runs from the project root
    const paths = Object.entries(DEFAULTS).flatMap(([key, value]) =>
      typeof value === 'object' ? Object.keys(value).map((member) => `${key}.${member}`) : [key],
    )
    for (const path of paths) {
      expect(source, path).toContain(`\`DEFAULTS.${path}\``)
    }
  })
})

describe('checkSendOptions', () => {
  it('accepts no options, empty options and good ones', () => {
    expect(checkSendOptions(undefined, 'x')).toBeUndefined()
    expect(checkSendOptions({}, 'x')).toBeUndefined()
    const signal = new AbortController().signal
    expect(checkSendOptions({ timeout: 1, ttl: Number.POSITIVE_INFINITY, key: 'k', signal }, 'x')).toBeUndefined()
  })

  it.each([
    [{ timeout: -5 }, 'send options: timeout must be a number > 0; got -5'],
    [{ timeout: 0 }, 'send options: timeout must be a number > 0; got 0'],
    [{ timeout: Number.NaN }, 'send options: timeout must be a number > 0; got NaN'],
    [{ timeout: '5s' }, 'send options: timeout must be a number > 0; got "5s"'],
    [{ ttl: null }, 'send options: ttl must be a number > 0; got null'],
    [{ key: 7 }, 'send options: key must be a string; got 7'],
    [{ signal: {} }, 'send options: signal must be an AbortSignal; got {}'],
    [{ signal: 'abort' }, 'send options: signal must be an AbortSignal; got "abort"'],
    [{ timeout: 1, ttl: -1, key: 7 }, 'send options: ttl must be a number > 0; got -1'],
  ])('refuses %j, naming the option and the value given', (options, message) => {
    const error = checkSendOptions(options as never, { hello: 1 })
    expect(error).toBeInstanceOf(OptionError)
    expect(error?.message).toBe(message)
    expect(error?.data).toEqual({ hello: 1 })
  })

  it("names request() as the call when checking a request's options", () => {
    expect(checkSendOptions({ timeout: -1 }, 'x', 'request')?.message).toBe('request options: timeout must be a number > 0; got -1')
  })
})

describe('unknown option names (development)', () => {
  it.each([
    [{ reconect: false }, 'options.reconect is not an option (did you mean options.reconnect?)'],
    [{ Websocket: WebSocket }, 'options.Websocket is not an option (did you mean options.WebSocket?)'],
    [{ reconnect: { maxDealy: 5 } }, 'options.reconnect.maxDealy is not an option (did you mean options.reconnect.maxDelay?)'],
    [{ queue: { maxMesages: 5 } }, 'options.queue.maxMesages is not an option (did you mean options.queue.maxMessages?)'],
    [{ heartbeat: { intervall: 5 } }, 'options.heartbeat.intervall is not an option (did you mean options.heartbeat.interval?)'],
  ])('%j is refused with an OptionError that suggests the known name', (options, message) => {
    const error = optionError(options)
    expect(error.message).toContain(message)
    expect(error.message).toContain('the options are:')
  })

  it('a name like no option gets no suggestion, and the list of options', () => {
    expect(optionError({ zzzzzzzz: 1 }).message).toMatch(/^options\.zzzzzzzz is not an option; the options are: WebSocket, protocols, mode/)
  })

  it('per-call options: an unknown name, or options that are not an object, are refused naming the call', () => {
    expect(checkSendOptions({ timout: 5 } as never, 'd')?.message).toContain(
      'send options.timout is not an option (did you mean send options.timeout?)',
    )
    expect(checkSendOptions({ ttl: 5 } as never, 'd', 'request')?.message).toContain('request options.ttl is not an option')
    expect(checkSendOptions(5 as never, 'd')?.message).toBe('send() options must be an object; got 5')
    expect(checkSendOptions(null as never, 'd', 'request')?.message).toBe('request() options must be an object; got null')
    expect(checkSendOptions({ timeout: 5, signal: undefined }, 'd')).toBeUndefined()
  })
})

describe('option shared', () => {
  const store = { name: 'chat', open: async () => undefined, restore: async () => undefined }

  it('needs persist, and says how to give it', () => {
    const error = optionError({ shared: true })
    expect(error.message).toMatch(/options\.shared needs options\.persist/)
    expect(error.message).toMatch(/indexedDBStore/)
  })

  it('needs tether mode', () => {
    expect(optionError({ shared: true, persist: store, mode: 'raw' }).message).toMatch(/options\.shared needs mode 'tether'/)
  })

  it('is true or a name', () => {
    for (const bad of ['', false, 1, 'x'.repeat(201)]) {
      expect(optionError({ shared: bad, persist: store }).message).toMatch(/options\.shared must be true or a name/)
    }
    expect(resolve({ shared: 'chat', persist: store }).shared).toBe('chat')
    expect(resolve({ shared: true, persist: store }).shared).toBe(true)
    expect(resolve().shared).toBeUndefined()
  })
})
