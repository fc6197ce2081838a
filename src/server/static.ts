/**
 * A minimal static file handler for the demo and `tethersocket-server --static DIR`:
 * GET and HEAD only, no directory listing, nothing outside the folder (symbolic links
 * included), and no failure that can reach the process.
 * @module
 */
import { createReadStream } from 'node:fs'
import { realpath, stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, join, normalize, resolve, sep } from 'node:path'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
}

/** Serves `request` from the folder `root`. Never throws, never rejects. */
export function serveStatic(root: string, request: IncomingMessage, response: ServerResponse): void {
  serve(root, request, response).catch(() => fail(response))
}

/** Why a request gets no file: an HTTP status, thrown and answered by `serve`. */
class Refusal {
  constructor(readonly status: number) {}
}

async function serve(root: string, request: IncomingMessage, response: ServerResponse): Promise<void> {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { Allow: 'GET, HEAD' }).end()
    return
  }
  let found: { file: string; size: number; isFile: boolean }
  try {
    found = await locate(root, request.url ?? '/')
  } catch (error) {
    const status = error instanceof Refusal ? error.status : 404
    response.writeHead(status, { 'Content-Type': 'text/plain' }).end(status === 404 ? 'Not found\n' : '')
    return
  }
  const { file, size, isFile } = found
  const headers = {
    'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
    'Content-Length': size,
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  }
  if (request.method === 'HEAD' || size === 0) {
    // Without reading, say what a GET would get: a directory in a file's place cannot be read.
    if (isFile) response.writeHead(200, headers).end()
    else fail(response)
    return
  }
  // No more than the size announced, even if the file grew since.
  const stream = createReadStream(file, { start: 0, end: size - 1 })
  // A read can fail after the stat (the file was removed, or is a directory): 500 while nothing
  // was sent, otherwise the response is cut, so that the client cannot take it for complete.
  stream.on('error', () => fail(response))
  response.on('close', () => stream.destroy())
  stream.once('readable', () => {
    response.writeHead(200, headers)
    stream.pipe(response)
  })
}

/** The real path of the file a request target names, and its size; throws a `Refusal` or a file system error. */
async function locate(root: string, target: string): Promise<{ file: string; size: number; isFile: boolean }> {
  let pathname: string
  try {
    pathname = decodeURIComponent(new URL(target, 'http://localhost').pathname)
  } catch {
    throw new Refusal(400)
  }
  const base = resolve(root)
  const named = normalize(join(base, pathname))
  if (!inside(base, named)) throw new Refusal(403)
  // A symbolic link inside the folder may point anywhere: what counts is where the file really is.
  const realRoot = await realpath(base)
  let file = await realpath(named)
  if (!inside(realRoot, file)) throw new Refusal(403)
  let stats = await stat(file)
  if (stats.isDirectory()) {
    file = await realpath(join(file, 'index.html'))
    if (!inside(realRoot, file)) throw new Refusal(403)
    stats = await stat(file)
  }
  // FIFOs and devices would block or never end; a directory (named index.html) fails to read: 500.
  if (!stats.isFile() && !stats.isDirectory()) throw new Refusal(404)
  return { file, size: stats.size, isFile: stats.isFile() }
}

function inside(folder: string, path: string): boolean {
  return path === folder || path.startsWith(folder.endsWith(sep) ? folder : folder + sep)
}

function fail(response: ServerResponse): void {
  if (response.headersSent) response.destroy()
  else response.writeHead(500, { 'Content-Type': 'text/plain' }).end('Internal server error\n')
}
