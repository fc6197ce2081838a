/**
 * Unknown option names, caught with a suggestion: `{ reconect: false }` names `reconnect`.
 * Shared by the client's and the server's option checks; imports nothing of either.
 * @module
 */

/** Edit distance (insertions, deletions, substitutions, and swaps of neighbours), small strings only. */
function distance(a: string, b: string): number {
  const rows: number[][] = []
  for (let i = 0; i <= a.length; i++) {
    rows.push([i])
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        rows[0][j] = j
        continue
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let best = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, rows[i - 2][j - 2] + 1)
      rows[i][j] = best
    }
  }
  return rows[a.length][b.length]
}

/** The known name `name` was most likely meant to be: same letters in another case, or at most a third of it mistyped. */
export function closest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1
  for (const candidate of known) {
    if (candidate.toLowerCase() === name.toLowerCase()) return candidate
    const d = distance(name.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

/**
 * The first own key of `given` that is not in `known`, described for an error message
 * (`'options.reconect is not an option (did you mean options.reconnect?)'`), or undefined.
 * @param path - how the object is named in the message (`'options'`, `'options.queue'`)
 */
export function unknownKey(path: string, given: object, known: readonly string[]): string | undefined {
  for (const key of Object.keys(given)) {
    if (known.includes(key)) continue
    const meant = closest(key, known)
    return `${path}.${key} is not an option${meant ? ` (did you mean ${path}.${meant}?)` : ''}; the options are: ${known.join(', ')}`
  }
  return undefined
}
