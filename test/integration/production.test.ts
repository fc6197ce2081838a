/**
 * The production build, as the ecosystem makes one: a bundler that replaces
 * `process.env.NODE_ENV` with `'production'` (esbuild here, as Vite and webpack 5 do, without
 * defining `process`) drops the development messages and checks of the built client
 * (dist/index.mjs). What is left runs where there is no `process`; its errors keep their class,
 * code and fields, and their message is the code and its docs/ERRORS.md anchor. The builds for
 * browsers without a bundler (dist/browser/, the script tags) read no `process` at all.
 *
 * Uses the build output in dist/ (`npm test` builds first).
 */
import { execFile } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createContext, runInContext } from 'node:vm'
import { build } from 'esbuild'
import { beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../../', import.meta.url))
const read = (file: string) => readFileSync(join(root, file), 'utf8')

beforeAll(() => {
  const missing = [
    'dist/index.mjs',
    'dist/index.cjs',
    'dist/tethersocket.global.js',
    'dist/tethersocket.global.prod.js',
    'dist/browser/index.mjs',
  ].filter((file) => !existsSync(join(root, file)))
  if (missing.length > 0) throw new Error(`the build output is missing (${missing.join(', ')}): run \`npm run build\` first`)
})

/** Text of the development messages and checks, one or more per module that has them. */
const DEVELOPMENT_TEXT = [
  'is not an option', // suggest.ts, through the option checks
  'did you mean',
  'a number from 0 to 1', // options.ts
  'no WebSocket implementation found',
  'queue full:', // outbox.ts
  'not acknowledged within',
  'dropped unsent',
  'aborted by its signal',
  'the socket was closed before', // socket.ts
  'gave up reconnecting',
  'close reason must be',
  'could not connect to',
  'does not speak', // wire/tether.ts
  'malformed frame from the server',
  'sequence gap',
  'session ended before the reply',
  'could not encode the message', // wire/raw.ts
  'browsers hide the cause', // failure.ts
  'internal error', // lifecycle.ts
]

/** Text of the durable outbox's development messages (tethersocket/persist). */
const PERSIST_TEXT = ['is not available here', 'must be a non-empty string', 'storage quota', 'must be a finite number', 'cannot adopt']

/** A built entry (the client's by default) bundled and minified as a bundler does for `env`, as a script defining `lib`. */
async function bundle(env: 'production' | 'development', entry = 'dist/index.mjs'): Promise<string> {
  const result = await build({
    stdin: { contents: `export * from './${entry}'`, resolveDir: root, sourcefile: 'entry.mjs' },
    bundle: true,
    minify: true,
    platform: 'browser',
    format: 'iife',
    globalName: 'lib',
    define: { 'process.env.NODE_ENV': JSON.stringify(env) },
    write: false,
    logLevel: 'silent',
  })
  return result.outputFiles[0].text
}

/** A WebSocket that records its construction and never opens. */
class FakeWebSocket {
  static made: string[] = []
  readonly readyState = 0
  readonly protocol = ''
  binaryType = 'blob'
  onopen: (() => void) | null = null
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null = null
  onerror: (() => void) | null = null
  onmessage: (() => void) | null = null
  constructor(url: string) {
    FakeWebSocket.made.push(url)
  }
  send(): void {}
  close(code = 1000, reason = ''): void {
    queueMicrotask(() => this.onclose?.({ code, reason, wasClean: true }))
  }
}

type Built = Error & { code: string; data?: unknown; cause?: unknown }
type Lib = Record<string, any>

/**
 * Runs a bundle in a fresh context that has the web platform's timers, URL and microtasks, and
 * no `process` (as a browser page), and returns what it exports.
 */
function load(code: string): { lib: Lib; context: Record<string, unknown> } {
  const context = createContext({ URL, setTimeout, clearTimeout, queueMicrotask })
  runInContext(code, context)
  expect(runInContext('typeof process', context)).toBe('undefined')
  return { lib: context.lib as Lib, context }
}

/** Triggers an OptionError, a refused per-call option and a QueueFullError with a socket on a fake WebSocket. */
async function errorsOf(lib: Lib) {
  let option: Built | undefined
  try {
    new lib.TetherSocket('ws://example.test/live', { WebSocket: FakeWebSocket, reconnect: { jitter: 2 } })
  } catch (error) {
    option = error as Built
  }
  FakeWebSocket.made = []
  const sock = new lib.TetherSocket('ws://example.test/live', { WebSocket: FakeWebSocket, queue: { maxMessages: 1 } })
  const sockErrors: Built[] = []
  sock.on('error', (error: Built) => sockErrors.push(error))
  // The first attempt starts once the URL is resolved, in a later microtask.
  for (let turn = 0; turn < 50 && FakeWebSocket.made.length === 0; turn++) await new Promise((resolve) => setTimeout(resolve, 0))
  void sock.send('first')
  const full = (await sock.send('second').catch((error: unknown) => error)) as Built
  const perCall = (await sock.send('third', { timeout: -5 }).catch((error: unknown) => error)) as Built
  let closeCode: Built | undefined
  try {
    sock.close(999)
  } catch (error) {
    closeCode = error as Built
  }
  await sock.close()
  // A misspelt option: refused in development only (a type or name check, which only helps a developer).
  let misspelt: Built | undefined
  try {
    new lib.TetherSocket('ws://example.test/live', { WebSocket: FakeWebSocket, autoConnect: false, reconect: false })
  } catch (error) {
    misspelt = error as Built
  }
  return { option, full, perCall, closeCode, misspelt, sockErrors, made: FakeWebSocket.made }
}

describe('the default entry (dist/index.mjs) bundled for production', () => {
  it('carries none of the development messages and checks, and reads no `process`', async () => {
    const production = await bundle('production')
    const development = await bundle('development')
    // What each build has of the development text: all of it in development, none in production.
    expect(DEVELOPMENT_TEXT.filter((text) => !development.includes(text))).toEqual([])
    expect(DEVELOPMENT_TEXT.filter((text) => production.includes(text))).toEqual([])
    expect(production).not.toMatch(/\bprocess\b/)
    expect(production.length).toBeLessThan(development.length * 0.9)
  })

  it('runs without `process`: errors keep class, code and data; their message is the code and its docs/ERRORS.md anchor', async () => {
    const { lib } = load(await bundle('production'))
    const seen = await errorsOf(lib)
    expect(seen.made).toEqual(['ws://example.test/live']) // the socket made its attempt on the fake WebSocket

    expect(seen.option).toBeInstanceOf(lib.OptionError)
    expect(seen.option).toBeInstanceOf(lib.TetherError)
    expect(seen.option).toMatchObject({ name: 'OptionError', code: 'ERR_INVALID_OPTION' })
    expect(seen.option?.message).toBe('ERR_INVALID_OPTION: see docs/ERRORS.md#err_invalid_option')

    expect(seen.full).toBeInstanceOf(lib.QueueFullError)
    expect(seen.full).toMatchObject({ name: 'QueueFullError', code: 'ERR_QUEUE_FULL', data: 'second' })
    expect(seen.full.message).toBe('ERR_QUEUE_FULL: see docs/ERRORS.md#err_queue_full')
    expect(String(seen.full)).toBe('QueueFullError: ERR_QUEUE_FULL: see docs/ERRORS.md#err_queue_full')

    // The checks that decide whether a call goes through stay: a call refused in development is refused here too.
    expect(seen.perCall).toBeInstanceOf(lib.OptionError)
    expect(seen.perCall).toMatchObject({ code: 'ERR_INVALID_OPTION', data: 'third' })
    expect(seen.closeCode).toBeInstanceOf(lib.OptionError)
    expect(seen.sockErrors.map((error) => error.code)).toEqual(['ERR_QUEUE_FULL', 'ERR_INVALID_OPTION', 'ERR_CLOSED'])
    // A misspelt option name is a development check only.
    expect(seen.misspelt).toBeUndefined()

    // The same calls bundled for development (also without `process`) say what went wrong and what to do.
    const development = load(await bundle('development')).lib
    const told = await errorsOf(development)
    expect(told.option).toBeInstanceOf(development.OptionError)
    expect(told.option?.message).toBe('options.reconnect.jitter must be a number from 0 to 1; got 2')
    expect(told.full).toBeInstanceOf(development.QueueFullError)
    expect(told.full.message).toMatch(/^queue full: 1 messages, \d+ bytes \(queue\.maxMessages 1,/)
    expect(told.perCall.message).toBe('send options: timeout must be a number > 0; got -5')
    expect(told.misspelt).toBeInstanceOf(development.OptionError)
    expect(told.misspelt?.message).toMatch(/^options\.reconect is not an option \(did you mean options\.reconnect\?\)/)
  })
})

describe('failed attempts in the production build', () => {
  it('are reported once per cause, as in development, although their messages no longer name it', async () => {
    // Each attempt fails as `ws` reports it: an error event with the cause, then close 1006.
    const causes = [
      'connect ECONNREFUSED 127.0.0.1:1',
      'connect ECONNREFUSED 127.0.0.1:1',
      'Unexpected server response: 401',
      'Unexpected server response: 401',
    ]
    class FailingWebSocket {
      static made = 0
      readyState = 0
      readonly protocol = ''
      binaryType = 'blob'
      onopen: (() => void) | null = null
      onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null = null
      onerror: ((event: { message: string; error: Error }) => void) | null = null
      onmessage: (() => void) | null = null
      constructor() {
        const cause = causes[FailingWebSocket.made++]
        setTimeout(() => {
          this.readyState = 3
          this.onerror?.({ message: cause, error: new Error(cause) })
          this.onclose?.({ code: 1006, reason: '', wasClean: false })
        }, 0)
      }
      send(): void {}
      close(): void {}
    }
    const reported = async (lib: Lib) => {
      FailingWebSocket.made = 0
      const sock = new lib.TetherSocket('ws://example.test/live', {
        WebSocket: FailingWebSocket,
        reconnect: { minDelay: 0, maxDelay: 0, maxRetries: 3 },
      })
      const errors: Built[] = []
      sock.on('error', (error: Built) => errors.push(error))
      for (let turn = 0; turn < 200 && sock.state !== 'closed'; turn++) await new Promise((resolve) => setTimeout(resolve, 1))
      expect(sock.state).toBe('closed')
      expect(FailingWebSocket.made).toBe(4)
      return errors.map((error) => [error.code, (error.cause as Error).message, error.message])
    }
    expect(await reported(load(await bundle('production')).lib)).toEqual([
      ['ERR_CONNECTION', causes[0], 'ERR_CONNECTION: see docs/ERRORS.md#err_connection'],
      ['ERR_CONNECTION', causes[2], 'ERR_CONNECTION: see docs/ERRORS.md#err_connection'],
    ])
    expect(await reported(load(await bundle('development')).lib)).toEqual([
      ['ERR_CONNECTION', causes[0], `could not connect to ws://example.test/live: connection refused (${causes[0]})`],
      [
        'ERR_CONNECTION',
        causes[2],
        `could not connect to ws://example.test/live: HTTP 401: unauthorized: credentials refused or missing (${causes[2]})`,
      ],
    ])
  })
})

describe('the durable outbox entry (dist/persist.mjs) bundled for production', () => {
  it('carries none of its development messages; its errors keep class, code and reason, and point to ERR_PERSIST', async () => {
    const production = await bundle('production', 'dist/persist.mjs')
    const development = await bundle('development', 'dist/persist.mjs')
    expect(PERSIST_TEXT.filter((text) => !development.includes(text))).toEqual([])
    expect(PERSIST_TEXT.filter((text) => production.includes(text))).toEqual([])
    expect(production).not.toMatch(/\bprocess\b/)

    // This context has no IndexedDB: opening fails with 'unavailable'.
    const { lib } = load(production)
    const unavailable = (await lib
      .indexedDBStore('chat')
      .open()
      .catch((error: unknown) => error)) as Built & { reason: string }
    expect(unavailable).toBeInstanceOf(lib.PersistError)
    expect(unavailable).toMatchObject({ name: 'PersistError', code: 'ERR_PERSIST', reason: 'unavailable' })
    expect(unavailable.message).toBe('ERR_PERSIST: see docs/ERRORS.md#err_persist')
    let option: Built | undefined
    try {
      lib.indexedDBStore('')
    } catch (error) {
      option = error as Built
    }
    expect(option).toMatchObject({
      name: 'OptionError',
      code: 'ERR_INVALID_OPTION',
      message: 'ERR_INVALID_OPTION: see docs/ERRORS.md#err_invalid_option',
    })

    const told = (await load(development)
      .lib.indexedDBStore('chat')
      .open()
      .catch((error: unknown) => error)) as Built
    expect(told.message).toMatch(/^IndexedDB is not available here, so the outbox of "chat" is kept in memory only/)
  })
})

describe('the built client in Node, as is', () => {
  const script = (importer: string) => `
    ${importer}
    const messages = []
    for (const url of ['ftp://example.test/', 'ws://example.test/']) {
      try { new TetherSocket(url, { WebSocket: class {}, autoConnect: false, queue: { maxMessages: 0 } }) } catch (error) { messages.push(error.name + ': ' + error.message) }
    }
    console.log(JSON.stringify(messages))`
  const run = (code: string, nodeEnv: string | undefined, type: 'module' | 'commonjs') =>
    new Promise<string[]>((resolve, reject) => {
      const env = { ...process.env }
      if (nodeEnv === undefined) delete env.NODE_ENV
      else env.NODE_ENV = nodeEnv
      execFile(process.execPath, [`--input-type=${type}`, '-e', code], { cwd: root, env, timeout: 10000 }, (error, out, err) =>
        error ? reject(new Error(`node failed: ${error.message}\n${err}`)) : resolve(JSON.parse(out)),
      )
    })

  it('reads NODE_ENV where it runs (ESM and CommonJS): production messages under NODE_ENV=production, development ones otherwise', async () => {
    const esm = script("import { TetherSocket } from 'tethersocket'")
    const cjs = script("const { TetherSocket } = require('tethersocket')")
    const production = [
      'OptionError: ERR_INVALID_OPTION: see docs/ERRORS.md#err_invalid_option',
      'OptionError: ERR_INVALID_OPTION: see docs/ERRORS.md#err_invalid_option',
    ]
    expect(await run(esm, 'production', 'module')).toEqual(production)
    expect(await run(cjs, 'production', 'commonjs')).toEqual(production)
    const development = await run(esm, undefined, 'module')
    expect(development).toEqual([
      expect.stringMatching(/^OptionError: unsupported URL scheme "ftp:"/),
      'OptionError: options.queue.maxMessages must be an integer >= 1; got 0',
    ])
    expect(await run(cjs, 'test', 'commonjs')).toEqual(development)
  })

  it('writes the flag as the bare NODE_ENV test wherever it is read, which a bundler folds', () => {
    const built = readdirSync(join(root, 'dist')).filter((file) => /\.(mjs|cjs)$/.test(file))
    const client = built.filter((file) => read(`dist/${file}`).includes('class TetherSocket'))
    expect(client.length).toBe(2) // the ESM and the CommonJS chunk
    for (const file of client) {
      const code = read(`dist/${file}`)
      expect(code.match(/\(process\.env\.NODE_ENV !== 'production'\)/g)?.length, file).toBeGreaterThan(20)
      // No other read of `process`, and no shared flag a bundler could not fold where it is used.
      expect(code.replaceAll("(process.env.NODE_ENV !== 'production')", ''), file).not.toMatch(/\bprocess\b|\bDEV\b/)
    }
  })
})

describe('the builds for browsers without a bundler', () => {
  const browserFiles = () => [
    'dist/tethersocket.global.js',
    'dist/tethersocket.global.prod.js',
    ...readdirSync(join(root, 'dist', 'browser')).map((file) => `dist/browser/${file}`),
  ]

  it('read no `process` (a page has none): the flag is fixed when they are built', () => {
    const files = browserFiles()
    expect(files).toEqual(expect.arrayContaining(['dist/browser/index.mjs', 'dist/browser/persist.mjs']))
    expect(files.filter((file) => /\bprocess\b/.test(read(file)))).toEqual([])
  })

  it('dist/tethersocket.global.prod.js has none of the development text; dist/tethersocket.global.js and dist/browser/ have it all', () => {
    const development = read('dist/tethersocket.global.js')
    const browserEsm = readdirSync(join(root, 'dist', 'browser'))
      .map((file) => read(`dist/browser/${file}`))
      .join('\n')
    const production = read('dist/tethersocket.global.prod.js')
    expect(DEVELOPMENT_TEXT.filter((text) => !development.includes(text))).toEqual([])
    expect(DEVELOPMENT_TEXT.filter((text) => !browserEsm.includes(text))).toEqual([])
    expect(DEVELOPMENT_TEXT.filter((text) => production.includes(text))).toEqual([])
  })

  it('the production script tag defines the same API, and its errors name their code and anchor', () => {
    const { context } = load(`${read('dist/tethersocket.global.prod.js')}; var lib = TetherSocket`)
    const T = context.TetherSocket as Lib & (new (url: string, options: object) => unknown)
    const development = load(`${read('dist/tethersocket.global.js')}; var lib = TetherSocket`).context.TetherSocket as Lib
    expect(Object.getOwnPropertyNames(T).sort()).toEqual(Object.getOwnPropertyNames(development).sort())
    let error: Built | undefined
    try {
      new T('ftp://example.test/', { WebSocket: FakeWebSocket, autoConnect: false })
    } catch (caught) {
      error = caught as Built
    }
    expect(error).toBeInstanceOf(T.OptionError)
    expect(error).toMatchObject({ name: 'OptionError', code: 'ERR_INVALID_OPTION' })
    expect(error?.message).toBe('ERR_INVALID_OPTION: see docs/ERRORS.md#err_invalid_option')
    expect(error?.cause).toBeUndefined()
  })
})
