/** A promise's outcome, readable synchronously once microtasks have run. */
export interface Tracked {
  status: 'pending' | 'resolved' | 'rejected'
  value?: unknown
  error?: unknown
}

/** Follows `promise`, so a test can assert on its outcome (or that it is still pending) at any point. */
export function track(promise: Promise<unknown>): Tracked {
  const tracked: Tracked = { status: 'pending' }
  promise.then(
    (value) => Object.assign(tracked, { status: 'resolved', value }),
    (error: unknown) => Object.assign(tracked, { status: 'rejected', error }),
  )
  return tracked
}
