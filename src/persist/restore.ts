/**
 * Bringing back what previous pages left (option `persist`): the page's own outbox (this tab's
 * previous page, after a reload) and the orphans of pages closed with messages pending.
 *
 * What goes where:
 * - This tab's outbox: its session is taken up, its messages go first, in order, with the
 *   numbers they had (the server drops what it already has: exactly once).
 * - An orphan with a session, when this tab has none: this page continues that session, so its
 *   messages are delivered exactly once too (they go first: they were numbered in it).
 * - Every other orphan: its messages join this page's session, renumbered. One its page never
 *   wrote is delivered exactly once; one written to the old session and not acknowledged may
 *   reach the server a second time (as across an expired session). A request of it whose reply
 *   was still due fails: the reply belongs to the old session.
 *
 * Promises of a previous page cannot be kept: the `restored` event reports, per outbox, what
 * became of its messages once every one is finished.
 * @module
 */
import type {
  OutboxHandle,
  PersistedEntry,
  PersistedOutbox,
  PersistStore,
  RestoreContext,
  RestoredFailure,
  RestoredInfo,
  RestoredMessage,
  RestoringItem,
} from '../client/persist.js'
import { DEV } from '../dev.js'
import { DeliveryError, PersistError, type TetherError, TimeoutError } from '../errors.js'
import { persistError } from './failure.js'
import { Journal } from './journal.js'

/** One previous page's outbox as restored: its items and how they were placed. */
interface Restoring {
  readonly from: 'reload' | 'adopted'
  readonly outbox: PersistedOutbox
  /** Whether its session is continued (its numbers and request ids kept). */
  readonly continued: boolean
}

/** Numbered entries first (in number order: they were written so), then the rest in queue order. */
const inOrder = (a: PersistedEntry, b: PersistedEntry) =>
  (a.seq === 0 ? 1 : 0) - (b.seq === 0 ? 1 : 0) || a.seq - b.seq || a.position - b.position

/**
 * Opens the store and brings back what previous pages left, ahead of everything sent since the
 * socket was created. Rejects (a PersistError) when the store cannot be opened: nothing changed.
 * @returns the journal that keeps the outbox from now on; undefined when the socket no longer
 * wanted it (closed meanwhile: the outbox is released untouched, for a later page)
 */
export function restore<Out>(store: Pick<PersistStore, 'open'>, context: RestoreContext<Out>): Promise<Journal | undefined> {
  // One at a time per store: a socket closed while its store opened (a component mounted twice,
  // a socket replaced at once) holds the tab's outbox until it lets go; the next socket looks
  // for it only then, instead of opening a new one and leaving it for a later page.
  const run = (underWay.get(store) ?? Promise.resolve()).then(() => restoreNow(store, context))
  underWay.set(
    store,
    run.catch(() => undefined),
  )
  return run
}

/** The last restore of each store, settled or not. */
const underWay = new WeakMap<object, Promise<unknown>>()

async function restoreNow<Out>(store: Pick<PersistStore, 'open'>, context: RestoreContext<Out>): Promise<Journal | undefined> {
  let handle: OutboxHandle
  try {
    handle = await store.open()
  } catch (error) {
    throw error instanceof PersistError
      ? error
      : persistError('unavailable', DEV ? 'the persist store failed to open, so the outbox is kept in memory only' : '', error)
  }
  if (handle.lost) context.report(handle.lost)
  const adopted: PersistedOutbox[] = []
  for (const orphan of handle.orphans) {
    try {
      adopted.push(await handle.adopt(orphan))
    } catch (error) {
      // Another page took it first ('locked'): it delivers it. Anything else is worth saying.
      if ((error as PersistError).reason !== 'locked') context.report(error as PersistError)
    }
  }
  if (!context.wanted()) {
    handle.close()
    return undefined
  }
  return place(handle, adopted, context)
}

/** Places every restored outbox (synchronously, so no send slips in between) and starts the journal. */
function place<Out>(handle: OutboxHandle, adopted: PersistedOutbox[], context: RestoreContext<Out>): Journal {
  const { session: tether } = context
  const own = handle.opened
  // A session goes with the messages numbered in it: this tab's, else the first orphan's.
  // A socket opened again after close() keeps the session it has in memory.
  const live = tether?.snapshot() !== undefined
  const heir = tether && !live && !own.session ? adopted.find((orphan) => orphan.session) : undefined
  const order: Restoring[] = [
    ...(heir ? [{ from: 'adopted' as const, outbox: heir, continued: true }] : []),
    // Numbers of its own without its session (lost between an adoption and its first commit) are
    // not the heir's: renumbered.
    { from: 'reload', outbox: own, continued: own.session !== undefined },
    ...adopted.filter((orphan) => orphan !== heir).map((orphan) => ({ from: 'adopted' as const, outbox: orphan, continued: false })),
  ]
  const session = tether && !live ? (heir ?? own).session : undefined
  let last = -1
  for (const { outbox: previous } of order) for (const entry of previous.entries) last = Math.max(last, entry.position)
  // What is durable is this outbox's own session: a continued orphan's is not written here yet
  // (adopt() moved its entries, not its session), so the first commit writes it, and nothing
  // numbered in it is sent before that.
  const journal = new Journal(
    handle,
    { session: () => tether?.snapshot(), failed: context.failed, lazyRemovals: tether !== undefined },
    last,
    own.session,
  )
  if (session) tether?.resume(session)
  for (const { outbox: previous, continued } of order) {
    for (const entry of previous.entries) {
      if (continued && entry.requestId !== undefined) tether?.reserveRequestIds(entry.requestId)
    }
  }
  // Each outbox goes in ahead of what the outbox holds then: the last first, so that they end up in order.
  for (const restoring of [...order].reverse()) {
    const report = restoreOne(restoring, journal, context, session?.acked ?? 0)
    if (report) report.then(context.restored)
  }
  // Messages sent before the store opened come after all of those, and are recorded now.
  for (const entry of context.outbox.entries()) if (!journal.holds(entry)) journal.added(entry)
  context.start(journal)
  journal.touch()
  return journal
}

/** Restores one previous outbox's entries; resolves with its report once all are finished (undefined when it held none). */
function restoreOne<Out>(
  { from, outbox: previous, continued }: Restoring,
  journal: Journal,
  context: RestoreContext<Out>,
  acked: number,
): Promise<RestoredInfo<Out>> | undefined {
  const { session: tether } = context
  if (previous.entries.length === 0) return undefined
  const settled: Promise<Outcome>[] = []
  // What became of one message, for the report; with option `shared`, a tab's message's outcome
  // goes to its tab too (the holder passes it on).
  const settle = (data: unknown, stored: PersistedEntry, promise: Promise<unknown>) => {
    if (stored.origin !== undefined) context.held?.(stored.origin, promise)
    settled.push(outcomeOf(data, promise, stored.origin))
  }
  const entries = [...previous.entries].sort(inOrder)
  const now = Date.now()
  const items: RestoringItem[] = []
  const placed: PersistedEntry[] = []
  for (const stored of entries) {
    const data = decode(stored.payload, tether !== undefined)
    const deadline = stored.deadline ?? Number.POSITIVE_INFINITY
    const staleAt = stored.staleAt ?? Number.POSITIVE_INFINITY
    const options = {
      ...(stored.origin !== undefined && { origin: stored.origin }),
      deadline,
      staleAt,
      timeout: deadline === Number.POSITIVE_INFINITY ? undefined : Math.max(0, deadline - now),
      ttl: staleAt === Number.POSITIVE_INFINITY ? undefined : Math.max(0, staleAt - now),
      ...(stored.key !== undefined && { key: stored.key }),
    }
    const isRequest = tether !== undefined && stored.requestId !== undefined
    const expired = stored.seq === 0 ? expiredWhileAway(staleAt, deadline, now) : undefined
    if (expired) {
      // Never written: dropped here, with why (the outbox would say "after waiting 0 ms").
      journal.drop(stored.position, { ...stored, requestId: stored.requestId, deadline, staleAt, key: undefined, origin: undefined })
      settle(data, stored, Promise.reject(new TimeoutError(expired.why, { data })))
      continue
    }
    if (isRequest && continued && stored.seq !== 0 && stored.seq <= acked) {
      // Acknowledged before the reload: only its reply is still to come.
      const { entry, promise } = tether.awaitReply({
        data,
        payload: stored.payload,
        seq: stored.seq,
        options: { ...options, requestId: stored.requestId },
      })
      journal.place(entry, stored.position)
      settle(data, stored, promise)
      continue
    }
    if (isRequest && !continued && stored.seq !== 0 && stored.seq <= (previous.session?.acked ?? 0)) {
      journal.drop(stored.position, { ...stored, requestId: stored.requestId, deadline: 0, staleAt: 0, key: undefined, origin: undefined })
      settle(
        data,
        stored,
        Promise.reject(
          new DeliveryError(
            DEV
              ? 'the page that made this request was closed before its reply arrived, and its session is not continued: the reply is lost (the server did handle the request)'
              : '',
            { data },
          ),
        ),
      )
      continue
    }
    items.push({
      data,
      payload: stored.payload,
      seq: continued ? stored.seq : 0,
      options: isRequest ? { ...options, requestId: continued ? stored.requestId : tether.nextRequestId() } : options,
    })
    placed.push(stored)
  }
  const restored = context.outbox.restore(items)
  restored.forEach(({ entry, promise, kept }, i) => {
    const stored = placed[i] as PersistedEntry
    if (!kept) journal.drop(stored.position, entry)
    else {
      journal.place(entry, stored.position)
      // Renumbered or given a new request id: recorded again.
      if (entry.seq !== stored.seq || entry.requestId !== stored.requestId) journal.numbered(entry)
    }
    settle((items[i] as RestoringItem).data, stored, promise)
  })
  return Promise.all(settled).then((outcomes) => {
    const delivered: RestoredMessage<Out>[] = []
    const failed: RestoredFailure<Out>[] = []
    for (const { data, outcome, origin } of outcomes) {
      // Option `shared`: which tab sent it (the holder reports only those of tabs gone).
      const tagged = origin === undefined ? {} : { origin }
      if (outcome.status === 'rejected') failed.push({ data: data as Out, error: outcome.reason as TetherError, ...tagged })
      else
        delivered.push(
          outcome.value === undefined ? { data: data as Out, ...tagged } : { data: data as Out, reply: outcome.value, ...tagged },
        )
    }
    return { from, delivered, failed }
  })
}

/** The message a stored payload holds: tether mode's JSON text parsed (what a raw-mode page left under the same name stays as it is). */
function decode(payload: string | ArrayBuffer, json: boolean): unknown {
  if (!json || typeof payload !== 'string') return payload
  try {
    return JSON.parse(payload)
  } catch {
    return payload
  }
}

/** Why a message never written is given up on at once: its ttl or its timeout ran out while no page was open. */
function expiredWhileAway(staleAt: number, deadline: number, now: number): { why: string } | undefined {
  const at = (time: number) => new Date(time).toISOString()
  if (staleAt <= now) {
    return {
      why: DEV ? `dropped unsent: its ttl (the send's ttl, or queue.ttl) ran out at ${at(staleAt)}, while no page was open to send it` : '',
    }
  }
  if (deadline <= now) {
    return {
      why: DEV
        ? `not sent: its timeout (the send's timeout, ackTimeout or requestTimeout) passed at ${at(deadline)}, while no page was open to send it`
        : '',
    }
  }
  return undefined
}

interface Outcome {
  data: unknown
  outcome: PromiseSettledResult<unknown>
  origin?: string
}

function outcomeOf(data: unknown, promise: Promise<unknown>, origin?: string): Promise<Outcome> {
  const tagged = origin === undefined ? {} : { origin }
  return promise.then(
    (value) => ({ data, outcome: { status: 'fulfilled', value }, ...tagged }),
    (reason: unknown) => ({ data, outcome: { status: 'rejected', reason }, ...tagged }),
  )
}
