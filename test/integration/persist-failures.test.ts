/**
 * Store failures with `persist`, against a real reference server: they are never silent (one
 * `error` event with a PersistError) and the socket goes on in memory only, losing nothing of
 * the running page. A commit that fails midway leaves no stored outbox behind, so a later page
 * restores nothing stale.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { PersistError } from '../../src/errors.js'
import { tabKey } from '../../src/persist/schema.js'
import { Origin } from '../support/pages.js'
import { eventually, gated, persistClient, received, stored } from '../support/persist.js'
import { cleanupTether, startTether, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

interface Msg {
  n: number
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)
const persistErrors = (errors: unknown[]) => errors.filter((e): e is PersistError => e instanceof PersistError)

describe('a store that cannot open', () => {
  it('without IndexedDB: one error event (unavailable), and the socket works in memory only', async () => {
    const server = await startTether()
    const got = received<Msg>(server)
    const origin = new Origin()
    const page = origin.page(origin.tab(), 'chat', { indexedDB: undefined })
    const c = persistClient<Msg, Msg>(page, urlOf(server))
    await expect(c.sock.send({ n: 1 })).resolves.toBeUndefined()
    const [session] = [...server.sessions.values()]
    await session!.send({ n: 2 })
    expect(got).toEqual([{ n: 1 }])
    expect(c.messages).toEqual([{ n: 2 }])
    expect(c.errors).toHaveLength(1)
    const [error] = persistErrors(c.errors)
    expect(error?.reason).toBe('unavailable')
    expect(error?.code).toBe('ERR_PERSIST')
    expect(error?.message).toMatch(/IndexedDB is not available.*memory only/)
    expect(await stored(origin)).toEqual([])
  })
})

describe('a commit that fails midway', () => {
  it('reports once, loses nothing of the running page, and leaves no stored outbox behind', async () => {
    const server = await startTether()
    const got = received<Msg>(server)
    const origin = new Origin()
    const tab = origin.tab()
    const page = origin.page(tab)
    const store = gated(page)
    const c = persistClient<Msg, Msg>(page, urlOf(server), { store: store.store })
    for (const n of range(0, 5)) await c.sock.send({ n })
    await waitFor(() => store.completed() === store.commits.length, 5000, 'every commit done')
    expect(await stored(origin)).toHaveLength(1)

    const quota = new PersistError("the browser's storage quota for this site is used up", 'quota')
    store.failNextCommit(quota)
    const sends: Promise<unknown>[] = []
    for (const n of range(5, 25)) {
      sends.push(c.sock.send({ n }))
      if (n % 5 === 0) await new Promise((resolve) => setTimeout(resolve, 1))
    }
    const [session] = [...server.sessions.values()]
    const pushed = range(0, 5).map((n) => session!.send({ n: 100 + n }))
    await Promise.all([...sends, ...pushed])
    expect(got.map((m) => m.n)).toEqual(range(0, 25))
    expect(c.messages.map((m) => m.n)).toEqual(range(100, 105))
    expect(c.errors).toEqual([quota])
    // Memory only from then on: no further commits, and nothing stored that a later page could restore.
    const commits = store.commits.length
    await c.sock.send({ n: 25 })
    expect(store.commits).toHaveLength(commits)
    await eventually(async () => (await stored(origin)).length === 0, 5000, 'the stored outbox deleted')
    expect(tab.getItem(tabKey('chat'))).toBeNull()

    // A reload afterwards: a new outbox and a new session, nothing restored, no errors.
    page.crash()
    const serverErrors: Error[] = []
    server.on('error', (error) => serverErrors.push(error))
    const b = persistClient<Msg, Msg>(origin.page(tab), urlOf(server))
    await b.sock.send({ n: 26 })
    expect(b.restored).toEqual([])
    expect(b.errors).toEqual([])
    expect(b.sessions).toEqual([expect.objectContaining({ previous: undefined })])
    expect(b.sock.sessionId).not.toBe(session!.id)
    expect(b.closes).toEqual([])
    expect(serverErrors).toEqual([])
    expect(got.at(-1)).toEqual({ n: 26 })
  })

  it('and a stored outbox that could not be deleted: the next page resumes from its stale state without a protocol error', async () => {
    const server = await startTether()
    const got = received<Msg>(server)
    const origin = new Origin()
    const tab = origin.tab()
    const page = origin.page(tab)
    const store = gated(page)
    const c = persistClient<Msg, Msg>(page, urlOf(server), { store: store.store })
    for (const n of range(0, 3)) await c.sock.send({ n })
    await waitFor(() => store.completed() === store.commits.length, 5000, 'every commit done')
    const failure = new PersistError('the disk failed', 'unavailable')
    store.failNextCommit(failure)
    store.failDiscard(failure)
    // The page goes on in memory: the server gets more than the stored outbox says was sent.
    for (const n of range(3, 8)) await c.sock.send({ n })
    page.crash()
    const b = persistClient<Msg, Msg>(origin.page(tab), urlOf(server))
    await b.sock.send({ n: 8 })
    expect(got.map((m) => m.n)).toEqual(range(0, 9))
    expect(b.errors).toEqual([])
    expect(b.closes).toEqual([])
    expect(b.sessions).toEqual([])
  })

  it('when it carries a delivery: the page acknowledges anyway (memory only), and the server keeps nothing', async () => {
    const server = await startTether()
    const origin = new Origin()
    const page = origin.page(origin.tab())
    const store = gated(page)
    const c = persistClient<Msg, Msg>(page, urlOf(server), { store: store.store })
    await waitFor(() => c.sock.state === 'open', 5000, 'open')
    await waitFor(() => store.completed() === store.commits.length, 5000, 'every commit done')
    store.failNextCommit(new PersistError('the database was closed under the page', 'evicted'))
    const [session] = [...server.sessions.values()]
    await Promise.all(range(0, 10).map((n) => session!.send({ n })))
    expect(c.messages.map((m) => m.n)).toEqual(range(0, 10))
    expect(session!.pending).toBe(0)
    expect(persistErrors(c.errors).map((e) => e.reason)).toEqual(['evicted'])
  })
})
