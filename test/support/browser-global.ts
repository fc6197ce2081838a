/**
 * globalSetup of the `browser` vitest project: one headless Chromium for all browser-test
 * files (launching one per file costs seconds each on a 2-core machine). Its endpoint goes
 * to the test files through `provide`; `browserSuite()` connects to it. A launch failure is
 * passed on as a message, so that every browser test fails with it instead of being skipped.
 */
import type { BrowserServer } from 'playwright-core'
import type { TestProject } from 'vitest/node'
import { launchBrowserServer } from './chromium.js'

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let server: BrowserServer | undefined
  try {
    server = await launchBrowserServer()
    project.provide('chromiumEndpoint', server.wsEndpoint())
  } catch (error) {
    project.provide('chromiumError', (error as Error).message)
  }
  return async () => {
    await server?.close()
  }
}
