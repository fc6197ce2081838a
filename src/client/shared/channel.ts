/**
 * What the tabs of one shared socket say to each other (option `shared`), on the
 * BroadcastChannel of their group: the messages as a discriminated union, the group's name,
 * and the check of what arrives (another tab may run another version of the page).
 *
 * One tab holds the connection (the holder, elected with a Web Lock); every socket of the group,
 * the holder page's own included, talks to it as a follower: it says `hello`, is `welcome`d,
 * sends its messages numbered per tab (`n`), and hears `accepted` (the message is in the
 * holder's durable outbox: a later holder delivers it), then `ack` (the server has it) or `res`
 * (a request's reply, or a failure). Server messages go to every tab (`msg`, `miss`), numbered as
 * the server numbered them in the session, so a tab drops what it already had.
 * @module
 */
import { randomHex } from '../../random.js'

/** A tab's message as it travels: its number in the tab, its JSON text, and whether it is a request. */
export type Outgoing = readonly [n: number, payload: string, request: 0 | 1]

/** A failure as it travels between tabs (an Error does not keep its class across tabs). */
export interface Failure {
  readonly name: string
  readonly code: string
  readonly message: string
}

/** From a follower to the holder. `tab` names the sending socket; `h` the holder it speaks to. */
export type FollowerMessage =
  | {
      readonly t: 'hello'
      readonly tab: string
      /** The URL and protocols this tab would connect with: a holder with others refuses (principal). */
      readonly url: string
      readonly protocols: readonly string[]
      /** Numbers this tab wrote that are not finished yet: the holder says which are (`done`). */
      readonly pending: readonly number[]
      /** Of those, the ones a holder said it accepted: the shared outbox has them, they are not written again. */
      readonly accepted: readonly number[]
      /** The session and the last server sequence number this tab delivered, to resend what it missed. */
      readonly sid: string | undefined
      readonly last: number
    }
  | { readonly t: 'send'; readonly tab: string; readonly h: string; readonly m: readonly Outgoing[] }
  | { readonly t: 'bye'; readonly tab: string; readonly h: string }
  /** The tab's `reconnect()`: try the connection now, when an attempt is waiting. */
  | { readonly t: 'retry'; readonly tab: string; readonly h: string }

/** From the holder. `to` names the one tab a message is for; without it, it is for every tab. */
export type HolderMessage =
  /** A tab took over the connection: followers of another holder go to it. */
  | { readonly t: 'holder'; readonly h: string }
  | {
      readonly t: 'welcome'
      readonly h: string
      readonly to: string
      readonly sid: string
      /** The last server sequence number the holder delivered (a new tab starts after it). */
      readonly last: number
      /** Of the numbers the hello said were pending: those finished, whose `ack` this tab missed (a request's reply, when still known, follows as `res`). */
      readonly done: readonly number[]
    }
  | { readonly t: 'refuse'; readonly h: string; readonly to: string; readonly why: string }
  | { readonly t: 'accepted'; readonly h: string; readonly to: string; readonly n: readonly number[] }
  | { readonly t: 'ack'; readonly h: string; readonly to: string; readonly n: readonly number[] }
  | { readonly t: 'res'; readonly h: string; readonly to: string; readonly n: number; readonly ok?: unknown; readonly err?: Failure }
  | {
      readonly t: 'msg'
      readonly h: string
      readonly to?: string
      readonly sid: string
      readonly s: number
      readonly d: unknown
      readonly tp?: string
      readonly re: boolean
    }
  | {
      readonly t: 'miss'
      readonly h: string
      readonly to?: string
      readonly sid: string
      readonly s: number
      readonly tp: string
      readonly count: number
      readonly re: boolean
    }
  /** The holder's connection is down (or the holder stepped down): followers wait for it, or for the next one. */
  | {
      readonly t: 'down'
      readonly h: string
      /** Said to one tab (an answer to its hello), or to all. */
      readonly to?: string
      readonly code: number
      readonly reason: string
      /** When the holder tries again, in ms from now (Infinity: once the network is back); absent when it does not say. */
      readonly retryIn?: number
    }

/**
 * The name of the group of sockets sharing `name` (true: the default group) for `url` (the URL as
 * given, or '' for a function): its BroadcastChannel's and its Web Lock's.
 */
export function groupName(name: string | true, url: string): string {
  return `tethersocket:shared:${name === true ? '' : name}:${url}`
}

const isString = (value: unknown): value is string => typeof value === 'string'
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
const isCounts = (value: unknown): value is number[] => Array.isArray(value) && value.every(isCount)
const isDelay = (value: unknown): value is number => typeof value === 'number' && value >= 0
const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null

/**
 * A message from the holder, or undefined for anything else (a follower's message, another
 * version's, garbage): a tab ignores what it cannot read rather than trusting it.
 */
export function holderMessage(data: unknown): HolderMessage | undefined {
  if (!isRecord(data) || !isString(data.h)) return undefined
  const to = data.to === undefined || isString(data.to)
  switch (data.t) {
    case 'holder':
      return data as HolderMessage
    case 'welcome':
      return isString(data.to) && isString(data.sid) && isCount(data.last) && isCounts(data.done) ? (data as HolderMessage) : undefined
    case 'refuse':
      return isString(data.to) && isString(data.why) ? (data as HolderMessage) : undefined
    case 'accepted':
    case 'ack':
      return isString(data.to) && isCounts(data.n) ? (data as HolderMessage) : undefined
    case 'res':
      return isString(data.to) && isCount(data.n) && (data.err === undefined || isFailure(data.err)) ? (data as HolderMessage) : undefined
    case 'msg':
      return to && isString(data.sid) && isCount(data.s) && (data.tp === undefined || isString(data.tp))
        ? (data as HolderMessage)
        : undefined
    case 'miss':
      return to && isString(data.sid) && isCount(data.s) && isString(data.tp) && isCount(data.count) ? (data as HolderMessage) : undefined
    case 'down':
      return to && isCount(data.code) && isString(data.reason) && (data.retryIn === undefined || isDelay(data.retryIn))
        ? (data as HolderMessage)
        : undefined
    default:
      return undefined
  }
}

const isFailure = (value: unknown): value is Failure =>
  isRecord(value) && isString(value.name) && isString(value.code) && isString(value.message)

const isOutgoing = (value: unknown): value is Outgoing =>
  Array.isArray(value) && value.length === 3 && isCount(value[0]) && isString(value[1]) && (value[2] === 0 || value[2] === 1)

/** A message from a follower, or undefined for anything else. */
export function followerMessage(data: unknown): FollowerMessage | undefined {
  if (!isRecord(data) || !isString(data.tab)) return undefined
  switch (data.t) {
    case 'hello':
      return isString(data.url) &&
        Array.isArray(data.protocols) &&
        data.protocols.every(isString) &&
        isCounts(data.pending) &&
        isCounts(data.accepted) &&
        (data.sid === undefined || isString(data.sid)) &&
        isCount(data.last)
        ? (data as FollowerMessage)
        : undefined
    case 'send':
      return isString(data.h) && Array.isArray(data.m) && data.m.every(isOutgoing) ? (data as FollowerMessage) : undefined
    case 'bye':
    case 'retry':
      return isString(data.h) ? (data as FollowerMessage) : undefined
    default:
      return undefined
  }
}

/** A random id for a tab's socket or a holder: 64 bits in hex. */
export const randomId = () => randomHex(8)
