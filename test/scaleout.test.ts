/**
 * Several relay nodes sharing a real redis-server (started here on a loopback port with its own
 * directory): a host on node A and a phone on node B complete a login; node A is killed and the
 * host reconnects through the load balancer (test/support/failover-proxy.ts) to node B, and
 * logins continue; Redis restarts mid-run and cross-node logins recover. Also the relay's
 * command-line limits and its /metrics; direct routing (relay/src/cross-node.ts: the routing
 * map in Redis, the last connection winning, a dead node's hosts failing closed, local-only
 * routing without Redis) and the broadcast routing kept beside it.
 */
import test from 'ava';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { MsgType, Result, type FrameMsg } from '../protocol/src/index.js';
import { type Daemon, run, startDaemon, until } from './support/daemon.js';
import { type FailoverProxy, startFailoverProxy } from './support/failover-proxy.js';
import { type AgentFixture, startTestAgent } from './support/fixtures.js';
import { PamClient } from './support/pam-client.js';
import { HeadlessPhone } from './support/phone.js';
import { freePort } from './support/sshd.js';
import { tempDir } from './support/system.js';

const tmp = tempDir('qrso-');
let redisPort: number;
let redis: Daemon | undefined;
const nodes: Daemon[] = [];
const phones: HeadlessPhone[] = [];
let proxy: FailoverProxy;
let agent: AgentFixture;

async function startRedis(): Promise<Daemon> {
  const r = startDaemon(['redis-server', '--port', String(redisPort), '--bind', '127.0.0.1', '--dir', tmp.path, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'yes']);
  await r.waitFor(/Ready to accept connections/, 15_000);
  return r;
}

async function startNode(extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ daemon: Daemon; url: string; port: number }> {
  const daemon = startDaemon([process.execPath, '--import', 'tsx', 'relay/src/main.ts', '--port', '0', '--ack-timeout', '2000', ...extra], { env });
  nodes.push(daemon);
  const [, url, port] = await daemon.waitFor(/listening on (http:\/\/127\.0\.0\.1:(\d+))/);
  return { daemon, url: url!, port: Number(port) };
}

async function health(url: string): Promise<{ hosts: number; devices: number }> {
  return (await (await fetch(`${url}/healthz`)).json()) as { hosts: number; devices: number };
}

async function newPhone(relayUrl: string, host: AgentFixture = agent): Promise<HeadlessPhone> {
  const p = await HeadlessPhone.create(join(tmp.path, `phone-${phones.length}`), `Phone ${phones.length}`);
  phones.push(p);
  await p.trustHost({ hostPub: Buffer.from(host.agent.host.publicKey).toString('base64url'), hostname: 'test-host', relayUrl });
  return p;
}

/** A whole login over the PAM socket: BEGIN, the phone approves through its relay node, WAIT, verdict. */
async function login(phone: HeadlessPhone, host: AgentFixture = agent): Promise<FrameMsg | null> {
  const client = await PamClient.connect(host.socket);
  try {
    client.send({ type: MsgType.BEGIN, user: 'alice', service: 'sshd', rhost: '127.0.0.1', tty: 'ssh', uid: 4242, home: '/nonexistent' } as FrameMsg);
    const challenge = await client.next();
    if (challenge?.type !== MsgType.CHALLENGE) throw new Error(`expected a challenge, got ${JSON.stringify(challenge)}`);
    const ack = await phone.decide((challenge as { payload: string }).payload, 'approve');
    if (!ack.ok) throw new Error(`decision refused: ${ack.code} ${ack.message}`);
    client.send({ type: MsgType.WAIT } as FrameMsg);
    return await client.next();
  } finally {
    client.close();
  }
}

test.before(async () => {
  redisPort = await freePort();
  redis = await startRedis();
});

test.after.always(async () => {
  for (const p of phones) await p.close();
  await agent?.close();
  await proxy?.close();
  for (const n of nodes) await n.stop();
  await redis?.stop();
  tmp.remove();
});

test.serial('a host on node A and a phone on node B complete a login; node A dies, the host moves to B and logins continue; Redis restarts and they recover', async (t) => {
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const a = await startNode(['--redis', redisUrl]);
  const b = await startNode([], { REDIS_URL: redisUrl }); // the same option from the environment
  proxy = await startFailoverProxy([a.port, b.port]);
  agent = await startTestAgent({ relayUrl: proxy.url, hostname: 'test-host' });
  const phoneB = await newPhone(b.url);
  agent.setDevices('alice', [phoneB.devicesLine()]);

  await until(async () => (await health(a.url)).hosts === 1, 15_000, 'the host on node A');
  t.is((await health(b.url)).hosts, 0, 'the host is on node A only');
  t.like(await login(phoneB), { type: MsgType.VERDICT, result: Result.APPROVED }, 'host on A, phone on B');
  t.is((await health(b.url)).devices, 1, 'the phone is on node B');

  // Node A dies; the agent reconnects through the balancer, which now only finds node B.
  await a.daemon.stop('SIGKILL');
  await until(async () => (await health(b.url)).hosts === 1, 20_000, 'the host reconnecting to node B');
  t.like(await login(phoneB), { type: MsgType.VERDICT, result: Result.APPROVED }, 'host and phone on B');

  // A new node C joins; a phone on C reaches the host on B.
  const c = await startNode(['--redis', redisUrl]);
  const phoneC = await newPhone(c.url);
  agent.setDevices('alice', [phoneB.devicesLine(), phoneC.devicesLine()]);
  t.like(await login(phoneC), { type: MsgType.VERDICT, result: Result.APPROVED }, 'host on B, phone on C');

  // Redis goes away: cross-node requests fail like an offline host (nobody is let in), nothing crashes.
  const bMark = b.daemon.output.length;
  const cMark = c.daemon.output.length;
  await redis!.stop();
  await b.daemon.waitFor(/event=redis role=\w+ state=(down|error)/, 10_000, bMark);
  await t.throwsAsync(() => login(phoneC), undefined, 'no cross-node login without Redis');
  t.is(b.daemon.child.exitCode, null, 'node B still runs');
  t.is(c.daemon.child.exitCode, null, 'node C still runs');

  // Redis comes back on the same port: both nodes resubscribe and cross-node logins work again.
  redis = await startRedis();
  await b.daemon.waitFor(/event=redis role=sub state=up/, 20_000, bMark);
  await c.daemon.waitFor(/event=redis role=sub state=up/, 20_000, cMark);
  const after = await until(async () => login(phoneC).catch(() => null), 20_000, 'a cross-node login after the Redis restart', 500);
  t.like(after, { type: MsgType.VERDICT, result: Result.APPROVED });

  // What the nodes counted: approvals, and the latency histogram of forwarded requests.
  const metrics = await (await fetch(`${c.url}/metrics`)).text();
  t.regex(metrics, /^qrauth_relay_decisions_total\{result="approved"\} [1-9]/m);
  t.regex(metrics, /^qrauth_relay_request_duration_seconds_count\{event="decision"\} [1-9]/m);
  // Label order inside {} means nothing in the text format (prom-client writes le first).
  t.regex(metrics, /^qrauth_relay_request_duration_seconds_bucket\{(le="\+Inf",event="context"|event="context",le="\+Inf")\} [1-9]/m);
  t.regex(metrics, /^qrauth_relay_connected_devices 1$/m);
});

test.serial('rate limits per phone, per host and per IP come from the command line or the environment', async (t) => {
  const n = await startNode(['--device-requests', '3', '--connections-per-ip', '50'], { QRAUTH_RELAY_HOST_REQUESTS: '40' });
  await n.daemon.waitFor(/event=config .*connectionsPerIpPerMinute=50 deviceEventsPer10s=3 hostEventsPer10s=40/, 5000);
  const phone = await HeadlessPhone.create(join(tmp.path, 'phone-limits'), 'Limited phone');
  phones.push(phone);
  await phone.trustHost({ hostPub: Buffer.from(new Uint8Array(32).fill(9)).toString('base64url'), hostname: 'nowhere', relayUrl: n.url });
  const hostId = [...phone.hosts.keys()][0]!;
  const id16 = () => Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url');
  const qr = `QRA1:${hostId}:${id16()}:${id16()}`;
  const codes: string[] = [];
  for (let i = 0; i < 4; i++) codes.push(await phone.fetchContext(qr).then(() => 'ok', (e: { code?: string }) => e.code ?? 'error'));
  t.deepEqual(codes, ['QRA_ERR_HOST_OFFLINE', 'QRA_ERR_HOST_OFFLINE', 'QRA_ERR_HOST_OFFLINE', 'QRA_ERR_RATE_LIMITED']);
  t.regex(await (await fetch(`${n.url}/metrics`)).text(), /^qrauth_relay_rejects_total\{reason="rate_limited"\} 1$/m);

  const bad = startDaemon([process.execPath, '--import', 'tsx', 'relay/src/main.ts', '--device-requests', '0']);
  t.not(await bad.exited, 0);
  t.regex(bad.output, /device-requests.*expected a whole number 1\.\.1000000/);
});

test.serial('budgets hold across 3 nodes through Redis: one phone spreading its requests over the nodes gets one budget, not three; with Redis down each node limits on its own', async (t) => {
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const limited = ['--redis', redisUrl, '--device-requests', '3'];
  const three = [await startNode(limited), await startNode(limited), await startNode(limited)];
  // The same device key (one state directory) on each node.
  const dir = join(tmp.path, 'phone-3nodes');
  const first = await HeadlessPhone.create(dir, 'Phone on three nodes');
  const same = [first, await HeadlessPhone.load(dir), await HeadlessPhone.load(dir)];
  phones.push(...same);
  t.is(new Set(same.map((p) => p.deviceId)).size, 1);
  const hostPub = Buffer.from(new Uint8Array(32).fill(11)).toString('base64url');
  for (const [i, p] of same.entries()) await p.trustHost({ hostPub, hostname: 'nowhere', relayUrl: three[i]!.url });
  const hostId = [...first.hosts.keys()][0]!;
  const id16 = () => Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url');
  const ask = (p: HeadlessPhone) => p.fetchContext(`QRA1:${hostId}:${id16()}:${id16()}`).then(() => 'ok', (e: { code?: string }) => e.code ?? 'error');
  const codes: string[] = [];
  for (let i = 0; i < 6; i++) codes.push(await ask(same[i % 3]!));
  // Per-node buckets would have let all six through (two a node, under 3).
  t.deepEqual(codes, ['QRA_ERR_HOST_OFFLINE', 'QRA_ERR_HOST_OFFLINE', 'QRA_ERR_HOST_OFFLINE', 'QRA_ERR_RATE_LIMITED', 'QRA_ERR_RATE_LIMITED', 'QRA_ERR_RATE_LIMITED']);

  // Redis down: no node fails every request or none; each counts in its own memory.
  const mark = three[0]!.daemon.output.length;
  await redis!.stop();
  await three[0]!.daemon.waitFor(/event=redis role=pub state=down/, 10_000, mark);
  const alone: string[] = [];
  // Regression: a broadcast while Redis was away was an unhandled rejection (the adapter's
  // serverCount, an unawaited publish) that ended the node: every node at once on a Redis restart.
  for (let i = 0; i < 4; i++) alone.push(await ask(same[0]!));
  t.deepEqual(alone, ['QRA_ERR_HOST_OFFLINE', 'QRA_ERR_HOST_OFFLINE', 'QRA_ERR_HOST_OFFLINE', 'QRA_ERR_RATE_LIMITED']);
  for (const n of three) t.is(n.daemon.child.exitCode, null, `every node still runs: ${n.daemon.output.slice(-400)}`);
});

/** The node a host's entry in the routing map names (cross-node.ts), or '' when it has none. */
async function routedTo(hostId: string): Promise<string> {
  const r = await run(['redis-cli', '-h', '127.0.0.1', '-p', String(redisPort), 'GET', `qrauth:host:${hostId}`]);
  if (r.code !== 0) throw new Error(`redis-cli: ${r.stderr}`);
  return r.stdout.trim();
}

/** Runs `fn` the first time only (a teardown may repeat what the test already did). */
function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

const nodeIdOf = async (n: { daemon: Daemon }): Promise<string> => (await n.daemon.waitFor(/event=config .*routing=direct node=([A-Za-z0-9_-]{12})/, 5000))[1]!;

test.serial('direct routing: a request goes to the one node holding the host; a second connection of the host wins; the old one closing does not hide it; a killed node\'s hosts fail closed until they reconnect elsewhere; without Redis each node still serves its own hosts', async (t) => {
  // The previous test leaves Redis stopped (a no-op stop when this test runs alone): the same port again.
  await redis?.stop();
  redis = await startRedis();
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const direct = ['--redis', redisUrl, '--routing', 'direct'];
  const a = await startNode(direct);
  const b = await startNode(direct);
  const c = await startNode(direct);
  const [idA, idB, idC] = [await nodeIdOf(a), await nodeIdOf(b), await nodeIdOf(c)];
  t.is(new Set([idA, idB, idC]).size, 3, 'each node has its own id');

  // Host 1 on node A (through a balancer that knows only A); the phone on node B.
  const toA = await startFailoverProxy([a.port]);
  const host1 = await startTestAgent({ relayUrl: toA.url, hostname: 'test-host' });
  const closeHost1 = once(async () => {
    await host1.close();
    await toA.close();
  });
  t.teardown(closeHost1);
  const hostId = host1.agent.host.hostId;
  const phone = await newPhone(b.url, host1);
  host1.setDevices('alice', [phone.devicesLine()]);
  await until(async () => (await health(a.url)).hosts === 1, 15_000, 'host 1 on node A');
  await until(async () => (await routedTo(hostId)) === idA, 5000, 'the routing map naming node A');
  const ttl = Number((await run(['redis-cli', '-h', '127.0.0.1', '-p', String(redisPort), 'PTTL', `qrauth:host:${hostId}`])).stdout);
  t.true(ttl > 0 && ttl <= 900_000, `the entry expires on its own (PTTL ${ttl})`);
  t.like(await login(phone, host1), { type: MsgType.VERDICT, result: Result.APPROVED }, 'host on A, phone on B');

  // The same host key connects again on node C (a second agent: the sessions of one are unknown
  // to the other, so a login through host 2 completes only if the request went to C).
  const state2 = join(tmp.path, 'host2-state');
  mkdirSync(state2, { mode: 0o755 });
  for (const f of ['host.key', 'host.pub']) copyFileSync(join(host1.dir, 'state', f), join(state2, f));
  const toC = await startFailoverProxy([c.port]);
  const host2 = await startTestAgent({ relayUrl: toC.url, hostname: 'test-host', stateDir: state2 });
  t.teardown(async () => {
    await host2.close();
    await toC.close();
  });
  t.is(host2.agent.host.hostId, hostId, 'the same host key');
  host2.setDevices('alice', [phone.devicesLine()]);
  await until(async () => (await routedTo(hostId)) === idC, 15_000, 'the routing map naming node C: the last connection wins');
  t.like(await login(phone, host2), { type: MsgType.VERDICT, result: Result.APPROVED }, 'host on C, phone on B');

  // Host 1 leaves node A late: A deletes the entry only if it still names A, so C keeps the host.
  await closeHost1();
  await until(async () => (await health(a.url)).hosts === 0, 15_000, 'host 1 gone from node A');
  t.is(await routedTo(hostId), idC, 'node A did not remove the entry of the connection on C');
  t.like(await login(phone, host2), { type: MsgType.VERDICT, result: Result.APPROVED }, 'still reached on C');

  // Node C dies with the host's only connection; the balancer has nowhere else to send it yet.
  const pam = await PamClient.connect(host2.socket);
  t.teardown(() => pam.close());
  pam.send({ type: MsgType.BEGIN, user: 'alice', service: 'sshd', rhost: '127.0.0.1', tty: 'ssh', uid: 4242, home: '/nonexistent' } as FrameMsg);
  const challenge = (await pam.next()) as FrameMsg & { payload: string };
  t.is(challenge?.type, MsgType.CHALLENGE);
  await c.daemon.stop('SIGKILL');
  t.is(await routedTo(hostId), idC, 'the entry still names the dead node');
  // Refused at once (the dead node's channel has no subscriber), not after the ack timeout, and nothing approved.
  const refused = await t.throwsAsync(() => phone.decide(challenge.payload, 'approve'));
  t.is((refused as { code?: string }).code, 'QRA_ERR_HOST_OFFLINE');
  t.regex(refused!.message, /not connected/);

  // The host reconnects elsewhere (the balancer now sends it to A): the same pending login completes.
  toC.backends = [a.port];
  await until(async () => (await routedTo(hostId)) === idA, 20_000, 'the host back, on node A');
  const ack = await phone.decide(challenge.payload, 'approve');
  t.true(ack.ok, `approved after the reconnect: ${JSON.stringify(ack)}`);
  pam.send({ type: MsgType.WAIT } as FrameMsg);
  t.like(await pam.next(), { type: MsgType.VERDICT, result: Result.APPROVED });

  // Redis down: a phone on the host's own node still gets through (no Redis on that path); one on
  // another node is told the host is offline.
  const phoneA = await newPhone(a.url, host2);
  host2.setDevices('alice', [phone.devicesLine(), phoneA.devicesLine()]);
  const mark = a.daemon.output.length;
  await redis!.stop();
  await a.daemon.waitFor(/event=redis role=\w+ state=(down|error)/, 10_000, mark);
  t.like(await login(phoneA, host2), { type: MsgType.VERDICT, result: Result.APPROVED }, 'host and phone on A without Redis');
  const offline = await t.throwsAsync(() => login(phone, host2));
  t.is((offline as { code?: string }).code, 'QRA_ERR_HOST_OFFLINE', `phone on B without Redis: ${offline?.message}`);
  for (const n of [a, b]) t.is(n.daemon.child.exitCode, null, `node still runs: ${n.daemon.output.slice(-400)}`);
});

test.serial('broadcast routing (the Socket.IO Redis adapter, kept for comparison) still carries a login across nodes', async (t) => {
  await redis?.stop();
  redis = await startRedis();
  const broadcast = ['--redis', `redis://127.0.0.1:${redisPort}`, '--routing', 'broadcast'];
  const a = await startNode(broadcast);
  const b = await startNode(broadcast);
  await a.daemon.waitFor(/event=config .*routing=broadcast/, 5000);
  const host = await startTestAgent({ relayUrl: a.url, hostname: 'test-host' });
  t.teardown(() => host.close());
  const phone = await newPhone(b.url, host);
  host.setDevices('alice', [phone.devicesLine()]);
  await until(async () => (await health(a.url)).hosts === 1, 15_000, 'the host on node A');
  t.like(await login(phone, host), { type: MsgType.VERDICT, result: Result.APPROVED }, 'host on A, phone on B');
  t.is(await routedTo(host.agent.host.hostId), '', 'no routing map with the adapter');
});
