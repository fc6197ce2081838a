/**
 * An in-memory stand-in for the Web Locks API (`navigator.locks`), for unit tests in Node, which
 * has none before Node 22. One `FakeLockBroker` is the browser's lock manager for one origin;
 * `client()` gives each simulated page its own `navigator.locks`, and `end()` on it does what the
 * browser does when the page goes away: its locks are released, its waiting requests dropped.
 *
 * Exclusive locks only, with `ifAvailable` and FIFO waiting; `query()` lists held and pending
 * locks of every page as the real one does. The real browser behaviour is tested in Chromium
 * (test/browser/persist-store.test.ts).
 */

interface Waiter {
  client: number
  name: string
  grant: () => void
}

/** The locks of one origin, shared by its pages. */
export class FakeLockBroker {
  readonly #held = new Map<string, number>()
  readonly #waiting: Waiter[] = []
  #clients = 0

  /** A page's `navigator.locks`. */
  client(): FakeLocks {
    return new FakeLocks(this, ++this.#clients)
  }

  /** Names held now. */
  held(): string[] {
    return [...this.#held.keys()]
  }

  /** @internal */
  take(name: string, client: number): boolean {
    if (this.#held.has(name)) return false
    this.#held.set(name, client)
    return true
  }

  /** @internal */
  wait(waiter: Waiter): void {
    this.#waiting.push(waiter)
  }

  /** @internal Removes a waiting request; false when it was granted already. */
  withdraw(waiter: Waiter): boolean {
    const at = this.#waiting.indexOf(waiter)
    if (at < 0) return false
    this.#waiting.splice(at, 1)
    return true
  }

  /** @internal */
  release(name: string, client: number): void {
    if (this.#held.get(name) !== client) return
    this.#held.delete(name)
    const next = this.#waiting.findIndex((waiter) => waiter.name === name)
    if (next >= 0) {
      const [waiter] = this.#waiting.splice(next, 1)
      this.#held.set(name, waiter.client)
      waiter.grant()
    }
  }

  /** @internal */
  end(client: number): void {
    for (let i = this.#waiting.length - 1; i >= 0; i--) if (this.#waiting[i].client === client) this.#waiting.splice(i, 1)
    for (const [name, holder] of [...this.#held]) if (holder === client) this.release(name, client)
  }

  /** @internal */
  snapshot(): {
    held: { name: string; mode: 'exclusive'; clientId: string }[]
    pending: { name: string; mode: 'exclusive'; clientId: string }[]
  } {
    return {
      held: [...this.#held].map(([name, client]) => ({ name, mode: 'exclusive', clientId: String(client) })),
      pending: this.#waiting.map(({ name, client }) => ({ name, mode: 'exclusive', clientId: String(client) })),
    }
  }
}

/** One page's `navigator.locks`. */
export class FakeLocks {
  #ended = false

  constructor(
    readonly broker: FakeLockBroker,
    readonly id: number,
  ) {}

  /** `navigator.locks.request(name, options?, callback)`, exclusive mode. */
  request(
    name: string,
    options: { ifAvailable?: boolean; mode?: string; steal?: boolean; signal?: AbortSignal },
    callback: (lock: { name: string } | null) => unknown,
  ): Promise<unknown> {
    if (options.mode === 'shared' || options.steal)
      return Promise.reject(new Error('FakeLocks supports exclusive locks without steal only'))
    if (this.#ended) return Promise.reject(new DOMException('the page has gone away', 'InvalidStateError'))
    const run = async (granted: boolean) => {
      try {
        return await callback(granted ? { name } : null)
      } finally {
        if (granted) this.broker.release(name, this.id)
      }
    }
    if (this.broker.take(name, this.id)) return run(true)
    if (options.ifAvailable) return run(false)
    const { signal } = options
    if (signal?.aborted) return Promise.reject(new DOMException('the request was aborted', 'AbortError'))
    return new Promise<void>((grant, reject) => {
      const waiter = { client: this.id, name, grant }
      this.broker.wait(waiter)
      // A request withdrawn while it waits (as the `signal` option does in browsers).
      signal?.addEventListener('abort', () => {
        if (this.broker.withdraw(waiter)) reject(new DOMException('the request was aborted', 'AbortError'))
      })
    }).then(() => run(true))
  }

  /** `navigator.locks.query()`. */
  async query() {
    return this.broker.snapshot()
  }

  /** The page went away (closed or reloaded): its locks are released, even those whose callback never settled. */
  end(): void {
    this.#ended = true
    this.broker.end(this.id)
  }
}
