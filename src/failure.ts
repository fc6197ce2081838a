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

/** Why an HTTP status refuses a WebSocket upgrade, for the statuses servers commonly answer with. */
const STATUS_HINTS: Record<number, string> = {
  400: 'bad request (a ws server answers 400 for a path it does not serve)',
  401: 'unauthorized: the server refused the credentials (or found none)',
  403: 'forbidden: the server refused this origin or these credentials',
  404: 'no WebSocket endpoint at this path',
  426: 'the server wants a plain HTTP request here, not a WebSocket upgrade',
  429: 'too many requests',
  500: 'server error',
  502: 'bad gateway',
  503: 'service unavailable',
}

const NO_DETAIL =
  'the platform gives no detail (browsers hide it from scripts: a server that is down, a wrong path and a refused upgrade look alike; the browser console shows which)'

/** The cause of a failed attempt as text, from its error event (if any) and its close. */
export function describeFailure(event: ErrorEventLike | undefined, close: { code: number; reason: string }): string {
  if (!event) return `the connection closed before the socket was open (close code ${close.code}${close.reason ? `, ${close.reason}` : ''})`
  const inner = event.error instanceof Error ? event.error.message : ''
  const text = typeof event.message === 'string' && event.message ? event.message : inner
  if (!text) return NO_DETAIL
  const status = /\bserver response: (\d{3})\b/i.exec(text)
  if (status) {
    const code = Number(status[1])
    const hint = STATUS_HINTS[code] ?? (code >= 500 ? 'server error' : 'the server refused the upgrade')
    return `HTTP ${code}: ${hint} (${text})`
  }
  if (/ECONNREFUSED/.test(text)) return `connection refused: nothing listens at this address (${text})`
  if (/ENOTFOUND|EAI_AGAIN/.test(text)) return `host name not found (${text})`
  return text
}
