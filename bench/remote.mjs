// The parent's handle on bench/servers.mjs: starts the child process and calls its commands.
import { fork } from 'node:child_process'

export async function startServers() {
  // No inherited flags: a --cpu-prof of the benchmark profiles the clients, not the servers.
  const child = fork(new URL('./servers.mjs', import.meta.url), [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const pending = new Map()
  let nextId = 0
  await new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`the benchmark servers exited with ${code}`)))
  })
  child.on('message', ({ id, result, error }) => {
    const call = pending.get(id)
    pending.delete(id)
    if (error) call.reject(new Error(`benchmark server: ${error}`))
    else call.resolve(result)
  })
  const call = (command, ...args) =>
    new Promise((resolve, reject) => {
      const id = nextId++
      pending.set(id, { resolve, reject })
      child.send({ id, command, args })
    })
  return {
    /** Starts a server of `kind` (see servers.mjs) on `port` (0: any free one); resolves with the port once listening. */
    start: (kind, port = 0) => call('start', kind, port),
    /** Cuts every connection of the server and stops listening. */
    stop: (kind) => call('stop', kind),
    /** Resets the message counter and sets the number `wait()` waits for. */
    arm: (n) => call('arm', n),
    /** Resolves once the armed number of messages has arrived, at any server. */
    wait: () => call('wait'),
    close: () => {
      child.disconnect()
      return new Promise((resolve) => child.once('exit', resolve))
    },
  }
}
