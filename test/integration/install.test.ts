/**
 * The package as a user gets it: `npm pack`ed from dist/ (`npm test` builds first; alone, run
 * `npm run build`) and `npm install`ed into a new project in a temporary folder, without `ws`.
 * That is a browser-only user's install: `ws` is an optional peer dependency, so npm leaves it
 * out, the client loads, and the server entry says what to install. Then `ws` is added and the
 * server serves; and the types of every entry resolve under the `node10`, `node16` and
 * `bundler` module resolutions.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../../', import.meta.url))
const entries = ['server', 'redis', 'react', 'vue'] as const

// npm runs this file's tests from `npm test`: its npm_* variables (the script's own
// configuration) must not leak into the npm commands below.
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)))

interface Run {
  code: number
  stdout: string
  stderr: string
}

/** Runs a command to its end (at most `timeout` ms) and tells how it ended. */
function run(file: string, args: string[], cwd: string, timeout = 30000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env, timeout, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0
      resolve({ code, stdout, stderr: stderr || (error ? String(error) : '') })
    })
  })
}

async function npm(args: string[], cwd: string, timeout?: number): Promise<string> {
  const result = await run('npm', args, cwd, timeout)
  if (result.code !== 0) throw new Error(`npm ${args.join(' ')} failed (${result.code}):\n${result.stderr}`)
  return result.stdout
}

/** Runs `code` in the project (as an ES module or as CommonJS) and returns the JSON it printed last. */
async function node(app: string, code: string, type: 'module' | 'commonjs' = 'module'): Promise<any> {
  const result = await run(process.execPath, [`--input-type=${type}`, '-e', code], app, 20000)
  const last = result.stdout.trim().split('\n').at(-1)
  if (result.code !== 0 || !last) throw new Error(`node failed (${result.code}):\n${result.stdout}\n${result.stderr}`)
  return JSON.parse(last)
}

let dir: string
let app: string

beforeAll(async () => {
  for (const file of ['dist/index.mjs', 'dist/server.mjs', 'dist/server.cjs']) {
    if (!existsSync(join(root, file)))
      throw new Error(`${file} is missing: run \`npm run build\` first (\`npm test\` builds before testing)`)
  }
  dir = mkdtempSync(join(tmpdir(), 'tethersocket-install-'))
  // dist/ is already built: pack it as it is rather than build again (prepack).
  const [packed] = JSON.parse(await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', dir], root)) as { filename: string }[]
  app = join(dir, 'app')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
  // The package's one dependency, eventemitter3, is in npm's cache after `npm ci`.
  await npm(['install', join(dir, packed.filename), '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], app, 120000)
}, 180000)

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('installed without ws (a browser-only user)', () => {
  it('npm installs tethersocket and its dependency, and leaves the optional peer ws out', () => {
    expect(existsSync(join(app, 'node_modules', 'tethersocket', 'dist', 'server.mjs'))).toBe(true)
    expect(existsSync(join(app, 'node_modules', 'eventemitter3'))).toBe(true)
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules', 'tethersocket', 'package.json'), 'utf8'))
    expect(manifest.dependencies).toEqual({ eventemitter3: expect.any(String) })
    expect(manifest.peerDependenciesMeta.ws).toEqual({ optional: true })
    // Not in the project, nor anywhere above it that Node would look.
    expect(() => createRequire(join(app, 'node_modules', 'tethersocket', 'package.json')).resolve('ws')).toThrow(/Cannot find module 'ws'/)
  })

  it('the client loads, as ESM and as CommonJS', async () => {
    const esm = await node(app, `const m = await import('tethersocket'); console.log(JSON.stringify(typeof m.TetherSocket))`)
    const cjs = await node(app, `console.log(JSON.stringify(typeof require('tethersocket').TetherSocket))`, 'commonjs')
    expect([esm, cjs]).toEqual(['function', 'function'])
  })

  it('tethersocket/server fails to load with an error that says to run `npm install ws`, as ESM and as CommonJS', async () => {
    const show = `({ message: e.message, code: e.code, cause: e.cause && e.cause.message.split('\\n')[0] })`
    const esm = await node(
      app,
      `try { await import('tethersocket/server'); console.log('null') } catch (e) { console.log(JSON.stringify(${show})) }`,
    )
    const cjs = await node(
      app,
      `try { require('tethersocket/server'); console.log('null') } catch (e) { console.log(JSON.stringify(${show})) }`,
      'commonjs',
    )
    for (const error of [esm, cjs]) {
      expect(error).not.toBeNull()
      expect(error.message).toContain('tethersocket/server needs the `ws` package, which is not installed: run `npm install ws`')
      expect(error.message).toContain('docs/ERRORS.md#module_not_found')
      expect(error.code).toBe('MODULE_NOT_FOUND')
      expect(error.cause).toBe("Cannot find module 'ws'")
    }
  })

  it('so does the tethersocket-server command', async () => {
    const result = await run(process.execPath, [join(app, 'node_modules', 'tethersocket', 'dist', 'cli.mjs'), '--help'], app, 20000)
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain('run `npm install ws`')
  })
})

describe('with ws installed', () => {
  beforeAll(() => {
    // The same ws the project tests with (no registry needed).
    symlinkSync(join(root, 'node_modules', 'ws'), join(app, 'node_modules', 'ws'), 'dir')
  })

  it('the server starts and answers a client, as ESM and as CommonJS', async () => {
    const script = (load: (name: string) => string) => `
      const { TetherSocket } = ${load('tethersocket')}
      const { createTetherServer } = ${load('tethersocket/server')}
      const { WebSocket } = ${load('ws')}
      ;(async () => {
        const server = await createTetherServer({ host: '127.0.0.1', port: 0 })
        server.onRequest((data) => ({ echo: data }))
        const sock = new TetherSocket('ws://127.0.0.1:' + server.port, { WebSocket, reconnect: { maxRetries: 2 } })
        try {
          console.log(JSON.stringify(await sock.request('hi', { timeout: 5000 })))
        } finally {
          await sock.close()
          await server.close()
        }
      })()`
    const esm = await node(
      app,
      script((name) => `await import('${name}')`),
    )
    const cjs = await node(
      app,
      script((name) => `require('${name}')`),
      'commonjs',
    )
    expect([esm, cjs]).toEqual([{ echo: 'hi' }, { echo: 'hi' }])
  })
})

describe('types of every entry, for a TypeScript user of the installed package', () => {
  const resolutions = {
    node10: { moduleResolution: ts.ModuleResolutionKind.Node10, module: ts.ModuleKind.CommonJS },
    node16: { moduleResolution: ts.ModuleResolutionKind.Node16, module: ts.ModuleKind.Node16 },
    bundler: { moduleResolution: ts.ModuleResolutionKind.Bundler, module: ts.ModuleKind.ESNext },
  }

  for (const [name, kind] of Object.entries(resolutions)) {
    it(`resolve under moduleResolution "${name}" to the built declarations`, () => {
      const options: ts.CompilerOptions = { ...kind, target: ts.ScriptTarget.ES2022, strict: true, noEmit: true }
      const host = ts.createCompilerHost(options)
      const from = join(app, name === 'node16' ? 'consumer.mts' : 'consumer.ts')
      // node16 from ESM and bundler read the `import` condition (.d.ts); node10, which knows no
      // `exports`, reads `types` and `typesVersions` (.d.cts).
      const ext = name === 'node10' ? 'd.cts' : 'd.ts'
      // No resolution mode for node10: given one, TypeScript reads `exports` even there.
      const mode = name === 'node10' ? undefined : ts.ModuleKind.ESNext
      for (const entry of ['index', ...entries]) {
        const specifier = entry === 'index' ? 'tethersocket' : `tethersocket/${entry}`
        const resolved = ts.resolveModuleName(specifier, from, options, host, undefined, undefined, mode).resolvedModule
        expect(resolved?.resolvedFileName, `${specifier} under ${name}`).toBe(
          join(app, 'node_modules', 'tethersocket', 'dist', `${entry}.${ext}`).replaceAll('\\', '/'),
        )
      }
    })
  }

  it('type-check a consumer of the client and the server under node10 (the declarations name what they use)', () => {
    const options: ts.CompilerOptions = {
      ...resolutions.node10,
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
      strict: true,
      noEmit: true,
      // The server's declarations use node:http's types: a server's project has @types/node.
      typeRoots: [join(root, 'node_modules', '@types')],
      types: ['node'],
    }
    const file = join(app, 'consumer.ts')
    writeFileSync(
      file,
      `import { TetherSocket, QueueFullError, type TetherError } from 'tethersocket'
       import { createTetherServer, RequestError } from 'tethersocket/server'
       const sock = new TetherSocket<string, { n: number }>('ws://127.0.0.1:1', { autoConnect: false })
       const sent: Promise<void> = sock.send({ n: 1 })
       const error: TetherError = new QueueFullError('x')
       const server = createTetherServer({ port: 0 })
       const refusal = new RequestError('BAD_REQUEST', 'no')
       // @ts-expect-error the message type is checked
       sock.send({ n: 'one' })
       export { sent, error, server, refusal }
      `,
    )
    const program = ts.createProgram([file], options)
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))
    expect(diagnostics).toEqual([])
  })
})
