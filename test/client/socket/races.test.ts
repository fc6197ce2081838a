/**
 * Races and re-entrancy in the client core: listeners and late frames that arrive in the middle
 * of a transition (close, resume, the onOpen hook, a flush). Each test pins a case that once
 * broke delivery.
 *
 * The tether-mode tests use a hand-driven fake WebSocket: the test decides when it opens,
 * what the "server" sends, and when the close event arrives. Like Node's `ws`, it keeps
 * dispatching messages while CLOSING (after the client called close()), until the close
 * event.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ClosedError, type TetherError, TetherSocket, type TetherSocketOptions, type WebSocketConstructor } from '../../../src/index.js'

type Frame = Record<string, unknown>

interface FakeSocket {
  readonly url: string
  readyState: number
  protocol: string
  binaryType: string
  onopen: (() => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null
  onerror: ((event: unknown) => void) | null
  /** Frames the client wrote, parsed. */
  readonly sent: Frame[]
  /** Codes the client closed with. */
  readonly closedWith: (number | undefined)[]
  send(data: string): void
  close(code?: number, reason?: string): void
  /** The server accepted the upgrade, selecting `protocol`. */
  accept(protocol?: string): void
  /** A frame from the server (dispatched while OPEN or CLOSING, like `ws`). */
  deliver(frame: Frame): void
  /** The close event. */
  end(code?: number, reason?: string, wasClean?: boolean): void
  /** Application messages written with their wire sequence numbers, in order. */
  items(): { s: number; d: unknown }[]
  /** Frames of one type. */
  of(t: string): Frame[]
}

function fakeWebSocket(): { WebSocket: WebSocketConstructor; instances: FakeSocket[] } {
  const instances: FakeSocket[] = []
  class Fake implements FakeSocket {
    readyState = 0
    protocol = ''
    binaryType = 'blob'
    onopen: FakeSocket['onopen'] = null
    onmessage: FakeSocket['onmessage'] = null
    onclose: FakeSocket['onclose'] = null
    onerror: FakeSocket['onerror'] = null
    readonly sent: Frame[] = []
    readonly closedWith: (number | undefined)[] = []
    constructor(readonly url: string) {
      instances.push(this)
    }
    send(data: string): void {
      if (this.readyState !== 1) throw new Error('not open')
      this.sent.push(JSON.parse(data))
    }
    close(code?: number): void {
      this.closedWith.push(code)
      if (this.readyState < 2) this.readyState = 2
    }
    accept(protocol = 'tether.v1'): void {
      this.readyState = 1
      this.protocol = protocol
      this.onopen?.()
    }
    deliver(frame: Frame): void {
      if (this.readyState === 1 || this.readyState === 2) this.onmessage?.({ data: JSON.stringify(frame) })
    }
    end(code = 1006, reason = '', wasClean = false): void {
      this.readyState = 3
      this.onclose?.({ code, reason, wasClean })
    }
    items(): { s: number; d: unknown }[] {
      const out: { s: number; d: unknown }[] = []
      for (const frame of this.sent) {
        if (frame.t === 'msg') {
          const items = frame.d as unknown[]
          for (let i = 0; i < items.length; i++) out.push({ s: (frame.s as number) + i, d: items[i] })
        }
        if (frame.t === 'req') out.push({ s: frame.s as number, d: frame.d })
      }
      return out
    }
    of(t: string): Frame[] {
      return this.sent.filter((frame) => frame.t === t)
    }
  }
  return { WebSocket: Fake as unknown as WebSocketConstructor, instances }
}

const MiB = 1024 * 1024
const welcome = (extra: Frame = {}): Frame => ({ t: 'welcome', sid: 's1', resumed: false, ack: 0, max: MiB, ...extra })
/** Lets microtasks and `ms` of fake time run. */
const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms)

const sockets: TetherSocket<any, any>[] = []
function tether<In = unknown, Out = unknown>(options: TetherSocketOptions<In, Out> = {}) {
  const fake = fakeWebSocket()
  const sock = new TetherSocket<In, Out>('ws://fake.test/', {
    WebSocket: fake.WebSocket,
    heartbeat: false,
    reconnect: { minDelay: 10, maxDelay: 10, jitter: 0 },
    ...options,
  })
  sockets.push(sock)
  const errors: TetherError[] = []
  sock.on('error', (error) => errors.push(error))
  return { sock, instances: fake.instances, errors }
}

async function settledState(promise: Promise<unknown>): Promise<'pending' | 'resolved' | 'rejected'> {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending'
  promise.then(
    () => {
      state = 'resolved'
    },
    () => {
      state = 'rejected'
    },
  )
  for (let i = 0; i < 20; i++) await Promise.resolve()
  return state
}

beforeEach(() => {
  vi.useFakeTimers()
})

afterEach(async () => {
  for (const sock of sockets.splice(0)) {
    sock.removeAllListeners()
    sock.on('error', () => {})
    void sock.close()
  }
  await tick(50)
  vi.clearAllTimers()
  vi.useRealTimers()
})

describe('close() racing the tether handshake', () => {
  it('a welcome that arrives after close() (socket CLOSING) does not make the socket reconnect', async () => {
    const { sock, instances } = tether()
    await tick()
    const ws = instances[0]!
    ws.accept()
    expect(ws.of('hello')).toHaveLength(1)
    const done = sock.close()
    expect(sock.state).toBe('closing')
    // The server's welcome was already on the way; `ws` dispatches it while CLOSING.
    ws.deliver(welcome())
    ws.end(1000, '', true)
    await tick(100)
    expect(sock.state).toBe('closed')
    expect(await settledState(done)).toBe('resolved')
    expect(instances).toHaveLength(1) // no new attempt after close()
  })

  it('close() called from a `session` listener is honoured: no open, no reconnect', async () => {
    const { sock, instances } = tether()
    const states: string[] = []
    let done: Promise<void> | undefined
    sock.on('state', (next) => states.push(next))
    sock.on('session', () => {
      done = sock.close()
    })
    await tick()
    const ws = instances[0]!
    ws.accept()
    ws.deliver(welcome())
    expect(sock.state).toBe('closing')
    ws.end(1000, '', true)
    await tick(100)
    expect(states).not.toContain('open')
    expect(sock.state).toBe('closed')
    expect(await settledState(done!)).toBe('resolved')
    expect(instances).toHaveLength(1)
  })
})

describe('sequence numbers across close() and connect()', () => {
  it('after close() dropped in-flight messages, connect() + resume does not leave a sequence gap', async () => {
    const { sock, instances } = tether()
    await tick()
    const ws1 = instances[0]!
    ws1.accept()
    ws1.deliver(welcome({ sid: 's1' }))
    sock.send('a').catch(() => {})
    await tick()
    expect(ws1.items()).toEqual([{ s: 1, d: 'a' }])
    ws1.end(1006) // lost before the server got 'a'
    expect(sock.state).toBe('reconnecting')
    await sock.close() // 'a' rejects with ClosedError and leaves the outbox
    sock.connect()
    await tick()
    const ws2 = instances[1]!
    ws2.accept()
    const hello = ws2.of('hello')[0]!
    // The server still has session s1 and has received nothing of it (its rxSeq is 0).
    ws2.deliver(hello.sid === 's1' ? welcome({ sid: 's1', resumed: true, ack: 0 }) : welcome({ sid: 's2' }))
    sock.send('b').catch(() => {})
    await tick()
    // The server accepts only s = its rxSeq + 1 = 1; anything else is a gap (close 1002, forever).
    expect(ws2.items()).toEqual([{ s: 1, d: 'b' }])
  })
})

describe('the server limit on requests awaiting replies (welcome.reqs)', () => {
  it('a request in flight when the session is lost is sent to the new session (not held forever)', async () => {
    const { sock, instances } = tether()
    await tick()
    const ws1 = instances[0]!
    ws1.accept()
    ws1.deliver(welcome({ sid: 's1', reqs: 1 }))
    const reply = sock.request('r', { timeout: 60_000 })
    reply.catch(() => {})
    await tick()
    expect(ws1.of('req')).toHaveLength(1)
    ws1.end(1006) // the request was not acknowledged
    await tick(10)
    const ws2 = instances[1]!
    ws2.accept()
    ws2.deliver(welcome({ sid: 's2', resumed: false, reqs: 1 })) // the session expired meanwhile
    await tick()
    expect(ws2.of('req')).toEqual([{ t: 'req', s: 1, id: 1, d: 'r' }])
  })
})

describe('onOpen hook', () => {
  it('a reply arriving while an async hook is pending does not release the backlog early', async () => {
    let release: (() => void) | undefined
    const { sock, instances } = tether({
      onOpen: ({ connection }) => {
        if (connection === 1) return
        return new Promise<void>((resolve) => {
          release = resolve
        })
      },
    })
    await tick()
    const ws1 = instances[0]!
    ws1.accept()
    ws1.deliver(welcome({ sid: 's1' }))
    const reply = sock.request('r')
    await tick()
    expect(ws1.of('req')).toHaveLength(1)
    ws1.end(1006)
    sock.send('m').catch(() => {})
    await tick(10)
    const ws2 = instances[1]!
    ws2.accept()
    ws2.deliver(welcome({ sid: 's1', resumed: true, ack: 0 }))
    expect(ws2.of('req')).toHaveLength(1) // the in-flight request is resent before the hook runs
    expect(release).toBeDefined() // the hook runs and holds the backlog
    ws2.deliver({ t: 'res', s: 1, id: 1, d: 'ok' })
    await tick()
    expect(await reply).toBe('ok')
    expect(ws2.of('msg')).toEqual([]) // still held: the hook has not settled
    release!()
    await tick()
    expect(ws2.of('msg')).toEqual([{ t: 'msg', s: 2, d: ['m'] }])
  })

  it('a send() from the hook of a connection that dropped does not jump ahead of in-flight messages (no sequence gap)', async () => {
    let calls = 0
    let staleSend: ((data: string) => Promise<void>) | undefined
    const { sock, instances } = tether<unknown, string>({
      onOpen: ({ send }) => {
        calls++
        if (calls !== 2) return
        staleSend = send
        return new Promise<void>(() => {}) // e.g. awaiting a fresh token
      },
    })
    await tick()
    const ws1 = instances[0]!
    ws1.accept()
    ws1.deliver(welcome({ sid: 's1' }))
    sock.send('a').catch(() => {})
    await tick()
    expect(ws1.items()).toEqual([{ s: 1, d: 'a' }])
    ws1.end(1006)
    await tick(10)
    const ws2 = instances[1]!
    ws2.accept()
    ws2.deliver(welcome({ sid: 's1', resumed: true, ack: 0 }))
    expect(staleSend).toBeDefined()
    ws2.end(1006) // drops while the hook still waits
    staleSend!('auth').catch(() => {}) // the hook goes on and sends on a connection that is gone
    await tick(10)
    const ws3 = instances[2]!
    ws3.accept()
    ws3.deliver(welcome({ sid: 's1', resumed: true, ack: 0 }))
    await tick()
    // 'a' keeps its number 1 and goes first; nothing may be numbered out of order.
    const items = ws3.items()
    expect(items[0]).toEqual({ s: 1, d: 'a' })
    expect(items.map((item) => item.s)).toEqual(items.map((_, i) => i + 1))
  })
})

describe('onOpen hook and the server frame limit', () => {
  it('a hook message refused as too big does not let the first backlog message out while the hook still runs', async () => {
    const { sock, instances, errors } = tether<unknown, string>({
      onOpen: ({ send }) => {
        send('x'.repeat(500)).catch(() => {}) // bigger than welcome.max: refused with DeliveryError
        return new Promise<void>(() => {}) // the hook goes on (e.g. waits for a login reply)
      },
    })
    sock.send('queued').catch(() => {})
    await tick()
    const ws = instances[0]!
    ws.accept()
    ws.deliver(welcome({ sid: 's1', max: 200 }))
    await tick()
    expect(errors.map((e) => e.name)).toContain('DeliveryError')
    expect(sock.state).toBe('connecting')
    expect(ws.items()).toEqual([]) // the backlog is held until the hook settles
  })
})

describe('write loop re-entered by an error listener', () => {
  it('reconnect() from an error listener during a flush does not mark the rest as written to no connection', async () => {
    const { sock, instances } = tether<unknown, string>()
    sock.once('error', () => sock.reconnect())
    await tick()
    const ws1 = instances[0]!
    ws1.accept()
    ws1.deliver(welcome({ sid: 's1', max: 200 }))
    sock.send('x'.repeat(500)).catch(() => {}) // bigger than welcome.max: DeliveryError at flush
    const b = sock.send('b')
    b.catch(() => {})
    await tick()
    const ws2 = instances[1]!
    expect(ws2).toBeDefined()
    ws2.accept()
    ws2.deliver(welcome({ sid: 's1', resumed: true, ack: 0, max: 200 }))
    await tick()
    expect(ws2.items()).toEqual([{ s: 1, d: 'b' }])
  })
})

describe('outbox.failAll re-entered by an error listener', () => {
  it('a send() from an error listener while close() fails the queue still settles (ClosedError)', async () => {
    const { sock } = tether({ autoConnect: false })
    let late: Promise<void> | undefined
    sock.once('error', () => {
      late = sock.send('reported from the error listener')
      late.catch(() => {})
    })
    sock.send('a').catch(() => {})
    await sock.close()
    expect(late).toBeDefined()
    expect(await settledState(late!)).toBe('rejected')
    await late!.catch((error) => expect(error).toBeInstanceOf(ClosedError))
  })
})
