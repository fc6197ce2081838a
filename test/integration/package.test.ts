/**
 * Tests of the built package in dist/ (`npm test` builds first; alone, run `npm run build`).
 * The package imports itself by name: self-reference works because package.json has a
 * `name` and `exports`.
 */
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Script } from 'node:vm'
import ts from 'typescript'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cleanup, startServer, waitFor, withTimeout } from '../support/servers.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const at = (path: string) => fileURLToPath(new URL(path, pathToFileURL(root)))
const require = createRequire(import.meta.url)

const builtFiles = ['dist/index.mjs', 'dist/index.cjs', 'dist/index.d.ts', 'dist/index.d.cts', 'dist/tethersocket.global.js']
const errorNames = ['TetherError', 'DeliveryError', 'TimeoutError', 'QueueFullError', 'ProtocolError', 'ClosedError', 'EncodeError']

interface PackageJson {
  name: string
  sideEffects: unknown
  main: string
  module: string
  types: string
  unpkg: string
  jsdelivr: string
  files: string[]
  exports: Record<string, unknown>
}
const pkg = JSON.parse(readFileSync(at('package.json'), 'utf8')) as PackageJson

type Module = Record<string, any>

// jsdom ships no types (and @types/jsdom is not a dependency): the part used here.
interface JsdomWindow {
  eval(code: string): any
  close(): void
  TetherSocket: any
  WebSocket: unknown
}
const { JSDOM } = require('jsdom') as {
  JSDOM: new (html: string, options: { runScripts: 'outside-only'; url?: string }) => { window: JsdomWindow }
}

const windows: JsdomWindow[] = []
function iifeWindow(): JsdomWindow {
  const { window } = new JSDOM('', { runScripts: 'outside-only' })
  windows.push(window)
  window.eval(readFileSync(at('dist/tethersocket.global.js'), 'utf8'))
  return window
}

afterEach(async () => {
  for (const win of windows.splice(0)) {
    // close what the page opened before the window goes
    await Promise.all((win.eval('globalThis.__sockets || []') as { close(): Promise<void> }[]).map((s) => s.close()))
    win.close()
  }
  await cleanup()
})

beforeAll(() => {
  const missing = builtFiles.filter((file) => !existsSync(at(file)))
  if (missing.length > 0) {
    throw new Error(`the build output is missing (${missing.join(', ')}): run \`npm run build\` first (\`npm test\` builds before testing)`)
  }
})

/** Normalizes './dist/x' and 'dist/x' to 'dist/x'. */
const rel = (path: string) => path.replace(/^\.\//, '')

describe('package.json', () => {
  it('exports "." with types first, then import and require conditions, all pointing at built files', () => {
    const dot = pkg.exports['.'] as Record<string, Record<string, string>>
    expect(pkg.name).toBe('tethersocket')
    expect(Object.keys(dot)).toEqual(expect.arrayContaining(['import', 'require']))
    expect(dot.import).toEqual({ types: './dist/index.d.ts', default: './dist/index.mjs' })
    expect(dot.require).toEqual({ types: './dist/index.d.cts', default: './dist/index.cjs' })
    // TypeScript uses the first matching condition: `types` must precede `default`
    expect(Object.keys(dot.import)[0]).toBe('types')
    expect(Object.keys(dot.require)[0]).toBe('types')
    for (const target of [...Object.values(dot.import), ...Object.values(dot.require)]) expect(existsSync(at(target)), target).toBe(true)
  })

  it('is side-effect free, lists dist in files, and points unpkg/jsdelivr/main/module/types at built files', () => {
    expect(pkg.sideEffects).toBe(false)
    expect(pkg.files).toContain('dist')
    expect(rel(pkg.unpkg)).toBe('dist/tethersocket.global.js')
    expect(rel(pkg.jsdelivr)).toBe('dist/tethersocket.global.js')
    expect(rel(pkg.main)).toBe('dist/index.cjs')
    expect(rel(pkg.module)).toBe('dist/index.mjs')
    for (const file of [pkg.main, pkg.module, pkg.types, pkg.unpkg]) expect(existsSync(at(file)), file).toBe(true)
  })
})

describe('the built client (ESM and CJS)', () => {
  it('imports as ESM through the package exports (dist/index.mjs)', async () => {
    const esm: Module = await import('tethersocket')
    const direct: Module = await import(/* @vite-ignore */ pathToFileURL(at('dist/index.mjs')).href)
    expect(esm.TetherSocket).toBe(direct.TetherSocket)
    expect(typeof esm.TetherSocket).toBe('function')
    checkErrors(esm)
    const sock = new esm.TetherSocket('ws://127.0.0.1:1', { mode: 'raw', autoConnect: false, WebSocket: class {} })
    expect(sock.state).toBe('idle')
    await sock.close()
  })

  it('requires as CJS through the package exports (dist/index.cjs), with the same export names as ESM', async () => {
    expect(require.resolve('tethersocket')).toBe(at('dist/index.cjs'))
    const cjs: Module = require('tethersocket')
    const esm: Module = await import('tethersocket')
    expect(typeof cjs.TetherSocket).toBe('function')
    checkErrors(cjs)
    expect(Object.keys(cjs).sort()).toEqual(Object.keys(esm).sort())
    for (const name of Object.keys(esm)) expect(typeof cjs[name], name).toBe(typeof esm[name])
  })

  it('resolves the same way in a plain Node process (import and require by package name)', async () => {
    const script = `
      const esm = await import('tethersocket')
      const { createRequire } = await import('node:module')
      const req = createRequire(process.cwd() + '/package.json')
      const cjs = req('tethersocket')
      console.log(JSON.stringify({
        esm: Object.keys(esm).sort(),
        cjs: Object.keys(cjs).sort(),
        resolved: req.resolve('tethersocket'),
        ok: new esm.DeliveryError('x') instanceof esm.TetherError && new cjs.DeliveryError('x') instanceof cjs.TetherError,
      }))`
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: root, timeout: 10000 }, (error, out, err) =>
        error ? reject(new Error(`node failed: ${error.message}\n${err}`)) : resolve(out),
      )
    })
    const result = JSON.parse(stdout) as { esm: string[]; cjs: string[]; resolved: string; ok: boolean }
    expect(result.esm).toContain('TetherSocket')
    expect(result.cjs).toEqual(result.esm)
    expect(result.resolved).toBe(at('dist/index.cjs'))
    expect(result.ok).toBe(true)
  })

  it('imports nothing at runtime but eventemitter3 (following its own chunks)', () => {
    const esm = bareImports('dist/index.mjs', /^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]/gm)
    const cjs = bareImports('dist/index.cjs', /\brequire\(\s*['"]([^'"]+)['"]\s*\)/g)
    expect(esm).toEqual(['eventemitter3'])
    expect(cjs).toEqual(['eventemitter3'])
  })
})

describe('the durable outbox entry (tethersocket/persist)', () => {
  it('resolves as ESM and CJS, shares the error classes with the client, and fails clearly where there is no IndexedDB', async () => {
    const esm: Module = await import('tethersocket/persist')
    const cjs: Module = require('tethersocket/persist')
    expect(require.resolve('tethersocket/persist')).toBe(at('dist/persist.cjs'))
    expect(Object.keys(esm).sort()).toEqual(['PersistError', 'indexedDBStore', 'requestPersistentStorage'])
    expect(Object.keys(cjs).sort()).toEqual(Object.keys(esm).sort())
    // One class for both entries: `instanceof` works whichever entry the error came from.
    expect(esm.PersistError).toBe((await import('tethersocket')).PersistError)
    expect(cjs.PersistError).toBe(require('tethersocket').PersistError)
    const error = await esm
      .indexedDBStore('chat')
      .open()
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(esm.PersistError)
    expect(error).toMatchObject({ code: 'ERR_PERSIST', reason: 'unavailable' })
    expect(await esm.requestPersistentStorage()).toBe(false)
  })

  it('imports nothing at runtime, and none of the client: the default bundle does not carry it, nor it the client', () => {
    const esm = /^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]/gm
    expect(bareImports('dist/persist.mjs', esm)).toEqual([])
    expect(bareImports('dist/persist.cjs', /\brequire\(\s*['"]([^'"]+)['"]\s*\)/g)).toEqual([])
    for (const code of chunks('dist/persist.mjs', esm)) expect(code).not.toMatch(/class TetherSocket\b/)
    // The store's platform calls, not a mention of indexedDBStore in an option error's text.
    for (const code of chunks('dist/index.mjs', esm)) expect(code).not.toMatch(/IDBKeyRange|navigator\??\.locks/)
  })
})

/** The code of a built file and of every relative chunk it imports. */
function chunks(entry: string, pattern: RegExp): string[] {
  const seen = new Map<string, string>()
  const visit = (url: URL) => {
    if (seen.has(url.href)) return
    const code = readFileSync(url, 'utf8')
    seen.set(url.href, code)
    for (const match of code.matchAll(pattern)) {
      const specifier = match[1] ?? match[2]
      if (specifier.startsWith('.')) visit(new URL(specifier, url))
    }
  }
  visit(pathToFileURL(at(entry)))
  return [...seen.values()]
}

/** The bare specifiers a built file imports, directly or through the relative chunks it imports. */
function bareImports(entry: string, pattern: RegExp): string[] {
  const bare = new Set<string>()
  const seen = new Set<string>()
  const visit = (url: URL) => {
    if (seen.has(url.href)) return
    seen.add(url.href)
    for (const match of readFileSync(url, 'utf8').matchAll(pattern)) {
      const specifier = match[1] ?? match[2]
      if (specifier.startsWith('.')) visit(new URL(specifier, url))
      else bare.add(specifier)
    }
  }
  visit(pathToFileURL(at(entry)))
  return [...bare].sort()
}

function checkErrors(mod: Module): void {
  for (const name of errorNames) {
    const ErrorClass = mod[name]
    expect(typeof ErrorClass, name).toBe('function')
    const error = new ErrorClass('boom')
    expect(error).toBeInstanceOf(Error)
    expect(error).toBeInstanceOf(mod.TetherError)
    expect(error.name).toBe(name)
    expect(error.message).toBe('boom')
  }
}

describe('type declarations', () => {
  it('dist/index.d.ts and dist/index.d.cts declare and export TetherSocket and the errors', () => {
    for (const file of ['dist/index.d.ts', 'dist/index.d.cts']) {
      const source = readFileSync(at(file), 'utf8')
      expect(source, file).toMatch(/declare class TetherSocket\b/)
      const exported = source
        .match(/^export \{([^}]*)\}/m)?.[1]
        .split(',')
        .map((s) => s.trim())
      expect(exported, file).toEqual(expect.arrayContaining(['TetherSocket', ...errorNames]))
    }
  })

  it('type-check for a consumer under node16 resolution, from ESM and from CJS', () => {
    const options: ts.CompilerOptions = {
      module: ts.ModuleKind.Node16,
      moduleResolution: ts.ModuleResolutionKind.Node16,
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
      types: [],
      strict: true,
      noEmit: true,
    }
    // Virtual consumers inside the package, so that `tethersocket` resolves by self-reference.
    const consumers: Record<string, string> = {
      [at('test/integration/__consumer__.mts')]: `
        import { TetherSocket, DeliveryError, TetherError, type SocketState } from 'tethersocket'
        const sock = new TetherSocket<string, { n: number }>('ws://127.0.0.1:1', { mode: 'raw', autoConnect: false })
        const sent: Promise<void> = sock.send({ n: 1 })
        const state: SocketState = sock.state
        const error: TetherError = new DeliveryError('x')
        // @ts-expect-error the message type is checked
        sock.send({ n: 'one' })
        export { sent, state, error }
      `,
      [at('test/integration/__consumer__.cts')]: `
        import tether = require('tethersocket')
        const sock = new tether.TetherSocket<string, string>('ws://127.0.0.1:1', { autoConnect: false })
        const sent: Promise<void> = sock.send('x')
        const error: tether.TetherError = new tether.QueueFullError('x')
        // @ts-expect-error unknown options are rejected
        new tether.TetherSocket('ws://127.0.0.1:1', { noSuchOption: true })
        export = { sent, error }
      `,
    }
    const host = ts.createCompilerHost(options)
    const { fileExists, readFile, getSourceFile } = host
    host.fileExists = (file) => file in consumers || fileExists(file)
    host.readFile = (file) => consumers[file] ?? readFile(file)
    host.getSourceFile = (file, language, ...rest) =>
      file in consumers ? ts.createSourceFile(file, consumers[file], language) : getSourceFile(file, language, ...rest)

    const [mts, cts] = Object.keys(consumers)
    const resolve = (from: string, mode: ts.ResolutionMode) =>
      ts.resolveModuleName('tethersocket', from, options, host, undefined, undefined, mode).resolvedModule?.resolvedFileName
    expect(resolve(mts, ts.ModuleKind.ESNext)).toBe(at('dist/index.d.ts').replaceAll('\\', '/'))
    expect(resolve(cts, ts.ModuleKind.CommonJS)).toBe(at('dist/index.d.cts').replaceAll('\\', '/'))

    const program = ts.createProgram(Object.keys(consumers), options, host)
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))
    expect(diagnostics).toEqual([])
  })
})

describe('the IIFE (dist/tethersocket.global.js)', () => {
  it('is a classic script: no import or export statements, no require() or import() calls', () => {
    const code = readFileSync(at('dist/tethersocket.global.js'), 'utf8')
    expect(() => new Script(code)).not.toThrow() // a classic script cannot hold import/export declarations
    expect(code).not.toMatch(/\brequire\s*\(/)
    expect(code).not.toMatch(/\bimport\s*\(/)
    expect(code).not.toMatch(/\bimport\.meta\b/)
    expect(code).not.toMatch(/(^|[;}\n])\s*(import|export)\s*[{*\w]/)
  })

  it('defines window.TetherSocket as the class, with every other export as a static', async () => {
    const win = iifeWindow()
    const TS = win.TetherSocket
    expect(typeof TS).toBe('function')
    expect(() => TS('ws://127.0.0.1:1')).toThrow(win.eval('TypeError')) // a class: callable only with new
    const esm: Module = await import('tethersocket')
    for (const name of Object.keys(esm)) {
      if (name !== 'TetherSocket') expect(typeof TS[name], `TetherSocket.${name}`).toBe(typeof esm[name])
    }
    for (const name of errorNames) {
      const error = new TS[name]('boom')
      expect(error instanceof TS.TetherError, name).toBe(true)
      expect(error instanceof win.eval('Error'), name).toBe(true)
      expect(error.name).toBe(name)
    }
    expect(Object.keys(win.eval('globalThis')).filter((k) => /tether/i.test(k))).toEqual(['TetherSocket'])
  })

  it("shows only the public surface: its statics are exactly src/index.ts's runtime exports, less TetherSocket itself", async () => {
    const TS = iifeWindow().TetherSocket
    const builtIn = new Set(['length', 'name', 'prototype'])
    const statics = Object.getOwnPropertyNames(TS).filter((name) => !builtIn.has(name))
    const source: Module = await import('../../src/index.js')
    const publicNames = Object.keys(source).filter((name) => name !== 'TetherSocket')
    expect(statics.sort()).toEqual(publicNames.sort())
    expect(statics).not.toContain('closedError')
    expect(TS.TetherSocket).toBeUndefined()
  })

  it('constructs a raw socket in the window (which has its own WebSocket)', async () => {
    const win = iifeWindow()
    expect(typeof win.WebSocket).toBe('function')
    const sock = new win.TetherSocket('ws://127.0.0.1:1', { mode: 'raw', autoConnect: false })
    expect(sock.state).toBe('idle')
    expect(sock.pending).toBe(0)
    const events: string[] = []
    sock.on('state', (next: string) => events.push(next))
    await sock.close()
    expect(sock.state).toBe('closed')
    expect(events).toEqual(['closed'])
  })

  it('connects in raw mode from inside jsdom to a real ws server, sends and receives', async () => {
    const server = await startServer({ onConnection: ({ socket }) => socket.send('to-page') })
    const win = iifeWindow()
    win.eval(`
      globalThis.__received = []
      globalThis.__sockets = [new TetherSocket(${JSON.stringify(server.url)}, { mode: 'raw', reconnect: { minDelay: 20, maxDelay: 200 } })]
      globalThis.__sockets[0].on('message', (m) => globalThis.__received.push(m))
      globalThis.__sent = globalThis.__sockets[0].send('from-page').then(() => 'sent', (e) => 'failed: ' + e.message)
    `)
    const sent = await withTimeout(win.eval('globalThis.__sent') as Promise<string>, 5000, 'send() from the page')
    expect(sent).toBe('sent')
    await waitFor(() => server.messages.length === 1, 5000, 'the server to receive the page message')
    expect(server.texts()).toEqual(['from-page'])
    await waitFor(() => win.eval('globalThis.__received.length') === 1, 5000, 'the page to receive the server message')
    expect(win.eval('globalThis.__received[0]')).toBe('to-page')

    await withTimeout(win.eval('globalThis.__sockets[0].close()') as Promise<void>, 5000, 'close() in the page')
    expect(win.eval('globalThis.__sockets[0].state')).toBe('closed')
    await waitFor(() => server.connections[0].closed, 5000, 'the server to see the close')
    expect(server.connections[0].closed?.code).toBe(1000)
  })
})
