// The parent's handle on a server node process (bench/store-node.mjs): start it, call its
// commands over IPC, close it cleanly or SIGKILL it like a crash.
import { fork } from 'node:child_process'
import { track } from './services.mjs'

/**
 * Starts a node; resolves once it listens. `config` as store-node.mjs reads it. `profileDir`:
 * run it with --cpu-prof, the profile written there when it is closed (not when killed).
 */
export async function startNode(config, { profileDir } = {}) {
  const execArgv = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []
  const child = track(
    fork(new URL('./store-node.mjs', import.meta.url), [JSON.stringify(config)], {
      execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  )
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)))
  const pending = new Map()
  let nextId = 0
  const ready = await new Promise((resolve, reject) => {
    child.once('message', resolve)
    exited.then((code) => reject(new Error(`a server node exited with ${code} before it listened`)))
  })
  child.on('message', ({ id, result, error }) => {
    const call = pending.get(id)
    pending.delete(id)
    if (error) call?.reject(new Error(`server node: ${error}`))
    else call?.resolve(result)
  })
  // A node that dies rejects what waits for it, rather than leaving the benchmark hanging.
  exited.then((code) => {
    for (const call of pending.values()) call.reject(new Error(`the server node exited (${code})`))
    pending.clear()
  })
  const call = (command, ...args) =>
    new Promise((resolve, reject) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        reject(new Error(`the server node has exited; cannot call ${command}`))
        return
      }
      const id = nextId++
      pending.set(id, { resolve, reject })
      child.send({ id, command, args })
    })
  return {
    port: ready.port,
    pid: child.pid,
    call,
    exited,
    get alive() {
      return child.exitCode === null && child.signalCode === null
    },
    /** Ends it with SIGKILL, as a crash would: no release, no last commit. */
    kill() {
      child.kill('SIGKILL')
      return exited
    },
    /** Closes the server (sessions released to the store) and ends the process. */
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return
      await call('close').catch(() => {})
      await exited
    },
  }
}
