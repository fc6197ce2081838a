/**
 * What a socket with the `shared` option runs instead of a WebSocket and its protocol: reached
 * through the `persist` store (`tethersocket/persist`), which `shared` needs anyway, so that the
 * client's bundle carries only the few hooks the socket calls.
 * @module
 */
import type { SessionInfo } from '../wire/tether.js'
import type { ProtocolHost } from '../wire/types.js'
import { FollowerProtocol } from './follower.js'
import { type SharedHost, SharedTab, sharedPlatform } from './tab.js'

/** What the socket gives its shared parts: its side of the group ({@link SharedHost}, but the hello), and where a new session is said. */
export interface SocketSide extends Omit<SharedHost, 'hello' | 'heard'> {
  session(info: SessionInfo): void
}

/** A shared socket's protocol (this tab's side of the talk with the holder) and its place in the group. */
export interface SharedParts<In, Out> {
  readonly protocol: FollowerProtocol<In, Out>
  readonly tab: SharedTab
}

/**
 * The parts of a socket sharing the connection of group `name` for `url` (the URL as given, ''
 * for a function), or undefined where Web Locks or BroadcastChannel are missing (the socket then
 * has its own connection).
 */
export function share<In, Out>(
  name: true | string,
  url: string,
  host: ProtocolHost<In>,
  socket: SocketSide,
): SharedParts<In, Out> | undefined {
  const platform = sharedPlatform()
  if (!platform) return undefined
  const tab: SharedTab = new SharedTab(platform, name, url, {
    ...socket,
    hello: () => protocol.hello(),
    heard: (message) => protocol.heard(message),
  })
  const protocol = new FollowerProtocol<In, Out>(host, socket.session, tab, tab.recall())
  return { protocol, tab }
}
