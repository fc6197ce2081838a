/**
 * Rules of the opening: the subprotocol (§1.2, §1.4), the hello and the welcome (§3.2, §4.1,
 * §4.3, §4.8), and how numbers may be spelled (§1.7).
 * @module
 */
import { check, closesWith, expectJson } from './expect.js'
import { describeClose, Violation } from './peer.js'
import type { Rule } from './run.js'
import { isRefusal, SUBPROTOCOL } from './session.js'

/** A session id no server has given out. */
const UNKNOWN_SID = 'x-conformance-no-such-session-0000000000'

/** The rules of the opening, in running order. */
export const handshakeRules: Rule[] = [
  {
    id: 'subprotocol.selected',
    section: '§1.2',
    title: 'offered tether.v1, the server selects it',
    async run(kit) {
      const peer = await kit.open([SUBPROTOCOL])
      if (isRefusal(peer)) throw new Violation(`the upgrade was refused with HTTP ${peer.refused}`)
      check(peer.protocol === SUBPROTOCOL, `the server selected ${JSON.stringify(peer.protocol)}, not "tether.v1"`)
    },
  },
  {
    id: 'subprotocol.any-position',
    section: '§1.2',
    title: 'tether.v1 offered after another subprotocol is still selected',
    async run(kit) {
      const peer = await kit.open(['x-conformance.v0', SUBPROTOCOL])
      if (isRefusal(peer)) throw new Violation(`the upgrade was refused with HTTP ${peer.refused}`)
      check(peer.protocol === SUBPROTOCOL, `offered "x-conformance.v0, tether.v1", the server selected ${JSON.stringify(peer.protocol)}`)
    },
  },
  {
    id: 'subprotocol.missing',
    section: '§1.4',
    title: 'without tether.v1 offered: closed with 1002 (or the upgrade refused), never served',
    async run(kit) {
      const peer = await kit.open([])
      if (isRefusal(peer)) {
        check(peer.refused >= 400, `the upgrade was answered with HTTP ${peer.refused}; a refusal is 400 or above`)
        return
      }
      // Served or not, a hello tells: a welcome would mean tether.v1 without the subprotocol.
      peer.send({ t: 'hello', sid: null, ack: 0 })
      const closed = await peer.whenClosed('an upgrade that did not offer tether.v1')
      const welcomed = peer.received.some((message) => message.frame?.t === 'welcome')
      check(!welcomed, 'the server answered a hello with a welcome on a connection that did not offer tether.v1')
      check(closed.code === 1002, `the server closed with ${describeClose(closed)}; expected 1002`)
    },
  },
  {
    id: 'hello.welcome',
    section: '§3.2',
    title: "a new session's welcome: a fresh sid, resumed false, ack 0, max, no reason",
    async run(kit) {
      const first = kit.session()
      const welcome = await first.open()
      check(welcome.resumed === false, 'a hello with sid null got resumed: true', '§4.3')
      check(welcome.ack === 0, `a new session's welcome.ack is ${welcome.ack}; expected 0`, '§4.3')
      check(welcome.reason === undefined, `a hello that named no session got reason ${JSON.stringify(welcome.reason)}`, '§3.2')
      const second = await kit.session().open()
      check(second.sid !== welcome.sid, `two new sessions got the same sid ${JSON.stringify(welcome.sid)}`, '§2.1')
    },
  },
  {
    id: 'hello.after-unknown-frames',
    section: '§4.1',
    title: 'frames of unknown types before the hello are ignored',
    async run(kit) {
      // An unknown type, and one of the server's own (§3.4): neither is a protocol error.
      await kit.session().open({ sid: null, ack: 0 }, [{ t: 'x-conformance-notice', n: 1 }, { t: 'pong' }])
    },
  },
  {
    id: 'hello.first',
    section: '§4.1',
    title: 'a msg before the hello: closed with 1002',
    run: (kit) => closesWith(kit, [{ t: 'msg', s: 1, d: ['early'] }], 1002, 'a msg frame before the hello', { hello: false }),
  },
  {
    id: 'hello.second',
    section: '§4.8',
    title: 'a second hello on one connection: closed with 1002',
    run: (kit) => closesWith(kit, [{ t: 'hello', sid: null, ack: 0 }], 1002, 'a second hello'),
  },
  {
    id: 'hello.unknown-sid',
    section: '§4.3',
    title: 'a hello naming an unknown session gets a new one (its ack ignored)',
    async run(kit) {
      const welcome = await kit.session().open({ sid: UNKNOWN_SID, ack: 3, acked: 2, sent: 4 })
      check(!welcome.resumed, 'a hello naming a session the server never gave out was resumed')
      check(welcome.sid !== UNKNOWN_SID, 'the new session has the id the hello named')
      check(welcome.ack === 0, `the new session's welcome.ack is ${welcome.ack}; expected 0`)
    },
  },
  {
    id: 'numbers.spellings',
    section: '§1.7',
    title: 'integers written 1.0, 2e0, 30E-1 and -0 are read as 1, 2, 3 and 0',
    async run(kit) {
      const session = kit.session()
      await session.open('{"t":"hello","sid":null,"ack":0.0}')
      const peer = session.connection
      session.txSeq = 3 // the items below, written by hand
      peer.send('{"t":"msg","s":1.0,"d":["one"]}')
      peer.send('{"t":"msg","s":2e0,"d":["two"]}')
      peer.send('{"t":"msg","s":30E-1,"d":["three"]}')
      peer.send('{"t":"ack","s":-0}')
      expectJson(await session.untilEchoes(3), ['one', 'two', 'three'], 'echoes of items numbered 1.0, 2e0 and 30E-1')
      await session.untilAcked(3)
    },
  },
]
