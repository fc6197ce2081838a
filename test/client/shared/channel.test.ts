/** What tabs accept from each other (client/shared/channel.ts): well-formed messages, nothing else. */
import { describe, expect, it } from 'vitest'
import { followerMessage, groupName, holderMessage } from '../../../src/client/shared/channel.js'

describe('holderMessage', () => {
  it('takes what a holder says', () => {
    const good = [
      { t: 'holder', h: 'H' },
      { t: 'welcome', h: 'H', to: 'a', sid: 's', last: 3, done: [1, 2] },
      { t: 'refuse', h: 'H', to: 'a', why: 'principal' },
      { t: 'accepted', h: 'H', to: 'a', n: [1] },
      { t: 'ack', h: 'H', to: 'a', n: [1, 2] },
      { t: 'res', h: 'H', to: 'a', n: 1, ok: { x: 1 } },
      { t: 'res', h: 'H', to: 'a', n: 1, err: { name: 'ReplyError', code: 'E', message: 'm' } },
      { t: 'msg', h: 'H', sid: 's', s: 4, d: [1], re: false },
      { t: 'miss', h: 'H', sid: 's', s: 5, tp: 'room', count: 2, re: false },
      { t: 'down', h: 'H', code: 1006, reason: '' },
    ]
    for (const message of good) expect(holderMessage(message), JSON.stringify(message)).toBe(message)
  })

  it("refuses anything else: a follower's message, another version's, garbage", () => {
    const bad = [
      null,
      'text',
      { t: 'holder' },
      { t: 'welcome', h: 'H', to: 'a', sid: 's', last: -1, done: [] },
      { t: 'ack', h: 'H', to: 'a', n: [1.5] },
      { t: 'res', h: 'H', to: 'a', n: 1, err: { name: 'X' } },
      { t: 'msg', h: 'H', sid: 's', s: 'x', d: 1 },
      { t: 'send', tab: 'a', h: 'H', m: [] },
      { t: 'future', h: 'H' },
    ]
    for (const message of bad) expect(holderMessage(message), JSON.stringify(message)).toBeUndefined()
  })
})

describe('followerMessage', () => {
  it('takes what a follower says, and refuses the rest', () => {
    const hello = { t: 'hello', tab: 'a', url: 'ws://x/', protocols: [], pending: [1], accepted: [], sid: undefined, last: 0 }
    const send = { t: 'send', tab: 'a', h: 'H', m: [[1, '{}', 0]] }
    const bye = { t: 'bye', tab: 'a', h: 'H' }
    for (const message of [hello, send, bye]) expect(followerMessage(message)).toBe(message)
    for (const message of [
      { ...hello, protocols: [1] },
      { ...send, m: [[1, {}, 0]] },
      { ...send, m: [[1, '{}', 2]] },
      { t: 'holder', h: 'H' },
      undefined,
    ]) {
      expect(followerMessage(message), JSON.stringify(message)).toBeUndefined()
    }
  })
})

describe('groupName', () => {
  it('one group per name and URL', () => {
    expect(groupName(true, 'ws://a/')).toEqual(groupName(true, 'ws://a/'))
    expect(groupName('chat', 'ws://a/')).not.toBe(groupName(true, 'ws://a/'))
    expect(groupName(true, 'ws://a/')).not.toBe(groupName(true, 'ws://b/'))
  })
})
