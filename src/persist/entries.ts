/**
 * Checking what a caller gives the store (a wrong value would abort the whole transaction with a
 * platform error that names nothing), and the entries and sessions as the store keeps them.
 * @module
 */
import type { PersistChanges, PersistedEntry, PersistedSession } from '../client/persist.js'
import { DEV } from '../dev.js'
import { OptionError } from '../errors.js'

const isBinary = (value: unknown): value is ArrayBuffer => Object.prototype.toString.call(value) === '[object ArrayBuffer]'
const isNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value)
/** A time, or Infinity for "never" (as the client's outbox keeps it). */
const isTime = (value: unknown): value is number => typeof value === 'number' && !Number.isNaN(value)

function shown(value: unknown): string {
  if (isBinary(value)) return 'an ArrayBuffer'
  if (typeof value === 'number' || typeof value === 'bigint' || value === undefined) return String(value)
  try {
    return JSON.stringify(value)?.slice(0, 80) ?? typeof value
  } catch {
    return typeof value
  }
}

/** Throws an OptionError when not `ok` (in production builds the check stays; `what` is '' there). */
function check(ok: boolean, what: string, value: unknown): void {
  if (!ok) throw new OptionError(DEV ? `commit(): ${what}; got ${shown(value)}` : '')
}

/**
 * `entry` as the store keeps it: only the fields it has, and a binary payload copied (the store
 * rewrites it in later snapshots, which must hold the bytes committed now). Throws an OptionError
 * naming the bad field.
 */
export function storedEntry(entry: PersistedEntry): PersistedEntry {
  check(typeof entry === 'object' && entry !== null, DEV ? 'each entry of `put` must be an object' : '', entry)
  const { position, seq, payload, requestId, staleAt, deadline, key, origin } = entry
  check(isNumber(position), DEV ? 'an entry `position` must be a finite number' : '', position)
  check(isNumber(seq), DEV ? 'an entry `seq` must be a finite number' : '', seq)
  check(typeof payload === 'string' || isBinary(payload), DEV ? 'an entry `payload` must be a string or an ArrayBuffer' : '', payload)
  check(requestId === undefined || isNumber(requestId), DEV ? 'an entry `requestId` must be a number when given' : '', requestId)
  check(staleAt === undefined || isTime(staleAt), DEV ? 'an entry `staleAt` must be a number when given' : '', staleAt)
  check(deadline === undefined || isTime(deadline), DEV ? 'an entry `deadline` must be a number when given' : '', deadline)
  check(key === undefined || typeof key === 'string', DEV ? 'an entry `key` must be a string when given' : '', key)
  check(origin === undefined || typeof origin === 'string', DEV ? 'an entry `origin` must be a string when given' : '', origin)
  return {
    position,
    seq,
    payload: typeof payload === 'string' ? payload : payload.slice(0),
    ...(requestId !== undefined && { requestId }),
    ...(staleAt !== undefined && { staleAt }),
    ...(deadline !== undefined && { deadline }),
    ...(key !== undefined && { key }),
    ...(origin !== undefined && { origin }),
  }
}

/** The session as the store keeps it: its four fields only. */
export const storedSession = ({ id, delivered, sent, acked }: PersistedSession): PersistedSession => ({ id, delivered, sent, acked })

/** Checks a whole `commit()` argument; throws an OptionError naming the first bad part. */
export function checkChanges(changes: PersistChanges): void {
  check(typeof changes === 'object' && changes !== null, DEV ? 'changes must be an object' : '', changes)
  const { put, remove, session } = changes
  check(put === undefined || Array.isArray(put), DEV ? '`put` must be an array of entries' : '', put)
  check(
    remove === undefined || (Array.isArray(remove) && remove.every(isNumber)),
    DEV ? '`remove` must be an array of positions (numbers)' : '',
    remove,
  )
  if (session) checkSession(session)
  else check(session === undefined || session === null, DEV ? '`session` must be a session object, or null to clear it' : '', session)
}

function checkSession(session: PersistedSession): void {
  check(typeof session === 'object' && typeof session.id === 'string', DEV ? '`session.id` must be a string' : '', session)
  for (const field of ['delivered', 'sent', 'acked'] as const) {
    check(isNumber(session[field]), DEV ? `\`session.${field}\` must be a finite number` : '', session[field])
  }
}
