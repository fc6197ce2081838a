/**
 * The tab that holds a shared socket's connection, for every tab of its group (option
 * `shared`). It runs one socket of its own (a TetherSocket with the group's durable outbox, made
 * by socket.ts: {@link HeldSocket}) and serves the followers on the group's BroadcastChannel:
 * their messages become that socket's, tagged with where they came from (`origin`: tab and
 * number), and what the server acknowledges or answers goes back to the tab that sent it; server
 * messages go to every tab.
 *
 * Exactly once across a change of holder: a tab's message is `accepted` only once the shared
 * outbox has it on disk (with its origin), so the next holder, which adopts that outbox, delivers
 * it and tells the tab when it is done; a tab writes again only what was never accepted. Within
 * one holder, a tab's messages arrive in order, so any number it sent before is known.
 * @module
 */
import type { TetherError } from '../../errors.js'
import { perTick } from '../../protocol/frames.js'
import type { RestoredInfo } from '../persist.js'
import type { MessageInfo, MissedInfo } from '../wire/types.js'
import { type Failure, type FollowerMessage, followerMessage, type HolderMessage, randomId } from './channel.js'
import { HANDOVER } from './codes.js'
import type { ChannelClass } from './link.js'

/** What the holder hears from its socket. */
export interface HolderHooks {
  message(data: unknown, info: MessageInfo): void
  missed(info: MissedInfo): void
  /** The connection opened (the restore, if any, is done). */
  opened(): void
  /** The connection ended (`willReconnect` or not). */
  closed(code: number, reason: string, willReconnect: boolean): void
  /** The next attempt is in `delay` ms (Infinity: once the network is back). */
  reconnecting(delay: number): void
  /** A message a previous holder left, put back with its origin, and the promise its outcome settles. */
  restored(origin: string, outcome: Promise<unknown>): void
  /** What became of what a previous holder left, once all of it is finished (one report per outbox it left). */
  restoredAll(info: RestoredInfo): void
  /** The URL and protocols an attempt connects with (the principal tabs must share). */
  resolved(url: string, protocols: readonly string[]): void
}

/** The holder's socket, as socket.ts makes it for the holder. */
export interface HeldSocket {
  readonly sessionId: string | undefined
  /** The last server sequence number delivered (passed to the tabs). */
  readonly delivered: number
  readonly open: boolean
  /** Settles once what previous holders left is back in the outbox (their tabs' numbers known). */
  readonly ready: Promise<void>
  /** Queues a tab's message (its JSON text) with its origin; the promise settles with its outcome. */
  forward(payload: string, origin: string, request: boolean): Promise<unknown>
  /** Runs `then` once what was forwarded so far is in the shared outbox on disk (at once without a working store). */
  afterDurable(then: () => void): void
  /** Stops without failing anything: the stored outbox stays, for the next holder to adopt. */
  leave(): void
  /** A tab asked to try now (its `reconnect()`): an attempt at once, when one is waiting. */
  retry(): void
}

/** A socket of a page, as the holder of its page's group gives it server messages. */
export interface PageMember {
  heard(message: HolderMessage): void
  /** Messages of tabs gone (a reload, a closed tab) that the holder's restore finished: the `restored` event. */
  restored(info: RestoredInfo): void
}

/**
 * The sockets of this page, per group, under the page's BroadcastChannel class (one per page;
 * tests in Node make one per simulated page): the holder gives them each server message before it
 * returns, so a page's own tabs have delivered it before the server is acknowledged (a reload of
 * the holding page then loses nothing); they hear the channel's copy too, and drop it.
 */
export const pageMembers = {
  /** The members of `group` in the page of `Channel`. */
  of(Channel: ChannelClass, group: string): Set<PageMember> {
    let groups = members.get(Channel)
    if (!groups) {
      groups = new Map()
      members.set(Channel, groups)
    }
    let set = groups.get(group)
    if (!set) {
      set = new Set()
      groups.set(group, set)
    }
    return set
  },
  /** A socket of the page hears `group`. */
  join(Channel: ChannelClass, group: string, member: PageMember): void {
    pageMembers.of(Channel, group).add(member)
  },
  /** It no longer does. */
  leave(Channel: ChannelClass, group: string, member: PageMember): void {
    const set = pageMembers.of(Channel, group)
    set.delete(member)
    if (set.size === 0) members.get(Channel)?.delete(group)
  },
}

const members = new WeakMap<ChannelClass, Map<string, Set<PageMember>>>()

/** Server messages kept to resend to a tab that missed them (its link was down, or it was frozen). */
const RECENT = 1024
/** Replies kept for a tab whose link was down when they came. */
const ANSWERS = 256

type Hello = Extract<FollowerMessage, { t: 'hello' }>

/** An origin's tab and number (`tab:n`). */
function originOf(origin: string): [tab: string, n: number] {
  const at = origin.lastIndexOf(':')
  return [origin.slice(0, at), Number(origin.slice(at + 1))]
}

const failureOf = (error: TetherError): Failure => ({ name: error.name, code: String(error.code), message: error.message })

/** Holds a group's connection while this page holds the group's lock. */
export class Holder {
  readonly id = randomId()
  private readonly channel: BroadcastChannel
  private readonly socket: HeldSocket
  /** Origins (`tab:n`) the socket holds, not finished. */
  private readonly held = new Set<string>()
  /** Tabs this holder heard from (their hello or their messages): alive. */
  private readonly known = new Set<string>()
  /** The highest number of each tab this holder received. */
  private readonly seen = new Map<string, number>()
  /** Tabs' messages that came before the outbox was restored (what the last holder left decides what is new). */
  private early: Extract<FollowerMessage, { t: 'send' }>[] | undefined = []
  /** How the connection last ended, and when it is tried again (ms since the epoch; Infinity: when the network is back). */
  private down: { code: number; reason: string; retryAt?: number } = { code: 1006, reason: 'connecting' }
  private readonly group: string
  private readonly Channel: ChannelClass
  /** Hellos waiting for an attempt under way to open, or fail. */
  private waiting: Hello[] = []
  private principal: string | undefined
  private readonly recent: Extract<HolderMessage, { t: 'msg' | 'miss' }>[] = []
  private readonly answers = new Map<string, HolderMessage>()
  /** Numbers accepted and acknowledged in this tick, per tab: one message each at the end of the tick. */
  private readonly notes = new Map<string, { accepted: number[]; ack: number[] }>()
  private stopped = false

  constructor(Channel: ChannelClass, group: string, hold: (hooks: HolderHooks) => HeldSocket) {
    this.group = group
    this.Channel = Channel
    this.channel = new Channel(group)
    this.channel.onmessage = (event) => this.heard(followerMessage(event.data))
    this.socket = hold({
      message: (d, info) => this.relay({ t: 'msg', h: this.id, sid: this.sid, s: info.seq ?? 0, d, tp: info.topic, re: info.redelivered }),
      missed: (info) =>
        this.relay({ t: 'miss', h: this.id, sid: this.sid, s: info.seq, tp: info.topic, count: info.count, re: info.redelivered }),
      // Tabs waiting in backoff for this holder's connection try again now.
      opened: () => {
        this.down = { code: 1006, reason: 'connecting' }
        this.post({ t: 'holder', h: this.id })
        this.answerWaiting()
      },
      closed: (code, reason, willReconnect) => {
        this.down = { code, reason }
        if (!willReconnect) this.post({ t: 'down', h: this.id, code, reason })
      },
      reconnecting: (delay) => {
        const { code, reason } = this.down
        this.down = { code, reason, retryAt: Date.now() + delay }
        this.post({ t: 'down', h: this.id, code, reason, retryIn: delay })
        this.answerWaiting()
      },
      restored: (origin, outcome) => {
        // A tab's messages reach a holder in order, and it stores them in order: every earlier
        // number of that tab is in the shared outbox too, or finished. The tab may write them
        // again (it did not hear `accepted` before the last holder went), and they may be
        // acknowledged before it does: counted as seen, they are not sent a second time.
        const [tab, n] = originOf(origin)
        this.seen.set(tab, Math.max(this.seen.get(tab) ?? 0, n))
        this.track(origin, outcome)
      },
      restoredAll: (info) => this.restoredAll(info),
      resolved: (url, protocols) => {
        this.principal = JSON.stringify([url, protocols])
      },
    })
    // Links of a holder gone (closed, crashed, frozen) come here.
    this.post({ t: 'holder', h: this.id })
    this.socket.ready.then(() => {
      const early = this.early ?? []
      this.early = undefined
      for (const message of early) this.heard(message)
    })
  }

  /** The session of the connection (known once a server message can come). */
  private get sid(): string {
    return this.socket.sessionId as string
  }

  private post(message: HolderMessage): void {
    if (!this.stopped) this.channel.postMessage(message)
  }

  private heard(message: FollowerMessage | undefined): void {
    if (!message || this.stopped) return
    this.known.add(message.tab)
    if (message.t === 'hello') {
      this.answer(message)
      return
    }
    if (message.h !== this.id) return // said to an earlier holder: the tab says it again to this one
    if (message.t === 'bye') {
      this.seen.delete(message.tab)
      return
    }
    if (message.t === 'retry') {
      this.socket.retry()
      return
    }
    if (this.early) {
      this.early.push(message)
      return
    }
    const { tab } = message
    let seen = this.seen.get(tab) ?? 0
    const accepted: number[] = []
    for (const [n, payload, request] of message.m) {
      const origin = `${tab}:${n}`
      if (this.held.has(origin)) continue // its outcome goes to the tab when it comes
      if (n <= seen) {
        // Finished since this tab's welcome (which could not say so): it hears it now.
        this.finished(tab, n)
        continue
      }
      seen = n
      accepted.push(n)
      this.track(origin, this.socket.forward(payload, origin, request === 1), request === 1)
    }
    this.seen.set(tab, seen)
    // One wait for the message's batch: once on disk, the tab never writes them again.
    if (accepted.length > 0) this.socket.afterDurable(() => this.note(tab, 'accepted', ...accepted))
  }

  /**
   * Welcomes a tab when the connection is open: says which of its pending messages are finished,
   * and resends what it missed. While it is down, says so (and when it tries again): the tab's
   * attempt fails as this holder's did, and the tab tries again when it opens (`holder`).
   */
  private answer(hello: Hello): void {
    const { tab } = hello
    if (!this.socket.open || this.early) {
      const { code, reason, retryAt } = this.down
      // An attempt under way: the tab waits for its outcome, as it would for its own.
      if (retryAt === undefined) this.waiting.push(hello)
      else this.post({ t: 'down', h: this.id, to: tab, code, reason, retryIn: Math.max(0, retryAt - Date.now()) })
      return
    }
    if (this.principal !== undefined && this.principal !== JSON.stringify([hello.url, hello.protocols])) {
      this.post({
        t: 'refuse',
        h: this.id,
        to: tab,
        why: 'this tab connects with another URL or protocols than the tab holding the shared connection',
      })
      return
    }
    const { sid } = this
    const seen = this.seen.get(tab) ?? 0
    const accepted = new Set(hello.accepted)
    const done: number[] = []
    const replies: HolderMessage[] = []
    for (const n of hello.pending) {
      const origin = `${tab}:${n}`
      if (this.held.has(origin)) continue
      const answer = this.answers.get(origin)
      if (answer) replies.push(answer)
      // Accepted by a holder and no longer held, or received by this one: finished.
      else if (accepted.has(n) || n <= seen) done.push(n)
    }
    this.post({ t: 'welcome', h: this.id, to: tab, sid, last: this.socket.delivered, done })
    for (const reply of replies) this.post(reply)
    if (hello.sid === sid) for (const message of this.recent) if (message.s > hello.last) this.post({ ...message, to: tab })
  }

  private answerWaiting(): void {
    const waiting = this.waiting
    this.waiting = []
    for (const hello of waiting) this.answer(hello)
  }

  /** Passes a message's outcome to its tab: acknowledged, answered or failed. */
  private track(origin: string, outcome: Promise<unknown>, request = true): void {
    this.held.add(origin)
    const [tab, n] = originOf(origin)
    outcome.then(
      (value) => {
        this.held.delete(origin)
        if (!request && value === undefined) this.note(tab, 'ack', n)
        else this.answered(origin, { t: 'res', h: this.id, to: tab, n, ok: value })
      },
      (error: TetherError) => {
        this.held.delete(origin)
        this.answered(origin, { t: 'res', h: this.id, to: tab, n, err: failureOf(error) })
      },
    )
  }

  /** Tells a tab again that its message `n` is finished: its reply or failure when still known, else its acknowledgement. */
  private finished(tab: string, n: number): void {
    const answer = this.answers.get(`${tab}:${n}`)
    if (answer) this.post(answer)
    else this.note(tab, 'ack', n)
  }

  private answered(origin: string, message: HolderMessage): void {
    this.answers.set(origin, message)
    if (this.answers.size > ANSWERS) this.answers.delete(this.answers.keys().next().value as string)
    this.post(message)
  }

  private note(tab: string, kind: 'accepted' | 'ack', ...numbers: number[]): void {
    let notes = this.notes.get(tab)
    if (!notes) {
      notes = { accepted: [], ack: [] }
      this.notes.set(tab, notes)
    }
    notes[kind].push(...numbers)
    this.sendNotes()
  }

  private readonly sendNotes = perTick(() => {
    for (const [to, { accepted, ack }] of this.notes) {
      if (accepted.length > 0) this.post({ t: 'accepted', h: this.id, to, n: accepted })
      if (ack.length > 0) this.post({ t: 'ack', h: this.id, to, n: ack })
    }
    this.notes.clear()
  })

  /** A server message for every tab, kept a while for those that miss it. */
  private relay(message: Extract<HolderMessage, { t: 'msg' | 'miss' }>): void {
    this.recent.push(message)
    if (this.recent.length > RECENT) this.recent.shift()
    for (const member of pageMembers.of(this.Channel, this.group)) member.heard(message)
    this.post(message)
  }

  /**
   * What a previous holder left is finished: the messages of tabs still here went to them one by
   * one (`ack`, `res`); those of tabs gone (a page reloaded or closed, whose promises went with
   * it) are reported by this page's sockets as their `restored` event, as a socket of its own
   * reports what its previous page left.
   */
  private restoredAll({ from, delivered, failed }: RestoredInfo): void {
    const gone = ({ origin }: { origin?: string }) => origin === undefined || !this.known.has(originOf(origin)[0])
    const strip = <T extends { origin?: string }>({ origin: _, ...rest }: T) => rest
    const report = { from, delivered: delivered.filter(gone).map(strip), failed: failed.filter(gone).map(strip) }
    if (report.delivered.length === 0 && report.failed.length === 0) return
    for (const member of pageMembers.of(this.Channel, this.group)) member.restored(report)
  }

  /** Steps down (the page is hidden, frozen or closing, or its socket closed): the next holder adopts the outbox. */
  stop(): void {
    if (this.stopped) return
    this.post({ t: 'down', h: this.id, code: HANDOVER, reason: 'the tab holding the shared connection went away' })
    this.stopped = true
    this.socket.leave()
    this.channel.close()
  }
}
