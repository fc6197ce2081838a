/**
 * Shared pieces of the property-based tests: hostile inputs (fast-check arbitraries) and a
 * check that no prototype was polluted by them.
 */
import fc from 'fast-check'
import { expect } from 'vitest'

/** Keys that have broken JSON handling elsewhere: prototype keys and the tether.v1 field names. */
export const hostileKeys = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'valueOf',
  'hasOwnProperty',
  't',
  's',
  'd',
  'id',
  'sid',
  'ack',
]

const key = fc.oneof(fc.constantFrom(...hostileKeys), fc.string({ maxLength: 6 }))

/**
 * JSON text written directly (not through JSON.stringify), so that it can hold what an object
 * cannot: duplicate keys, `"__proto__"` members at any depth, deep nesting, odd whitespace.
 */
export const hostileJsonText: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { maxDepth: 4, depthIdentifier: 'hostile-json' },
    fc.constantFrom('null', 'true', 'false', '0', '-0', '1e308', '-1.5e-7', '9007199254740993', '""', '"\\u0000"', '"\\ud800"'),
    fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v)),
    fc.array(tie('value'), { maxLength: 4 }).map((items) => `[${items.join(',')}]`),
    fc
      .array(fc.tuple(key, tie('value')), { maxLength: 5 })
      .map((members) => `{${members.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`),
    fc
      .tuple(fc.constantFrom(' ', '\n', '\t', '\r', ''), tie('value'), fc.constantFrom(' ', '\n', ''))
      .map(([before, v, after]) => `${before}${v}${after}`),
  ),
})).value

/** Binary data as a WebSocket delivers it. */
export const wireData = {
  bytes: fc.uint8Array({ maxLength: 64 }),
  /** An ArrayBuffer holding exactly the bytes (what the client's WebSocket delivers with binaryType 'arraybuffer'). */
  arrayBuffer: fc.uint8Array({ maxLength: 64 }).map((bytes) => bytes.slice().buffer as ArrayBuffer),
}

/** Strings of every kind: ASCII, whole graphemes, and any code unit (lone surrogates included). */
export const anyString = fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }))

/** Prototypes a polluting parser could reach. */
const prototypes: [string, object][] = [
  ['Object.prototype', Object.prototype],
  ['Array.prototype', Array.prototype],
  ['Function.prototype', Function.prototype],
  ['String.prototype', String.prototype],
  ['Number.prototype', Number.prototype],
  ['Boolean.prototype', Boolean.prototype],
  ['Map.prototype', Map.prototype],
  ['Promise.prototype', Promise.prototype],
]

export type PrototypeSnapshot = Record<string, PropertyKey[]>

/** The own keys of every watched prototype, now. */
export function prototypeSnapshot(): PrototypeSnapshot {
  return Object.fromEntries(prototypes.map(([name, proto]) => [name, Reflect.ownKeys(proto)]))
}

/** Fails when a prototype gained or lost keys since `before`, or a fresh object inherits something new. */
export function expectNoPollution(before: PrototypeSnapshot): void {
  expect(prototypeSnapshot()).toEqual(before)
  const probe = {} as Record<string, unknown>
  for (const name of ['polluted', 'hacked', 'isAdmin', 't', 's', 'd']) expect(probe[name], name).toBeUndefined()
  expect(Object.getPrototypeOf(probe)).toBe(Object.prototype)
  expect(Object.getPrototypeOf([])).toBe(Array.prototype)
}
