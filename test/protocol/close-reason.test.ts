import { describe, expect, it } from 'vitest'
import { cutReason, MAX_REASON_BYTES, utf8Length } from '../../src/protocol/close-reason.js'

describe('cutReason', () => {
  it('keeps a reason within 123 UTF-8 bytes as it is', () => {
    expect(cutReason('')).toBe('')
    expect(cutReason('x'.repeat(123))).toBe('x'.repeat(123))
    expect(cutReason('é'.repeat(61))).toBe('é'.repeat(61)) // 122 bytes
  })

  it('cuts by bytes, not characters, and never inside a character', () => {
    expect(cutReason('x'.repeat(200))).toBe('x'.repeat(123))
    expect(cutReason('é'.repeat(62))).toBe('é'.repeat(61)) // 124 bytes: 122 kept, half an é is not
    expect(cutReason('€'.repeat(42))).toBe('€'.repeat(41)) // 3 bytes each: 123 kept
    const emoji = cutReason('😀'.repeat(40)) // 4 bytes and 2 UTF-16 units each
    expect(emoji).toBe('😀'.repeat(30))
    expect(utf8Length(emoji)).toBe(120)
  })

  it('every result is within the limit and a prefix of the input', () => {
    for (const text of ['a', 'ü', '€', '😀', 'aü€😀', 'short'].map((s) => s.repeat(50))) {
      const cut = cutReason(text)
      expect(utf8Length(cut)).toBeLessThanOrEqual(MAX_REASON_BYTES)
      expect(text.startsWith(cut)).toBe(true)
      if (cut === text) continue
      const next = String.fromCodePoint(text.codePointAt(cut.length)!) // the character cut off first
      expect(utf8Length(cut + next)).toBeGreaterThan(MAX_REASON_BYTES)
    }
  })
})
