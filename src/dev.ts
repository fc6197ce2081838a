/**
 * The development flag: what only helps a developer (the long messages, did-you-mean
 * suggestions, checks of option types and unknown option names) runs only where it is true.
 *
 * Why one flag, spelled this way: bundlers (Vite, webpack, esbuild, Rollup with a replace step)
 * replace `process.env.NODE_ENV` with `'production'` in a production build, and then drop every
 * branch that the flag guards, so a production bundle carries none of that text. They only fold
 * it where the expression itself appears, and many define `process.env.NODE_ENV` without defining
 * `process`; so the build (scripts/build/transpile.mjs) writes every use of `DEV` as the bare
 * expression `process.env.NODE_ENV !== 'production'` in the builds for bundlers and Node, and as
 * a constant in the builds for browsers without a bundler (`dist/browser/`, the script tags),
 * which have no `process`. This module itself is only what the tests run from source.
 *
 * A production error keeps its class, its `code` and its other fields; its message is only the
 * code and where docs/ERRORS.md documents it (see `TetherError`).
 * @module
 */

/** Whether the checks and messages that only help a developer run: unless `NODE_ENV` is `'production'`. */
export const DEV: boolean = process.env.NODE_ENV !== 'production'
