/**
 * A shared socket's protocol (client/shared/follower.ts), with a fake host standing for the
 * socket: what a tab writes to the holder, what it does with the holder's answers, and what it
 * says in its hello to a new holder.
 */
import { describe, expect, it, vi } from 'vitest'
import { Outbox, type Payload } from '../../../src/client/outbox.js'
import type { HolderMessage } from '../../../src/client/shared/channel.js'
import { FollowerProtocol } from '../../../src/client/shared/follower.js'
import type { Handover, ProtocolHost, WireData } from '../../../src/client/wire/types.js'
import { DeliveryError, ReplyError } from '../../../src/errors.js'

const NEVER = Number.POSITIVE_INFINITY
const handover = (more: Partial<Handover> = {}): Handover => ({ deadline: NEVER, staleAt: NEVER, open: true, ...more })

function setup() {
  const written: { t: string; m: [number, string, 0 | 1][] }[] = []
  const outbox = new Outbox({ maxMessages: 1000, maxBytes: 1 << 20, overflow: 'reject' }, () => {})
  let protocol!: FollowerProtocol<unknown, unknown>
  const host = {
    outbox,
    write: vi.fn((_frame: Payload) => true),
    ready: vi.fn(() => protocol.flush()),
    deliver: vi.fn(),
    missed: vi.fn(),
    report: vi.fn(),
    drop: vi.fn(),
  } satisfies ProtocolHost<unknown>
  // Where the tab's messages go (tab.ts in a page): recorded here.
  const side = {
    reachable: true,
    send: vi.fn((m: [number, string, 0 | 1][]) => {
      written.push({ t: 'send', m })
      return true
    }),
    remember: vi.fn(),
  }
  protocol = new FollowerProtocol(host, () => {}, side)
  const hear = (message: Omit<HolderMessage, 'h'> & { h?: string }) => protocol.heard({ h: 'H', ...message } as unknown as HolderMessage)
  const welcome = (more: { sid?: string; last?: number; done?: number[] } = {}) => {
    protocol.attach()
    protocol.receive({ h: 'H', t: 'welcome', to: 'me', sid: 's1', last: 0, done: [], ...more } as unknown as WireData)
  }
  const tick = () => new Promise((resolve) => setTimeout(resolve, 0))
  return { protocol, host, outbox, written, hear, welcome, tick }
}

describe('FollowerProtocol', () => {
  it("numbers a tab's messages and writes those of one tick in one message to the holder", async () => {
    const t = setup()
    t.welcome()
    void t.protocol.queue({ a: 1 }, handover())
    void t.protocol.queue({ a: 2 }, handover())
    void t.protocol.queue({ q: 3 }, handover({ request: true }))
    await t.tick()
    expect(t.written).toEqual([
      {
        t: 'send',
        m: [
          [1, '{"a":1}', 0],
          [2, '{"a":2}', 0],
          [3, '{"q":3}', 1],
        ],
      },
    ])
  })

  it('resolves a send on its ack and a request on its reply; a failure comes back as the error it was', async () => {
    const t = setup()
    t.welcome()
    const sent = t.protocol.queue({ a: 1 }, handover())
    const asked = t.protocol.queue({ q: 2 }, handover({ request: true }))
    const refused = t.protocol.queue({ q: 3 }, handover({ request: true }))
    await t.tick()
    t.hear({ t: 'ack', to: 'me', n: [1, 2] } as never) // an ack does not finish a request
    await expect(sent).resolves.toBeUndefined()
    expect(t.outbox.size).toBe(2)
    t.hear({ t: 'res', to: 'me', n: 2, ok: { user: 7 } } as never)
    t.hear({ t: 'res', to: 'me', n: 3, err: { name: 'ReplyError', code: 'NOT_FOUND', message: 'no such user' } } as never)
    await expect(asked).resolves.toEqual({ user: 7 })
    const error = await refused.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ReplyError)
    expect(error).toMatchObject({ code: 'NOT_FOUND', message: 'no such user' })
    expect(t.outbox.size).toBe(0)
  })

  it('after a change of holder, writes again only what no holder accepted, under the same numbers', async () => {
    const t = setup()
    t.welcome()
    for (const n of [1, 2, 3]) void t.protocol.queue({ n }, handover())
    await t.tick()
    t.hear({ t: 'accepted', to: 'me', n: [1, 2] } as never)
    // The holder goes away: the socket detaches and rewinds, then links to the next holder.
    t.protocol.detach()
    t.outbox.rewind()
    expect(t.protocol.hello()).toEqual({ pending: [1, 2, 3], accepted: [1, 2], sid: 's1', last: 0 })
    t.welcome({ done: [1] })
    await t.tick()
    expect(t.written.at(-1)).toEqual({ t: 'send', m: [[3, '{"n":3}', 0]] })
    expect(t.outbox.size).toBe(2) // 1 is done; 2 waits for the new holder's ack, 3 for its own
  })

  it('a request the new holder says is done lost its reply with the old holder: it fails, saying so', async () => {
    const t = setup()
    t.welcome()
    const asked = t.protocol.queue({ q: 1 }, handover({ request: true }))
    await t.tick()
    t.hear({ t: 'accepted', to: 'me', n: [1] } as never)
    t.protocol.detach()
    t.outbox.rewind()
    t.welcome({ done: [1] })
    const error = await asked.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DeliveryError)
    expect((error as Error).message).toMatch(/reply is lost/)
  })

  it('delivers each server message once: a number seen before is dropped, and a new tab starts after the last the holder delivered', () => {
    const t = setup()
    t.welcome({ sid: 's1', last: 4 })
    const msg = (s: number) => t.hear({ t: 'msg', sid: 's1', s, d: { s }, re: false } as never)
    msg(3)
    msg(5)
    msg(5)
    msg(6)
    expect(t.host.deliver.mock.calls.map(([data, info]) => [data, info.id])).toEqual([
      [{ s: 5 }, 's1:5'],
      [{ s: 6 }, 's1:6'],
    ])
  })
})
