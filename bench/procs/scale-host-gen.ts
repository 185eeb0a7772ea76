/**
 * Load generator of `make bench-scale`: simulated agents like host-gen.ts (own Ed25519 host key,
 * signed /host handshake, websocket transport), but each reconnects when its link drops, as
 * qrauth-agent does (first retry after 500 ms, doubling to 5 s, with jitter), so a node's
 * death shows how long its hosts take to come back through the balancer.
 *
 * argv[2] = JSON {url, count, addrs: [local source addresses], concurrency, seed, gen}; host i's key
 * is generatorHostKey's (bench/lib.ts); `urls` instead of
 * `url` spreads the hosts over several relays directly, round robin (no balancer). Prints
 * "DONE <connected> <failed> <seconds>" once all have tried. Then each stdin line "report"
 * prints "REPORT <json>": hosts up now, and for every link that dropped, when it dropped and
 * when it was back (CLOCK_MONOTONIC ms, comparable with the parent's clock); stdin closing
 * disconnects them all and exits.
 */
import { createInterface } from 'node:readline';
import { io, type Socket } from 'socket.io-client';
import { HOST_NAMESPACE, makeAuthHandshake } from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import { generatorHostKey, nowMs } from '../lib.js';

const o = JSON.parse(process.argv[2]!) as { url?: string; urls?: string[]; count: number; addrs: string[]; concurrency: number; seed: number; gen: string };
const hostKey = generatorHostKey(o);
const urls = o.urls ?? [o.url!];
const sockets: Socket[] = [];
let connected = 0;
let failed = 0;
let lastError = '';
const started = process.hrtime.bigint();
/** Per host that lost its link: when it dropped, and when it was back (NaN while down). */
const outages: Array<{ down: number; up: number }> = [];
let stopping = false;

function one(i: number): Promise<void> {
  const seed = hostKey(i);
  const s = io(`${urls[i % urls.length]}${HOST_NAMESPACE}`, {
    auth: (cb) => cb(makeAuthHandshake(nodeCrypto, 'host', seed, Date.now(), urls[i % urls.length]!) as unknown as Record<string, unknown>),
    transports: ['websocket'],
    // The first attempt is counted as failed rather than retried; reconnection covers drops later.
    reconnection: false,
    forceNew: true,
    timeout: 60_000,
    localAddress: o.addrs[i % o.addrs.length],
  } as Parameters<typeof io>[1]);
  sockets.push(s);
  return new Promise((resolve) => {
    s.once('connect', () => {
      connected++;
      // From now on the manager retries like the agent's relay-link: 500 ms, doubling to 5 s, ±50% jitter.
      s.io.reconnection(true).reconnectionDelay(500).reconnectionDelayMax(5000).randomizationFactor(0.5);
      let current: { down: number; up: number } | undefined;
      s.on('disconnect', () => {
        if (stopping) return;
        current = { down: nowMs(), up: NaN };
        outages.push(current);
      });
      s.on('connect', () => {
        if (current) current.up = nowMs();
        current = undefined;
      });
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

const lines = createInterface({ input: process.stdin });
lines.on('line', (l) => {
  if (l.trim() !== 'report') return;
  const up = sockets.filter((s) => s.connected).length;
  process.stdout.write(`REPORT ${JSON.stringify({ up, outages: outages.map((x) => [Math.round(x.down), Number.isNaN(x.up) ? null : Math.round(x.up)]) })}\n`);
});
lines.on('close', () => {
  stopping = true;
  for (const s of sockets) s.disconnect();
  setTimeout(() => process.exit(0), 200);
});
