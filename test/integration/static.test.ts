/**
 * The static file handler (`static` option, `tethersocket-server --static DIR`) against real
 * files in a temporary folder: a file that fails to read gets 500 and cannot crash the process,
 * and nothing outside the folder is served, through symbolic links neither.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { TetherServer } from '../../src/server/index.js'
import { cleanupTether, startTether } from '../support/tether.js'

afterEach(cleanupTether)

// An 'error' event without a listener (a failed read) becomes an uncaught exception.
const uncaught: unknown[] = []
const record = (error: unknown) => uncaught.push(error)
let folder: string
let site: string

beforeAll(() => {
  process.on('uncaughtException', record)
  folder = mkdtempSync(join(tmpdir(), 'tether-static-'))
  site = join(folder, 'site')
  const outside = join(folder, 'outside')
  mkdirSync(join(site, 'broken', 'index.html'), { recursive: true }) // a directory where a page should be
  mkdirSync(join(site, 'docs'))
  mkdirSync(outside)
  writeFileSync(join(site, 'index.html'), '<h1>home</h1>')
  writeFileSync(join(site, 'hello.txt'), 'hello')
  writeFileSync(join(site, 'docs', 'page.txt'), 'inside')
  writeFileSync(join(outside, 'secret.txt'), 'secret')
  writeFileSync(join(outside, 'index.html'), '<h1>secret</h1>')
  symlinkSync(join(outside, 'secret.txt'), join(site, 'secret.txt')) // a file link out of the folder
  symlinkSync(outside, join(site, 'out')) // a folder link out of the folder
  symlinkSync(join(outside, 'index.html'), join(site, 'docs', 'index.html')) // an index page link out
  symlinkSync(join(site, 'docs', 'page.txt'), join(site, 'alias.txt')) // a link that stays inside
  symlinkSync(site, join(folder, 'site-link')) // the folder itself reached through a link
})

afterAll(() => {
  process.off('uncaughtException', record)
  rmSync(folder, { recursive: true, force: true })
})

async function get(server: TetherServer, path: string, method = 'GET') {
  const response = await fetch(`http://127.0.0.1:${server.port}${path}`, { method, signal: AbortSignal.timeout(3000) })
  return { status: response.status, body: await response.text() }
}

describe('a file that fails to read after its stat', () => {
  it('gets 500 (GET and HEAD), and the server goes on serving', async () => {
    const server = await startTether({ static: site })
    expect(await get(server, '/broken/')).toEqual({ status: 500, body: 'Internal server error\n' })
    expect((await get(server, '/broken/', 'HEAD')).status).toBe(500)
    expect(uncaught).toEqual([])
    expect(await get(server, '/hello.txt')).toEqual({ status: 200, body: 'hello' })
  })
})

describe('symbolic links', () => {
  it('are refused (403) when they lead outside the folder: to a file, through a folder, as an index page', async () => {
    const server = await startTether({ static: site })
    expect(await get(server, '/secret.txt')).toEqual({ status: 403, body: '' })
    expect((await get(server, '/out/secret.txt')).status).toBe(403)
    expect((await get(server, '/out/')).status).toBe(403)
    expect((await get(server, '/docs/')).status).toBe(403)
    expect((await get(server, '/secret.txt', 'HEAD')).status).toBe(403)
  })

  it('are followed when they stay inside the folder, and the folder itself may be a link', async () => {
    const server = await startTether({ static: site })
    expect(await get(server, '/alias.txt')).toEqual({ status: 200, body: 'inside' })
    const linked = await startTether({ static: join(folder, 'site-link') })
    expect(await get(linked, '/')).toEqual({ status: 200, body: '<h1>home</h1>' })
    expect(await get(linked, '/docs/page.txt')).toEqual({ status: 200, body: 'inside' })
    expect((await get(linked, '/secret.txt')).status).toBe(403)
  })
})

describe('what did not change', () => {
  it('serves files with their type, refuses escapes and other methods, and has no listings', async () => {
    const server = await startTether({ static: site })
    const response = await fetch(`http://127.0.0.1:${server.port}/`, { signal: AbortSignal.timeout(3000) })
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(await response.text()).toBe('<h1>home</h1>')
    expect((await get(server, '/..%2Foutside%2Fsecret.txt')).status).toBe(403)
    expect((await get(server, '/missing.txt')).status).toBe(404)
    expect((await get(server, '/%E0%A4%A')).status).toBe(400)
    expect((await get(server, '/hello.txt', 'POST')).status).toBe(405)
  })
})
