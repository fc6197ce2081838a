// The benchmarks measure the built package, as users get it. Builds dist/ first when it is
// missing (like scripts/start.mjs), then hands out its modules.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..')
export const distDir = join(root, 'dist')

function ensureBuilt() {
  if (['index.mjs', 'server.mjs', 'redis.mjs', 'persist.mjs'].every((file) => existsSync(join(distDir, file)))) return
  console.error('building dist/ …')
  execFileSync(process.execPath, [join(root, 'node_modules', 'rollup', 'dist', 'bin', 'rollup'), '-c', '--silent'], {
    cwd: root,
    stdio: 'inherit',
  })
}

/** The client entry, `tethersocket`. */
export async function loadClient() {
  ensureBuilt()
  return import(pathToFileURL(join(distDir, 'index.mjs')).href)
}

/** The server entry, `tethersocket/server`. */
export async function loadServer() {
  ensureBuilt()
  return import(pathToFileURL(join(distDir, 'server.mjs')).href)
}

/** The Redis session store, `tethersocket/redis`. */
export async function loadRedis() {
  ensureBuilt()
  return import(pathToFileURL(join(distDir, 'redis.mjs')).href)
}
