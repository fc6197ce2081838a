/**
 * Topics in one server (src/server/topics.ts), without sockets: a topic's log holds each message
 * once within its retention; a member's place is a cursor; pulling gives the waiting messages of
 * all its topics in publish order, and a place behind the retention one `missed` first.
 */
import { describe, expect, it } from 'vitest'
import { OptionError } from '../../src/errors.js'
import { checkTopic, type Pulled, Subscriptions, type TopicMember, Topics } from '../../src/server/topics.js'

/** A member that records how often it was told of a publish. */
function member(id: string, connected = true): TopicMember & { told: number } {
  return {
    id,
    principal: `user-${id}`,
    connected,
    told: 0,
    published() {
      this.told++
    },
  }
}

/** What one pull takes (everything, or up to `limit`), as texts and misses. */
function pull(subscriptions: Subscriptions, limit = Number.POSITIVE_INFINITY): string[] {
  const taken: string[] = []
  subscriptions.pull((pulled: Pulled) => {
    if (taken.length >= limit) return false
    taken.push('message' in pulled ? `${pulled.message.topic}:${pulled.message.payload}` : `${pulled.topic}:missed ${pulled.missed}`)
    return true
  })
  return taken
}

describe('a topic', () => {
  it('holds a published message once, for its members; publishing to a topic without members keeps nothing', () => {
    const topics = new Topics({ maxMessages: 10, maxBytes: 1000 })
    expect(topics.publish('room', '"nobody"')).toBe(0)
    const a = member('a')
    const b = member('b', false)
    const { log } = topics.join('room', a)
    topics.join('room', b)
    expect(topics.publish('room', '"hi"')).toBe(2)
    expect(log.next - log.base).toBe(1)
    // Connected members are told (they pull now); away ones are not (they pull on resume).
    expect(a.told).toBe(1)
    expect(b.told).toBe(0)
  })

  it('keeps at most maxMessages and maxBytes, oldest dropped first', () => {
    const topics = new Topics({ maxMessages: 3, maxBytes: 10 })
    const { log } = topics.join('room', member('a', false))
    for (const text of ['"1"', '"2"', '"3"', '"4"']) topics.publish('room', text)
    expect([log.base, log.next]).toEqual([1, 4])
    topics.publish('room', '"0123456789"') // 12 bytes: only it fits
    expect([log.base, log.next]).toEqual([4, 5])
  })

  it('reports presence: ids, principals, connected or not; is dropped with its last member', () => {
    const topics = new Topics({ maxMessages: 3, maxBytes: 100 })
    const a = member('a')
    const b = member('b', false)
    expect(topics.join('room', a).joined).toBe(true)
    expect(topics.join('room', a).joined).toBe(false)
    topics.join('room', b)
    expect(topics.presence('room')).toEqual([
      { id: 'a', principal: 'user-a', connected: true },
      { id: 'b', principal: 'user-b', connected: false },
    ])
    expect(topics.leave('room', a)).toBe(true)
    expect(topics.leave('room', a)).toBe(false)
    topics.leave('room', b)
    expect(topics.names()).toEqual([])
    expect(topics.presence('room')).toEqual([])
  })
})

describe("a member's place", () => {
  it('pulls only what was published since it joined, across its topics in publish order', () => {
    const topics = new Topics({ maxMessages: 100, maxBytes: 10000 })
    const m = member('m', false)
    const subscriptions = new Subscriptions()
    topics.join('a', member('other', false))
    topics.publish('a', 'before')
    subscriptions.join(topics.join('a', m).log)
    subscriptions.join(topics.join('b', m).log)
    topics.publish('a', '1')
    topics.publish('b', '2')
    topics.publish('a', '3')
    expect(subscriptions.waiting).toBe(true)
    expect(pull(subscriptions)).toEqual(['a:1', 'b:2', 'a:3'])
    expect(subscriptions.waiting).toBe(false)
    expect(pull(subscriptions)).toEqual([])
  })

  it('waits where the outbox is full, and goes on from there', () => {
    const topics = new Topics({ maxMessages: 100, maxBytes: 10000 })
    const subscriptions = new Subscriptions()
    subscriptions.join(topics.join('a', member('m', false)).log)
    for (const text of ['1', '2', '3']) topics.publish('a', text)
    expect(pull(subscriptions, 2)).toEqual(['a:1', 'a:2'])
    expect(pull(subscriptions)).toEqual(['a:3'])
  })

  it('behind the retention: one missed with the count, then what is kept; never a silent gap', () => {
    const topics = new Topics({ maxMessages: 2, maxBytes: 10000 })
    const subscriptions = new Subscriptions()
    subscriptions.join(topics.join('a', member('m', false)).log)
    for (const text of ['1', '2', '3', '4', '5']) topics.publish('a', text)
    expect(pull(subscriptions)).toEqual(['a:missed 3', 'a:4', 'a:5'])
  })

  it('after leaving, still gets what was published while a member, nothing after', () => {
    const topics = new Topics({ maxMessages: 100, maxBytes: 10000 })
    const m = member('m', false)
    const subscriptions = new Subscriptions()
    topics.join('a', member('other', false))
    subscriptions.join(topics.join('a', m).log)
    topics.publish('a', '1')
    subscriptions.leave('a')
    topics.leave('a', m)
    topics.publish('a', '2')
    expect(subscriptions.names()).toEqual([])
    expect(pull(subscriptions)).toEqual(['a:1'])
    expect(subscriptions.waiting).toBe(false)
  })
})

describe('a member that leaves and joins again', () => {
  it('with messages still due: gets those, then only what was published after the rejoin', () => {
    const topics = new Topics({ maxMessages: 100, maxBytes: 10000 })
    const m = member('m', false)
    const subscriptions = new Subscriptions()
    topics.join('a', member('other', false)) // keeps the topic's log while m is out
    subscriptions.join(topics.join('a', m).log)
    topics.publish('a', '1')
    subscriptions.leave('a')
    topics.leave('a', m)
    topics.publish('a', 'while out')
    subscriptions.join(topics.join('a', m).log)
    topics.publish('a', '2')
    expect(subscriptions.names()).toEqual(['a'])
    expect(pull(subscriptions)).toEqual(['a:1', 'a:2'])
  })

  it('as the only member (the log went with its leave): what was due in the old log, then the new one', () => {
    const topics = new Topics({ maxMessages: 100, maxBytes: 10000 })
    const m = member('m', false)
    const subscriptions = new Subscriptions()
    subscriptions.join(topics.join('a', m).log)
    topics.publish('a', '1')
    subscriptions.leave('a')
    topics.leave('a', m)
    expect(topics.names()).toEqual([])
    subscriptions.join(topics.join('a', m).log)
    topics.publish('a', '2')
    expect(pull(subscriptions)).toEqual(['a:1', 'a:2'])
    expect(subscriptions.waiting).toBe(false)
  })
})

describe('topic names', () => {
  it('are non-empty strings of at most 200 characters, else an OptionError naming the call', () => {
    expect(() => checkTopic('publish', 'room:1')).not.toThrow()
    expect(() => checkTopic('publish', '')).toThrow(OptionError)
    expect(() => checkTopic('session.join', 7)).toThrow(/session\.join\(topic\): topic must be a non-empty string.*got number/)
    expect(() => checkTopic('publish', 'x'.repeat(201))).toThrow(OptionError)
  })
})

describe("a session's places as a shared store records them", () => {
  it('keep a left topic with messages due beside the place of a rejoin, so a claim before the due ones are pulled skips nothing', () => {
    const topics = new Topics({ maxMessages: 100, maxBytes: 10000 })
    const m = member('m', false)
    const subscriptions = new Subscriptions()
    const { log } = topics.join('a', member('other', false))
    subscriptions.join(topics.join('a', m).log)
    topics.publish('a', '1')
    subscriptions.leave('a')
    topics.publish('a', 'while out')
    subscriptions.join(log)
    topics.publish('a', '2')
    const recorded = subscriptions.snapshot()
    expect(recorded).toEqual({ a: [0, 1, 2] })
    // Another node claims the session: the same places from the record.
    const claimed = new Subscriptions()
    for (const [name, [cursor, end, current]] of Object.entries(recorded)) {
      claimed.restore(topics.get(name)!, cursor, end, current)
    }
    expect(claimed.names()).toEqual(['a'])
    expect(pull(claimed)).toEqual(['a:1', 'a:2'])
  })
})
