/**
 * A `sessionStorage` for unit tests in Node: one per simulated tab; `copy()` is what a duplicated
 * tab gets (the browser copies the origin tab's session storage into it).
 */
export class MemoryStorage implements Storage {
  readonly #items = new Map<string, string>()

  get length(): number {
    return this.#items.size
  }

  getItem(key: string): string | null {
    return this.#items.get(key) ?? null
  }

  setItem(key: string, value: string): void {
    this.#items.set(key, String(value))
  }

  removeItem(key: string): void {
    this.#items.delete(key)
  }

  clear(): void {
    this.#items.clear()
  }

  key(index: number): string | null {
    return [...this.#items.keys()][index] ?? null
  }

  /** A duplicated tab's copy. */
  copy(): MemoryStorage {
    const copy = new MemoryStorage()
    for (const [key, value] of this.#items) copy.setItem(key, value)
    return copy
  }
}
