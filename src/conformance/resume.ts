/**
 * Rules of resuming a session on a new connection (§4.2, §4.4, §4.10): the welcome, what the
 * server resends and the bound its welcome puts on it, what it drops, the connection it
 * replaces, and exactly-once across an abrupt drop.
 * @module
 */
import { check, expectJson } from './expect.js'
import { describeClose } from './peer.js'
import { type Kit, type Rule, Skip } from './run.js'
import type { KitSession } from './session.js'

/**
 * A session in which the kit sent a, b, c (items 1–3), got their echoes (server items 1–3) and
 * the ack of all three, then acknowledged only the first echo and closed the connection.
 */
async function sessionWithUnacknowledgedEchoes(kit: Kit): Promise<KitSession> {
  const session = kit.session()
  await session.open()
  session.send(['a', 'b', 'c'])
  await session.untilEchoes(3)
  await session.untilAcked(3)
  session.ack(1)
  await session.connection.close()
  return session
}

/** The rules of resuming, in running order. */
export const resumeRules: Rule[] = [
  {
    id: 'resume.welcome',
    section: '§4.2',
    title: "a hello naming the session resumes it: same sid, resumed true, ack the server's rxSeq",
    async run(kit) {
      const session = await sessionWithUnacknowledgedEchoes(kit)
      const sid = session.sid
      const welcome = await session.open({ sid: sid ?? null, ack: 1, acked: 3, sent: 3 })
      check(welcome.resumed, 'a hello naming a live session of the same client got resumed: false')
      check(welcome.sid === sid, `the resumed session's welcome names ${JSON.stringify(welcome.sid)}, not ${JSON.stringify(sid)}`)
      check(welcome.ack === 3, `welcome.ack is ${welcome.ack}; the server had delivered (and acknowledged) 3 items`)
    },
  },
  {
    id: 'resume.resend',
    section: '§4.2',
    title: 'after the welcome the server resends what the hello did not acknowledge, with the same numbers',
    async run(kit) {
      const session = await sessionWithUnacknowledgedEchoes(kit)
      await session.open({ sid: session.sid ?? null, ack: 1, acked: 3, sent: 3 })
      await session.untilEchoes(3)
      // The session keeps items 1 (acknowledged in the hello), then takes 2 and 3 as they come.
      expectJson(
        session.items.map((item) => [item.seq, item.kind === 'msg' ? item.data : item.kind]),
        [
          [1, 'a'],
          [2, 'b'],
          [3, 'c'],
        ],
        'server items after a resume with hello.ack 1',
      )
      for (const message of session.connection.received) {
        const frame = message.frame
        if (frame?.t !== 'msg' || typeof frame.s !== 'number') continue
        check(frame.s >= 2, `the server resent item ${frame.s}, which the hello acknowledged (hello.ack 1)`)
      }
    },
  },
  {
    id: 'resume.sent',
    section: '§4.10',
    title: 'welcome.sent, when present, is at least hello.ack and the number of every item resent after it',
    async run(kit) {
      const session = await sessionWithUnacknowledgedEchoes(kit)
      const welcome = await session.open({ sid: session.sid ?? null, ack: 1, acked: 3, sent: 3 })
      if (welcome.sent === undefined) throw new Skip('the server sends no welcome.sent (optional, §3.5)')
      check(welcome.sent >= 1, `welcome.sent is ${welcome.sent}, below the hello's ack 1 of a resumed session`)
      // Echo mode sends nothing of its own: every item on this connection is one resent.
      await session.untilEchoes(3)
      for (const message of session.connection.received) {
        const frame = message.frame
        if ((frame?.t !== 'msg' && frame?.t !== 'res') || typeof frame.s !== 'number') continue
        const last = frame.s + (Array.isArray(frame.d) && frame.t === 'msg' ? frame.d.length : 1) - 1
        check(last <= welcome.sent, `the server resent item ${last} after a welcome saying sent ${welcome.sent}`)
      }
    },
  },
  {
    id: 'resume.duplicates',
    section: '§2.4',
    title: 'items resent after a resume, already delivered, are not delivered again',
    async run(kit) {
      const session = await sessionWithUnacknowledgedEchoes(kit)
      await session.open({ sid: session.sid ?? null, ack: 3, acked: 3, sent: 3 })
      session.send(['a', 'b', 'c'], 1)
      session.send(['d'])
      await session.until(() => (session.echoes().includes('d') ? true : undefined), 'the echo of item 4')
      expectJson(session.echoes(), ['a', 'b', 'c', 'd'], 'the echoes of the session after resending 1–3 and sending 4')
      await session.untilAcked(4)
    },
  },
  {
    id: 'resume.exactly-once',
    section: '§4.2',
    title: 'across a connection cut mid-send, every item is delivered once and every echo arrives',
    async run(kit) {
      const session = kit.session()
      await session.open()
      session.send(['a', 'b'])
      await session.untilEchoes(2)
      await session.untilAcked(2)
      // c may or may not reach the server before the cut; either way it must be delivered once.
      session.send(['c'])
      session.connection.terminate()
      const welcome = await session.open({ sid: session.sid ?? null, ack: session.rxSeq, acked: session.acked, sent: 3 })
      check(welcome.resumed, 'the session was not resumed after a dropped connection')
      check(welcome.ack >= 2 && welcome.ack <= 3, `welcome.ack is ${welcome.ack}; items 1–2 were acknowledged, 3 sent`)
      // A client resends what the welcome does not acknowledge (§4.6), then goes on.
      if (welcome.ack < 3) session.send(['c'], 3)
      session.send(['d'])
      await session.until(() => (session.echoes().includes('d') ? true : undefined), 'the echo of item 4')
      expectJson(session.echoes(), ['a', 'b', 'c', 'd'], 'the echoes of the session')
    },
  },
  {
    id: 'resume.replaces',
    section: '§4.2',
    title: 'a resume closes the connection it replaces with 1000',
    async run(kit) {
      const first = kit.session()
      await first.open()
      const old = first.connection
      const second = kit.session()
      const welcome = await second.open({ sid: first.sid ?? null, ack: 0, acked: 0, sent: 0 })
      check(welcome.resumed, 'a hello naming a session attached to another connection was not resumed')
      const closed = await old.whenClosed('a newer connection resumed its session')
      check(closed.code === 1000, `the replaced connection was closed with ${describeClose(closed)}; expected 1000`)
    },
  },
  {
    id: 'resume.lost',
    section: '§4.4',
    title: 'a hello that knows more than the server gets a new session with reason "lost"',
    async run(kit) {
      const cases = [
        { what: 'acknowledging server item 5 of 1 (hello.ack 5)', hello: { ack: 5, acked: 1, sent: 1 } },
        { what: 'saying item 9 of 1 was acknowledged (hello.acked 9)', hello: { ack: 1, acked: 9, sent: 9 } },
      ]
      for (const { what, hello } of cases) {
        const session = kit.session()
        await session.open()
        session.send(['a'])
        await session.untilEchoes(1)
        await session.untilAcked(1)
        await session.connection.close()
        const sid = session.sid ?? null
        const welcome = await session.open({ sid, ...hello })
        check(!welcome.resumed, `a hello ${what} resumed the session`)
        check(welcome.sid !== sid, `a hello ${what} got a new session with the old id`)
        check(welcome.ack === 0, `a hello ${what}: the new session's welcome.ack is ${welcome.ack}`, '§4.3')
        check(welcome.reason === 'lost', `a hello ${what}: welcome.reason is ${JSON.stringify(welcome.reason)}; expected "lost"`)
      }
    },
  },
]
