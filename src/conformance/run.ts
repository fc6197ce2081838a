/**
 * Runs the kit's rules against a server, one after the other: each gets fresh connections, a
 * bounded time, and its connections are cut when it ends, whatever happened. A rule passes when
 * it returns, is skipped when it throws a Skip saying why it cannot apply, and fails with the
 * Violation it throws (or with any other error, which is reported as it is).
 * @module
 */
import { Peer, type Refusal, Violation } from './peer.js'
import { connect, KitSession } from './session.js'

/** What a rule gets: the server's address, the kit's timeout, and connections that are cleaned up after it. */
export interface Kit {
  readonly url: string
  /** How long (ms) the kit waits for anything the server should do. */
  readonly timeout: number
  /** A new session (nothing is sent until its `open()`). */
  session(): KitSession
  /** A bare connection offering `protocols` (tether.v1 by default), or the status of a refused upgrade. */
  open(protocols?: string[]): Promise<Peer | Refusal>
}

/** One rule of PROTOCOL.md as the kit checks it. */
export interface Rule {
  /** A short stable name, such as `seq.gap` (`--only` takes these). */
  readonly id: string
  /** The section of PROTOCOL.md it checks, such as `§2.4`. */
  readonly section: string
  /** What a conforming server does, in a few words. */
  readonly title: string
  /** Passes by returning; throws a Violation when broken, or a {@link Skip} when it cannot apply to this server. */
  run(kit: Kit): Promise<void>
}

/** Thrown by a rule that cannot apply to the server under test (a limit beyond what the kit checks). */
export class Skip extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'Skip'
  }
}

/** How one rule went. */
export interface Result {
  readonly rule: Rule
  readonly status: 'pass' | 'fail' | 'skip'
  /** The section broken (the rule's own, unless the violation named another), or the rule's. */
  readonly section: string
  /** Why it failed or was skipped. */
  readonly detail?: string
  readonly ms: number
}

/** A rule that runs longer than this is cut off and fails (its own waits are much shorter). */
const RULE_LIMIT = 60_000

/** Runs `rules` in order against `url`; `report` hears of each result as it comes. */
export async function runRules(
  url: string,
  rules: readonly Rule[],
  options: { timeout: number; report?: (result: Result) => void },
): Promise<Result[]> {
  const results: Result[] = []
  for (const rule of rules) {
    const result = await runRule(url, rule, options.timeout)
    results.push(result)
    options.report?.(result)
  }
  return results
}

async function runRule(url: string, rule: Rule, timeout: number): Promise<Result> {
  const peers = new Set<Peer>()
  const track = <T extends Peer | Refusal>(peer: T): T => {
    if (peer instanceof Peer) peers.add(peer)
    return peer
  }
  const kit: Kit = {
    url,
    timeout,
    session: () => new KitSession(async () => track(await connect(url, timeout))),
    open: async (protocols = ['tether.v1']) => track(await Peer.open(url, protocols, timeout)),
  }
  const started = Date.now()
  let limit: ReturnType<typeof setTimeout> | undefined
  const cutOff = new Promise<never>((_, reject) => {
    limit = setTimeout(() => reject(new Error(`the rule did not finish within ${RULE_LIMIT / 1000} s`)), RULE_LIMIT)
  })
  try {
    await Promise.race([rule.run(kit), cutOff])
    return { rule, status: 'pass', section: rule.section, ms: Date.now() - started }
  } catch (error) {
    const ms = Date.now() - started
    if (error instanceof Skip) return { rule, status: 'skip', section: rule.section, detail: error.message, ms }
    if (error instanceof Violation) return { rule, status: 'fail', section: error.section ?? rule.section, detail: error.message, ms }
    return { rule, status: 'fail', section: rule.section, detail: `the check itself failed: ${(error as Error).message ?? error}`, ms }
  } finally {
    clearTimeout(limit)
    for (const peer of peers) peer.terminate()
  }
}
