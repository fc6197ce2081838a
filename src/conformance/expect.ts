/**
 * Small assertions the rules share: each throws a Violation that says what the server did and
 * what the rule expected.
 * @module
 */
import { Violation } from './peer.js'
import type { Kit } from './run.js'

/** JSON text of a value, for comparisons and reports (object members in the order given). */
export const json = (value: unknown): string => JSON.stringify(value) ?? 'undefined'

/** Whether two JSON values are equal, whatever the order of object members. */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  const keysA = Object.keys(a)
  const keysB = Object.keys(b)
  if (keysA.length !== keysB.length) return false
  return keysA.every((key) => Object.hasOwn(b, key) && sameJson((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]))
}

/** Fails unless `actual` equals `expected` as JSON. */
export function expectJson(actual: unknown, expected: unknown, what: string, section?: string): void {
  if (!sameJson(actual, expected)) throw new Violation(`${what}: got ${json(actual)}, expected ${json(expected)}`, section)
}

/** Fails with `message` unless `condition` holds. */
export function check(condition: boolean, message: string, section?: string): asserts condition {
  if (!condition) throw new Violation(message, section)
}

/**
 * Sends `frames` on a new connection (after a new session's hello and its welcome, unless
 * `hello` is false) and expects the server to close it with `code`.
 */
export async function closesWith(
  kit: Kit,
  frames: (object | string | Buffer)[],
  code: number,
  what: string,
  { hello = true }: { hello?: boolean } = {},
): Promise<void> {
  const session = kit.session()
  if (hello) await session.open()
  else await session.connectOnly()
  const peer = session.connection
  for (const frame of frames) {
    if (Buffer.isBuffer(frame)) peer.sendBinary(frame)
    else peer.send(frame)
  }
  await peer.expectClose(code, what)
}
