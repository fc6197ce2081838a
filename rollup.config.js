// Builds: ESM (.mjs) and CJS (.cjs) per entry, bundled .d.ts/.d.cts, the minified IIFE in a
// development and a production flavour, and the client's ESM for browsers without a bundler.
//
// The development flag (src/dev.ts): in the builds for bundlers and Node every use is the bare
// `process.env.NODE_ENV !== 'production'`, which a bundler folds; the builds for a browser
// without a bundler (no `process` there) have it fixed: true in dist/browser/ and
// dist/tethersocket.global.js, false in dist/tethersocket.global.prod.js.

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
// One transpiler per flavour of the flag; each file is transpiled once per flavour it differs in
// (`npm run typecheck` checks types).
const typescript = transpile({ tsconfig: './tsconfig.build.json' })
const development = transpile({ tsconfig: './tsconfig.build.json', dev: true })
const production = transpile({ tsconfig: './tsconfig.build.json', dev: false })
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
  // The script tag: development (the full messages and checks) and production, without and with
  // the durable outbox (`persist`, which `shared` needs).
  ...[
    ['src/global.ts', 'dist/tethersocket.global.js', development],
    ['src/global.ts', 'dist/tethersocket.global.prod.js', production],
    ['src/global-persist.ts', 'dist/tethersocket.persist.global.js', development],
    ['src/global-persist.ts', 'dist/tethersocket.persist.global.prod.js', production],
  ].map(([input, file, flavour]) => ({
    input,
    plugins: [resolve({ browser: true }), commonjs(), flavour],
    output: {
      file,
      format: 'iife',
      name: 'TetherSocket',
      exports: 'default',
      banner,
      plugins: [terser({ format: { comments: /^!/ } })],
    },
  })),
  // Native `<script type="module">` without a bundler: development flavour, eventemitter3 left
  // as a bare import for the page's import map to resolve.
  {
    input: { index: entries.index, persist: entries.persist },
    external: ['eventemitter3'],
    plugins: [development],
    output: { dir: 'dist/browser', format: 'es', entryFileNames: '[name].mjs', chunkFileNames: 'shared-[hash].mjs' },
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
