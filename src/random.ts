/**
 * Random ids in hex (never a ':', which lock and channel names use as separator): the durable
 * outbox's outbox ids and the shared tabs' socket and holder ids.
 * @module
 */

/** `bytes` random bytes (crypto.getRandomValues) in hex. */
export function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (byte) => byte.toString(16).padStart(2, '0')).join('')
}
