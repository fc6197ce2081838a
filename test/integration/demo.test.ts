/**
 * The demo (`npm start`, scripts/start.mjs) and the CLI (`tethersocket-server`) as a user runs
 * them, in child processes: the README's Node snippet, taken from README.md as written, gets a
 * session from the demo; the page's modules are served; a port in use is reported in one line; a
 * wrong path is refused at once.
 * Uses the build output in dist/ (`npm test` builds first).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { cleanupTether, freePort, tetherClient, waitFor, withTimeout } from '../support/tether.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const children = new Set<ChildProcess>()
const holders = new Set<Server>()

afterEach(async () => {
  await cleanupTether()
  await Promise.all(
    [...children].map(async (child) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        // The demo closes its server on SIGTERM; one that does not within 3 s is killed.
        await withTimeout(once(child, 'exit'), 3000, 'a child exiting on SIGTERM').catch(() => child.kill('SIGKILL'))
      }
    }),
  )
  children.clear()
  await Promise.all([...holders].map((server) => new Promise((resolve) => server.close(resolve))))
  holders.clear()
})

beforeAll(() => {
  const missing = ['dist/index.mjs', 'dist/server.mjs', 'dist/cli.mjs', 'dist/tethersocket.global.js', 'dist/browser/persist.mjs'].filter(
    (file) => !existsSync(join(root, file)),
  )
  if (missing.length > 0) {
    throw new Error(`the build output is missing (${missing.join(', ')}): run \`npm run build\` first (\`npm test\` builds before testing)`)
  }
})

/** A child Node process in the project folder, its output collected as it comes (its input a pipe when `input`). */
function node(args: string[], env: Record<string, string> = {}, input = false) {
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  const run = { child, stdout: '', stderr: '', exited: once(child, 'exit').then(([code]) => code as number | null) }
  child.stdout?.on('data', (chunk) => {
    run.stdout += String(chunk)
  })
  child.stderr?.on('data', (chunk) => {
    run.stderr += String(chunk)
  })
  return run
}

type Run = ReturnType<typeof node>
const output = (run: Run) => `--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`

/** A port held busy by a listening server of this process. */
async function busyPort(): Promise<number> {
  const holder = createServer()
  holders.add(holder)
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
  return (holder.address() as { port: number }).port
}

/** The demo on a free port, once it says it is listening. */
async function startDemo(input = false) {
  const port = await freePort()
  const demo = node(['scripts/start.mjs'], { PORT: String(port), HOST: '127.0.0.1' }, input)
  await waitFor(() => demo.stdout.includes(`http://127.0.0.1:${port}`) || demo.child.exitCode !== null, 15000, 'the demo listening')
  expect(demo.child.exitCode, output(demo)).toBeNull()
  return { port, demo }
}

/** The code block that follows `heading` in README.md. */
function readmeSnippet(heading: string): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const start = readme.indexOf(`\n${heading}\n`)
  expect(start, `README.md has no "${heading}" section`).toBeGreaterThan(-1)
  const block = /```\w*\n([\s\S]*?)```/.exec(readme.slice(start))
  expect(block, `no code block under "${heading}"`).not.toBeNull()
  return block![1]
}

describe("the README's Node snippet against `npm start`", () => {
  it('runs as written: it gets a session, and its message is acknowledged', async () => {
    const snippet = readmeSnippet('### In Node')
    // The snippet names the demo's default address; only the port is changed, to a free one.
    expect(snippet).toContain("'ws://127.0.0.1:8080/ws'")
    const { port, demo } = await startDemo()
    const client = node(['--input-type=module', '-e', snippet.replaceAll('127.0.0.1:8080', `127.0.0.1:${port}`)])
    const code = await withTimeout(client.exited, 15000, 'the README snippet finishing')
    expect(code, output(client)).toBe(0)
    expect(client.stdout).toMatch(/^delivered$/m)
    expect(demo.stdout).toMatch(/session [\w-]+ opened/)
  }, 40000)

  it('the demo refuses a WebSocket upgrade on another path with 404 at once', async () => {
    const { port } = await startDemo()
    const status = await withTimeout(
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`, ['tether.v1'])
        ws.on('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0)
          ws.terminate()
        })
        ws.on('open', () => reject(new Error('the demo accepted an upgrade on /')))
        ws.on('error', reject)
      }),
      3000,
      'the answer to an upgrade on /',
    )
    expect(status).toBe(404)
  }, 30000)
})

describe('the demo page as `npm start` serves it', () => {
  it('serves every module the page imports: the durable outbox entry and the chunks it imports', async () => {
    const { port } = await startDemo()
    const origin = `http://127.0.0.1:${port}`
    const page = await (await fetch(`${origin}/`)).text()
    const imported = [...page.matchAll(/from '(\/dist\/[\w./-]+\.mjs)'/g)].map((match) => match[1] as string)
    expect(imported).toEqual(['/dist/browser/persist.mjs'])
    const served = new Set<string>()
    for (let path = imported.shift(); path !== undefined; path = imported.shift()) {
      if (served.has(path)) continue
      served.add(path)
      const response = await fetch(`${origin}${path}`)
      expect(response.status, path).toBe(200)
      expect(response.headers.get('content-type'), path).toBe('text/javascript; charset=utf-8')
      for (const match of (await response.text()).matchAll(/(?:from|import) '\.\/([\w.-]+\.mjs)'/g))
        imported.push(`/dist/browser/${match[1]}`)
    }
    expect(served.size, 'persist.mjs imports its shared chunk').toBeGreaterThan(1)
    // Only files of dist/, by name.
    expect((await fetch(`${origin}/dist/..%2Fpackage.json`)).status).toBe(404)
    expect((await fetch(`${origin}/dist/missing.mjs`)).status).toBe(404)
    expect((await fetch(`${origin}/dist/browser/..%2F..%2Fpackage.json`)).status).toBe(404)
  }, 30000)

  it("moves a session between the chat's rooms on request, and refuses a room it does not have", async () => {
    const { port } = await startDemo()
    const { sock } = tetherClient(`ws://127.0.0.1:${port}/ws`)
    const received: { msg: unknown; topic: string | undefined }[] = []
    sock.on('message', (msg, info) => received.push({ msg, topic: info.topic }))
    // Every session starts in the lobby: the room's member list, published to it.
    await waitFor(() => received.length > 0, 5000, 'the lobby saying who is in it')
    expect(received[0]).toEqual({ msg: { room: 'lobby', members: [{ name: 'guest', connected: true }] }, topic: 'room:lobby' })

    expect(await sock.request({ join: 'random', name: 'node' })).toEqual({ room: 'random', rooms: ['lobby', 'random', 'help'] })
    await sock.send({ from: 'node', text: 'in #random', room: 'random' })
    await waitFor(() => received.some(({ msg }) => (msg as { text?: string }).text === 'in #random'), 5000, 'the line back')
    expect(received.slice(1)).toEqual([
      // Said to the session first: every tab sharing its connection follows it into the room.
      { msg: { room: 'random', entered: true }, topic: undefined },
      { msg: { room: 'random', members: [{ name: 'node', connected: true }] }, topic: 'room:random' },
      { msg: { from: 'node', text: 'in #random' }, topic: 'room:random' },
    ])
    // Authorization is the chat's: a room not on its list is refused with its own code.
    const refused = await sock.request({ join: 'admin' }).catch((error: unknown) => error)
    expect(refused).toMatchObject({ name: 'ReplyError', code: 'NO_SUCH_ROOM' })
    expect((refused as Error).message).toContain('there is no room "admin": join one of lobby, random, help')
  }, 30000)

  it('takes the chat away on Enter while the page stays served, and brings it back: the session resumes', async () => {
    const { port, demo } = await startDemo(true)
    const { sock } = tetherClient(`ws://127.0.0.1:${port}/ws`)
    await waitFor(() => sock.state === 'open', 5000, 'the client connecting')
    const session = sock.sessionId

    demo.child.stdin?.write('\n')
    await waitFor(() => demo.stdout.includes('chat away'), 5000, 'the demo saying the chat is away')
    await waitFor(() => sock.state === 'reconnecting', 5000, 'the client cut off')
    // The page still loads; the client's attempts (10 to 100 ms apart) are refused.
    expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(200)
    const attempts = sock.stats.attempts
    await waitFor(() => sock.stats.attempts >= attempts + 2, 5000, 'two more attempts')
    expect(sock.state).not.toBe('open')
    const delivered = sock.send({ text: 'sent while away' })

    demo.child.stdin?.write('\n')
    await waitFor(() => demo.stdout.includes('chat back'), 5000, 'the demo saying the chat is back')
    await withTimeout(delivered, 5000, 'the message sent while away delivered')
    expect(sock.sessionId).toBe(session)
    // The demo's log line comes through a pipe, which may be behind the WebSocket's acknowledgement.
    await waitFor(() => demo.stdout.includes(`session ${session?.slice(0, 6)} resumed`), 5000, 'the demo logging the resume')
  }, 30000)
})

describe('a port in use', () => {
  it('makes `npm start` say so in one line that names PORT, and exit non-zero', async () => {
    const port = await busyPort()
    const demo = node(['scripts/start.mjs'], { PORT: String(port), HOST: '127.0.0.1' })
    const code = await withTimeout(demo.exited, 15000, 'the demo exiting')
    expect(code, output(demo)).not.toBe(0)
    expect(demo.stderr).toBe(`tethersocket demo: port ${port} is in use: set PORT to another port, e.g. PORT=${port + 1} npm start\n`)
  }, 30000)

  it('makes the CLI say so in one line that names --port, and exit non-zero', async () => {
    const port = await busyPort()
    const cli = node(['dist/cli.mjs', '--port', String(port)])
    const code = await withTimeout(cli.exited, 15000, 'the CLI exiting')
    expect(code, output(cli)).not.toBe(0)
    expect(cli.stderr).toBe(`tethersocket-server: port ${port} is in use: pass another with --port, e.g. --port ${port + 1}\n`)
  }, 30000)
})
