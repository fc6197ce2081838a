import { defineConfig } from 'vitest/config'

// Three projects: fast unit tests in jsdom (mock-socket, fake timers), integration tests
// in Node against real servers on 127.0.0.1, and browser tests in headless Chromium.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          environment: 'jsdom',
          include: ['test/**/*.test.{ts,tsx}'],
          exclude: ['test/integration/**', 'test/browser/**'],
        },
      },
      {
        test: {
          name: 'integration',
          environment: 'node',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 20000,
          hookTimeout: 20000,
        },
      },
      {
        // Real headless Chromium (playwright-core) against the reference server. One Chromium
        // for all files (test/support/browser-global.ts); the files run one at a time in one
        // worker that imports playwright once (isolate: false), since the machines have 2 cores.
        test: {
          name: 'browser',
          environment: 'node',
          include: ['test/browser/**/*.test.ts'],
          globalSetup: ['test/support/browser-global.ts'],
          testTimeout: 30000,
          hookTimeout: 30000,
          fileParallelism: false,
          isolate: false,
        },
      },
    ],
  },
})
