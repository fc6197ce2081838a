/**
 * Rules of requests (§5): replies matched by id, error replies, requests as sequenced items,
 * the `reqs` limit and the replies owed across it, and replies across a reconnect. Echo mode
 * (§12.2) answers `P` with `{"echo": P}`, `{"fail": code}` with an error, and waits `delay` ms.
 * @module
 */
import { check, expectJson, json } from './expect.js'
import { type Kit, type Rule, Skip } from './run.js'
import type { Item, KitSession } from './session.js'

/** The limit rules send `reqs + 1` requests; beyond this many they are skipped. */
const REQS_TESTED = 1000

/** How long echo mode holds the requests of the limit rules: long enough to be over the limit together. */
const HOLD = 1000

/** How long echo mode holds the request of the reconnect rule: the kit is away when the reply is due. */
const LATER = 400

/** The reply `item` carries, or a Violation when it is an error reply. */
function replyValue(item: Item): unknown {
  if (item.kind !== 'res') return undefined
  if (item.err) return { err: item.err.code }
  return item.data
}

/** The session over the limit: `reqs + 1` requests held by echo mode, and the 1013 that must follow. */
async function overTheLimit(kit: Kit): Promise<{ session: KitSession; reqs: number }> {
  const session = kit.session()
  const { reqs } = await session.open()
  if (reqs === undefined) throw new Skip('the server announces no reqs limit')
  if (reqs > REQS_TESTED) throw new Skip(`welcome.reqs is ${reqs}; the kit checks the limit only up to ${REQS_TESTED}`)
  for (let id = 1; id <= reqs + 1; id++) session.request(id, { delay: HOLD, n: id })
  await session.connection.expectClose(1013, `${reqs + 1} requests awaiting replies (welcome.reqs ${reqs})`)
  session.takeIn()
  return { session, reqs }
}

/** The rules of requests, in running order. */
export const requestRules: Rule[] = [
  {
    id: 'req.reply',
    section: '§5.1',
    title: 'each request gets one reply, matched by id, in any order',
    async run(kit) {
      const session = kit.session()
      await session.open()
      session.request(7, { delay: 300, n: 7 })
      session.request(8, { n: 8 })
      const [seven, eight] = [await session.untilReply(7, kit.timeout + 300), await session.untilReply(8)]
      expectJson(replyValue(eight), { echo: { n: 8 } }, 'the reply to request 8 (echo mode, §12.2)')
      expectJson(replyValue(seven), { echo: { delay: 300, n: 7 } }, 'the reply to request 7 (echo mode, §12.2)')
      await session.untilAcked(2)
      check(session.replies(7).length === 1 && session.replies(8).length === 1, 'a request was answered more than once')
    },
  },
  {
    id: 'req.error',
    section: '§5.6',
    title: 'an error reply carries err with a string code and message',
    async run(kit) {
      const session = kit.session()
      await session.open()
      session.request(1, { fail: 'E_CONFORMANCE' })
      const reply = await session.untilReply(1)
      check(reply.kind === 'res' && reply.err !== undefined, `a request echo mode fails was answered with ${json(replyValue(reply))}`)
      check(reply.err.code === 'E_CONFORMANCE', `the error reply's code is ${json(reply.err.code)}; expected "E_CONFORMANCE"`)
    },
  },
  {
    id: 'req.in-sequence',
    section: '§5.1',
    title: 'a request is an item of the sequence, between the messages around it',
    async run(kit) {
      const session = kit.session()
      await session.open()
      session.send(['a'])
      session.request(1, { n: 1 })
      session.send(['b'])
      expectJson(await session.untilEchoes(2), ['a', 'b'], 'the echoes of the messages around the request')
      expectJson(replyValue(await session.untilReply(1)), { echo: { n: 1 } }, 'the reply to the request')
      await session.untilAcked(3)
    },
  },
  {
    id: 'req.duplicate',
    section: '§2.4',
    title: 'a request resent with its number is not handled twice',
    async run(kit) {
      const session = kit.session()
      await session.open()
      session.request(1, { n: 1 })
      session.request(1, { n: 1 }, 1)
      session.send(['after'])
      await session.untilReply(1)
      await session.untilEchoes(1)
      await session.settle(300)
      check(session.replies(1).length === 1, `request 1, sent twice with number 1, got ${session.replies(1).length} replies`)
    },
  },
  {
    id: 'req.limit',
    section: '§5.4',
    title: 'a request beyond welcome.reqs: closed with 1013, and not acknowledged',
    async run(kit) {
      const { session, reqs } = await overTheLimit(kit)
      check(session.acked <= reqs, `the server acknowledged item ${session.acked}, the request over the limit of ${reqs}`)
      check(session.replies(reqs + 1).length === 0, `the request over the limit of ${reqs} was answered`)
    },
  },
  {
    id: 'req.owed',
    section: '§5.5',
    title: 'after that 1013 the replies owed arrive on resume, and the refused request is handled when resent',
    async run(kit) {
      const { session, reqs } = await overTheLimit(kit)
      const welcome = await session.open({ sid: session.sid ?? null, ack: session.rxSeq, acked: session.acked, sent: reqs + 1 })
      check(welcome.resumed, 'the session was not resumed after the 1013')
      check(welcome.ack <= reqs, `welcome.ack ${welcome.ack} acknowledges the request over the limit of ${reqs}`)
      // A client keeps to the limit (§5.4): the rest goes once a reply frees a place.
      await session.until(() => (session.items.some((item) => item.kind === 'res') ? true : undefined), 'a reply', HOLD + kit.timeout)
      for (let id = welcome.ack + 1; id <= reqs + 1; id++) session.request(id, { delay: HOLD, n: id }, id)
      for (let id = 1; id <= reqs + 1; id++) {
        const reply = await session.untilReply(id, HOLD + kit.timeout)
        expectJson(replyValue(reply), { echo: { delay: HOLD, n: id } }, `the reply to request ${id}`)
      }
    },
  },
  {
    id: 'req.reply-after-reconnect',
    section: '§5.1',
    title: 'a reply that became ready while the client was away comes after the resume',
    async run(kit) {
      const session = kit.session()
      await session.open()
      session.request(1, { delay: LATER, n: 1 })
      // Time for the ack (a server that acknowledges requests with their replies, §5.3, sends none before it).
      await session.settle(LATER / 2)
      await session.connection.close()
      // Away until the reply is due: the server must keep it for the resume.
      await session.settle(LATER)
      const welcome = await session.open({ sid: session.sid ?? null, ack: session.rxSeq, acked: session.acked, sent: 1 })
      check(welcome.resumed, 'the session was not resumed')
      if (welcome.ack < 1) session.request(1, { delay: LATER, n: 1 }, 1)
      expectJson(replyValue(await session.untilReply(1, LATER + kit.timeout)), { echo: { delay: LATER, n: 1 } }, 'the reply')
    },
  },
]
