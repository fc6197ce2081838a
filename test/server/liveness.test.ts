import { describe, expect, it } from 'vitest'
import { Liveness } from '../../src/server/liveness.js'

const at = (acked: number, written: number) => ({ acked, written })

describe('Liveness', () => {
  it('pings first, then wants a pong or ack progress at every beat', () => {
    const live = new Liveness()
    expect(live.beat({ answered: true, paused: false, progress: undefined })).toBe('ping')
    expect(live.beat({ answered: true, paused: false, progress: at(0, 0) })).toBe('ping')
    expect(live.beat({ answered: false, paused: false, progress: at(0, 0) })).toBe('silent')
  })

  it('takes ack progress as an answer when the pong is still behind a backlog', () => {
    const live = new Liveness()
    live.beat({ answered: true, paused: false, progress: at(0, 500) })
    expect(live.beat({ answered: false, paused: false, progress: at(200, 500) })).toBe('ping')
    expect(live.beat({ answered: false, paused: false, progress: at(200, 500) })).toBe('silent')
  })

  it('finds a client that pongs but does not acknowledge what was written before the previous ping', () => {
    const live = new Liveness()
    live.beat({ answered: true, paused: false, progress: at(0, 3) })
    // Written after the last beat: not judged yet.
    expect(live.beat({ answered: true, paused: false, progress: at(0, 3) })).toBe('unacknowledged')
    const fresh = new Liveness()
    fresh.beat({ answered: true, paused: false, progress: at(0, 0) })
    expect(fresh.beat({ answered: true, paused: false, progress: at(0, 3) })).toBe('ping')
    expect(fresh.beat({ answered: true, paused: false, progress: at(3, 5) })).toBe('ping')
    expect(fresh.beat({ answered: true, paused: false, progress: at(3, 5) })).toBe('unacknowledged')
  })

  it('does not judge (nor ping) a connection whose reading is paused; after it, one grace, then the judgement', () => {
    const live = new Liveness()
    live.beat({ answered: true, paused: false, progress: at(0, 3) })
    expect(live.beat({ answered: false, paused: true, progress: at(0, 3) })).toBe('paused')
    expect(live.beat({ answered: false, paused: true, progress: at(0, 3) })).toBe('paused')
    expect(live.beat({ answered: false, paused: false, progress: at(0, 3) })).toBe('ping')
    expect(live.beat({ answered: false, paused: false, progress: at(0, 3) })).toBe('silent')
  })

  it('a client whose reading is paused at every other beat cannot dodge the judgement: one grace after a pause, then silent', () => {
    const live = new Liveness()
    const progress = at(0, 500) // 500 written, nothing acknowledged, no pong ever
    const verdicts = Array.from({ length: 8 }, (_, beat) => live.beat({ answered: false, paused: beat % 2 === 1, progress }))
    expect(verdicts).toEqual(['ping', 'paused', 'ping', 'paused', 'silent', 'paused', 'silent', 'paused'])
  })

  it('an answer after a pause restores the grace for the next pause', () => {
    const live = new Liveness()
    live.beat({ answered: true, paused: false, progress: at(0, 0) })
    expect(live.beat({ answered: false, paused: true, progress: at(0, 0) })).toBe('paused')
    expect(live.beat({ answered: false, paused: false, progress: at(0, 0) })).toBe('ping') // the grace
    expect(live.beat({ answered: true, paused: false, progress: at(0, 0) })).toBe('ping') // it answered
    expect(live.beat({ answered: false, paused: true, progress: at(0, 0) })).toBe('paused')
    expect(live.beat({ answered: false, paused: false, progress: at(0, 0) })).toBe('ping') // a grace again
  })
})
