/**
 * Rules of sequencing on one connection: delivery in order, duplicates dropped, gaps refused
 * (§2.4), and acks (§2.5–§2.7). Deliveries are seen through echo mode (§12.2): one echo per
 * delivery, in delivery order.
 * @module
 */
import { closesWith, expectJson } from './expect.js'
import type { Rule } from './run.js'

/** The rules of sequencing and acks on one connection, in running order. */
export const sequenceRules: Rule[] = [
  {
    id: 'seq.in-order',
    section: '§2.4',
    title: 'items are delivered once each, in order, across frames',
    async run(kit) {
      const session = kit.session()
      await session.open()
      session.send(['a', 'b'])
      session.send(['c'])
      session.send(['d', 'e'])
      expectJson(await session.untilEchoes(5), ['a', 'b', 'c', 'd', 'e'], 'the echoes of items 1 to 5')
    },
  },
  {
    id: 'seq.cumulative-ack',
    section: '§2.5',
    title: 'acks are cumulative and reach the last item delivered',
    async run(kit) {
      const session = kit.session()
      await session.open()
      for (const item of ['a', 'b', 'c', 'd']) session.send([item])
      // The session refuses an ack above what was sent (§2.5): only the value reached is left to see.
      await session.untilAcked(4)
      await session.untilEchoes(4)
    },
  },
  {
    id: 'seq.duplicates',
    section: '§2.4',
    title: 'items resent with the same numbers are dropped, also inside a frame that overlaps',
    async run(kit) {
      const session = kit.session()
      await session.open()
      session.send(['a'])
      session.send(['a'], 1)
      session.send(['a', 'b'], 1)
      session.send(['b'], 2)
      session.send(['c'])
      // Echoes come in delivery order: once c's is here, a duplicate's would have come before it.
      await session.until(() => (session.echoes().includes('c') ? true : undefined), 'the echo of item 3')
      expectJson(session.echoes(), ['a', 'b', 'c'], 'the echoes of a, a, a b, b, c numbered 1, 1, 1–2, 2, 3')
      await session.untilAcked(3)
    },
  },
  {
    id: 'seq.gap',
    section: '§2.4',
    title: 'a gap in the sequence: closed with 1002',
    async run(kit) {
      await closesWith(
        kit,
        [
          { t: 'msg', s: 1, d: ['a'] },
          { t: 'msg', s: 3, d: ['c'] },
        ],
        1002,
        'item 3 after item 1',
      )
      await closesWith(kit, [{ t: 'msg', s: 2, d: ['b'] }], 1002, 'item 2 as the first item of a new session')
    },
  },
  {
    id: 'ack.never-sent',
    section: '§2.6',
    title: 'an ack of an item never sent: closed with 1002',
    run: (kit) => closesWith(kit, [{ t: 'ack', s: 1 }], 1002, 'an ack of item 1 before the server sent anything'),
  },
  {
    id: 'ack.riding',
    section: '§2.9',
    title: 'an ack riding on a msg is taken if welcome.pa says so (one of an item never sent: 1002), else ignored',
    async run(kit) {
      const session = kit.session()
      const welcome = await session.open()
      // Nothing was sent to the client yet: as an ack, a = 1 acknowledges an item never sent (§2.6).
      session.connection.send({ t: 'msg', s: 1, a: 1, d: ['a'] })
      session.txSeq = 1
      if (welcome.pa) {
        await session.connection.expectClose(1002, 'a msg carrying a = 1 before the server sent anything (welcome.pa)')
        return
      }
      // A server that did not announce pa does not know the member: ignored, as any unknown one (§1.6).
      expectJson(await session.untilEchoes(1), ['a'], 'the echo of a msg carrying a = 1 (no welcome.pa)')
    },
  },
  {
    id: 'ack.older',
    section: '§2.7',
    title: 'an older or repeated ack is ignored, not an error',
    async run(kit) {
      const session = kit.session()
      await session.open()
      session.send(['a', 'b'])
      await session.untilEchoes(2)
      session.ack(2)
      session.ack(1)
      session.ack(0)
      session.ack(2)
      session.send(['c'])
      expectJson(await session.untilEchoes(3), ['a', 'b', 'c'], 'the echoes after acks 2, 1, 0, 2')
    },
  },
]
