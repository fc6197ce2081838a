/**
 * The WebSocket close reason is limited to 123 UTF-8 bytes (a control frame carries at most
 * 125 bytes, two of them the code). Implementations throw on a longer reason, so every reason
 * this library builds is cut here, and a user's reason is checked here before it is used.
 * @module
 */

/** The most UTF-8 bytes a close reason may have. */
export const MAX_REASON_BYTES = 123

/** UTF-8 bytes of one code point (a lone surrogate is encoded as U+FFFD: 3 bytes). */
const size = (char: string): number => {
  const code = char.codePointAt(0) as number
  return code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4
}

/** `text` cut to at most `max` UTF-8 bytes, never inside a character. */
export function cutReason(text: string, max = MAX_REASON_BYTES): string {
  let end = 0
  // Iterating by code point keeps surrogate pairs together.
  for (const char of text) {
    max -= size(char)
    if (max < 0) break
    end += char.length
  }
  return text.slice(0, end)
}

/** The length of `text` in UTF-8 bytes. */
export const utf8Length = (text: string): number => {
  let bytes = 0
  for (const char of text) bytes += size(char)
  return bytes
}
