/**
 * The real services the session store tests stand on, checked on their own: a redis-server whose
 * append-only files survive a restart and a SIGKILL and can be set back to an older copy, and an
 * HAProxy that balances WebSocket connections round robin and takes a dead backend out of
 * rotation (and a replaced one back in) within a second.
 */
import { existsSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { createClient } from 'redis'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { type BackendState, type Haproxy, startHaproxy, stopAllHaproxy } from '../support/haproxy.js'
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js'
import { cleanup, restartServer, type StartOptions, startServer, type TestServer, track, withTimeout } from '../support/servers.js'

const clients = new Set<{ destroy(): void }>()

afterEach(async () => {
  for (const client of clients) client.destroy()
  clients.clear()
  await Promise.all([stopAllRedis(), stopAllHaproxy(), cleanup()])
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Polls `check` every 20 ms until it resolves true; throws after `timeoutMs`. */
async function eventually(check: () => Promise<boolean>, timeoutMs: number, description: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}`)
    await sleep(20)
  }
}

describe('startRedis', () => {
  /** A connected client that does not reconnect by itself: each test connects anew after a restart. */
  async function client(redis: RedisServer) {
    const c = createClient({ url: redis.url, socket: { reconnectStrategy: false, connectTimeout: 2000 } })
    c.on('error', () => {}) // the server going away under it is the point of these tests
    clients.add(c)
    await c.connect()
    return c
  }

  /** The id Redis gives each process it starts: a new one proves a new process. */
  async function runId(redis: RedisServer): Promise<string> {
    const info = await (await client(redis)).info('server')
    const id = /run_id:(\w+)/.exec(info)?.[1]
    if (!id) throw new Error(`no run_id in INFO server: ${info}`)
    return id
  }

  it('keeps what was written across restart(), restore() of a snapshot and kill() + restart()', async () => {
    const redis = await startRedis()
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`)
    expect(redis.running).toBe(true)
    const firstRun = await runId(redis)

    const before = await client(redis)
    await before.set('a', '1')
    await before.rPush('list', ['x', 'y'])
    expect(existsSync(join(redis.dir, 'appendonlydir'))).toBe(true)

    // a clean restart: same port, same files, a new process
    await redis.restart()
    const secondRun = await runId(redis)
    expect(secondRun).not.toBe(firstRun)
    let c = await client(redis)
    expect(await c.get('a')).toBe('1')
    expect(await c.lRange('list', 0, -1)).toEqual(['x', 'y'])

    // an older append-only file: what was written after the snapshot is gone
    const snapshot = await redis.snapshot()
    await c.set('b', '2')
    await c.del('a')
    expect(await c.get('b')).toBe('2')
    await redis.restore(snapshot)
    expect(await runId(redis)).not.toBe(secondRun)
    c = await client(redis)
    expect(await c.get('a')).toBe('1')
    expect(await c.get('b')).toBeNull()
    expect(await c.lRange('list', 0, -1)).toEqual(['x', 'y'])

    // a crash: every acknowledged write was fsynced before it was acknowledged
    for (let i = 0; i < 50; i++) await c.set(`k${i}`, String(i))
    await redis.kill()
    expect(redis.running).toBe(false)
    expect(await accepts(redis.port)).toBe(false)
    await redis.restart()
    c = await client(redis)
    expect(await c.mGet(Array.from({ length: 50 }, (_, i) => `k${i}`))).toEqual(Array.from({ length: 50 }, (_, i) => String(i)))
    expect(await c.get('a')).toBe('1')

    await redis.stop()
    expect(redis.stopped).toBe(true)
    expect(existsSync(redis.dir)).toBe(false)
    expect(await accepts(redis.port)).toBe(false)
    await expect(redis.restart()).rejects.toThrow(/was stopped/)
  })

  it('gives two servers their own ports and folders, and stopAllRedis() stops both', async () => {
    const [one, two] = await Promise.all([startRedis(), startRedis()])
    expect(one.port).not.toBe(two.port)
    expect(one.dir).not.toBe(two.dir)
    await (await client(one)).set('where', 'one')
    expect(await (await client(two)).get('where')).toBeNull()
    await stopAllRedis()
    expect([await accepts(one.port), await accepts(two.port)]).toEqual([false, false])
    expect([existsSync(one.dir), existsSync(two.dir)]).toEqual([false, false])
  })

  it('refuses a snapshot of another server', async () => {
    const [one, two] = await Promise.all([startRedis(), startRedis()])
    await expect(two.restore(await one.snapshot())).rejects.toThrow(TypeError)
    expect(two.running).toBe(true)
  })
})

describe('startHaproxy', () => {
  /** A `ws` server that greets every connection with its name. */
  const named = (name: string): StartOptions => ({ onConnection: (connection) => connection.socket.send(name) })

  /** Opens a WebSocket through the proxy, returns the greeting (which backend answered), closes it. */
  async function greeting(proxy: Haproxy): Promise<string> {
    const socket = track(new WebSocket(proxy.url))
    const message = new Promise<string>((resolve, reject) => {
      socket.once('message', (data) => resolve(String(data)))
      socket.once('error', reject)
      socket.once('close', (code) => reject(new Error(`closed (${code}) before a greeting`)))
    })
    try {
      return await withTimeout(message, 2000, 'a greeting through haproxy')
    } finally {
      socket.terminate()
    }
  }

  async function greetings(proxy: Haproxy, count: number): Promise<string[]> {
    const names: string[] = []
    for (let i = 0; i < count; i++) names.push(await greeting(proxy))
    return names
  }

  const statusOf = async (proxy: Haproxy, server: TestServer): Promise<BackendState['status'] | undefined> =>
    (await proxy.backendStates()).find((state) => state.port === server.port)?.status

  it('balances round robin, takes a closed backend out, and puts a replaced one back', async () => {
    const a = await startServer(named('a'))
    const b = await startServer(named('b'))
    const proxy = await startHaproxy([a.port, b.port], { slots: 3 })
    expect(proxy.backends).toEqual([a.port, b.port])
    expect((await proxy.backendStates()).map((state) => state.status)).toEqual(['UP', 'UP', 'MAINT'])

    const names = await greetings(proxy, 6)
    expect(names.filter((name) => name === 'a')).toHaveLength(3)
    for (let i = 1; i < names.length; i++) expect(names[i]).not.toBe(names[i - 1])

    // b dies: its health check fails within about one interval
    await b.kill()
    await eventually(async () => (await statusOf(proxy, b)) === 'DOWN', 1000, "haproxy to mark b's backend DOWN")
    // and new connections all reach a
    const deadline = Date.now() + 1500
    let afterKill: string[] = []
    do afterKill = await greetings(proxy, 4)
    while (afterKill.some((name) => name !== 'a') && Date.now() < deadline)
    expect(afterKill).toEqual(['a', 'a', 'a', 'a'])

    // b is replaced on its port: back in rotation after one passing check
    const b2 = await restartServer(b, named('b2'))
    await eventually(async () => (await statusOf(proxy, b2)) === 'UP', 1000, "haproxy to mark b's port UP again")
    const replaced = await greetings(proxy, 4)
    expect(replaced.sort()).toEqual(['a', 'a', 'b2', 'b2'])

    // a third server on a new port takes b's place without a restart of haproxy
    const c = await startServer(named('c'))
    await proxy.setBackends([a.port, c.port])
    expect(proxy.backends).toEqual([a.port, c.port])
    await eventually(async () => (await statusOf(proxy, c)) === 'UP', 1000, 'haproxy to mark c UP')
    expect((await proxy.backendStates()).map((state) => state.status)).toEqual(['UP', 'UP', 'MAINT'])
    const moved = await greetings(proxy, 4)
    expect(moved.sort()).toEqual(['a', 'a', 'c', 'c'])

    await expect(proxy.setBackends([a.port, b2.port, c.port, 9])).rejects.toThrow(/3 slots/)
    await expect(proxy.setBackends([0])).rejects.toThrow(TypeError)

    await proxy.stop()
    expect(await accepts(proxy.port)).toBe(false)
    expect(existsSync(proxy.dir)).toBe(false)
  })

  it('keeps a WebSocket open through it while other connections come and go', async () => {
    const a = await startServer(named('a'))
    const proxy = await startHaproxy([a.port])
    const socket = track(new WebSocket(proxy.url))
    const echoes: string[] = []
    socket.on('message', (data) => echoes.push(String(data)))
    await withTimeout(new Promise((resolve) => socket.once('open', resolve)), 2000, 'a WebSocket through haproxy to open')
    await greetings(proxy, 3)
    socket.send('hello')
    await eventually(async () => a.texts().includes('hello'), 1000, 'the backend to receive a message sent through haproxy')
    expect(socket.readyState).toBe(WebSocket.OPEN)
    expect(echoes).toEqual(['a'])
  })

  it('rejects bad backends with a clear error', async () => {
    await expect(startHaproxy([])).rejects.toThrow(/at least one backend/)
    await expect(startHaproxy([70000])).rejects.toThrow(/TCP ports/)
    await expect(startHaproxy([1, 2], { slots: 1 })).rejects.toThrow(RangeError)
  })
})
