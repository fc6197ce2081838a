/**
 * Errors thrown by user code (an event listener, a binding's callback) must not break the
 * library code that called it, nor disappear: they are reported as uncaught, after the call.
 * @module
 */

/** Reports `error` like an uncaught exception (`reportError` where the platform has it), without throwing now. */
export function reportLater(error: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError
  if (report) report(error)
  else
    queueMicrotask(() => {
      throw error
    })
}
