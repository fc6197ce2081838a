/**
 * The close codes a shared socket's link ends with that are not failures (option `shared`);
 * they never go on the wire.
 * @module
 */

/** A link whose holder was replaced: the socket links to the new one at once, without backoff. */
export const HANDOVER = 4001
/** A link the holder refused (another principal): the socket gets a connection of its own. */
export const REFUSED = 4003
