// @vitest-environment node
/**
 * The journal (src/server/journal.ts): what a session held in a shared store records, and when.
 * A fake store link records each commit and answers when the test says; the outbox is real.
 */
import { describe, expect, it, vi } from 'vitest'
import { Journal, type JournalHost } from '../../src/server/journal.js'
import { type Outgoing, SessionOutbox } from '../../src/server/outbox.js'
import type { CommitBatch, CommitResult, StoreLink } from '../../src/server/store.js'

/** Lets queued microtasks (the per-tick commit, settled promises) run. */
async function microtasks(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve()
}

const entry = (payload: string, item?: number): Outgoing =>
  item === undefined ? { payload, size: payload.length } : { payload, size: payload.length, item }

function setup(recorded = { rx: 0, tx: 0, trimmed: 0 }) {
  const commits: Array<{ batch: CommitBatch; answer: (result: CommitResult) => void }> = []
  const link = {
    commit: vi.fn(
      (_id: string, batch: CommitBatch) =>
        new Promise<CommitResult>((resolve) => {
          commits.push({ batch: { ...batch, entries: batch.entries.map((e) => ({ ...e })) }, answer: resolve })
        }),
    ),
  } as unknown as StoreLink
  const outbox = new SessionOutbox({ maxQueue: 1000, maxQueueBytes: 1 << 30, maxPayload: 1 << 20 }, true)
  const host = { committed: vi.fn<JournalHost['committed']>(), failed: vi.fn<JournalHost['failed']>() }
  const journal = new Journal(link, 'S', 3, outbox, host, recorded)
  /** The last commit asked for, answered ok. */
  const ok = async (gap: string[] = [], waiting = 0) => {
    commits.at(-1)?.answer({ ok: true, gap: gap.map((payload) => ({ payload })), waiting })
    await microtasks()
  }
  /** What a connection would have been written so far: the payloads the outbox lets out. */
  const written = () => {
    const frames: string[] = []
    outbox.flush({ send: (frame) => frames.push(frame), close: () => {} })
    return frames.flatMap((frame) => (JSON.parse(frame) as { d: unknown[] }).d)
  }
  return { journal, outbox, host, commits, ok, written }
}

describe('commits', () => {
  it('what one tick delivered and sent is one commit; the ack and the messages follow its answer', async () => {
    const t = setup()
    t.journal.deliver(1, () => t.outbox.push(entry('"e1"', t.journal.handling)))
    t.journal.deliver(2, () => t.outbox.push(entry('"e2"', t.journal.handling)))
    t.journal.schedule()
    await microtasks()
    expect(t.commits).toHaveLength(1)
    expect(t.commits[0].batch).toMatchObject({ epoch: 3, rx: 2, base: 0, trim: 0, recorded: 0 })
    expect(t.commits[0].batch.entries.map((e) => e.payload)).toEqual(['"e1"', '"e2"'])
    expect(t.written()).toEqual([]) // not recorded yet: nothing goes out
    expect(t.journal.recordedRx).toBe(0)
    await t.ok()
    expect(t.journal.recordedRx).toBe(2)
    expect(t.host.committed).toHaveBeenCalledOnce()
    expect(t.written()).toEqual(['e1', 'e2'])
  })

  it('one commit in flight at a time: what comes meanwhile goes in the next one', async () => {
    const t = setup()
    t.journal.deliver(1, () => undefined)
    await microtasks()
    t.journal.deliver(2, () => undefined)
    t.outbox.push(entry('"x"'))
    t.journal.schedule()
    await microtasks()
    expect(t.commits).toHaveLength(1)
    await t.ok()
    expect(t.commits).toHaveLength(2)
    expect(t.commits[1].batch).toMatchObject({ rx: 2, base: 0, recorded: 1 })
    expect(t.commits[1].batch.entries.map((e) => e.payload)).toEqual(['"x"'])
  })

  it('with nothing to record, nothing is sent to the store', async () => {
    const t = setup()
    t.journal.schedule()
    await microtasks()
    expect(t.commits).toHaveLength(0)
  })

  it('the client acknowledging messages is a trim in the next commit', async () => {
    const t = setup()
    t.outbox.push(entry('"a"'))
    t.outbox.push(entry('"b"'))
    t.journal.schedule()
    await microtasks()
    await t.ok()
    t.outbox.acknowledge(2)
    t.journal.schedule()
    await microtasks()
    expect(t.commits[1].batch).toMatchObject({ trim: 2, base: 2, entries: [] })
  })
})

describe('an item whose handler returns a promise', () => {
  it('holds its record, and what it sent, until it settles; later sends of unrelated code wait behind it', async () => {
    const t = setup()
    let settle = () => {}
    t.journal.deliver(1, () => {
      t.outbox.push(entry('"reply to 1"', t.journal.handling))
      return new Promise<void>((resolve) => {
        settle = resolve
      })
    })
    t.journal.deliver(2, () => t.outbox.push(entry('"reply to 2"', t.journal.handling)))
    t.journal.schedule()
    await microtasks()
    expect(t.commits).toHaveLength(0) // nothing can be recorded: item 1 is not settled
    settle()
    await microtasks()
    expect(t.commits).toHaveLength(1)
    expect(t.commits[0].batch.rx).toBe(2)
    expect(t.commits[0].batch.entries.map((e) => e.payload)).toEqual(['"reply to 1"', '"reply to 2"'])
  })

  it("a request's reply is recorded with its request, ahead of a message another item still holds", async () => {
    const t = setup()
    let answer = () => {}
    // Request 1 is being answered; message 2 sends and holds its item.
    t.journal.deliver(1, () => new Promise<void>((resolve) => (answer = resolve)))
    t.journal.deliver(2, () => {
      t.outbox.push(entry('"noted"', t.journal.handling))
      return new Promise(() => {})
    })
    t.outbox.push(entry('"reply 1"', 1)) // queued behind 'noted'
    answer()
    await microtasks()
    expect(t.commits).toHaveLength(1)
    expect(t.commits[0].batch.rx).toBe(1)
    expect(t.commits[0].batch.entries.map((e) => e.payload)).toEqual(['"reply 1"'])
    await t.ok()
    expect(t.written()).toEqual(['reply 1']) // recorded, so written; 'noted' still waits for item 2
  })

  it('what a handler sends is its own: synchronously, after an await, and from a timer it started', async () => {
    const t = setup()
    let later = () => {}
    t.journal.deliver(1, async () => {
      t.outbox.push(entry('"sync"', t.journal.handling))
      await Promise.resolve()
      t.outbox.push(entry('"after await"', t.journal.handling))
      await new Promise<void>((resolve) => {
        later = () => {
          t.outbox.push(entry('"callback"', t.journal.handling))
          resolve()
        }
      })
    })
    await microtasks()
    expect(t.outbox.unrecorded(0).map((e) => e.item)).toEqual([1, 1])
    later()
    await microtasks()
    expect(t.commits[0].batch).toMatchObject({ rx: 1 })
    expect(t.commits[0].batch.entries.map((e) => e.payload)).toEqual(['"sync"', '"after await"', '"callback"'])
  })

  it("what is sent outside any handling is recorded at once, ahead of a held item's messages", async () => {
    const t = setup()
    t.journal.deliver(1, () => {
      t.outbox.push(entry('"held"', t.journal.handling))
      return new Promise(() => {})
    })
    expect(t.journal.handling).toBeUndefined() // outside the handler
    t.outbox.push(entry('"broadcast"', t.journal.handling))
    t.journal.schedule()
    await microtasks()
    expect(t.commits[0].batch).toMatchObject({ rx: 0 })
    expect(t.commits[0].batch.entries.map((e) => e.payload)).toEqual(['"broadcast"'])
    await t.ok()
    expect(t.written()).toEqual(['broadcast'])
  })

  it('a later item settled first is recorded only up to the held one', async () => {
    const t = setup()
    t.journal.deliver(1, () => undefined)
    t.journal.deliver(2, () => new Promise(() => {}))
    t.journal.deliver(3, () => undefined)
    t.journal.schedule()
    await microtasks()
    expect(t.commits[0].batch.rx).toBe(1)
  })

  it('drain does not wait for a held item: what waits for it stays behind', async () => {
    const t = setup()
    t.journal.deliver(1, () => {
      t.outbox.push(entry('"held"', t.journal.handling))
      return new Promise(() => {})
    })
    await expect(t.journal.drain()).resolves.toBeUndefined()
    expect(t.commits).toHaveLength(0)
  })

  it('stalled(): the oldest held item, once it began before `since` and a message it sent waits for it', async () => {
    const t = setup()
    vi.useFakeTimers({ now: 1000 })
    try {
      t.journal.deliver(1, () => {
        t.outbox.push(entry('"waits"', t.journal.handling))
        return new Promise(() => {})
      })
      expect(t.journal.stalled(999)).toBeUndefined() // began at 1000
      expect(t.journal.stalled(1000)).toBe(1)
    } finally {
      vi.useRealTimers()
    }
  })
})

describe('what the store answers', () => {
  it("another node's messages (the gap) go in first; this node's own are numbered after them", async () => {
    const t = setup()
    t.outbox.push(entry('"mine"'))
    t.journal.schedule()
    await microtasks()
    await t.ok(['"theirs 1"', '"theirs 2"'])
    expect(t.outbox.last).toBe(3)
    expect(t.written()).toEqual(['theirs 1', 'theirs 2', 'mine'])
  })

  it('pull() commits with nothing of its own, to bring what others appended', async () => {
    const t = setup()
    t.journal.pull()
    await microtasks()
    expect(t.commits).toHaveLength(1)
    await t.ok(['"from elsewhere"'])
    expect(t.written()).toEqual(['from elsewhere'])
  })

  it('fenced: the host is told, and nothing more is committed', async () => {
    const t = setup()
    t.outbox.push(entry('"a"'))
    t.journal.schedule()
    await microtasks()
    t.commits[0].answer({ ok: false, reason: 'fenced' })
    await microtasks()
    expect(t.host.failed).toHaveBeenCalledWith('fenced')
    t.outbox.push(entry('"b"'))
    t.journal.schedule()
    await microtasks()
    expect(t.commits).toHaveLength(1)
    expect(t.written()).toEqual([])
  })

  it('acknowledged messages that promises elsewhere wait on: the host is told how far', async () => {
    const t = setup()
    t.outbox.push(entry('"a"'))
    t.journal.schedule()
    await microtasks()
    await t.ok()
    t.outbox.acknowledge(1)
    t.journal.schedule()
    await microtasks()
    await t.ok([], 1)
    expect(t.host.committed).toHaveBeenLastCalledWith(0, 1)
  })
})
