/**
 * The durable outbox writes each tick's changes in one transaction, like the frames: a burst of
 * sends costs one commit before its frame leaves, not one per message nor one per step.
 */
import { afterEach, expect, it } from 'vitest'
import type { PersistChanges, PersistStore } from '../../src/client/persist.js'
import { restore } from '../../src/persist/restore.js'
import { Origin } from '../support/pages.js'
import { cleanupTether, startTether, tetherClient, urlOf, waitFor } from '../support/tether.js'

afterEach(cleanupTether)

/** `store`, with every commit it is asked for recorded. */
function counted(store: PersistStore, commits: PersistChanges[]): PersistStore {
  const wrapped: PersistStore = {
    name: store.name,
    open: async () => {
      const handle = await store.open()
      return {
        opened: handle.opened,
        orphans: handle.orphans,
        commit: (changes) => {
          commits.push(changes)
          return handle.commit(changes)
        },
        adopt: (orphan) => handle.adopt(orphan),
        close: () => handle.close(),
        discard: () => handle.discard(),
      }
    },
    restore: (context) => restore(wrapped, context),
  }
  return wrapped
}

it('records a burst of sends, their numbers and the session in one commit before the frame leaves', async () => {
  const server = await startTether()
  const origin = new Origin()
  const page = origin.page(origin.tab())
  const commits: PersistChanges[] = []
  let before: number | undefined
  server.on('message', () => {
    before ??= commits.length
  })
  const { sock } = tetherClient<unknown, { n: number }>(urlOf(server), { WebSocket: page.WebSocket, persist: counted(page.store, commits) })
  await waitFor(() => sock.state === 'open', 5000, 'open')
  const settledCommits = commits.length
  await Promise.all(Array.from({ length: 100 }, (_, n) => sock.send({ n })))
  expect(before! - settledCommits).toBe(1)
  const burst = commits[settledCommits]!
  expect(burst.put).toHaveLength(100)
  expect(burst.put!.map((entry) => entry.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
  expect(burst.session).toMatchObject({ sent: 100 })
})
