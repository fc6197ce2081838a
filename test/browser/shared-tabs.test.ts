/**
 * One connection for all tabs (`shared: true`), in real Chromium: several pages of one browser
 * context (one origin: the same Web Locks, BroadcastChannel and IndexedDB) against the
 * reference server. The server sees one session and one connection; every tab's messages reach
 * it once and in order, and every tab hears it. When the page holding the connection goes away
 * (closed, crashed, frozen), another takes over within a second or two, and a tab that was
 * streaming loses nothing and sends nothing twice.
 *
 * Closing and crashing use the shared playwright browser. Freezing needs a browser of its own
 * (test/support/cdp-browser.ts): playwright keeps its pages visible, and Chromium freezes only a
 * hidden page (`Page.setWebLifecycleState` then does nothing at all: no `freeze` event, timers
 * run on, the lock stays held).
 * The same in Node, with pages simulated: test/integration/shared.test.ts.
 */
import type { CDPSession, Page } from 'playwright-core'
import { expect, it } from 'vitest'
import type { Session } from '../../src/server/index.js'
import { browserSuite, waitFor } from '../support/browser.js'
import { startRecordingPageServer } from '../support/browser-server.js'
import { type CdpPage, launchCdpBrowser } from '../support/cdp-browser.js'
import { loadPage, type Reports, span, start, startReports } from './persist-page.js'

const suite = browserSuite()

/** Tab `load` sends `load * 1000 + i`: the server tells the tabs' messages apart by their thousands. */
const valuesOf = (load: number, from: number, to: number) => span(load * 1000 + from, load * 1000 + to)

/** The reference server recording every message and session, and every WebSocket upgrade (PageServer.upgrades). */
async function recordingServer() {
  const { server, atServer, sessions } = await startRecordingPageServer()
  suite.defer(() => server.close())
  const got = atServer as number[]
  return {
    server,
    sessions,
    got,
    url: `ws://127.0.0.1:${server.port}/ws`,
    /** What the server got from tab `load`, in order. */
    from: (load: number) => got.filter((value) => Math.floor(value / 1000) === load),
  }
}

/** The server sends `message` to the session: every tab of `loads` hears it, once. */
async function everyTabHears(session: Session, reports: Reports, loads: number[], message: string): Promise<void> {
  await session.send(message)
  const heard = (load: number) => reports.of('received', load).filter((r) => r.msg === message).length
  await waitFor(() => loads.every((load) => heard(load) >= 1), 5000, `every tab to hear ${JSON.stringify(message)}`)
  expect(loads.map(heard)).toEqual(loads.map(() => 1))
}

/** The last role tab `load` reported in its `shared` events. */
const roleOf = (reports: Reports, load: number) => reports.of('shared', load).at(-1)?.role

/**
 * Opens `count` pages of one browser context, each with a shared socket (tab `1` … `count`,
 * the report's `load`), started one after the other so that tab 1 holds the connection.
 */
async function openTabs(count: number, url: string, origin: string, reports: Reports) {
  const { page: first, context, errors } = await suite.open()
  const pages: Page[] = [first]
  for (let i = 1; i < count; i++) {
    const page = await context.newPage()
    page.on('pageerror', (error) => errors.push(`${error.name}: ${error.message}`))
    pages.push(page)
  }
  for (const [i, page] of pages.entries()) {
    const load = i + 1
    await loadPage(page, origin)
    await start(page, { load, url, reports: reports.url, shared: true })
    if (load === 1) await waitFor(() => roleOf(reports, 1) === 'holder', 5000, 'the first tab to hold the connection')
    await waitFor(() => reports.of('state', load).includes('open'), 5000, `tab ${load} to be open`)
  }
  return { context, pages, errors }
}

it('shares one session and one connection among 3 tabs: each tab’s messages reach the server once and in order, and every tab hears the server', async () => {
  const { server, sessions, got, url, from } = await recordingServer()
  const reports = await startReports(suite)
  const { pages, errors } = await openTabs(3, url, server.origin, reports)
  expect([1, 2, 3].map((load) => roleOf(reports, load))).toEqual(['holder', 'follower', 'follower'])

  // All three stream at once, in bursts (several messages per tick, ticks interleaved across tabs).
  await Promise.all(pages.map((page, i) => page.evaluate((from) => window.t!.stream(from, from + 100, 10, 5), (i + 1) * 1000)))
  await waitFor(() => [1, 2, 3].every((load) => reports.of('acked', load).length === 100), 10000, 'every tab’s 100 acknowledgements')

  for (const load of [1, 2, 3]) {
    expect(from(load)).toEqual(valuesOf(load, 0, 100))
    expect(reports.of('acked', load)).toEqual(valuesOf(load, 0, 100))
  }
  expect(got).toHaveLength(300)
  // One session, over one WebSocket: the server sees the browser once, not once per tab.
  expect(sessions).toHaveLength(1)
  expect(server.upgrades).toHaveLength(1)
  expect(server.openConnections()).toBe(1)
  const ids = await Promise.all(pages.map((page) => page.evaluate(() => window.t!.sock.sessionId)))
  expect(ids).toEqual([sessions[0]!.id, sessions[0]!.id, sessions[0]!.id])

  // Each tab's request gets its own reply.
  await Promise.all(pages.map((page, i) => page.evaluate((value) => window.t!.request(value), `request of tab ${i + 1}`)))
  await waitFor(() => reports.of('replied').length === 3, 5000, 'the 3 replies')
  for (const load of [1, 2, 3]) {
    expect(reports.of('replied', load)).toEqual([{ value: `request of tab ${load}`, reply: { got: `request of tab ${load}` } }])
  }

  // What the server sends the session reaches every tab, once.
  await sessions[0]!.send('to every tab')
  await sessions[0]!.send('again')
  await waitFor(() => [1, 2, 3].every((load) => reports.of('received', load).length === 2), 5000, 'every tab to hear the server twice')
  for (const load of [1, 2, 3]) {
    expect(reports.of('received', load).map((r) => r.msg)).toEqual(['to every tab', 'again'])
  }
  expect(reports.of('failed')).toEqual([])
  expect(reports.of('error')).toEqual([])
  expect(errors).toEqual([])
})

/**
 * How the holding page goes away, and whether its pagehide handlers run (it steps down, and
 * says so) or not (the browser releases its locks with the dead renderer).
 */
const goings: Record<string, { go(page: Page, cdp: CDPSession): Promise<void>; stepsDown: boolean }> = {
  'closed (beforeunload and pagehide run)': {
    go: async (page) => {
      const closed = new Promise<void>((resolve) => page.once('close', () => resolve()))
      await page.close({ runBeforeUnload: true })
      await closed
    },
    stepsDown: true,
  },
  // Playwright skips only beforeunload here: the page still runs pagehide and unload.
  'closed with runBeforeUnload: false': { go: (page) => page.close({ runBeforeUnload: false }), stepsDown: true },
  'crashed (Page.crash: its renderer dies, nothing of it runs)': {
    go: async (page, cdp) => {
      const crashed = new Promise<void>((resolve) => page.once('crash', () => resolve()))
      // The renderer dies before it answers.
      cdp.send('Page.crash').catch(() => undefined)
      await crashed
    },
    stepsDown: false,
  },
}

for (const [going, { go, stepsDown }] of Object.entries(goings)) {
  it(`hands the connection over when the holding page is ${going} mid-stream: another tab holds it within 2 s, and nothing is lost or sent twice`, async () => {
    const { server, sessions, url, from } = await recordingServer()
    const reports = await startReports(suite)
    const { pages, context, errors } = await openTabs(3, url, server.origin, reports)
    const [holder, second, third] = pages as [Page, Page, Page]
    const cdp = await context.newCDPSession(holder)

    // The holder's tab streams too; the two others stream, and go on streaming through the hand-over.
    const streams = [second, third].map((page, i) => page.evaluate((from) => window.t!.stream(from, from + 300, 5, 5), (i + 2) * 1000))
    void holder.evaluate(() => window.t!.stream(1000, 1300, 5, 5)).catch(() => undefined)
    await waitFor(() => from(2).length >= 50 && from(3).length >= 50, 5000, 'the followers’ first messages at the server')
    const goneAt = Date.now()
    await go(holder, cdp)

    await waitFor(() => roleOf(reports, 2) === 'holder' || roleOf(reports, 3) === 'holder', 5000, 'another tab to hold the connection')
    const took = reports.all.find((r) => r.kind === 'shared' && r.load !== 1 && r.data.role === 'holder')!
    expect(took.at - goneAt).toBeLessThan(2000)

    await Promise.all(streams)
    await waitFor(
      () => reports.of('acked', 2).length === 300 && reports.of('acked', 3).length === 300,
      15000,
      'every message of the surviving tabs acknowledged',
    )
    for (const load of [2, 3]) {
      // Each value once at the server, in order, and every send() resolved in its tab.
      expect(from(load)).toEqual(valuesOf(load, 0, 300))
      expect(reports.of('acked', load)).toEqual(valuesOf(load, 0, 300))
    }
    // The holding tab's own messages: what it got into the shared outbox goes once, in order.
    const first = from(1)
    expect(first).toEqual(valuesOf(1, 0, first.length))
    // It stepped down on pagehide (its report of that is a beacon: it may come last), or died holding.
    if (stepsDown) await waitFor(() => roleOf(reports, 1) === 'follower', 5000, 'the closed page’s step-down report')
    else expect(roleOf(reports, 1)).toBe('holder')
    // The session goes on: one session, one connection open (the new holder's).
    expect(sessions).toHaveLength(1)
    await everyTabHears(sessions[0]!, reports, [2, 3], 'after the hand-over')
    await waitFor(() => server.openConnections() === 1, 5000, 'the old holder’s connection to close')
    expect(server.upgrades).toHaveLength(2)
    expect(reports.of('failed')).toEqual([])
    expect(reports.of('error').filter((e) => e.name !== 'ConnectionError')).toEqual([])
    expect(errors).toEqual([])
  })
}

/**
 * `count` tabs of a browser driven over DevTools (one that can freeze a page), each with a
 * shared socket, started as openTabs starts them.
 */
async function openCdpTabs(
  count: number,
  url: string,
  origin: string,
  reports: Reports,
  page = '/persist-socket.html',
): Promise<CdpPage[]> {
  const browser = await launchCdpBrowser()
  suite.defer(() => browser.close())
  const pages: CdpPage[] = []
  for (let load = 1; load <= count; load++) {
    const tab = await browser.newPage()
    pages.push(tab)
    await tab.goto(`${origin}${page}`)
    await waitForAsync(() => tab.evaluate(() => typeof window.lib === 'object'), 5000, `tab ${load} to import the entries`)
    await start(tab, { load, url, reports: reports.url, shared: true })
    if (load === 1) await waitFor(() => roleOf(reports, 1) === 'holder', 5000, 'the first tab to hold the connection')
    await waitFor(() => reports.of('state', load).includes('open'), 5000, `tab ${load} to be open`)
  }
  return pages
}

/** Polls an asynchronous `predicate` until it resolves truthy (`timeout` ms at most). */
/** Every tab streams 300 values (tab i: i·1000 on), until the followers' first ones reached the server. */
async function streamFromEveryTab(pages: CdpPage[], from: (load: number) => unknown[]): Promise<void> {
  for (const [i, page] of pages.entries()) {
    await page.evaluate(
      (first) => {
        void window.t!.stream(first, first + 300, 5, 5)
      },
      (i + 1) * 1000,
    )
  }
  await waitFor(() => from(2).length >= 50 && from(3).length >= 50, 5000, 'the followers’ first messages at the server')
}

/** Each tab's 300 values once at the server, in order, and every send() resolved in its tab. */
function expectEveryValueOnce(from: (load: number) => unknown[], reports: Reports): void {
  for (const load of [1, 2, 3]) {
    expect(from(load)).toEqual(valuesOf(load, 0, 300))
    expect(reports.of('acked', load)).toEqual(valuesOf(load, 0, 300))
  }
}

/** After one hand-over: still one session, heard by every tab; two upgrades in all, one connection open; nothing failed. */
async function expectOneSessionAfterHandOver(
  server: Awaited<ReturnType<typeof recordingServer>>['server'],
  sessions: Session[],
  reports: Reports,
  pages: CdpPage[],
): Promise<void> {
  expect(sessions).toHaveLength(1)
  await everyTabHears(sessions[0]!, reports, [1, 2, 3], 'after the hand-over')
  expect(server.upgrades).toHaveLength(2)
  expect(server.openConnections()).toBe(1)
  expect(reports.of('failed')).toEqual([])
  expect(reports.of('error').filter((e) => e.name !== 'ConnectionError')).toEqual([])
  expect(pages.flatMap((page) => page.errors)).toEqual([])
}

async function waitForAsync(predicate: () => Promise<unknown>, timeout: number, description: string): Promise<void> {
  const deadline = Date.now() + timeout
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${description}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

it('hands the connection over when the holding page is frozen mid-stream (it steps down on `freeze`), and the frozen tab delivers the rest once it resumes: nothing lost or sent twice', async () => {
  const { server, sessions, url, from } = await recordingServer()
  const reports = await startReports(suite)
  const pages = await openCdpTabs(3, url, server.origin, reports)
  const [holder] = pages as [CdpPage]
  await streamFromEveryTab(pages, from)
  const frozenAt = Date.now()
  await holder.send('Page.setWebLifecycleState', { state: 'frozen' })

  await waitFor(() => roleOf(reports, 2) === 'holder' || roleOf(reports, 3) === 'holder', 5000, 'another tab to hold the connection')
  const took = reports.all.find((r) => r.kind === 'shared' && r.load !== 1 && r.data.role === 'holder')!
  expect(took.at - frozenAt).toBeLessThan(2000)
  // The frozen page stepped down before it froze, and runs nothing now.
  expect(roleOf(reports, 1)).toBe('follower')
  const sentFrozen = reports.of('sent', 1).length
  expect(sentFrozen).toBeLessThan(300)
  await waitFor(
    () => reports.of('acked', 2).length === 300 && reports.of('acked', 3).length === 300,
    15000,
    'every message of the other tabs acknowledged',
  )
  expect(reports.of('sent', 1)).toHaveLength(sentFrozen)

  // Back: the tab goes on where it stopped, through the new holder.
  await holder.send('Page.setWebLifecycleState', { state: 'active' })
  // Hidden now (a page is hidden to be frozen), its timers slowed: the rest goes in one tick.
  await holder.evaluate(() => {
    window.t!.stop()
    for (let i = (window.t!.last() as number) + 1; i < 1300; i++) window.t!.send(i)
  })
  await waitFor(() => reports.of('acked', 1).length === 300, 15000, 'every message of the tab that was frozen acknowledged')
  expectEveryValueOnce(from, reports)
  await expectOneSessionAfterHandOver(server, sessions, reports, pages)
})

it('hands the connection over when the holding page goes into the back-forward cache (it steps down on pagehide), and the page takes part again when it comes back: nothing lost or sent twice', async () => {
  const { server, sessions, url, from } = await recordingServer()
  const reports = await startReports(suite)
  // ?bfcache: served so that Chromium may keep the page (not with no-store).
  const pages = await openCdpTabs(3, url, server.origin, reports, '/persist-socket.html?bfcache')
  const [holder] = pages as [CdpPage]
  await streamFromEveryTab(pages, from)
  const leftAt = Date.now()
  await holder.goto(`${server.origin}/persist.html`)

  await waitFor(() => roleOf(reports, 2) === 'holder' || roleOf(reports, 3) === 'holder', 5000, 'another tab to hold the connection')
  const took = reports.all.find((r) => r.kind === 'shared' && r.load !== 1 && r.data.role === 'holder')!
  expect(took.at - leftAt).toBeLessThan(2000)
  expect(roleOf(reports, 1)).toBe('follower')
  await waitFor(
    () => reports.of('acked', 2).length === 300 && reports.of('acked', 3).length === 300,
    15000,
    'every message of the other tabs acknowledged',
  )

  // Back: the page comes out of the cache as it was (its socket, its stream), not loaded anew.
  await holder.evaluate(() => history.back())
  await waitForAsync(() => holder.evaluate(() => window.t?.sock.state === 'open'), 5000, 'the page back, its socket open').catch(
    (error: Error) => {
      throw new Error(`${error.message} (the back-forward cache did not keep it: ${holder.notCached.join('; ') || 'no reason given'})`)
    },
  )
  expect(holder.notCached).toEqual([])
  await holder.evaluate(() => {
    window.t!.stop()
    for (let i = (window.t!.last() as number) + 1; i < 1300; i++) window.t!.send(i)
  })
  await waitFor(() => reports.of('acked', 1).length === 300, 15000, 'every message of the page that came back acknowledged')
  expectEveryValueOnce(from, reports)
  // It stands again: the lock's holder, and the two others waiting for it.
  const lock = `tethersocket:shared::${url}`
  await waitForAsync(
    () =>
      holder.evaluate(async (lock) => {
        const { held = [], pending = [] } = await navigator.locks.query()
        return held.filter((l) => l.name === lock).length === 1 && pending.filter((l) => l.name === lock).length === 2
      }, lock),
    5000,
    'the page that came back to stand for the connection again',
  )
  await expectOneSessionAfterHandOver(server, sessions, reports, pages)
})
