/**
 * The IndexedDB outbox store (dist/browser/persist.mjs, as a page without a bundler imports it) in real Chromium, with the browser's own
 * IndexedDB, Web Locks and sessionStorage: what a reload keeps, what a duplicated tab gets, and
 * what a closed tab leaves for the next page. The store's rules in detail are unit-tested in
 * Node (test/persist/indexeddb.test.ts).
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import { beforeAll, expect, it } from 'vitest'
import type { OutboxHandle, PersistedOutbox } from '../../src/client/persist.js'
import type * as Persist from '../../src/persist/index.js'
import { browserSuite, waitInPage } from '../support/browser.js'
import { startPageServer } from '../support/browser-server.js'

const suite = browserSuite()

declare global {
  interface Window {
    persist?: typeof Persist
    /** Set by /persist.html?open=<name>: the store opened as the page started, as a socket opens it. */
    opening?: Promise<OutboxHandle>
    handle?: OutboxHandle
  }
}

beforeAll(() => {
  const built = fileURLToPath(new URL('../../dist/browser/persist.mjs', import.meta.url))
  if (!process.env.TETHERSOCKET_DIST && !existsSync(built))
    throw new Error(`${built} is missing: run \`npm run build\` first (\`npm test\` builds)`)
})

/** An outbox as the page sees it, binary payloads as byte arrays (to cross into the test). */
interface Seen {
  id: string
  session?: unknown
  entries: { position: number; seq: number; payload: string | number[] }[]
  orphans: { id: string; entries: { position: number; payload: string | number[] }[] }[]
  lost: string | null
  held: string[]
}

async function load(page: Page, url: string): Promise<void> {
  await page.goto(url)
  await waitInPage(page, () => typeof window.persist === 'object', 'dist/browser/persist.mjs to load')
}

/** Opens the page's outbox of `name`, or takes the one it opened as it started; keeps it as `window.handle` and says what it found. */
function open(page: Page, name = 'chat'): Promise<Seen> {
  return page.evaluate(async (name) => {
    const show = (outbox: PersistedOutbox) =>
      outbox.entries.map((e) => ({
        position: e.position,
        seq: e.seq,
        payload: typeof e.payload === 'string' ? e.payload : Array.from(new Uint8Array(e.payload)),
      }))
    const handle = await (window.opening ?? window.persist!.indexedDBStore(name).open())
    window.handle = handle
    const { held = [] } = await navigator.locks.query()
    return {
      id: handle.opened.id,
      ...(handle.opened.session && { session: handle.opened.session }),
      entries: show(handle.opened),
      orphans: handle.orphans.map((orphan) => ({ id: orphan.id, entries: show(orphan) })),
      lost: handle.lost ? `${handle.lost.reason}: ${handle.lost.message}` : null,
      held: held.map((lock) => lock.name ?? '').sort(),
    }
  }, name)
}

it('keeps the outbox across a reload; a duplicated tab gets its own while the first holds the lock; a closed tab leaves an orphan', async () => {
  const server = await startPageServer()
  suite.defer(() => server.close())
  const { page, context, errors } = await suite.open()
  const url = `${server.origin}/persist.html`

  await load(page, url)
  const first = await open(page)
  expect(first).toMatchObject({ entries: [], orphans: [], lost: null, held: [`tethersocket:chat:${first.id}`] })
  await page.evaluate(async () => {
    const handle = window.handle!
    await handle.commit({
      put: [{ position: 0, seq: 1, payload: '{"text":"one"}' }],
      session: { id: 'session-1', delivered: 0, sent: 1, acked: 0 },
    })
    await handle.commit({
      put: [
        { position: 1, seq: 2, payload: new Uint8Array([0, 1, 254, 255]).buffer },
        { position: 2, seq: 0, payload: 'three' },
      ],
    })
    await handle.commit({ remove: [2] })
  })
  expect(await page.evaluate(() => sessionStorage.getItem('tethersocket:chat'))).toBe(first.id)

  // A reload: the browser releases the old page's lock, and the new page, opening its store as
  // it starts, reopens the same outbox.
  await load(page, `${url}?open=chat`)
  for (let reload = 0; reload < 5; reload++) {
    if (reload > 0) await page.reload()
    await waitInPage(page, () => typeof window.persist === 'object', 'dist/browser/persist.mjs to load after the reload')
    const again = await open(page)
    expect(again).toEqual({
      id: first.id,
      session: { id: 'session-1', delivered: 0, sent: 1, acked: 0 },
      entries: [
        { position: 0, seq: 1, payload: '{"text":"one"}' },
        { position: 1, seq: 2, payload: [0, 1, 254, 255] },
      ],
      orphans: [],
      lost: null,
      held: [`tethersocket:chat:${first.id}`],
    })
  }

  // A duplicated tab: a second page of the same origin with a copy of the first one's sessionStorage.
  const copied = await page.evaluate(() => Object.entries(sessionStorage))
  const duplicate = await context.newPage()
  duplicate.on('pageerror', (error) => errors.push(`${error.name}: ${error.message}`))
  await load(duplicate, url)
  await duplicate.evaluate((items) => {
    for (const [key, value] of items) sessionStorage.setItem(key, value)
  }, copied)
  expect(await duplicate.evaluate(() => sessionStorage.getItem('tethersocket:chat'))).toBe(first.id)
  const second = await open(duplicate)
  expect(second.id).not.toBe(first.id)
  expect(second).toMatchObject({ entries: [], orphans: [], lost: null })
  expect(second.held).toEqual([`tethersocket:chat:${first.id}`, `tethersocket:chat:${second.id}`].sort())
  expect(await duplicate.evaluate(() => sessionStorage.getItem('tethersocket:chat'))).toBe(second.id)
  expect(await page.evaluate(() => sessionStorage.getItem('tethersocket:chat'))).toBe(first.id)

  // The duplicate is closed with a message pending: the next page gets it as an orphan, and adopts it.
  await duplicate.evaluate(() => window.handle!.commit({ put: [{ position: 0, seq: 0, payload: 'left behind' }] }))
  await duplicate.close()
  const third = await context.newPage()
  third.on('pageerror', (error) => errors.push(`${error.name}: ${error.message}`))
  await load(third, url)
  const opened = await open(third)
  expect(opened.orphans).toEqual([{ id: second.id, entries: [{ position: 0, seq: 0, payload: 'left behind' }] }])
  const adopted = await third.evaluate(async () => {
    const handle = window.handle!
    const result = await handle.adopt(handle.orphans[0])
    const { held = [] } = await navigator.locks.query()
    return { entries: result.entries.map((e) => [e.position, e.payload]), held: held.map((lock) => lock.name ?? '').sort() }
  })
  expect(adopted).toEqual({
    entries: [[0, 'left behind']],
    held: [`tethersocket:chat:${first.id}`, `tethersocket:chat:${opened.id}`].sort(),
  })

  expect(typeof (await third.evaluate(() => window.persist!.requestPersistentStorage()))).toBe('boolean')
  expect(errors).toEqual([])
})
