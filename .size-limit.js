// The size budgets of the client, checked in CI (`npm run size`): the development builds and the
// production ones. size-limit bundles an ESM entry with esbuild, which would define
// `process.env.NODE_ENV` as "production" by itself when it minifies for the browser: each ESM
// entry says which build it measures. Production budgets are ratchets: the measured size rounded
// up to the next 0.05 kB.

/** esbuild's config for an entry bundled as a bundler builds for `env`. */
const nodeEnv = (env) => (config) => ({ ...config, define: { ...config.define, 'process.env.NODE_ENV': JSON.stringify(env) } })

export default [
  {
    name: 'client, ESM entry (eventemitter3 included)',
    path: 'dist/index.mjs',
    import: '{ TetherSocket }',
    modifyEsbuildConfig: nodeEnv('development'),
    limit: '15.65 kB',
    gzip: true,
  },
  {
    name: 'client, IIFE for a script tag',
    path: 'dist/tethersocket.global.js',
    limit: '15.65 kB',
    gzip: true,
  },
  {
    name: 'client, ESM entry bundled for production (eventemitter3 included)',
    path: 'dist/index.mjs',
    import: '{ TetherSocket }',
    modifyEsbuildConfig: nodeEnv('production'),
    limit: '12.9 kB',
    gzip: true,
  },
  {
    name: 'client, IIFE for a script tag, production (tethersocket.global.prod.js)',
    path: 'dist/tethersocket.global.prod.js',
    limit: '12.7 kB',
    gzip: true,
  },
  {
    name: 'client with persist (and shared), IIFE for a script tag (tethersocket.persist.global.js)',
    path: 'dist/tethersocket.persist.global.js',
    limit: '26.85 kB',
    gzip: true,
  },
  {
    name: 'client with persist (and shared), IIFE for a script tag, production (tethersocket.persist.global.prod.js)',
    path: 'dist/tethersocket.persist.global.prod.js',
    limit: '22.6 kB',
    gzip: true,
  },
]
