/**
 * The WebSocket close reason is limited to 123 UTF-8 bytes (a control frame carries at most
 * 125 bytes, two of them the code). Implementations throw on a longer reason, so every reason
 * this library builds is cut here, and a user's reason is checked here before it is used.
 * @module
 */

/** The most UTF-8 bytes a close reason may have. */
export const MAX_REASON_BYTES = 123

const encoder = /* @__PURE__ */ new TextEncoder()

/** The length of `text` in UTF-8 bytes. */
export const utf8Length = (text: string): number => encoder.encode(text).length

/** `text` cut to at most {@link MAX_REASON_BYTES} UTF-8 bytes, never inside a character. */
export function cutReason(text: string): string {
  if (text.length * 3 <= MAX_REASON_BYTES || utf8Length(text) <= MAX_REASON_BYTES) return text
  let bytes = 0
  let end = 0
  // Iterating by code point keeps surrogate pairs together.
  for (const char of text) {
    const size = utf8Length(char)
    if (bytes + size > MAX_REASON_BYTES) break
    bytes += size
    end += char.length
  }
  return text.slice(0, end)
}
