// The browser tests need a Chromium: CHROME_PATH, or Debian's `chromium` package. On a fresh
// Debian machine, as root, this installs the package (the tests must run, never skip);
// anywhere else it says what to install and fails.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

const configured = process.env.CHROME_PATH
if (configured) {
  if (existsSync(configured)) process.exit(0)
  console.error(`CHROME_PATH is set to ${configured}, which does not exist.`)
  process.exit(1)
}
const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
if (has('chromium')) process.exit(0)

if (process.getuid?.() === 0 && has('apt-get')) {
  console.log("The browser tests need Chromium: installing Debian's chromium package (apt-get)…")
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env })
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'chromium'], { stdio: 'inherit', env })
  process.exit(0)
}
console.error(
  "The browser tests need Chromium. Install Debian's chromium package (apt-get install -y chromium) or set CHROME_PATH to a Chromium or Chrome binary.",
)
process.exit(1)
