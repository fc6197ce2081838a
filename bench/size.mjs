// Bundle size: each client's browser entry bundled the same way (rollup with node-resolve in
// browser mode, commonjs, terser; every export of the entry kept, dependencies inlined), then
// compressed with gzip level 9 and brotli quality 11. Deterministic, so built once.
// tethersocket twice: as a development build, and as a production one (`process.env.NODE_ENV`
// replaced with 'production', as bundlers do, so the development messages and checks go).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'
import commonjs from '@rollup/plugin-commonjs'
import resolve from '@rollup/plugin-node-resolve'
import terser from '@rollup/plugin-terser'
import { rollup } from 'rollup'
import { distDir, loadClient, root } from './dist.mjs'
import { table } from './harness.mjs'

const entries = {
  'tethersocket (client entry, eventemitter3 included)': () => join(distDir, 'index.mjs'),
  'tethersocket, production (client entry, eventemitter3 included)': () => join(distDir, 'index.mjs'),
  'reconnecting-websocket': () => 'reconnecting-websocket',
  partysocket: () => 'partysocket',
  'socket.io-client': () => 'socket.io-client',
}

/** What bundlers do for a production build: `process.env.NODE_ENV` becomes 'production' (a development build: 'development'). */
const nodeEnv = (env) => ({
  name: 'node-env',
  transform: (code) =>
    code.includes('process.env.NODE_ENV') ? { code: code.replaceAll('process.env.NODE_ENV', JSON.stringify(env)), map: null } : null,
})

async function bundle(input, env) {
  const build = await rollup({
    input,
    plugins: [...(env ? [nodeEnv(env)] : []), resolve({ browser: true, rootDir: root }), commonjs(), terser()],
    onwarn: () => {},
  })
  const { output } = await build.generate({ format: 'es' })
  await build.close()
  return output.map((chunk) => chunk.code ?? '').join('')
}

function sizes(code) {
  const bytes = Buffer.from(code)
  return {
    min: bytes.length,
    gzip: gzipSync(bytes, { level: 9 }).length,
    brotli: brotliCompressSync(bytes, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: 11,
        [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
        [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
      },
    }).length,
  }
}

export async function run({ log, select }) {
  await loadClient() // builds dist/ if it is missing
  const results = []
  for (const { name } of select(Object.keys(entries).map((name) => ({ name })))) {
    // The peers' entries as they are; tethersocket's for development or production.
    const env = name.startsWith('tethersocket') ? (name.includes('production') ? 'production' : 'development') : undefined
    results.push({ name, ...sizes(await bundle(entries[name](), env)) })
    log?.(name)
  }
  // The script-tag builds as they ship (already minified by the package build), for reference.
  for (const file of ['tethersocket.global.js', 'tethersocket.global.prod.js']) {
    results.push({ name: `tethersocket IIFE as shipped (dist/${file})`, ...sizes(readFileSync(join(distDir, file))) })
  }
  const kb = (n) => `${(n / 1000).toFixed(2)} kB`
  const markdown = table(
    ['bundle', 'min', 'min+gzip', 'min+brotli'],
    results.map((r) => [r.name, kb(r.min), kb(r.gzip), kb(r.brotli)]),
  )
  return { title: 'Bundle size, browser builds', markdown, notes: '1 kB = 1,000 bytes.', results }
}
