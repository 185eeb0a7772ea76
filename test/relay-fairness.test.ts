/**
 * Fair rate limits on the real qrauth-relay process (default limits unless a test says otherwise):
 * a flood from one address, with as many throwaway device keys as it likes, cannot use up a
 * host's budget for a phone on another address; behind a trusted proxy the client address is the
 * entry the proxy appended, not one the client wrote; IPv6 clients are limited per /64. Also
 * /metrics on its own listener, off the public port.
 */
import test from 'ava';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Socket, io } from 'socket.io-client';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import { DEVICE_NAMESPACE, type FrameMsg, MsgType, Result, makeAuthHandshake, toB64url } from '../protocol/src/index.js';
import { type Daemon, startDaemon, until } from './support/daemon.js';
import { startTestAgent } from './support/fixtures.js';
import { PamClient } from './support/pam-client.js';
import { HeadlessPhone } from './support/phone.js';
import { createClient } from 'redis';
import { addressKey, clientAddress, RelayBudgets, DEFAULT_LIMITS, redisLimiters } from '../relay/src/rate-limit.js';
import { prng, testSeed } from './support/seeded.js';
import { freePort } from './support/sshd.js';
import { tempDir } from './support/system.js';

const tmp = tempDir('qrfair-');
const relays: Daemon[] = [];
test.after.always(async () => {
  for (const r of relays) await r.stop();
  tmp.remove();
});

async function startRelayProcess(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ daemon: Daemon; url: string }> {
  const daemon = startDaemon([process.execPath, '--import', 'tsx', 'relay/src/main.ts', '--port', '0', ...args], { env });
  relays.push(daemon);
  const [, url] = await daemon.waitFor(/listening on (http:\/\/\S+)/, 20_000);
  return { daemon, url: url! };
}

type Refusal = { ok: false; message: string };
/** One Socket.IO connection from a chosen source address with chosen extra HTTP headers. */
function connect(url: string, opts: { localAddress?: string; headers?: Record<string, string>; seed?: Uint8Array } = {}): Promise<{ ok: true; socket: Socket } | Refusal> {
  const socket = io(`${url}${DEVICE_NAMESPACE}`, {
    auth: makeAuthHandshake(c, 'device', opts.seed ?? c.randomBytes(32), Date.now(), url),
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    timeout: 5000,
    ...(opts.headers ? { extraHeaders: opts.headers } : {}),
    // Not in socket.io-client's types; engine.io-client passes it to ws, which passes it to http.request.
    ...({ localAddress: opts.localAddress } as object),
  });
  return new Promise((resolve) => {
    socket.once('connect', () => resolve({ ok: true, socket }));
    socket.once('connect_error', (e) => {
      socket.disconnect();
      resolve({ ok: false, message: e.message });
    });
  });
}

/** How many of `n` connections (made one after another, then closed) the relay accepted. */
async function accepted(url: string, n: number, opts: (i: number) => Parameters<typeof connect>[1]): Promise<number> {
  let ok = 0;
  for (let i = 0; i < n; i++) {
    const r = await connect(url, opts(i));
    if (r.ok) {
      ok++;
      r.socket.disconnect();
    }
  }
  return ok;
}

test.serial('100 throwaway device keys flooding a host from one address do not starve a phone on another address', async (t) => {
  const relay = await startRelayProcess();
  const agent = await startTestAgent({ relayUrl: relay.url, hostname: 'fair-host' });
  t.teardown(() => agent.close());
  const phone = await HeadlessPhone.create(join(tmp.path, 'phone'), 'Real phone', { localAddress: '127.0.0.3', timeoutMs: 5000 });
  t.teardown(() => phone.close());
  await phone.trustHost({ hostPub: toB64url(agent.agent.host.publicKey), hostname: 'fair-host', relayUrl: relay.url });
  agent.setDevices('alice', [phone.devicesLine()]);
  const hostId = [...phone.hosts.keys()][0]!;
  await until(async () => ((await (await fetch(`${relay.url}/healthz`)).json()) as { hosts: number }).hosts === 1, 15_000, 'the agent on the relay');

  // The attacker: device keys cost nothing, and the hostId is in every login QR.
  const seed = testSeed(0x5eed_f100);
  t.log(`seed ${seed} (QRAUTH_TEST_SEED=${seed} replays it)`);
  const rand = prng(seed);
  const throwaways: Socket[] = [];
  t.teardown(() => throwaways.forEach((s) => s.disconnect()));
  for (let i = 0; i < 100; i++) {
    const r = await connect(relay.url, { localAddress: '127.0.0.2', seed: rand(32) });
    if (!r.ok) throw new Error(`throwaway device ${i} refused: ${r.message}`);
    throwaways.push(r.socket);
  }
  const floodAcks: Array<Promise<unknown>> = [];
  const fire = (from: Socket) => {
    floodAcks.push(from.timeout(8000).emitWithAck('context', { hostId, sid: toB64url(rand(16)) }).catch(() => ({ ok: false, code: 'timeout' })));
  };
  for (const s of throwaways) for (let k = 0; k < 30; k++) fire(s); // every key's whole per-device budget at once
  let flooding = true;
  const flood = (async () => {
    // Then a steady 400 requests a second, round robin over the keys, so that every token the
    // host's budget gets back is taken before the phone's next request arrives.
    for (let next = 0; flooding; ) {
      await sleep(50);
      for (let k = 0; k < 20; k++) fire(throwaways[next++ % throwaways.length]!);
    }
  })();

  // The real phone logs in 20 times, no faster than its own 30 requests per 10 s allow (2 a login).
  const outcomes: string[] = [];
  for (let i = 0; i < 20; i++) {
    const started = Date.now();
    const client = await PamClient.connect(agent.socket);
    try {
      client.send({ type: MsgType.BEGIN, user: 'alice', service: 'sshd', rhost: '127.0.0.1', tty: 'ssh', uid: 4242, home: '/nonexistent' } as FrameMsg);
      const challenge = await client.next();
      if (challenge?.type !== MsgType.CHALLENGE) throw new Error(`expected a challenge, got ${JSON.stringify(challenge)}`);
      const ack = await phone.decide((challenge as { payload: string }).payload, 'approve').catch((e: { code?: string }) => ({ ok: false as const, code: e.code ?? 'error' }));
      if (!ack.ok) {
        outcomes.push(ack.code);
      } else {
        client.send({ type: MsgType.WAIT } as FrameMsg);
        const verdict = (await client.next()) as { type?: number; result?: number } | null;
        outcomes.push(verdict?.type === MsgType.VERDICT && verdict.result === Result.APPROVED ? 'approved' : `verdict ${JSON.stringify(verdict)}`);
      }
    } finally {
      client.close();
    }
    await sleep(Math.max(0, 750 - (Date.now() - started)));
  }
  flooding = false;
  await flood;
  const acks = (await Promise.all(floodAcks)) as Array<{ ok: boolean; code?: string }>;
  const limited = acks.filter((a) => a.code === 'QRA_ERR_RATE_LIMITED').length;
  t.log(`flood: ${acks.length} requests, ${limited} rate limited; phone: ${outcomes.join(' ')}`);
  t.true(limited > acks.length / 2, 'the flood was real and was mostly refused');
  const approved = outcomes.filter((o) => o === 'approved').length;
  t.true(approved >= 19, `the phone on another address got ${approved} of 20 logins approved: ${outcomes.join(' ')} (seed ${seed})`);
});

test.serial('behind a trusted proxy the address is the entry the proxy appended, not the one the client wrote', async (t) => {
  const relay = await startRelayProcess(['--trust-proxy', '--connections-per-ip', '2']);
  const seed = testSeed(0x0f0a_4d3d);
  t.log(`seed ${seed}`);
  const rand = prng(seed);
  // What a proxy that appends makes of a client that sends its own X-Forwarded-For: "<spoof>, <real>".
  const spoofed = await accepted(relay.url, 20, () => {
    const [a, b] = rand(2);
    return { localAddress: '127.0.0.4', headers: { 'x-forwarded-for': `198.51.${a}.${b}, 203.0.113.9` } };
  });
  t.is(spoofed, 2, `${spoofed} of 20 connections with a made-up first entry got past a limit of 2 per address (seed ${seed})`);
  t.is(await accepted(relay.url, 1, () => ({ localAddress: '127.0.0.4', headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.10' } })), 1, 'another client behind the same proxy is not affected');
  // Two X-Forwarded-For header lines are one list (RFC 9110 §5.3): the last line's last entry counts.
  const twoLines = await accepted(relay.url, 3, (i) => ({
    localAddress: '127.0.0.4',
    // node's http.request sends an array value as repeated header lines.
    headers: { 'x-forwarded-for': [`10.0.0.${i}`, '203.0.113.11'] } as unknown as Record<string, string>,
  }));
  t.is(twoLines, 2);
});

test.serial('IPv6 clients behind a trusted proxy share one limit per /64', async (t) => {
  const relay = await startRelayProcess(['--trust-proxy', '--connections-per-ip', '2']);
  const seed = testSeed(0x0064_0064);
  t.log(`seed ${seed}`);
  const rand = prng(seed);
  const hex = () => rand(2).toString('hex');
  // Five addresses of one /64, written the ways clients and proxies write them.
  const forms = [
    () => `2001:db8:a:b:${hex()}:${hex()}:${hex()}:${hex()}`,
    () => `2001:0db8:000a:000b::${hex()}`,
    () => `2001:DB8:A:B:0:0:${hex()}:1`,
    () => `[2001:db8:a:b::${hex()}]:4711`,
    () => `2001:db8:a:b::${hex()}`,
  ];
  const ok = await accepted(relay.url, forms.length, (i) => ({ localAddress: '127.0.0.5', headers: { 'x-forwarded-for': forms[i]!() } }));
  t.is(ok, 2, `${ok} of 5 addresses in one /64 connected with a limit of 2 (seed ${seed})`);
  t.is(await accepted(relay.url, 1, () => ({ localAddress: '127.0.0.5', headers: { 'x-forwarded-for': '2001:db8:a:c::1' } })), 1, 'the next /64 has its own limit');
  t.is(await accepted(relay.url, 1, () => ({ localAddress: '127.0.0.5', headers: { 'x-forwarded-for': '::ffff:192.0.2.7' } })), 1);
  t.is(await accepted(relay.url, 2, () => ({ localAddress: '127.0.0.5', headers: { 'x-forwarded-for': '192.0.2.7' } })), 1, 'an IPv4-mapped address is the IPv4 address');
});

test.serial('a real IPv6 connection from ::1 is limited by its address', async (t) => {
  const relay = await startRelayProcess(['--host', '::1', '--connections-per-ip', '2']);
  t.regex(relay.url, /^http:\/\/\[::1\]:\d+$/);
  t.is(await accepted(relay.url, 3, () => ({})), 2);
});

test('client addresses are normalised and IPv6 addresses keyed by their /64', (t) => {
  const cases: Array<[string, string | undefined, string | undefined]> = [
    ['192.0.2.1', '192.0.2.1', '192.0.2.1'],
    [' 192.0.2.1:4711 ', '192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1', '192.0.2.1'],
    ['::FFFF:c000:0201', '192.0.2.1', '192.0.2.1'],
    ['::1', '::1', '0:0:0:0::/64'],
    ['[::1]:80', '::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80::1', 'fe80:0:0:0::/64'],
    ['2001:DB8:0:A:1:2:3:4', '2001:db8:0:a:1:2:3:4', '2001:db8:0:a::/64'],
    ['2001:db8:0:a::', '2001:db8:0:a::', '2001:db8:0:a::/64'],
    ['2001:db8::a:1.2.3.4', '2001:db8::a:1.2.3.4', '2001:db8:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
    ['unknown', undefined, undefined],
    ['', undefined, undefined],
    ['1.2.3', undefined, undefined],
    ['2001:db8::1::2', undefined, undefined],
    ['[1.2.3.4]x', undefined, undefined],
  ];
  for (const [raw, address, key] of cases) {
    t.is(clientAddress(raw), address, raw);
    if (address) t.is(addressKey(address) as string | undefined, key, raw);
  }
});

test('a budget that refuses a request does not charge the budgets after it', async (t) => {
  const budgets = new RelayBudgets({ ...DEFAULT_LIMITS, deviceEventsPer10s: 2, hostEventsPerAddressPer10s: 3, hostEventsPer10s: 5 });
  const host = 'H'.repeat(22);
  t.deepEqual([await budgets.device('d1'), await budgets.device('d1'), await budgets.device('d1')], [true, true, false]);
  // One address floods: its share (3) is spent, its refused requests leave the host's 5 alone.
  const flood = [];
  for (let i = 0; i < 10; i++) flood.push(await budgets.host(host, '192.0.2.1'));
  t.deepEqual(flood, [undefined, undefined, undefined, ...Array<string>(7).fill('address')]);
  t.deepEqual([await budgets.host(host, '192.0.2.2'), await budgets.host(host, '192.0.2.2')], [undefined, undefined], 'the host has 2 left for others');
  t.deepEqual([await budgets.host(host, '192.0.2.3'), await budgets.host('X'.repeat(22), '192.0.2.1')], ['host', undefined], 'then the ceiling; other hosts are apart');
  t.throws(() => new RelayBudgets({ ...DEFAULT_LIMITS, hostEventsPer10s: 0 }), { message: /hostEventsPer10s/ });
});

test.serial('/metrics on its own listener is no longer served on the public port', async (t) => {
  const relay = await startRelayProcess([], { QRAUTH_RELAY_METRICS_PORT: '0', QRAUTH_RELAY_METRICS_HOST: '127.0.0.6' });
  const [, metricsUrl] = await relay.daemon.waitFor(/metrics on (http:\/\/\S+)/);
  t.regex(metricsUrl!, /^http:\/\/127\.0\.0\.6:\d+\/metrics$/);
  const m = await fetch(metricsUrl!);
  t.is(m.status, 200);
  t.regex(await m.text(), /^qrauth_relay_rate_limited_total\{budget="address"\} 0$/m);
  t.is((await fetch(`${relay.url}/metrics`)).status, 404, 'not on the public port');
  t.is((await fetch(`${relay.url}/healthz`)).status, 200, 'health stays on the public port');
  t.is((await fetch(metricsUrl!.replace(/metrics$/, 'healthz'))).status, 404, 'the metrics listener serves only /metrics');

  const lonely = startDaemon([process.execPath, '--import', 'tsx', 'relay/src/main.ts', '--port', '0', '--metrics-host', '127.0.0.1']);
  t.is(await lonely.exited, 2);
  t.regex(lonely.output, /QRA_ERR_CONFIG: --metrics-host\/QRAUTH_RELAY_METRICS_HOST needs --metrics-port/);
});

test.serial('relay nodes sharing a Redis share the budgets: spreading requests over nodes buys nothing', async (t) => {
  const redisPort = await freePort();
  const redis = startDaemon(['redis-server', '--port', String(redisPort), '--bind', '127.0.0.1', '--dir', tmp.path, '--save', '', '--appendonly', 'no', '--daemonize', 'no']);
  relays.push(redis);
  await redis.waitFor(/Ready to accept connections/, 15_000);
  const args = ['--redis', `redis://127.0.0.1:${redisPort}`, '--device-requests', '4', '--ack-timeout', '500'];
  const [a, b] = await Promise.all([startRelayProcess(args), startRelayProcess(args)]);
  const seed = c.randomBytes(32);
  const ra = await connect(a.url, { seed });
  const rb = await connect(b.url, { seed });
  if (!ra.ok || !rb.ok) throw new Error('the phone could not connect to both nodes');
  t.teardown(() => [ra, rb].forEach((r) => r.socket.disconnect()));
  const ask = (s: Socket) => s.timeout(3000).emitWithAck('context', { hostId: 'H'.repeat(22), sid: 'S'.repeat(22) }) as Promise<{ code?: string }>;
  const codes: Array<string | undefined> = [];
  for (const s of [ra.socket, rb.socket, ra.socket, rb.socket, ra.socket, rb.socket]) codes.push((await ask(s)).code);
  t.deepEqual(codes, [...Array<string>(4).fill('QRA_ERR_HOST_OFFLINE'), 'QRA_ERR_RATE_LIMITED', 'QRA_ERR_RATE_LIMITED'], 'one budget of 4 across both nodes');
});

test.serial('in Redis a request is charged its three budgets in order in one round trip, shared by every node', async (t) => {
  const redisPort = await freePort();
  const redis = startDaemon(['redis-server', '--port', String(redisPort), '--bind', '127.0.0.1', '--dir', tmp.path, '--save', '', '--appendonly', 'no', '--daemonize', 'no']);
  relays.push(redis);
  await redis.waitFor(/Ready to accept connections/, 15_000);
  const client = createClient({ url: `redis://127.0.0.1:${redisPort}` });
  await client.connect();
  t.teardown(() => client.close());
  let evals = 0; // round trips of the budgets: rate-limiter-flexible's own consume is an EVAL too
  const counted = new Proxy(client, {
    get(target, key) {
      if (key === 'eval') return (...args: Parameters<typeof client.eval>) => (evals++, target.eval(...args));
      const v: unknown = Reflect.get(target, key, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const limits = { ...DEFAULT_LIMITS, deviceEventsPer10s: 4, hostEventsPerAddressPer10s: 3, hostEventsPer10s: 5 };
  const budgets = new RelayBudgets(limits, redisLimiters(counted));
  const host = 'H'.repeat(22);
  const phone = [];
  for (let i = 0; i < 5; i++) phone.push(await budgets.request('d1', host, '192.0.2.1'));
  t.deepEqual(phone, [undefined, undefined, undefined, 'address', 'device'], 'its address share (3) first, then its device (4)');
  t.is(evals, 5, 'one Redis round trip a request');
  const otherNode = new RelayBudgets(limits, redisLimiters(client));
  t.is(await otherNode.request('d1', 'X'.repeat(22), '192.0.2.9'), 'device', 'the device budget is in Redis, not in one node');
  // The refused requests left the host's ceiling alone: 5 - 3 = 2 left for other addresses.
  t.deepEqual([await otherNode.request('d2', host, '192.0.2.2'), await budgets.request('d3', host, '192.0.2.3'), await otherNode.request('d4', host, '192.0.2.4')], [undefined, undefined, 'host']);
});
