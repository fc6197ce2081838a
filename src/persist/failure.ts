/**
 * The store's errors: a {@link PersistError} whose message says what happened and what the
 * page does meanwhile, from the platform's error where there is one.
 * @module
 */
import { DEV } from '../dev.js'
import { PersistError, type PersistFailure } from '../errors.js'

const SEE = 'See docs/ERRORS.md#err_persist'

/**
 * A PersistError for `reason`, its message built from `what` (what happened). Callers write
 * `what` as `DEV ? '…' : ''`: a production build's message is the code and its anchor.
 */
export function persistError(reason: PersistFailure, what: string, cause?: unknown): PersistError {
  const detail = isError(cause) ? ` (${cause.name}: ${cause.message})` : ''
  return new PersistError(DEV ? `${what}${detail}. ${SEE}` : '', reason, cause === undefined ? undefined : { cause })
}

// A DOMException is not an Error instance everywhere (older engines, fakes): its name and message suffice.
const isError = (value: unknown): value is Error =>
  typeof value === 'object' && value !== null && typeof (value as Error).name === 'string' && typeof (value as Error).message === 'string'

/** Which failure the platform's error means: the quota, a newer schema, or storage that does not work. */
export function reasonOf(error: unknown): PersistFailure {
  const name = isError(error) ? error.name : ''
  if (name === 'QuotaExceededError') return 'quota'
  if (name === 'VersionError') return 'version'
  return 'unavailable'
}

/** The error for a failed write to the store `name`; `what` names it ("a commit"). */
export function writeError(error: unknown, name: string, what: string): PersistError {
  if (error instanceof PersistError) return error
  const reason = reasonOf(error)
  if (reason === 'quota') {
    return persistError(
      'quota',
      DEV
        ? `the browser's storage quota for this site is used up: ${what} to "${name}" was not written, nothing of it; what is pending is kept in memory only until space is freed (requestPersistentStorage() can raise the quota)`
        : '',
      error,
    )
  }
  return persistError(reason, DEV ? `IndexedDB failed to write ${what} to "${name}", and nothing of it was written` : '', error)
}
