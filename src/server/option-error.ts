/**
 * How the server's option checks say what is wrong: an {@link OptionError} naming the option
 * and showing the value given, like the client's.
 * @module
 */
import { OptionError } from '../errors.js'

/** A value as an option error shows it: strings quoted, an object's members one level deep. */
function shown(value: unknown, depth = 0): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  try {
    if (value !== null && typeof value === 'object' && depth === 0 && !Array.isArray(value)) {
      return `{ ${Object.entries(value)
        .map(([key, member]) => `${key}: ${shown(member, 1)}`)
        .join(', ')} }`
    }
    return String(value)
  } catch {
    return Object.prototype.toString.call(value) // a throwing getter or toString
  }
}

/** The error for a bad option, in the client's style: "options.X must be …; got …". */
export const optionError = (option: string, expected: string, value: unknown): OptionError =>
  new OptionError(`createTetherServer: options${option ? `.${option}` : ''} must be ${expected}; got ${shown(value)}`)
