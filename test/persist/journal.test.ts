/**
 * The durable outbox's write-ahead log (src/persist/journal.ts) on an in-memory outbox handle
 * whose commits the test completes or fails one by one: what one tick's commit carries, one
 * commit in flight at a time, `afterDurable` waiting for the commit that holds what came before
 * it, and a failing store leaving the socket in memory only with the stored outbox discarded.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { DurableEntry, OutboxHandle, PersistChanges, PersistedSession } from '../../src/client/persist.js'
import { PersistError } from '../../src/errors.js'
import { Journal, LATER } from '../../src/persist/journal.js'

/** A handle keeping its outbox in memory; each commit waits until `complete()` or `fail()`. */
class MemoryHandle implements OutboxHandle {
  readonly opened = { id: 'own', entries: [] }
  readonly orphans = []
  readonly commits: PersistChanges[] = []
  /** What is durable: entries by position, and the session. */
  readonly entries = new Map<number, unknown>()
  session: PersistedSession | undefined
  discarded = 0
  closed = 0
  #pending: { changes: PersistChanges; resolve: () => void; reject: (error: unknown) => void }[] = []

  commit(changes: PersistChanges): Promise<void> {
    this.commits.push(changes)
    return new Promise((resolve, reject) => this.#pending.push({ changes, resolve, reject }))
  }

  /** Commits in flight. */
  get inFlight(): number {
    return this.#pending.length
  }

  /** Completes the oldest commit in flight (applying it), then lets the journal react. */
  async complete(): Promise<void> {
    const next = this.#pending.shift()
    if (!next) throw new Error('no commit in flight')
    for (const entry of next.changes.put ?? []) this.entries.set(entry.position, entry)
    for (const position of next.changes.remove ?? []) this.entries.delete(position)
    if (next.changes.session !== undefined) this.session = next.changes.session ?? undefined
    next.resolve()
    await ticks()
  }

  async fail(error: PersistError): Promise<void> {
    const next = this.#pending.shift()
    if (!next) throw new Error('no commit in flight')
    next.reject(error)
    await ticks()
  }

  adopt(): Promise<never> {
    throw new Error('not used')
  }

  close(): void {
    this.closed++
  }

  discard(): Promise<void> {
    this.discarded++
    this.entries.clear()
    this.session = undefined
    return Promise.resolve()
  }
}

/** Lets every microtask queued so far (and those they queue) run. */
async function ticks(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve()
}

function entry(payload: DurableEntry['payload'], more: Partial<DurableEntry> = {}): DurableEntry & { seq: number } {
  return {
    seq: 0,
    payload,
    requestId: undefined,
    deadline: Number.POSITIVE_INFINITY,
    staleAt: Number.POSITIVE_INFINITY,
    key: undefined,
    ...more,
  }
}

/** A journal on a memory handle, for a session the test moves by hand. */
function journal(durable?: PersistedSession, { lazyRemovals = false } = {}) {
  const handle = new MemoryHandle()
  let session: PersistedSession | undefined = durable
  const failures: PersistError[] = []
  const log = new Journal(handle, { session: () => session, failed: (error) => failures.push(error), lazyRemovals }, -1, durable)
  return {
    handle,
    log,
    failures,
    setSession(next: Partial<PersistedSession>) {
      session = { ...(session ?? { id: 's', delivered: 0, sent: 0, acked: 0 }), ...next }
    },
  }
}

describe('one commit per tick', () => {
  it('carries every entry added in a tick, and the session, in one commit', async () => {
    const { handle, log, setSession } = journal()
    const a = entry('{"n":1}')
    const b = entry('{"n":2}')
    log.added(a)
    log.added(b)
    setSession({ sent: 0 })
    log.touch()
    await ticks()
    expect(handle.commits).toEqual([
      {
        put: [
          { position: 0, seq: 0, payload: '{"n":1}' },
          { position: 1, seq: 0, payload: '{"n":2}' },
        ],
        remove: [],
        session: { id: 's', delivered: 0, sent: 0, acked: 0 },
      },
    ])
  })

  it('carries an entry with the number the same tick gave it after the entry was added (later in the tick)', async () => {
    const { handle, log, setSession } = journal()
    const a = entry('{"n":1}')
    log.added(a)
    // The protocol's flush numbers it in a microtask of the same tick.
    queueMicrotask(() => {
      a.seq = 1
      setSession({ sent: 1 })
      log.numbered(a)
    })
    await ticks()
    expect(handle.commits).toHaveLength(1)
    expect(handle.commits[0]!.put).toEqual([{ position: 0, seq: 1, payload: '{"n":1}' }])
    expect(handle.commits[0]!.session).toEqual(expect.objectContaining({ sent: 1 }))
  })

  it('writes nothing for an entry added and removed in the same tick, beyond the removal of its place', async () => {
    const { handle, log } = journal()
    const a = entry('x')
    log.added(a)
    log.removed(a)
    await ticks()
    expect(handle.commits).toEqual([{ put: [], remove: [0] }])
  })

  it('writes no session that did not change, and commits nothing when nothing changed', async () => {
    const session = { id: 's', delivered: 3, sent: 2, acked: 2 }
    const { handle, log } = journal(session)
    log.touch()
    const done: string[] = []
    log.afterDurable(() => done.push('ran'))
    await ticks()
    expect(handle.commits).toEqual([])
    expect(done).toEqual(['ran'])
  })

  it('keeps payloads as written: an ArrayBuffer, only the bytes of a view, never a Blob (kept in memory only)', async () => {
    const { handle, log } = journal()
    const bytes = new Uint8Array([9, 1, 2, 3, 9])
    log.added(entry(bytes.buffer.slice(1, 3)))
    log.added(entry(bytes.subarray(1, 4)))
    log.added(entry(new Blob(['b'])))
    log.added(entry('{"k":1}', { key: 'k', requestId: 7, deadline: 1000, staleAt: 500 }))
    await ticks()
    const put = handle.commits[0]!.put!
    expect(put.map((e) => e.position)).toEqual([0, 1, 3])
    expect([...new Uint8Array(put[0]!.payload as ArrayBuffer)]).toEqual([1, 2])
    expect([...new Uint8Array(put[1]!.payload as ArrayBuffer)]).toEqual([1, 2, 3])
    expect(put[2]).toEqual({ position: 3, seq: 0, payload: '{"k":1}', key: 'k', requestId: 7, deadline: 1000, staleAt: 500 })
  })
})

describe('one commit in flight', () => {
  it('gathers what changes while a commit is in flight into one next commit, started when the first completes', async () => {
    const { handle, log } = journal()
    const a = entry('a')
    log.added(a)
    await ticks()
    expect(handle.inFlight).toBe(1)
    const b = entry('b')
    const c = entry('c')
    log.added(b)
    await ticks()
    log.added(c)
    log.removed(a)
    await ticks()
    expect(handle.commits).toHaveLength(1)
    await handle.complete()
    expect(handle.commits).toHaveLength(2)
    expect(handle.commits[1]).toEqual({
      put: [
        { position: 1, seq: 0, payload: 'b' },
        { position: 2, seq: 0, payload: 'c' },
      ],
      remove: [0],
    })
    await handle.complete()
    expect([...handle.entries.keys()]).toEqual([1, 2])
  })

  it('runs afterDurable only once the commit holding what was recorded before it completed, not an earlier one', async () => {
    const { handle, log, setSession } = journal()
    setSession({ delivered: 1 })
    log.touch()
    await ticks()
    expect(handle.inFlight).toBe(1)
    setSession({ delivered: 2 })
    const done: number[] = []
    log.afterDurable(() => done.push(log.durable!.delivered))
    await ticks()
    await handle.complete()
    expect(done).toEqual([]) // that commit held delivered 1 only
    expect(log.durable?.delivered).toBe(1)
    await handle.complete()
    expect(done).toEqual([2])
  })

  it('an entry removed then kept (a request acknowledged, its reply to come) stays stored', async () => {
    const { handle, log } = journal()
    const request = entry('{"q":1}', { requestId: 1 })
    log.added(request)
    await ticks()
    await handle.complete()
    log.removed(request)
    log.keep(request)
    log.touch()
    await ticks()
    expect(handle.commits).toHaveLength(1)
    expect([...handle.entries.keys()]).toEqual([0])
  })
})

describe('a store that fails', () => {
  it('reports once, discards the stored outbox, runs what waited, and records nothing more', async () => {
    const { handle, log, failures, setSession } = journal()
    log.added(entry('a'))
    await ticks()
    await handle.complete()
    log.added(entry('b'))
    const done: string[] = []
    log.afterDurable(() => done.push('waited'))
    await ticks()
    const quota = new PersistError('quota exceeded', 'quota')
    await handle.fail(quota)
    expect(failures).toEqual([quota])
    expect(log.active).toBe(false)
    expect(handle.discarded).toBe(1)
    expect(handle.entries.size).toBe(0)
    expect(done).toEqual(['waited'])

    log.added(entry('c'))
    setSession({ delivered: 9 })
    log.touch()
    log.afterDurable(() => done.push('at once'))
    await ticks()
    expect(handle.commits).toHaveLength(2)
    expect(done).toEqual(['waited', 'at once'])
    expect(failures).toHaveLength(1)
  })

  it('end(): deletes the stored outbox once the last changes are written', async () => {
    const { handle, log } = journal()
    const a = entry('a')
    log.added(a)
    await ticks()
    log.removed(a)
    let ended = false
    void log.end().then(() => {
      ended = true
    })
    await ticks()
    expect(handle.discarded).toBe(0)
    await handle.complete()
    await handle.complete()
    expect(handle.discarded).toBe(1)
    expect(ended).toBe(true)
    expect(log.active).toBe(false)
  })
})

describe('removals that may wait (tether mode)', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it("records an acknowledgement's removals with the next commit, so a message sent alone costs one commit", async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const { handle, log } = journal(undefined, { lazyRemovals: true })
    const a = entry('{"n":1}')
    log.added(a)
    await ticks()
    expect(handle.commits).toHaveLength(1)
    await handle.complete()
    log.removed(a) // acknowledged
    await ticks()
    expect(handle.commits).toHaveLength(1) // nothing yet
    const b = entry('{"n":2}')
    log.added(b) // the next send carries the removal
    await ticks()
    expect(handle.commits).toHaveLength(2)
    await handle.complete()
    expect(handle.commits[1]).toMatchObject({ put: [expect.objectContaining({ position: 1 })], remove: [0] })
    vi.advanceTimersByTime(LATER)
    await ticks()
    expect(handle.commits).toHaveLength(2) // the timer was cleared by that commit
  })

  it('records them within LATER ms when no other commit comes', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const { handle, log } = journal(undefined, { lazyRemovals: true })
    const a = entry('{"n":1}')
    log.added(a)
    await ticks()
    await handle.complete()
    log.removed(a)
    vi.advanceTimersByTime(LATER - 1)
    await ticks()
    expect(handle.commits).toHaveLength(1)
    vi.advanceTimersByTime(1)
    await ticks()
    expect(handle.commits).toHaveLength(2)
    expect(handle.commits[1]).toMatchObject({ remove: [0] })
  })

  it('raw mode records removals in their tick (no resume would settle them)', async () => {
    const { handle, log } = journal()
    const a = entry('raw')
    log.added(a)
    await ticks()
    await handle.complete()
    log.removed(a)
    await ticks()
    expect(handle.commits).toHaveLength(2)
  })
})
