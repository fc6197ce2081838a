// The tests need three Debian packages: `chromium` for the browser tests (or CHROME_PATH), and
// `redis-server` and `haproxy`, which the integration tests start themselves. On a fresh Debian
// machine, as root, this installs the missing ones (the tests must run, never skip); anywhere
// else it names what to install and fails.
import { spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync } from 'node:fs'
import { delimiter, join } from 'node:path'

/** What each package is for, and the command it provides. */
const packages = [
  { name: 'chromium', binary: 'chromium', usedBy: 'the browser tests' },
  { name: 'redis-server', binary: 'redis-server', usedBy: 'the Redis session store tests' },
  { name: 'haproxy', binary: 'haproxy', usedBy: 'the load-balanced tests' },
]

// Debian installs haproxy in /usr/sbin, which is not on an ordinary user's PATH.
const searchPath = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'].filter(Boolean)
const has = (command) =>
  searchPath.some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK)
      return true
    } catch {
      return false
    }
  })

const configured = process.env.CHROME_PATH
if (configured && !existsSync(configured)) {
  console.error(`CHROME_PATH is set to ${configured}, which does not exist.`)
  process.exit(1)
}
const missing = packages.filter((pkg) => !(pkg.name === 'chromium' && configured) && !has(pkg.binary))
if (missing.length === 0) process.exit(0)

const names = missing.map((pkg) => pkg.name)
const purposes = missing.map((pkg) => `${pkg.name} for ${pkg.usedBy}`).join(', ')

if (process.getuid?.() === 0 && has('apt-get')) {
  console.log(`The tests need ${purposes}: installing Debian's ${names.join(' ')} (apt-get)…`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const run = (args) => {
    const result = spawnSync('apt-get', args, { stdio: 'inherit', env })
    if (result.status !== 0) {
      console.error(`apt-get ${args.join(' ')} failed (${result.error?.message ?? `exit code ${result.status}`}).`)
      process.exit(1)
    }
  }
  run(['update', '-qq'])
  run(['install', '-y', '-qq', '--no-install-recommends', ...names])
  const stillMissing = missing.filter((pkg) => !has(pkg.binary))
  if (stillMissing.length > 0) {
    console.error(`apt-get installed ${names.join(' ')}, but ${stillMissing.map((pkg) => pkg.binary).join(', ')} still cannot be found.`)
    process.exit(1)
  }
  process.exit(0)
}
const chromiumHint = names.includes('chromium') ? ', or set CHROME_PATH to a Chromium or Chrome binary' : ''
console.error(
  `The tests need ${purposes}. Install Debian's packages (apt-get install -y --no-install-recommends ${names.join(' ')})${chromiumHint}.`,
)
process.exit(1)
