#!/usr/bin/env node
// SPDX-License-Identifier: MIT
/**
 * Our WebSocket transport against Node's `ws` package (npm, v8): a second independent peer besides
 * python3-websockets (transport_peers_test.py).
 *
 * (a) `ws` as a client of our server (transport_test_server), over ws:// and wss://: binary and text echo at
 *     0/125/126/65535/65536/1 MiB, fragmented messages (with a ping between the fragments), ping/pong, a
 *     server-initiated close (4001), client-initiated closes (1000, 4000, and one with no code), pipelined
 *     messages, concurrent clients, the permessage-deflate offer that `ws` makes by default being declined,
 *     and the server's refusals (an oversized message, whole or in fragments, closed with 1009, invalid UTF-8
 *     with 1007, 404 on an unknown path).
 * (b) a `ws` WebSocketServer for our client (transport_test_client), over ws:// and wss://: every size echoes,
 *     also when `ws` sends each echo in fragments; our client answers the server's ping and closes with 1000;
 *     it refuses an untrusted certificate.
 *
 * Run by CTest through node_ws_setup.sh, which installs `ws` into the build tree once:
 *   node transport_node_ws_test.mjs --ws-dir DIR --server <transport_test_server> --client <transport_test_client>
 * `ws` is loaded from DIR/node_modules (ESM ignores NODE_PATH, so it is resolved with createRequire); if it is
 * not there the test exits 77, which CTest reports as skipped. Needs node >= 18 and the openssl command.
 * Everything listens on 127.0.0.1, every process it starts is ended by its handle, its temporary directory is
 * removed, and the whole run is bounded by a 60 s timeout.
 */
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const SKIP = 77;
const GLOBAL_TIMEOUT_MS = 60_000;
const SIZES = [0, 125, 126, 65535, 65536, 1 << 20];
const MAX_MESSAGE = 1 << 20; // the server's default limit

const { values: args } = parseArgs({
  options: { 'ws-dir': { type: 'string' }, server: { type: 'string' }, client: { type: 'string' } },
});
if (!args['ws-dir'] || !args.server || !args.client) {
  console.error('usage: transport_node_ws_test.mjs --ws-dir DIR --server BIN --client BIN');
  process.exit(2);
}

let WebSocket, WebSocketServer, wsVersion;
try {
  const require = createRequire(join(resolve(args['ws-dir']), 'package.json'));
  ({ WebSocket, WebSocketServer } = require('ws'));
  wsVersion = JSON.parse(readFileSync(require.resolve('ws/package.json'), 'utf8')).version;
} catch (error) {
  console.log(`SKIP: Node's ws package is not installed in ${args['ws-dir']} (${error.message})`);
  process.exit(SKIP);
}
console.log(`node ${process.version}, ws ${wsVersion}`);

let passed = 0;
const failures = [];
function check(name, ok, detail = '') {
  console.log((ok ? 'ok   ' : 'FAIL ') + name + (detail && !ok ? `  (${detail})` : ''));
  if (ok) passed += 1;
  else failures.push(name);
}

// Everything started here, so that a timeout or a crash can end it by its handle.
const children = new Set();
const servers = new Set();
const workdir = mkdtempSync(join(tmpdir(), 'claudemesh-node-ws-'));

function cleanup() {
  for (const child of children) child.kill('SIGKILL');
  for (const server of servers) server.close();
  rmSync(workdir, { recursive: true, force: true });
}

const globalTimer = setTimeout(() => {
  check(`the whole run finishes within ${GLOBAL_TIMEOUT_MS / 1000} s`, false, 'global timeout');
  cleanup();
  process.exit(1);
}, GLOBAL_TIMEOUT_MS);

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
const textOf = (n) => 'é'.repeat(n >> 1) + 'a'.repeat(n & 1); // n bytes of UTF-8, multi-byte characters

// ---------------------------------------------------------------- processes

function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return withTimeout(new Promise((done) => child.once('exit', () => done(true))), ms, 'process exit').catch(
    () => false,
  );
}

class OurServer {
  static async start(...flags) {
    const child = spawn(args.server, flags, { stdio: ['pipe', 'pipe', 'inherit'] });
    children.add(child);
    const lines = createInterface({ input: child.stdout });
    const first = await withTimeout(
      new Promise((done, fail) => {
        lines.once('line', done);
        child.once('exit', (code) => fail(new Error(`server exited with ${code} before it was ready`)));
      }),
      10_000,
      'server ready line',
    );
    const ready = JSON.parse(first);
    return Object.assign(new OurServer(), { child, port: ready.port, tlsPort: ready.tls_port });
  }

  async stop() {
    this.child.stdin.end(); // the server exits when its stdin closes
    if (!(await waitExit(this.child, 10_000))) {
      this.child.kill('SIGKILL');
      await waitExit(this.child, 5_000);
    }
    children.delete(this.child);
    return this.child.exitCode;
  }
}

// Runs transport_test_client; returns its exit code and the JSON lines it printed.
async function runOurClient(...argv) {
  const child = spawn(args.client, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => (out += chunk));
  const exited = await waitExit(child, 30_000);
  if (!exited) child.kill('SIGKILL');
  await waitExit(child, 5_000);
  children.delete(child);
  const lines = [];
  for (const line of out.split('\n')) {
    if (!line.trim()) continue;
    try {
      lines.push(JSON.parse(line));
    } catch {
      lines.push({ check: 'unparsable', ok: false, line });
    }
  }
  return { code: exited ? child.exitCode : null, lines, tail: out.slice(-300) };
}

// ---------------------------------------------------------------- a promise-based ws client

class Client {
  static async open(url, options = {}) {
    const ws = new WebSocket(url, options);
    const client = new Client(ws);
    await withTimeout(
      new Promise((done, fail) => {
        ws.once('open', done);
        ws.once('error', fail);
      }),
      5_000,
      `open ${url}`,
    );
    return client;
  }

  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.ended = false;
    this.errors = [];
    ws.on('error', (error) => this.errors.push(error));
    ws.on('message', (data, isBinary) => this.deliver({ data, isBinary }));
    this.closed = new Promise((done) => {
      ws.addEventListener('close', (event) => {
        this.ended = true;
        for (const waiter of this.waiters.splice(0)) waiter(null);
        done({ code: event.code, reason: event.reason, wasClean: event.wasClean });
      });
    });
  }

  deliver(message) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(message);
    else this.queue.push(message);
  }

  // The next message, or null once the connection is closed.
  next(ms = 10_000) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.ended) return Promise.resolve(null);
    return withTimeout(new Promise((done) => this.waiters.push(done)), ms, 'next message');
  }

  async closeWith(...closeArgs) {
    this.ws.close(...closeArgs);
    return withTimeout(this.closed, 5_000, 'close handshake');
  }

  ping(payload) {
    const pong = new Promise((done) => this.ws.once('pong', done));
    this.ws.ping(payload);
    return withTimeout(pong, 5_000, 'pong');
  }
}

const sameBinary = (message, bytes) => message && message.isBinary && Buffer.compare(message.data, bytes) === 0;
const sameText = (message, text) => message && !message.isBinary && message.data.toString('utf8') === text;

async function echoAllSizes(client, withText = true) {
  const bad = [];
  for (const n of SIZES) {
    const bytes = randomBytes(n);
    client.ws.send(bytes);
    if (!sameBinary(await client.next(), bytes)) bad.push(`binary ${n}`);
    if (!withText) continue;
    const text = textOf(n);
    client.ws.send(text);
    if (!sameText(await client.next(), text)) bad.push(`text ${n}`);
  }
  return bad;
}

// A check that fails (instead of aborting the run) when its body throws or times out.
async function attempt(name, body) {
  try {
    await body();
  } catch (error) {
    check(name, false, error.message);
  }
}

// ---------------------------------------------------------------- (a) ws as the client of our server

async function wsClientTests(server) {
  const uri = `ws://127.0.0.1:${server.port}/ws`;

  await attempt('ws client: echo, fragments, ping', async () => {
    const client = await Client.open(uri);
    check("ws client: connects; the permessage-deflate offer ws makes by default is declined",
      client.ws.extensions === '' && client.ws.protocol === '', `extensions '${client.ws.extensions}'`);

    const bad = await echoAllSizes(client);
    check('ws client: binary and text echo at 0/125/126/65535/65536/1 MiB', bad.length === 0, bad.join(', '));

    client.ws.send('frag', { fin: false });
    client.ws.send('men', { fin: false });
    client.ws.send('ted', { fin: true });
    check('ws client: a fragmented text message arrives whole', sameText(await client.next(), 'fragmented'));

    client.ws.send(Buffer.from([0, 1]), { fin: false });
    client.ws.send(Buffer.from([2]), { fin: true });
    check('ws client: a fragmented binary message arrives whole', sameBinary(await client.next(), Buffer.from([0, 1, 2])));

    // RFC 6455 §5.4: control frames may be injected in the middle of a fragmented message.
    const big = randomBytes(200_000);
    client.ws.send(big.subarray(0, 70_000), { fin: false });
    const midPong = client.ping(Buffer.from('between fragments'));
    client.ws.send(big.subarray(70_000, 130_000), { fin: false });
    client.ws.send(big.subarray(130_000), { fin: true });
    const pongData = await midPong;
    check('ws client: a ping between the fragments of a message is answered, and the message arrives whole',
      sameBinary(await client.next(), big) && pongData.toString() === 'between fragments');

    const pong = await client.ping(Buffer.from('are you there'));
    check('ws client: ping is answered with a pong carrying the same payload', pong.toString() === 'are you there',
      pong.toString());
    const empty = await client.ping();
    check('ws client: an empty ping is answered with an empty pong', empty.length === 0, `${empty.length} bytes`);

    // Many messages without waiting: each echo comes back, in order.
    const count = 1000;
    for (let i = 0; i < count; i += 1) client.ws.send(`message ${i}`);
    let inOrder = true;
    for (let i = 0; i < count; i += 1) inOrder &&= sameText(await client.next(), `message ${i}`);
    check(`ws client: ${count} pipelined messages all echo, in order`, inOrder);

    client.ws.send('close:4001');
    const end = await client.next();
    const closed = await withTimeout(client.closed, 5_000, 'close');
    check('ws client: server-initiated close with 4001 (the reason arrives, the handshake completes)',
      end === null && closed.code === 4001 && closed.reason === 'requested' && closed.wasClean,
      JSON.stringify(closed));
  });

  await attempt('ws client: client-initiated close with 1000', async () => {
    const client = await Client.open(uri);
    const closed = await client.closeWith(1000, 'bye');
    check('ws client: client-initiated close completes with 1000', closed.code === 1000 && closed.wasClean,
      JSON.stringify(closed));
  });

  await attempt('ws client: client-initiated close with 4000', async () => {
    const client = await Client.open(uri);
    const closed = await client.closeWith(4000, 'done');
    check('ws client: the server echoes a client close code of 4000', closed.code === 4000 && closed.wasClean,
      JSON.stringify(closed));
  });

  await attempt('ws client: close without a status code', async () => {
    const client = await Client.open(uri);
    const closed = await client.closeWith();
    // RFC 6455 §5.5.1/§7.1.5: the reply may carry no code (1005 locally) or 1000; either way the handshake completes.
    check('ws client: a close frame with no status code completes the close handshake',
      (closed.code === 1005 || closed.code === 1000) && closed.wasClean, JSON.stringify(closed));
  });

  await attempt('ws client: an oversized message is closed with 1009', async () => {
    const client = await Client.open(uri);
    // A server may rightly refuse the message while it is still being uploaded: ignore a failed write.
    client.ws.send(Buffer.alloc(MAX_MESSAGE + 1, 0x78), () => {});
    const echoed = await client.next();
    const closed = await withTimeout(client.closed, 5_000, 'close');
    check('ws client: an oversized message (1 MiB + 1) is closed with 1009', echoed === null && closed.code === 1009,
      `echoed ${echoed !== null}, ${JSON.stringify(closed)}`);
  });

  await attempt('ws client: a fragmented message over the limit is closed with 1009', async () => {
    const client = await Client.open(uri);
    const half = Buffer.alloc(MAX_MESSAGE / 2 + 1, 0x79); // each fragment is under the limit, the whole is not
    client.ws.send(half, { fin: false }, () => {});
    client.ws.send(half, { fin: true }, () => {});
    const echoed = await client.next();
    const closed = await withTimeout(client.closed, 5_000, 'close');
    check('ws client: a fragmented message over 1 MiB in total is closed with 1009',
      echoed === null && closed.code === 1009, `echoed ${echoed !== null}, ${JSON.stringify(closed)}`);
  });

  await attempt('ws client: invalid UTF-8 is closed with 1007', async () => {
    const client = await Client.open(uri);
    client.ws.send(Buffer.from([0x6f, 0x6b, 0xc0, 0xaf]), { binary: false }); // an overlong '/'
    const echoed = await client.next();
    const closed = await withTimeout(client.closed, 5_000, 'close');
    check('ws client: a text message that is not UTF-8 is closed with 1007', echoed === null && closed.code === 1007,
      `echoed ${echoed !== null}, ${JSON.stringify(closed)}`);
  });

  await attempt('ws client: an unknown path is refused with 404', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/nope`);
    const status = await withTimeout(new Promise((done, fail) => {
      ws.once('unexpected-response', (request, response) => {
        response.resume();
        request.destroy(); // with this listener, ending the refused request is up to us
        done(response.statusCode);
      });
      ws.once('open', () => fail(new Error('the upgrade was accepted')));
      ws.once('error', fail);
    }), 5_000, 'refusal');
    check('ws client: an upgrade to an unknown path is refused with 404', status === 404, `status ${status}`);
  });

  await attempt('ws client: concurrent clients', async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => Client.open(uri)));
    const results = await Promise.all(clients.map(async (client, i) => {
      const bytes = randomBytes(65536 + i);
      client.ws.send(bytes);
      const ok = sameBinary(await client.next(), bytes);
      const closed = await client.closeWith(1000);
      return ok && closed.code === 1000;
    }));
    check('ws client: 20 concurrent clients each echo 64 KiB and close with 1000', results.every(Boolean));
  });
}

async function wssClientTests(server, certPem) {
  await attempt('ws client over wss://', async () => {
    const client = await Client.open(`wss://127.0.0.1:${server.tlsPort}/ws`, { ca: certPem });
    const bad = await echoAllSizes(client);
    check('ws client over wss:// against our TLS server: every size echoes, text and binary', bad.length === 0,
      bad.join(', '));
    const pong = await client.ping(Buffer.from('tls'));
    check('ws client over wss://: ping is answered', pong.toString() === 'tls');
    const closed = await client.closeWith(1000, 'bye');
    check('ws client over wss://: close completes with 1000', closed.code === 1000 && closed.wasClean,
      JSON.stringify(closed));
  });
}

// ---------------------------------------------------------------- (b) a ws server for our client

// An echo server: on /fragment it sends each echo in up to three fragments. It pings every client on
// connect and records what it saw of each connection.
function startWsServer(options) {
  const seen = [];
  const wss = new WebSocketServer({ ...options, perMessageDeflate: true, maxPayload: 2 * MAX_MESSAGE });
  servers.add(wss);
  wss.on('connection', (ws, request) => {
    const record = { path: request.url, extensions: ws.extensions, pong: null, close: null, errors: [] };
    seen.push(record);
    ws.on('error', (error) => record.errors.push(error.message));
    ws.on('pong', (data) => (record.pong = data.toString()));
    ws.addEventListener('close', (event) => (record.close = { code: event.code, wasClean: event.wasClean }));
    ws.ping(Buffer.from('ping from ws'));
    ws.on('message', (data, isBinary) => {
      if (request.url !== '/fragment' || data.length < 3) {
        ws.send(data, { binary: isBinary });
        return;
      }
      const third = Math.floor(data.length / 3);
      ws.send(data.subarray(0, third), { binary: isBinary, fin: false });
      ws.send(data.subarray(third, 2 * third), { binary: isBinary, fin: false });
      ws.send(data.subarray(2 * third), { binary: isBinary, fin: true });
    });
  });
  return { wss, seen };
}

function listening(server) {
  return withTimeout(new Promise((done, fail) => {
    server.once('listening', done);
    server.once('error', fail);
  }), 5_000, 'listen');
}

async function closeServer(wss, httpServer) {
  for (const ws of wss.clients) ws.terminate();
  await new Promise((done) => wss.close(done));
  if (httpServer) await new Promise((done) => httpServer.close(done));
  servers.delete(wss);
}

function checkOurClientRun(label, run, sizes) {
  const echoes = run.lines.filter((line) => line.check === 'echo');
  check(`our client against a ws server${label}: every size echoes, text and binary`,
    run.code === 0 && echoes.length === 2 * sizes.length && echoes.every((line) => line.ok), run.tail);
  const closes = run.lines.filter((line) => line.check === 'close');
  check(`our client against a ws server${label}: it closes with 1000`, closes.length === 1 && closes[0].ok,
    JSON.stringify(closes));
}

async function waitForClose(record) {
  for (let i = 0; i < 100 && record && !record.close; i += 1) await sleep(20);
}

async function wsServerTests() {
  await attempt('our client against a ws server', async () => {
    const { wss, seen } = startWsServer({ host: '127.0.0.1', port: 0 });
    await listening(wss);
    const { port } = wss.address();
    try {
      const run = await runOurClient(`ws://127.0.0.1:${port}/plain`, ...SIZES.map(String));
      checkOurClientRun('', run, SIZES);
      const record = seen.find((r) => r.path === '/plain');
      await waitForClose(record);
      check('our client against a ws server: the request target is sent as given', record !== undefined,
        JSON.stringify(seen.map((r) => r.path)));
      check('our client against a ws server: no extension is negotiated', record?.extensions === '',
        record?.extensions);
      check("our client against a ws server: it answers the server's ping with the same payload",
        record?.pong === 'ping from ws', String(record?.pong));
      check('our client against a ws server: the server sees a clean close with 1000',
        record?.close?.code === 1000 && record?.close?.wasClean && record.errors.length === 0,
        JSON.stringify(record));

      const fragmented = await runOurClient(`ws://127.0.0.1:${port}/fragment`, ...SIZES.map(String));
      checkOurClientRun(' that fragments its echoes', fragmented, SIZES);
    } finally {
      await closeServer(wss);
    }
  });
}

async function wssServerTests(certPath, keyPath) {
  await attempt('our client against a ws wss:// server', async () => {
    const httpsServer = createHttpsServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) });
    const { wss, seen } = startWsServer({ server: httpsServer });
    httpsServer.listen(0, '127.0.0.1');
    await listening(httpsServer);
    const { port } = httpsServer.address();
    try {
      const sizes = [0, 126, 65536, 1 << 20];
      const run = await runOurClient('--ca', certPath, `wss://localhost:${port}/tls`, ...sizes.map(String));
      checkOurClientRun(' over wss:// with a trusted CA file', run, sizes);
      const record = seen.find((r) => r.path === '/tls');
      await waitForClose(record);
      check('our client against a ws wss:// server: the server sees a clean close with 1000',
        record?.close?.code === 1000 && record?.close?.wasClean, JSON.stringify(record));
      const refused = await runOurClient('--expect-fail', `wss://localhost:${port}/`, '0');
      check('our client refuses the ws server\'s untrusted certificate (verification on by default)',
        refused.code === 0, refused.tail);
    } finally {
      await closeServer(wss, httpsServer);
    }
  });
}

// ---------------------------------------------------------------- main

function makeCertificate() {
  const cert = join(workdir, 'cert.pem');
  const key = join(workdir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-keyout', key, '-out', cert,
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  return { cert, key };
}

async function main() {
  const { cert, key } = makeCertificate();
  const server = await OurServer.start('--tls-cert', cert, '--tls-key', key);
  try {
    await wsClientTests(server);
    await wssClientTests(server, readFileSync(cert));
    await attempt('our server still serves at the end', async () => {
      const client = await Client.open(`ws://127.0.0.1:${server.port}/ws`);
      client.ws.send('still here');
      check('our server still serves ws clients at the end', sameText(await client.next(), 'still here'));
      await client.closeWith(1000);
    });
  } finally {
    const code = await server.stop();
    check('our server exits cleanly when its stdin closes', code === 0, `exit code ${code}`);
  }
  await wsServerTests();
  await wssServerTests(cert, key);
}

let exitCode = 1;
try {
  await main();
  exitCode = failures.length ? 1 : 0;
} catch (error) {
  check('the run completes', false, error.stack);
} finally {
  clearTimeout(globalTimer);
  cleanup();
}
if (failures.length) console.log(`\n${failures.length} check(s) failed:\n  ${failures.join('\n  ')}`);
console.log(`\n${passed} passed, ${failures.length} failed`);
process.exit(exitCode);
