/**
 * Rules of the heartbeat (§6.1): every ping gets a pong, also among items.
 * @module
 */
import { check } from './expect.js'
import type { Rule } from './run.js'

/** The rules of the heartbeat. */
export const heartbeatRules: Rule[] = [
  {
    id: 'ping.pong',
    section: '§6.1',
    title: 'each ping is answered with a pong, also right after items',
    async run(kit) {
      const session = kit.session()
      await session.open()
      session.connection.send({ t: 'ping' })
      await session.until(() => (session.pongs >= 1 ? true : undefined), 'a pong in answer to a ping')
      session.send(['a'])
      session.connection.send({ t: 'ping' })
      session.connection.send({ t: 'ping' })
      await session.until(() => (session.pongs >= 3 ? true : undefined), 'a pong for each of three pings')
      // The items before a ping are delivered before its pong; their ack may come after it (§6.1).
      await session.untilEchoes(1)
      await session.untilAcked(1)
      check(session.pongs === 3, `three pings got ${session.pongs} pongs`)
    },
  },
]
