/**
 * A real session store whose link holds back one answer of one method, once armed, until the
 * test lets it go: a slow network or store, at the moment a test needs it.
 */
import type { SessionStore, StoreLink } from '../../src/server/index.js'

type Gated = 'commit' | 'claim' | 'broadcastsAfter' | 'member'

/**
 * Wraps `store`: once `gate.arm()` is called, the next call of `method` is held (`held` counts
 * it) until `gate.release()`: after the store answered (`when: 'after'`, the default: the answer
 * is late) or before it is asked (`'before'`: the call itself is late).
 */
export function holdingOne(store: SessionStore, method: Gated, when: 'before' | 'after' = 'after') {
  let armed = false
  let letGo: (() => void) | undefined
  const gate = {
    held: 0,
    arm() {
      armed = true
    },
    release() {
      letGo?.()
    },
  }
  const hold = async () => {
    if (!armed) return
    armed = false
    gate.held++
    await new Promise<void>((resolve) => {
      letGo = resolve
    })
  }
  const wrapped: SessionStore = {
    async open(listener) {
      const link = await store.open(listener)
      const call = link[method].bind(link) as (...args: unknown[]) => Promise<unknown>
      const held = async (...args: unknown[]) => {
        if (when === 'before') await hold()
        const result = await call(...args)
        if (when === 'after') await hold()
        return result
      }
      return { ...link, [method]: held } as StoreLink
    },
  }
  return { store: wrapped, gate }
}
