/**
 * Rules of frames as such: what is not a frame (§1.5), invalid fields (§3.3), what is ignored
 * (§1.6, §3.4), and sizes (§3.7, §3.10, §9.1).
 * @module
 */
import { check, closesWith, expectJson } from './expect.js'
import { type Kit, type Rule, Skip } from './run.js'

/** The oversized-frame rules send frames of `max` bytes; beyond this they are skipped. */
const MAX_TESTED = 64 * 1024 * 1024

/** The batching rule has the server echo 1.35 × `max`; beyond this it is skipped. */
const MAX_BATCH_TESTED = 16 * 1024 * 1024

/** Each of `cases` on its own connection must be closed with `code`. */
async function eachClosesWith(kit: Kit, cases: (object | string | Buffer)[], code: number, what: string): Promise<void> {
  for (const frame of cases) {
    const shown = Buffer.isBuffer(frame) ? 'a binary message' : typeof frame === 'string' ? frame : JSON.stringify(frame)
    await closesWith(kit, [frame], code, `${what} (${shown})`)
  }
}

/** A msg frame of exactly `bytes` bytes (at least 24) holding one string of ASCII letters. */
function msgOfSize(bytes: number, seq = 1): string {
  const head = `{"t":"msg","s":${seq},"d":["`
  const tail = '"]}'
  return head + 'x'.repeat(bytes - head.length - tail.length) + tail
}

/** The rules of frames as such, in running order. */
export const framingRules: Rule[] = [
  {
    id: 'frame.invalid-json',
    section: '§1.5',
    title: 'text that is not JSON: closed with 1007',
    run: (kit) => closesWith(kit, ['{"t":"msg","s":1,"d":['], 1007, 'a text message that is not JSON'),
  },
  {
    id: 'frame.binary',
    section: '§1.5',
    title: 'a binary message: closed with 1007',
    run: (kit) => closesWith(kit, [Buffer.from('{"t":"ping"}')], 1007, 'a binary message'),
  },
  {
    id: 'frame.not-an-object',
    section: '§1.5',
    title: 'JSON that is not an object with a string t: closed with 1002',
    run: (kit) => eachClosesWith(kit, ['[1,2,3]', '"ping"', '{"t":5}', '{"type":"ping"}'], 1002, 'valid JSON that is not a frame'),
  },
  {
    id: 'frame.invalid-field',
    section: '§3.3',
    title: 'a known frame with an invalid field: closed with 1002',
    run: (kit) =>
      eachClosesWith(
        kit,
        [
          { t: 'msg', s: 1, d: [] },
          { t: 'msg', s: 1.5, d: ['x'] },
          { t: 'msg', s: 0, d: ['x'] },
          { t: 'ack', s: -1 },
          { t: 'req', s: 1, id: 'one', d: 1 },
        ],
        1002,
        'a frame with an invalid field',
      ),
  },
  {
    id: 'frame.invalid-hello',
    section: '§3.3',
    title: 'a hello with an invalid field: closed with 1002',
    async run(kit) {
      for (const hello of [
        { t: 'hello', sid: 5, ack: 0 },
        { t: 'hello', sid: null, ack: -1 },
        { t: 'hello', sid: null },
      ]) {
        await closesWith(kit, [hello], 1002, `an invalid hello (${JSON.stringify(hello)})`, { hello: false })
      }
    },
  },
  {
    id: 'frame.unknown-type',
    section: '§3.4',
    title: "frames of unknown types, and of the server's types, are ignored",
    async run(kit) {
      const session = kit.session()
      await session.open()
      const peer = session.connection
      peer.send({ t: 'x-conformance', v: 1 })
      peer.send({ t: 'pong' })
      peer.send({ t: 'res', s: 1, id: 1, d: 1 })
      peer.send({ t: 'welcome', sid: 'x', resumed: false, ack: 0, max: 1 })
      session.send(['after'])
      expectJson(await session.untilEchoes(1), ['after'], 'the echo of the message after them')
      // The ignored frames took no sequence number: the message is item 1.
      await session.untilAcked(1)
    },
  },
  {
    id: 'frame.unknown-member',
    section: '§1.6',
    title: 'members a frame does not define are ignored',
    async run(kit) {
      const session = kit.session()
      await session.open()
      session.connection.send({ t: 'msg', s: 1, d: ['x'], 'x-extra': { n: 1 } })
      session.txSeq = 1
      expectJson(await session.untilEchoes(1), ['x'], 'the echo of a msg with an extra member')
      session.connection.send({ t: 'ack', s: 1, 'x-extra': true })
      session.send(['y'])
      expectJson(await session.untilEchoes(2), ['x', 'y'], 'the echoes after an ack with an extra member')
    },
  },
  {
    id: 'frame.max-counts-the-frame',
    section: '§3.7',
    title: 'a frame of exactly welcome.max bytes is accepted',
    async run(kit) {
      const session = kit.session()
      const { max } = await session.open()
      if (max > MAX_TESTED) throw new Skip(`welcome.max is ${max} bytes; the kit sends frames of max bytes only up to ${MAX_TESTED}`)
      session.connection.send(msgOfSize(max))
      session.txSeq = 1
      await session.untilEchoes(1, kit.timeout * 2)
    },
  },
  {
    id: 'frame.oversized',
    section: '§9.1',
    title: 'a frame of welcome.max + 1 bytes: closed with 1009',
    async run(kit) {
      const session = kit.session()
      const { max } = await session.open()
      if (max > MAX_TESTED) throw new Skip(`welcome.max is ${max} bytes; the kit sends frames of max bytes only up to ${MAX_TESTED}`)
      session.connection.send(msgOfSize(max + 1))
      await session.connection.expectClose(1009, `a frame of ${max + 1} bytes (welcome.max ${max})`)
    },
  },
  {
    id: 'frame.server-batches',
    section: '§3.10',
    title: "a frame of the server's bigger than max carries one item",
    async run(kit) {
      const session = kit.session()
      const { max } = await session.open()
      if (max > MAX_BATCH_TESTED) throw new Skip(`welcome.max is ${max} bytes; the kit checks batches only up to ${MAX_BATCH_TESTED}`)
      // Three echoes of 0.45 × max each: two fit in one frame, three do not.
      const big = 'x'.repeat(Math.floor(max * 0.45) - 8)
      const items = ['a', 'b', 'c'].map((letter) => letter + big)
      session.send(items.slice(0, 2))
      session.send(items.slice(2))
      await session.untilEchoes(3, kit.timeout * 2)
      for (const message of session.connection.received) {
        const frame = message.frame
        if (frame?.t !== 'msg' || !Array.isArray(frame.d) || frame.d.length < 2) continue
        check(
          message.bytes <= max,
          `the server sent a msg frame of ${frame.d.length} items in ${message.bytes} bytes; welcome.max is ${max}`,
        )
      }
    },
  },
]
