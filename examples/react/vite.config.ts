import { fileURLToPath } from 'node:url'
import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

export default defineConfig({
  // This folder, so that `vite build --config examples/react/vite.config.ts` works from the repository root too.
  root: fileURLToPath(new URL('.', import.meta.url)),
  // Its own dependency cache: the default (the repository's node_modules/.vite) would be shared
  // with the other example's dev server and with vitest, and each would invalidate the others'.
  cacheDir: '../../node_modules/.vite/example-react',
  plugins: [react()],
  server: {
    // The page connects to its own origin at /ws; in development that is forwarded to the demo
    // server (`npm start` at the repository root). `ws: true` proxies the WebSocket upgrade.
    proxy: { '/ws': { target: 'http://127.0.0.1:8080', ws: true } },
  },
})
