// Builds: ESM (.mjs) and CJS (.cjs) per entry, bundled .d.ts/.d.cts, and the minified IIFE.

import { rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import commonjs from '@rollup/plugin-commonjs'
import resolve from '@rollup/plugin-node-resolve'
import terser from '@rollup/plugin-terser'
import typescript from '@rollup/plugin-typescript'
import { dts } from 'rollup-plugin-dts'

// Start from an empty dist/, so no stale chunk of an earlier build is packed.
rmSync('dist', { recursive: true, force: true })

// Public entries (each gets .mjs, .cjs, .d.ts and .d.cts); the CLI is ESM only.
const entries = {
  index: 'src/index.ts',
  server: 'src/server/index.ts',
  redis: 'src/redis/index.ts',
  react: 'src/bindings/react.ts',
  vue: 'src/bindings/vue.ts',
}
const external = [/^node:/, 'eventemitter3', 'ws', 'react', 'vue']
// The bindings' declarations import the client's types from the `.` entry instead of bundling
// a copy: TetherSocket has private members, so a copy would be a different, incompatible type.
const bindings = ['react', 'vue']
const client = fileURLToPath(new URL('./src/index.ts', import.meta.url))
const ts = () => typescript({ tsconfig: './tsconfig.build.json' })
const banner = '/*! tethersocket | MIT */'

export default [
  {
    input: { ...entries, cli: 'src/server/cli.ts', conformance: 'src/conformance/cli.ts' },
    external,
    plugins: [ts()],
    output: {
      dir: 'dist',
      format: 'es',
      entryFileNames: '[name].mjs',
      chunkFileNames: 'shared-[hash].mjs',
      banner: (chunk) => (chunk.name === 'cli' ? '#!/usr/bin/env node' : ''),
    },
  },
  {
    input: entries,
    external,
    plugins: [ts()],
    output: { dir: 'dist', format: 'cjs', entryFileNames: '[name].cjs', chunkFileNames: 'shared-[hash].cjs', exports: 'named' },
  },
  {
    input: 'src/global.ts',
    plugins: [resolve({ browser: true }), commonjs(), ts()],
    output: {
      file: 'dist/tethersocket.global.js',
      format: 'iife',
      name: 'TetherSocket',
      exports: 'default',
      banner,
      plugins: [terser({ format: { comments: /^!/ } })],
    },
  },
  ...Object.entries(entries).flatMap(([name, input]) =>
    ['d.ts', 'd.cts'].map((ext) => ({
      input,
      external: bindings.includes(name) ? [...external, client] : external,
      plugins: [dts({ tsconfig: './tsconfig.build.json', compilerOptions: { removeComments: false, stripInternal: true } })],
      output: { file: `dist/${name}.${ext}`, format: 'es', paths: { [client]: ext === 'd.ts' ? './index.js' : './index.cjs' } },
    })),
  ),
]
