// Builds: ESM (.mjs) and CJS (.cjs) per entry, bundled .d.ts/.d.cts, and the minified IIFE.

import { rmSync } from 'node:fs'
import commonjs from '@rollup/plugin-commonjs'
import resolve from '@rollup/plugin-node-resolve'
import terser from '@rollup/plugin-terser'
import { dts } from 'rollup-plugin-dts'
import { emitDeclarations } from './scripts/build/declarations.mjs'
import { transpile } from './scripts/build/transpile.mjs'

// Start from an empty dist/, so no stale chunk of an earlier build is packed.
rmSync('dist', { recursive: true, force: true })

// Public entries (each gets .mjs, .cjs, .d.ts and .d.cts); the CLI is ESM only.
const entries = {
  index: 'src/index.ts',
  server: 'src/server/index.ts',
  redis: 'src/redis/index.ts',
  react: 'src/bindings/react.ts',
  vue: 'src/bindings/vue.ts',
  persist: 'src/persist/index.ts',
}
const external = [/^node:/, 'eventemitter3', 'ws', 'react', 'vue']
// The bindings' declarations import the client's types from the `.` entry instead of bundling
// a copy: TetherSocket has private members, so a copy would be a different, incompatible type.
const bindings = ['react', 'vue']
// One transpiler for every config, so each file is transpiled once; `npm run typecheck` checks types.
const typescript = transpile({ tsconfig: './tsconfig.build.json' })
const banner = '/*! tethersocket | MIT */'
// Declarations keep their TSDoc (for editors) and drop what is marked @internal.
const declarationOptions = { removeComments: false, stripInternal: true }
const declarations = emitDeclarations({ tsconfig: './tsconfig.build.json', rootDir: 'src', entries, compilerOptions: declarationOptions })

export default [
  {
    input: { ...entries, cli: 'src/server/cli.ts', conformance: 'src/conformance/cli.ts' },
    external,
    plugins: [typescript],
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
    plugins: [typescript],
    output: { dir: 'dist', format: 'cjs', entryFileNames: '[name].cjs', chunkFileNames: 'shared-[hash].cjs', exports: 'named' },
  },
  {
    input: 'src/global.ts',
    plugins: [resolve({ browser: true }), commonjs(), typescript],
    output: {
      file: 'dist/tethersocket.global.js',
      format: 'iife',
      name: 'TetherSocket',
      exports: 'default',
      banner,
      plugins: [terser({ format: { comments: /^!/ } })],
    },
  },
  // The declarations: emitted once for the package, then bundled per entry as .d.ts and .d.cts.
  ...Object.entries(declarations).map(([name, input]) => ({
    input,
    external: bindings.includes(name) ? [...external, declarations.index] : external,
    plugins: [dts({ tsconfig: './tsconfig.build.json', compilerOptions: declarationOptions })],
    output: ['d.ts', 'd.cts'].map((ext) => ({
      file: `dist/${name}.${ext}`,
      format: 'es',
      paths: { [declarations.index]: ext === 'd.ts' ? './index.js' : './index.cjs' },
    })),
  })),
]
