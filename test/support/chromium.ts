/**
 * Launching headless Chromium with playwright-core: the executable (`CHROME_PATH`, or Debian's
 * /usr/bin/chromium) and the flags headless Chromium needs in a container. No vitest
 * import here: the project's globalSetup uses it too.
 */
import { existsSync } from 'node:fs'
import { type Browser, type BrowserServer, chromium } from 'playwright-core'

/** The flags headless Chromium needs in a container without a desktop or outside network. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** `CHROME_PATH`, or Debian's chromium. */
export const chromiumPath = (): string => process.env.CHROME_PATH || '/usr/bin/chromium'

/** The executable to launch; throws a message that says how to get one when it is missing. */
export function chromiumExecutable(): string {
  const executablePath = chromiumPath()
  if (!existsSync(executablePath)) {
    const where = process.env.CHROME_PATH
      ? `CHROME_PATH is ${executablePath}, which does not exist`
      : `no Chromium at ${executablePath} (set CHROME_PATH to use another binary)`
    throw new Error(
      process.env.CI
        ? `browser tests cannot run: ${where}. In CI they must run, not be skipped: install Chromium before \`npm test\` ` +
            '(.ci/run does: apt-get update && apt-get install -y --no-install-recommends chromium).'
        : `browser tests cannot run: ${where}. Install it with \`apt-get install -y chromium\` (Debian/Ubuntu, as root) ` +
            'or point CHROME_PATH at a Chromium or Chrome binary. `npx playwright install` is not used here.',
    )
  }
  return executablePath
}

/** Launches headless Chromium, or throws a message that says how to get one. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumExecutable(), args: CHROMIUM_ARGS, timeout: 20000 })
}

/** Launches headless Chromium for others to connect to (the project's globalSetup shares one among all files). */
export function launchBrowserServer(): Promise<BrowserServer> {
  return chromium.launchServer({ executablePath: chromiumExecutable(), args: CHROMIUM_ARGS, timeout: 20000 })
}
