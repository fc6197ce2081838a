/**
 * Asking the browser to keep this site's storage under pressure (`navigator.storage.persist()`).
 * @module
 */

/**
 * Asks the browser to keep this site's storage (the persisted outboxes with it) when it runs
 * short of space, instead of evicting it. Resolves with `true` when the storage is persistent;
 * `false` when the browser said no, has no such API (older browsers, Node), or failed. Each
 * browser decides by its own rules (Chromium by how the user engages with the site, without
 * asking; Firefox by asking the user), so call it after a user gesture, such as the first
 * message sent.
 *
 * It does not stop the user from clearing the site's data, nor is it promised to stop every
 * browser's own deletion rules (such as Safari's for sites not interacted with for seven days):
 * a page that finds its outbox deleted reports `'evicted'`.
 *
 * @example
 * ```ts
 * import { requestPersistentStorage } from 'tethersocket/persist'
 * sendButton.addEventListener('click', () => void requestPersistentStorage(), { once: true })
 * ```
 */
export async function requestPersistentStorage(): Promise<boolean> {
  const storage = (globalThis as { navigator?: { storage?: { persist?: () => Promise<boolean> } } }).navigator?.storage
  if (typeof storage?.persist !== 'function') return false
  try {
    return (await storage.persist()) === true
  } catch {
    return false
  }
}
