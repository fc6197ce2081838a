/**
 * The part of the Web Locks API the store uses: an outbox is owned by the page that holds its
 * lock, for as long as that page lives (the browser releases a closed page's locks).
 * @module
 */

/** A lock as `LockManager.query()` lists it. */
interface LockInfoLike {
  readonly name?: string
}

/** What the store needs of `navigator.locks`. */
export interface Locks {
  request(name: string, options: { ifAvailable: true }, callback: (lock: unknown) => unknown): Promise<unknown>
  query(): Promise<{ held?: readonly LockInfoLike[]; pending?: readonly LockInfoLike[] }>
}

/**
 * Takes the lock `name` if nobody holds it: resolves with the function that releases it, or
 * with `undefined` when it is taken. The lock is held until released (the callback's promise
 * stays pending until then), or until the page goes away.
 */
export function tryLock(locks: Locks, name: string): Promise<(() => void) | undefined> {
  return new Promise((resolve, reject) => {
    locks
      .request(name, { ifAvailable: true }, (lock) => {
        if (!lock) {
          resolve(undefined)
          return undefined
        }
        return new Promise<void>((release) => resolve(() => release()))
      })
      .catch(reject)
  })
}

/**
 * The names starting with `prefix` that some page holds or waits for. One snapshot instead of
 * probing each lock: a probe would hold the lock for a moment, and a page reopening its own
 * outbox at that moment would find it taken.
 */
export async function lockedNames(locks: Locks, prefix: string): Promise<Set<string>> {
  const { held = [], pending = [] } = await locks.query()
  const names = new Set<string>()
  for (const lock of [...held, ...pending]) if (lock.name?.startsWith(prefix)) names.add(lock.name)
  return names
}
