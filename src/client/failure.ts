/**
 * What a failed connection attempt tells about its cause, in words a user can act on. The
 * platforms differ: `ws` puts the cause in the error event's `message` ("connect
 * ECONNREFUSED ...", "Unexpected server response: 404"), undici says only that the network
 * failed or the status was not 101, and browsers tell scripts nothing at all.
 * @module
 */

/** The part of a WebSocket `error` event read here. */
export interface ErrorEventLike {
  message?: unknown
  error?: unknown
}

/** Why an HTTP status refuses a WebSocket upgrade, for the statuses that need explaining. */
const STATUS_HINTS: Record<string, string> = {
  400: 'bad request (ws answers 400 for a path it does not serve)',
  401: 'unauthorized: credentials refused or missing',
  403: 'forbidden: origin or credentials refused',
  404: 'no WebSocket endpoint at this path',
}

/** The cause of a failed attempt as text, from its error event (if any) and its close. */
export function describeFailure(event: ErrorEventLike | undefined, close: { code: number; reason: string }): string {
  if (!event) return `closed before the socket was open (close code ${close.code}${close.reason ? `, ${close.reason}` : ''})`
  const text = typeof event.message === 'string' && event.message ? event.message : event.error instanceof Error ? event.error.message : ''
  // Browsers: a server that is down, a wrong path and a refused upgrade look alike to scripts.
  if (!text) return 'no detail given (browsers hide the cause from scripts; the console shows it)'
  const status = /server response: (\d+)/i.exec(text)?.[1]
  if (status) return `HTTP ${status}: ${STATUS_HINTS[status] ?? 'upgrade refused'} (${text})`
  return /ECONNREFUSED/.test(text) ? `connection refused (${text})` : text
}
