/**
 * Load generator of benchmark 4: simulated agents, each with its own Ed25519 host key, holding a
 * Socket.IO link on /host exactly as qrauth-agent does (signed handshake, websocket transport).
 * argv[2] = JSON {url, count, addrs: [local source addresses], concurrency, seed, gen}; host i's key
 * is generatorHostKey's (bench/lib.ts). Prints
 * "DONE <connected> <failed> <seconds>" once all have tried, holds the links until stdin
 * closes, then disconnects them.
 */
import { io, type Socket } from 'socket.io-client';
import { HOST_NAMESPACE, makeAuthHandshake } from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import { generatorHostKey } from '../lib.js';

const o = JSON.parse(process.argv[2]!) as { url: string; count: number; addrs: string[]; concurrency: number; seed: number; gen: string };
const hostKey = generatorHostKey(o);
const sockets: Socket[] = [];
let connected = 0;
let failed = 0;
let lastError = '';
const started = process.hrtime.bigint();

function one(i: number): Promise<void> {
  const seed = hostKey(i);
  const s = io(`${o.url}${HOST_NAMESPACE}`, {
    auth: (cb) => cb(makeAuthHandshake(nodeCrypto, 'host', seed, Date.now(), o.url) as unknown as Record<string, unknown>),
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    timeout: 60_000,
    localAddress: o.addrs[i % o.addrs.length],
  } as Parameters<typeof io>[1]);
  sockets.push(s);
  return new Promise((resolve) => {
    s.once('connect', () => {
      connected++;
      resolve();
    });
    s.once('connect_error', (e) => {
      failed++;
      lastError = e.message;
      resolve();
    });
  });
}

let next = 0;
async function worker(): Promise<void> {
  while (next < o.count) await one(next++);
}
await Promise.all(Array.from({ length: o.concurrency }, worker));
const secs = Number(process.hrtime.bigint() - started) / 1e9;
process.stdout.write(`DONE ${connected} ${failed} ${secs.toFixed(2)}${failed ? ` lastError=${JSON.stringify(lastError)}` : ''}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  for (const s of sockets) s.disconnect();
  setTimeout(() => process.exit(0), 200);
});
