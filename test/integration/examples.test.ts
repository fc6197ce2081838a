/**
 * The examples work as published: the Node example runs against an in-process server, and the
 * React and Vue apps typecheck and build with Vite, importing `tethersocket/react` and
 * `tethersocket/vue` by name. Those imports resolve through package.json `exports` to dist/
 * (package self-reference), so this needs a build first (`npm test` builds).
 */
import { execFile } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../../', import.meta.url))
const vite = join(root, 'node_modules', 'vite', 'bin', 'vite.js')
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a Node script from the repository root; killed after `timeout` ms (then `code` is null). */
function node(args: string[], timeout: number): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, args, { cwd: root, timeout, env: { ...process.env, NO_COLOR: '1' } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0
      done({ code, stdout, stderr })
    })
  })
}

/** The output, for an assertion's failure message. */
const output = (run: Run) => `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`

beforeAll(() => {
  const missing = ['dist/index.mjs', 'dist/server.mjs', 'dist/react.mjs', 'dist/vue.mjs', 'dist/react.d.ts', 'dist/vue.d.ts'].filter(
    (file) => !existsSync(join(root, file)),
  )
  if (missing.length > 0) {
    throw new Error(`the build output is missing (${missing.join(', ')}): run \`npm run build\` first (\`npm test\` builds before testing)`)
  }
})

describe('examples/node', () => {
  it('sends, gets every acknowledgement and a reply from an in-process server, and exits 0', async () => {
    const run = await node(['examples/node/chat.mjs'], 15000)
    expect(run.code, output(run)).toBe(0)
    expect(run.stdout).toMatch(/^summary: 5\/5 acknowledged in \d+ ms, 5 received \(5 echoed\), request answered$/m)
  }, 20000)
})

describe.each(['react', 'vue'])('examples/%s', (name) => {
  const example = join(root, 'examples', name)

  it('typechecks against the published types (dist/*.d.ts)', async () => {
    const run = await node([tsc, '-p', `examples/${name}`], 30000)
    expect(run.code, output(run)).toBe(0)
  }, 35000)

  it('builds with Vite, bundling the client from dist/', async () => {
    rmSync(join(example, 'dist'), { recursive: true, force: true })
    // Source maps tell which files went into the bundle.
    const run = await node([vite, 'build', '--config', `examples/${name}/vite.config.ts`, '--sourcemap', '--logLevel', 'warn'], 30000)
    expect(run.code, output(run)).toBe(0)

    const assets = join(example, 'dist', 'assets')
    const scripts = readdirSync(assets).filter((file) => file.endsWith('.js'))
    expect(scripts.length).toBeGreaterThan(0)
    expect(scripts.some((file) => readFileSync(join(assets, file), 'utf8').includes('tether.v1'))).toBe(true)

    const sources = scripts.flatMap((file) => {
      const map = JSON.parse(readFileSync(join(assets, `${file}.map`), 'utf8')) as { sources: string[]; sourceRoot?: string }
      return map.sources.map((source) =>
        relative(root, resolve(dirname(join(assets, file)), map.sourceRoot ?? '', source)).replaceAll('\\', '/'),
      )
    })
    // The published entry point, not the sources the repository's tsconfig paths point at.
    expect(sources).toContain(`dist/${name}.mjs`)
    expect(sources.filter((source) => source.startsWith('src/'))).toEqual([])
  }, 35000)
})
