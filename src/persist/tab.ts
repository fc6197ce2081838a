/**
 * The tab's memory of its outbox: the id in `sessionStorage`, which survives a reload and is
 * copied into a duplicated tab. Storage that throws (disabled, sandboxed) counts as empty.
 * @module
 */

/** The id this tab kept under `key`, if any. */
export function readTab(storage: Storage | undefined, key: string): string | undefined {
  try {
    return storage?.getItem(key) ?? undefined
  } catch {
    return undefined
  }
}

/** Keeps `id` under `key` for this tab's next page. */
export function writeTab(storage: Storage | undefined, key: string, id: string): void {
  try {
    storage?.setItem(key, id)
  } catch {
    // Full or disabled: the next page opens a new outbox, and adopts this one as an orphan.
  }
}

/** Forgets `key` if it still names `id` (another outbox of this tab may have replaced it). */
export function forgetTab(storage: Storage | undefined, key: string, id: string): void {
  if (readTab(storage, key) !== id) return
  try {
    storage?.removeItem(key)
  } catch {
    // Nothing to forget then.
  }
}
