// A Node client for a tether server: sends N chat messages and waits for each acknowledgement,
// makes one request, prints what arrives, and closes.
//
//   node examples/node/chat.mjs                        # starts a reference server in-process
//   node examples/node/chat.mjs ws://127.0.0.1:8080/ws # or talks to one (e.g. `npm start`)
//
// Exits 0 when every message was acknowledged and the request answered, 1 otherwise.
import { ReplyError, TetherSocket } from 'tethersocket'
import { createTetherServer } from 'tethersocket/server'
// Node 20 has no global WebSocket (Node 22 does): pass the one from `ws`.
import { WebSocket } from 'ws'

const N = 5
const me = `node-${process.pid}`.slice(0, 12)

// With no URL, a server that behaves like the demo's lobby (`npm start`): it broadcasts every chat
// message to every session, the sender included, and answers requests.
let server
let url = process.argv[2]
if (!url) {
  server = await createTetherServer({ host: '127.0.0.1', port: 0 }) // port 0: any free port
  server.on('message', (msg) => server.broadcast(msg))
  server.onRequest((data, session) => ({ session: session.id.slice(0, 8), sessions: server.sessions.size, echo: data }))
  url = `ws://127.0.0.1:${server.port}`
  console.log(`started a reference server at ${url}`)
}

const sock = new TetherSocket(url, {
  WebSocket,
  // An example should fail quickly rather than retry forever when nothing listens at the URL.
  reconnect: { maxRetries: 3, minDelay: 200 },
  // Connect once the listeners below are attached, so that they see the first state change too.
  autoConnect: false,
})
let received = 0
let echoed = 0
sock.on('state', (state) => console.log(`state: ${state}`))
sock.on('session', (info) => console.log(`session ${info.id.slice(0, 8)}`))
sock.on('close', (info) => console.log(`connection closed: ${info.code}${info.willReconnect ? ', will reconnect' : ''}`))
// Every failure is emitted here too; those of a send() or request() carry its message as
// `data` and are printed below, where the promise is awaited.
sock.on('error', (error) => {
  if (error.data === undefined) console.log(`error: ${error.name}: ${error.message}`)
})
sock.on('message', (msg) => {
  received++
  if (msg?.from === me) echoed++
  console.log(`received: ${JSON.stringify(msg)}`)
})
sock.connect()

// Sent at once, before the socket is even open: they wait in the queue and go out in order.
// Each promise resolves when the server has acknowledged that message.
const started = Date.now()
const results = await Promise.allSettled(
  Array.from({ length: N }, (_, i) =>
    sock.send({ from: me, text: `hello #${i + 1}` }, { timeout: 10_000 }).then(() => console.log(`acknowledged: hello #${i + 1}`)),
  ),
)
const acknowledged = results.filter((result) => result.status === 'fulfilled').length
for (const result of results)
  if (result.status === 'rejected') console.log(`not delivered: ${result.reason.name}: ${result.reason.message}`)
const sendTime = Date.now() - started

// A request gets its own reply (the demo server of `npm start` answers with a status). An
// error reply comes back as a ReplyError: an answer all the same.
let answer = 'no answer'
if (acknowledged > 0) {
  try {
    const reply = await sock.request({ from: me, text: '/whoami' }, { timeout: 5_000 })
    console.log(`reply: ${JSON.stringify(reply)}`)
    answer = 'answered'
  } catch (error) {
    console.log(`request failed: ${error.name} (${error.code}): ${error.message}`)
    if (error instanceof ReplyError) answer = `answered with ${error.code}`
  }
}

// The server broadcasts our messages back, but nothing orders those echoes before the
// acknowledgements: wait a moment for them (a server that does not echo lets this time out).
const deadline = Date.now() + 2_000
while (echoed < acknowledged && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))

// close() resolves once the closing handshake is done; then nothing keeps the process alive.
await sock.close()
await server?.close()
console.log(`summary: ${acknowledged}/${N} acknowledged in ${sendTime} ms, ${received} received (${echoed} echoed), request ${answer}`)
// A ReplyError is an answer too (the server understood the request); only silence fails.
process.exitCode = acknowledged === N && answer !== 'no answer' ? 0 : 1
