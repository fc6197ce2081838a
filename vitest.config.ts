import { defineConfig } from 'vitest/config'

// Two projects: fast unit tests in jsdom (mock-socket, fake timers) and integration tests
// in Node against real servers on 127.0.0.1.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          environment: 'jsdom',
          include: ['test/**/*.test.ts'],
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
    ],
  },
})
