/**
 * `tethersocket-server`: runs the reference server from the command line.
 *
 * ```
 * npx tethersocket-server --port 8080 --host 127.0.0.1 --static ./public
 * ```
 * Every connection is logged. Messages are echoed back to their sender, requests are
 * answered with `{ echo: data }`, so a client can be tried against it at once. With
 * `--conformance` it runs the echo mode the conformance kit needs (docs/PROTOCOL.md §12.2).
 * @module
 */
import { parseArgs } from 'node:util'
import { createTetherServer, RequestError } from './index.js'

const USAGE = `Usage: tethersocket-server [--port 8080] [--host 127.0.0.1] [--static DIR] [--session-ttl MS] [--conformance] [--quiet]

Starts the tethersocket reference server (tether.v1 over WebSocket).
  --port, -p        port to listen on (0 picks a free one)      default 8080
  --host            address to bind                             default 127.0.0.1
  --static DIR      also serve the files in DIR over HTTP
  --session-ttl MS  keep disconnected sessions this long        default 120000
  --conformance     echo mode for tethersocket-conformance: also a request
                    {"fail": CODE} gets an error reply with that code, and one
                    with {"delay": MS} is answered MS later (PROTOCOL.md §12.2)
  --quiet           log nothing but the listening address
Messages are echoed to their sender; requests are answered with { echo: data }.`

async function main(): Promise<void> {
  let values: ReturnType<typeof parse>
  try {
    values = parse()
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`)
    process.exit(2)
  }
  if (values.help) {
    console.log(USAGE)
    return
  }
  const port = Number(values.port)
  const sessionTtl = Number(values['session-ttl'])
  if (!Number.isInteger(port) || port < 0 || port > 65535) return fail(`--port must be a port number; got ${values.port}`)
  if (!(sessionTtl > 0)) return fail(`--session-ttl must be a positive number of milliseconds; got ${values['session-ttl']}`)
  let server: Awaited<ReturnType<typeof createTetherServer>>
  try {
    server = await createTetherServer({ port, host: values.host, static: values.static, sessionTtl })
  } catch (error) {
    // A busy or forbidden port is the user's to fix: one line that says how, no stack trace.
    console.error(`tethersocket-server: ${listenFailure(error as NodeJS.ErrnoException, port, values.host)}`)
    process.exit(1)
  }
  const log = values.quiet ? () => {} : (line: string) => console.log(`${new Date().toISOString()} ${line}`)
  server.on('session', (s) => log(`session ${s.id.slice(0, 8)} opened (${server.sessions.size} sessions)`))
  server.on('resume', (s) => log(`session ${s.id.slice(0, 8)} resumed`))
  server.on('disconnect', (s, code) => log(`session ${s.id.slice(0, 8)} disconnected (${code})`))
  server.on('expire', (s, reason) => log(`session ${s.id.slice(0, 8)} ended (${reason})`))
  server.on('error', (error) => log(`error: ${error.message}`))
  server.on('message', (data, session) => {
    session.send(data)
  })
  server.onRequest(values.conformance ? conformanceReply : (data) => ({ echo: data }))
  const where = `${values.host.includes(':') ? `[${values.host}]` : values.host}:${server.port}`
  console.log(`tethersocket-server listening on ws://${where}${values.static ? ` (serving ${values.static} at http://${where}/)` : ''}`)
  const stop = () => {
    server.close().then(() => process.exit(0))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

function parse() {
  return parseArgs({
    options: {
      port: { type: 'string', short: 'p', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      static: { type: 'string' },
      'session-ttl': { type: 'string', default: '120000' },
      conformance: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values
}

/** The longest `delay` echo mode honours (PROTOCOL.md §12.2). */
const MAX_DELAY = 10_000

/**
 * A request in echo mode (PROTOCOL.md §12.2): `{ echo: data }`, after `data.delay` ms when it
 * has one, or an error reply with the code `data.fail` when it has one.
 */
async function conformanceReply(data: unknown): Promise<unknown> {
  const fields = typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : {}
  const delay = typeof fields.delay === 'number' ? Math.min(Math.max(fields.delay, 0), MAX_DELAY) : 0
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
  if (typeof fields.fail === 'string') throw new RequestError(fields.fail, 'failed on request (echo mode)')
  return { echo: data }
}

function listenFailure(error: NodeJS.ErrnoException, port: number, host: string): string {
  if (error.code === 'EADDRINUSE') return `port ${port} is in use: pass another with --port, e.g. --port ${port < 65535 ? port + 1 : 8080}`
  if (error.code === 'EACCES') return `no permission to listen on port ${port}: pass a port above 1023 with --port, e.g. --port 8080`
  return `cannot listen on ${host}:${port} (${error.message}): check --host and --port`
}

function fail(message: string): void {
  console.error(`${message}\n\n${USAGE}`)
  process.exit(2)
}

main().catch((error: Error) => {
  console.error(`tethersocket-server: ${error.message}`)
  process.exit(1)
})
