/**
 * Signals from the browser that change what reconnecting should do: the network went
 * offline or came back, the page became visible again. In Node (no `window`, no
 * `document`) every watcher is a no-op and the network counts as online.
 * @module
 */

/** What the socket wants to hear about. */
export interface EnvironmentHandlers {
  /** The browser reports the network back (`online` event). */
  online(): void
  /** The browser reports the network gone (`offline` event). */
  offline(): void
  /** The page became visible again after being hidden. */
  visible(): void
}

interface EventSource {
  addEventListener(type: string, listener: () => void): void
  removeEventListener(type: string, listener: () => void): void
}

const g = globalThis as unknown as {
  navigator?: { onLine?: boolean }
  document?: EventSource & { visibilityState?: string }
  addEventListener?: EventSource['addEventListener']
  removeEventListener?: EventSource['removeEventListener']
}

/** False only when the browser says it is offline; attempts then would fail anyway. */
export const isOnline = (): boolean => g.navigator?.onLine !== false

/** Subscribes to online/offline/visibility changes; returns the function that unsubscribes. */
export function watchEnvironment(handlers: EnvironmentHandlers): () => void {
  const win = typeof g.addEventListener === 'function' && typeof g.removeEventListener === 'function' ? (g as EventSource) : undefined
  const doc = g.document && typeof g.document.addEventListener === 'function' ? g.document : undefined
  const online = () => handlers.online()
  const offline = () => handlers.offline()
  const visibility = () => {
    if (doc?.visibilityState === 'visible') handlers.visible()
  }
  win?.addEventListener('online', online)
  win?.addEventListener('offline', offline)
  doc?.addEventListener('visibilitychange', visibility)
  return () => {
    win?.removeEventListener('online', online)
    win?.removeEventListener('offline', offline)
    doc?.removeEventListener('visibilitychange', visibility)
  }
}
