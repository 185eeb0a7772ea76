import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { register as globalRegistry } from 'prom-client';
import {
  DEVICE_NAMESPACE,
  HOST_NAMESPACE,
  MAX_MESSAGE_BYTES,
  authBytes,
  formatEnrollPayload,
  fromB64url,
  keyId,
  makeAuthHandshake,
  toB64url,
} from '../protocol/src/index.js';
import { nodeCrypto } from '../protocol/src/crypto-node.js';
import { parseAllowHosts } from '../relay/src/allow-hosts.js';
import { NonceCache } from '../relay/src/nonce-cache.js';
import { connectRedisAdapter } from '../relay/src/redis.js';
import { type Relay, type RelayOptions, startRelay } from '../relay/src/server.js';
import { run, startDaemon, until } from './support/daemon.js';
import { FakeHost, connectDevice, disconnected, eventually, tryConnect } from './support/net.js';
import { HeadlessPhone } from './support/phone.js';
import { freePort } from './support/sshd.js';

const ROLES = [
  { role: 'host', ns: HOST_NAMESPACE },
  { role: 'device', ns: DEVICE_NAMESPACE },
] as const;

async function relayFor(t: ExecutionContext, opts: RelayOptions = {}): Promise<Relay & { lines: string[] }> {
  const lines: string[] = [];
  const relay = await startRelay({ ackTimeoutMs: 1000, ...opts, log: (l) => lines.push(l) });
  t.teardown(() => relay.close());
  return Object.assign(relay, { lines });
}

async function hostFor(t: ExecutionContext, relay: Relay, opts: ConstructorParameters<typeof FakeHost>[0] = {}): Promise<FakeHost> {
  const host = await FakeHost.connect(relay.url, opts);
  t.teardown(() => host.close());
  return host;
}

async function deviceFor(t: ExecutionContext, relay: Relay, seed?: Uint8Array) {
  const socket = await connectDevice(relay.url, seed);
  t.teardown(() => socket.disconnect());
  return socket;
}

async function phoneFor(t: ExecutionContext, host?: FakeHost, relay?: Relay): Promise<HeadlessPhone> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'qrauth-phone-'));
  const phone = await HeadlessPhone.create(dir, 'Test phone', { timeoutMs: 3000 });
  t.teardown(async () => {
    await phone.close();
    await rm(dir, { recursive: true, force: true });
  });
  if (host && relay) {
    await phone.trustHost({ hostPub: host.hostPub, hostname: host.hostname, relayUrl: relay.url });
    host.enrollDevice(phone.publicKey);
  }
  return phone;
}

function get(url: string, rawPath: string, method = 'GET'): Promise<{ status: number; type: string | undefined; body: string; cache: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}${rawPath}`, { method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body, cache: res.headers['cache-control'] }));
    });
    req.on('error', reject);
    req.end();
  });
}

// ---------------------------------------------------------------- HTTP

test('healthz reports ok with the number of connected hosts and devices, and whether handshakes are checked for this relay', async (t) => {
  const relay = await relayFor(t);
  t.deepEqual(JSON.parse((await get(relay.url, '/healthz')).body), { status: 'ok', hosts: 0, devices: 0, boundHandshakes: false });
  await hostFor(t, relay);
  await deviceFor(t, relay);
  const r = await get(relay.url, '/healthz');
  t.is(r.status, 200);
  t.is(r.type, 'application/json');
  t.deepEqual(JSON.parse(r.body), { status: 'ok', hosts: 1, devices: 1, boundHandshakes: false });
  const bound = await startRelay({ log: () => {}, publicUrls: ['https://relay.example'] });
  t.teardown(() => bound.close());
  t.like(JSON.parse((await get(bound.url, '/healthz')).body), { boundHandshakes: true });
});

test('metrics exposes gauges and counters in Prometheus text', async (t) => {
  const relay = await relayFor(t);
  const host = await hostFor(t, relay);
  const phone = await phoneFor(t, host, relay);
  await phone.decide(host.newLogin().qrText, 'approve');
  await tryConnect(relay.url, HOST_NAMESPACE, { v: 1 });
  const r = await get(relay.url, '/metrics');
  t.is(r.status, 200);
  t.regex(r.type ?? '', /^text\/plain; version=0\.0\.4/);
  t.regex(r.body, /^# TYPE qrauth_relay_connected_hosts gauge$/m);
  t.regex(r.body, /^qrauth_relay_connected_hosts 1$/m);
  t.regex(r.body, /^qrauth_relay_connected_devices 1$/m);
  t.regex(r.body, /^qrauth_relay_forwarded_total\{event="context"\} 1$/m);
  t.regex(r.body, /^qrauth_relay_forwarded_total\{event="decision"\} 1$/m);
  t.regex(r.body, /^qrauth_relay_rejects_total\{reason="unauthenticated"\} 1$/m);
  t.regex(r.body, /^qrauth_relay_decisions_total\{result="approved"\} 1$/m);
  t.regex(r.body, /^qrauth_relay_decisions_total\{result="denied"\} 0$/m);
});

/** One /metrics scrape parsed: HELP and TYPE by family, and every sample line, or a line it could not read. */
function parsePrometheusText(body: string) {
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  const unreadable: string[] = [];
  for (const line of body.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      (meta[1] === 'HELP' ? help : type).set(meta[2]!, meta[3]!);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    const labels = sample && Object.fromEntries([...(sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g)].map((m) => [m[1]!, m[2]!]));
    if (!sample || Number.isNaN(Number(sample[3]))) unreadable.push(line);
    else samples.push({ name: sample[1]!, labels: labels!, value: Number(sample[3]) });
  }
  return { help, type, samples, unreadable };
}

test('a /metrics scrape after traffic has every documented family with its type, labels and values', async (t) => {
  const relay = await relayFor(t);
  const host = await hostFor(t, relay);
  const phone = await phoneFor(t, host, relay);
  await phone.decide(host.newLogin().qrText, 'approve'); // context + decision forwarded, approved
  await tryConnect(relay.url, HOST_NAMESPACE, { v: 1 }); // refused: unauthenticated
  const r = await get(relay.url, '/metrics');
  t.is(r.status, 200);
  t.is(r.type, 'text/plain; version=0.0.4; charset=utf-8');
  t.true(r.body.endsWith('\n'));
  const { help, type, samples, unreadable } = parsePrometheusText(r.body);
  t.deepEqual(unreadable, []);

  // docs/relay.md and docs/operations.md list these; dashboards and alerts use them by name.
  const families = {
    qrauth_relay_connected_hosts: 'gauge',
    qrauth_relay_connected_devices: 'gauge',
    qrauth_relay_forwarded_total: 'counter',
    qrauth_relay_rejects_total: 'counter',
    qrauth_relay_rate_limited_total: 'counter',
    qrauth_relay_decisions_total: 'counter',
    qrauth_relay_request_duration_seconds: 'histogram',
  };
  t.deepEqual(Object.fromEntries(type), families, 'exactly the documented families, with their types');
  for (const name of Object.keys(families)) t.regex(help.get(name) ?? '', /\S/, `${name} has HELP`);

  const family = (name: string) => name.replace(/_(bucket|sum|count)$/, '');
  t.deepEqual(samples.filter((s) => !(family(s.name) in families) && !(s.name in families)), [], 'no sample outside the documented families');
  const values = (name: string, label: string) => Object.fromEntries(samples.filter((s) => s.name === name).map((s) => [s.labels[label], s.value]));

  t.deepEqual(samples.filter((s) => s.name === 'qrauth_relay_connected_hosts'), [{ name: 'qrauth_relay_connected_hosts', labels: {}, value: 1 }]);
  t.deepEqual(samples.filter((s) => s.name === 'qrauth_relay_connected_devices'), [{ name: 'qrauth_relay_connected_devices', labels: {}, value: 1 }]);
  t.deepEqual(values('qrauth_relay_forwarded_total', 'event'), { context: 1, decision: 1, enroll: 0, revokeLeases: 0 });
  t.deepEqual(values('qrauth_relay_rejects_total', 'reason'), { unauthenticated: 1 }, 'a reason appears once counted');
  t.deepEqual(values('qrauth_relay_rate_limited_total', 'budget'), { device: 0, address: 0, host: 0 });
  t.deepEqual(values('qrauth_relay_decisions_total', 'result'), { approved: 1, denied: 0 });

  const bounds = ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '+Inf'];
  for (const [event, answered] of Object.entries({ context: 1, decision: 1, enroll: 0, revokeLeases: 0 })) {
    const buckets = samples.filter((s) => s.name === 'qrauth_relay_request_duration_seconds_bucket' && s.labels.event === event);
    t.deepEqual(buckets.map((b) => b.labels.le), bounds, `${event}: the bucket bounds`);
    t.deepEqual(buckets.map((b) => Object.keys(b.labels).sort()), bounds.map(() => ['event', 'le']));
    t.true(buckets.every((b, i) => i === 0 || b.value >= buckets[i - 1]!.value), `${event}: buckets are cumulative`);
    t.is(buckets.at(-1)!.value, answered, `${event}: +Inf counts every answered request`);
    t.is(values('qrauth_relay_request_duration_seconds_count', 'event')[event], answered);
    const sum = values('qrauth_relay_request_duration_seconds_sum', 'event')[event]!;
    t.true(answered ? sum > 0 && sum < 10 : sum === 0, `${event}: sum ${sum}`);
  }

  // Each relay counts in a registry of its own: another in this process starts from zero, and
  // prom-client's global registry (shared by everything in the process) stays empty.
  const other = parsePrometheusText((await get((await relayFor(t)).url, '/metrics')).body);
  t.is(other.samples.find((s) => s.name === 'qrauth_relay_connected_hosts')?.value, 0);
  t.true(other.samples.filter((s) => s.name === 'qrauth_relay_forwarded_total').every((s) => s.value === 0));
  t.deepEqual(await globalRegistry.getMetricsAsJSON(), []);
});

test('other methods get 405 and unknown paths 404', async (t) => {
  const relay = await relayFor(t);
  t.is((await get(relay.url, '/healthz', 'POST')).status, 405);
  t.is((await get(relay.url, '/metrics', 'DELETE')).status, 405);
  t.is((await get(relay.url, '/nothing-here')).status, 404);
  t.is((await get(relay.url, '/')).status, 404);
  t.is((await get(relay.url, '/socket.io/socket.io.js')).status, 400, 'the client bundle is not served');
});

test('the static app is served with content types, index fallback, and no path traversal', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'qrauth-static-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const outside = path.join(root, 'outside.txt');
  const dir = path.join(root, 'www');
  await mkdir(path.join(dir, 'assets'), { recursive: true });
  await writeFile(path.join(dir, 'index.html'), '<!doctype html><title>qrauth</title>');
  await writeFile(path.join(dir, 'assets', 'app.js'), 'console.log(1)');
  await writeFile(path.join(dir, 'manifest.webmanifest'), '{}');
  await writeFile(outside, 'secret');
  await symlink(outside, path.join(dir, 'leak.txt'));
  const relay = await relayFor(t, { serveAppTrustingRelay: dir });

  const index = await get(relay.url, '/');
  t.is(index.status, 200);
  t.is(index.type, 'text/html; charset=utf-8');
  t.regex(index.body, /<title>qrauth<\/title>/);
  const js = await get(relay.url, '/assets/app.js');
  t.is(js.type, 'text/javascript; charset=utf-8');
  t.is(js.body, 'console.log(1)');
  t.is((await get(relay.url, '/manifest.webmanifest')).type, 'application/manifest+json; charset=utf-8');
  t.regex((await get(relay.url, '/scan/login')).body, /<title>qrauth/, 'client-side routes get index.html');
  t.is((await get(relay.url, '/assets/missing.js')).status, 404, 'a missing file is not answered with html');
  t.is((await get(relay.url, '/leak.txt')).status, 404, 'a symlink out of the root is not followed');
  for (const p of ['/..%2foutside.txt', '/%2e%2e/outside.txt', '/assets/..%2f..%2foutside.txt', '/..\\outside.txt', '/a%00.js', '/%E0%A4%A']) {
    const r = await get(relay.url, p);
    t.not(r.body, 'secret', p);
    t.true(r.status === 404 || (r.status === 200 && r.type === 'text/html; charset=utf-8'), `${p} → ${r.status}`);
  }
  t.is((await get(relay.url, '/healthz')).status, 200, 'health still wins over the app');
});

test('caching: hashed assets are immutable, index.html and the service worker are revalidated', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'qrauth-static-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  await mkdir(path.join(root, 'assets'), { recursive: true });
  await writeFile(path.join(root, 'index.html'), '<!doctype html>');
  await writeFile(path.join(root, 'sw.js'), 'self.x=1');
  await writeFile(path.join(root, 'assets', 'index-abc123.js'), '1');
  await writeFile(path.join(root, 'manifest.webmanifest'), '{}');
  const relay = await relayFor(t, { serveAppTrustingRelay: root });
  t.is((await get(relay.url, '/assets/index-abc123.js')).cache, 'public, max-age=31536000, immutable');
  t.is((await get(relay.url, '/')).cache, 'no-cache');
  t.is((await get(relay.url, '/sw.js')).cache, 'no-cache');
  t.is((await get(relay.url, '/manifest.webmanifest')).cache, 'public, max-age=3600');
});

// ---------------------------------------------------------------- handshakes

for (const { role, ns } of ROLES) {
  test(`${role}: a handshake with a bad signature is refused`, async (t) => {
    const relay = await relayFor(t);
    const auth = makeAuthHandshake(nodeCrypto, role, nodeCrypto.randomBytes(32));
    const other = makeAuthHandshake(nodeCrypto, role, nodeCrypto.randomBytes(32));
    const r = await tryConnect(relay.url, ns, { ...auth, sig: other.sig });
    t.false(r.ok);
    t.like(r, { code: 'QRA_ERR_UNAUTHENTICATED', message: 'handshake signature does not verify' });
    t.is(relay.metrics.rejects.unauthenticated, 1);
  });

  test(`${role}: a handshake with a stale or future time is refused`, async (t) => {
    const relay = await relayFor(t);
    const seed = nodeCrypto.randomBytes(32);
    for (const skew of [-180_000, 180_000]) {
      const r = await tryConnect(relay.url, ns, makeAuthHandshake(nodeCrypto, role, seed, Date.now() + skew));
      t.false(r.ok);
      t.like(r, { code: 'QRA_ERR_UNAUTHENTICATED' });
      if (!r.ok) t.regex(r.message, /clock/);
    }
    t.true((await tryConnect(relay.url, ns, makeAuthHandshake(nodeCrypto, role, seed, Date.now() - 60_000))).ok, 'within the window is fine');
  });

  test(`${role}: a replayed handshake is refused`, async (t) => {
    const relay = await relayFor(t);
    const auth = makeAuthHandshake(nodeCrypto, role, nodeCrypto.randomBytes(32));
    const first = await tryConnect(relay.url, ns, auth);
    t.true(first.ok);
    if (first.ok) first.socket.disconnect();
    const again = await tryConnect(relay.url, ns, auth);
    t.false(again.ok);
    t.like(again, { code: 'QRA_ERR_UNAUTHENTICATED' });
    if (!again.ok) t.regex(again.message, /already used/);
  });

  test(`${role}: malformed handshakes are refused and the relay keeps serving`, async (t) => {
    const relay = await relayFor(t);
    const good = makeAuthHandshake(nodeCrypto, role, nodeCrypto.randomBytes(32));
    const bad: (object | undefined)[] = [
      undefined,
      {},
      { ...good, v: 2 },
      { ...good, time: String(good.time) },
      { ...good, pub: good.pub.slice(1) },
      { ...good, pub: `${good.pub.slice(0, 42)}!` },
      { ...good, sig: 'A'.repeat(86) },
      { ...good, nonce: 'x' },
      { ...good, extra: 1 },
      { ...good, hostId: 'A'.repeat(22) },
      { ...good, pub: 'x'.repeat(5000) },
    ];
    for (const auth of bad) {
      const r = await tryConnect(relay.url, ns, auth);
      t.false(r.ok, JSON.stringify(auth)?.slice(0, 80));
      t.like(r, { code: 'QRA_ERR_UNAUTHENTICATED' });
    }
    t.is(relay.metrics.rejects.unauthenticated, bad.length);
    t.true((await tryConnect(relay.url, ns, good)).ok);
  });
}

test("a device's handshake does not open the host namespace (and the other way round)", async (t) => {
  const relay = await relayFor(t);
  const seed = nodeCrypto.randomBytes(32);
  t.like(await tryConnect(relay.url, HOST_NAMESPACE, makeAuthHandshake(nodeCrypto, 'device', seed)), { ok: false, code: 'QRA_ERR_UNAUTHENTICATED' });
  t.like(await tryConnect(relay.url, DEVICE_NAMESPACE, makeAuthHandshake(nodeCrypto, 'host', seed)), { ok: false, code: 'QRA_ERR_UNAUTHENTICATED' });
});

test('the default namespace serves nothing', async (t) => {
  const relay = await relayFor(t);
  const r = await tryConnect(relay.url, '/', makeAuthHandshake(nodeCrypto, 'device', nodeCrypto.randomBytes(32)));
  t.false(r.ok);
  t.is(relay.metrics.rejects.default_namespace, 1);
  t.false((await tryConnect(relay.url, '/admin', undefined)).ok);
});

test('a host cannot claim another hostId', async (t) => {
  const relay = await relayFor(t);
  const victim = await hostFor(t, relay);
  const attackerSeed = nodeCrypto.randomBytes(32);
  // The victim's public key with a signature the attacker made over the victim's id.
  const time = Date.now();
  const nonce = toB64url(nodeCrypto.randomBytes(16));
  const sig = toB64url(nodeCrypto.ed25519Sign(attackerSeed, authBytes('host', victim.hostId, time, nonce)));
  t.like(await tryConnect(relay.url, HOST_NAMESPACE, { v: 1, pub: victim.hostPub, time, nonce, sig }), {
    ok: false,
    code: 'QRA_ERR_UNAUTHENTICATED',
  });

  // With its own key it lands in its own room only: requests for the victim never reach it.
  victim.close();
  await eventually(() => relay.metrics.hostsConnected === 0);
  const attacker = await hostFor(t, relay, { seed: attackerSeed });
  t.not(attacker.hostId, victim.hostId);
  const device = await deviceFor(t, relay);
  const ack = await device.timeout(2000).emitWithAck('context', { hostId: victim.hostId, sid: victim.newLogin().sid });
  t.like(ack, { ok: false, code: 'QRA_ERR_HOST_OFFLINE' });
  t.deepEqual(attacker.received.context, []);
});

test('with allowHosts only listed hosts may connect', async (t) => {
  const allowed = new FakeHost();
  const relay = await relayFor(t, { allowHosts: new Set([allowed.hostId]) });
  const ok = await hostFor(t, relay, { seed: allowed.seed });
  t.is(ok.hostId, allowed.hostId);
  const r = await tryConnect(relay.url, HOST_NAMESPACE, makeAuthHandshake(nodeCrypto, 'host', nodeCrypto.randomBytes(32)));
  t.like(r, { ok: false, code: 'QRA_ERR_UNAUTHENTICATED' });
  if (!r.ok) t.regex(r.message, /allow-list/);
  t.is(relay.metrics.rejects.not_allowed, 1);
  t.true((await tryConnect(relay.url, DEVICE_NAMESPACE, makeAuthHandshake(nodeCrypto, 'device', nodeCrypto.randomBytes(32)))).ok, 'devices are not on the list');
});

test('one address opening too many connections is refused', async (t) => {
  const relay = await relayFor(t, { limits: { connectionsPerIpPerMinute: 3 } });
  const results = [];
  for (let i = 0; i < 5; i++) results.push(await tryConnect(relay.url, DEVICE_NAMESPACE, makeAuthHandshake(nodeCrypto, 'device', nodeCrypto.randomBytes(32))));
  for (const r of results) if (r.ok) r.socket.disconnect();
  t.deepEqual(
    results.map((r) => r.ok),
    [true, true, true, false, false],
  );
  t.is(relay.metrics.rejects.connection_rate_limited, 2);
});

// ---------------------------------------------------------------- routing

test('a context travels phone → relay → host → phone and the phone verifies it', async (t) => {
  const relay = await relayFor(t);
  const host = await hostFor(t, relay);
  const phone = await phoneFor(t, host, relay);
  const login = host.newLogin({ user: 'alice', rhost: '203.0.113.7' });
  const ctx = await phone.fetchContext(login.qrText);
  t.like(ctx, { hostId: host.hostId, sid: login.sid, user: 'alice', hostname: 'web-01', rhost: '203.0.113.7', service: 'sshd' });
  t.deepEqual(host.received.context, [{ sid: login.sid }], 'the host gets only the sid');
  t.is(relay.metrics.forwarded.context, 1);
});

test('a decision is forwarded unchanged and the host ack comes back; the log line has no signature', async (t) => {
  const relay = await relayFor(t);
  const host = await hostFor(t, relay);
  const phone = await phoneFor(t, host, relay);
  const login = host.newLogin();
  t.deepEqual(await phone.decide(login.qrText, 'approve'), { ok: true, result: 'approved' });
  const msg = host.received.decision[0] as { sid: string; deviceId: string; decision: string; sig: string };
  t.like(msg, { hostId: host.hostId, sid: login.sid, deviceId: phone.deviceId, decision: 'approve' });
  t.is(relay.metrics.approvals, 1);
  const line = relay.lines.find((l) => l.startsWith('event=decision'));
  t.is(line, `event=decision hostId=${host.hostId} sid=${login.sid.slice(0, 8)} deviceId=${phone.deviceId} decision=approve result=approved`);
  t.false(relay.lines.join('\n').includes(msg.sig));
  t.false(relay.lines.join('\n').includes(login.sid));

  const denied = host.newLogin();
  t.deepEqual(await phone.decide(denied.qrText, 'deny'), { ok: true, result: 'denied' });
  t.is(relay.metrics.denials, 1);
});

test('a host error ack reaches the phone unchanged', async (t) => {
  const relay = await relayFor(t);
  const host = await hostFor(t, relay);
  const device = await deviceFor(t, relay);
  const ack = await device.timeout(2000).emitWithAck('context', { hostId: host.hostId, sid: toB64url(nodeCrypto.randomBytes(16)) });
  t.deepEqual(ack, { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION', message: 'no such login' });
});

test('a request for a host that is not connected gets QRA_ERR_HOST_OFFLINE', async (t) => {
  const relay = await relayFor(t);
  const device = await deviceFor(t, relay);
  const hostId = keyId(nodeCrypto, nodeCrypto.randomBytes(32));
  const ack = await device.timeout(2000).emitWithAck('context', { hostId, sid: toB64url(nodeCrypto.randomBytes(16)) });
  t.deepEqual(ack, { ok: false, code: 'QRA_ERR_HOST_OFFLINE', message: 'that host is not connected to the relay' });
  t.is(relay.metrics.rejects.host_offline, 1);
});

test('a host that never answers gets the phone QRA_ERR_HOST_OFFLINE after the ack timeout', async (t) => {
  const relay = await relayFor(t, { ackTimeoutMs: 300 });
  const host = await hostFor(t, relay);
  host.socket.off('context');
  host.socket.on('context', () => {});
  const device = await deviceFor(t, relay);
  const started = Date.now();
  const ack = await device.timeout(2000).emitWithAck('context', { hostId: host.hostId, sid: host.newLogin().sid });
  t.like(ack, { ok: false, code: 'QRA_ERR_HOST_OFFLINE' });
  t.true(Date.now() - started >= 290);
  t.is(relay.metrics.rejects.host_timeout, 1);
});

test('malformed events, oversized payloads and events without ack are rejected and the relay serves the next request', async (t) => {
  const relay = await relayFor(t);
  const host = await hostFor(t, relay);
  const device = await deviceFor(t, relay);
  const sid = host.newLogin().sid;
  const good = { hostId: host.hostId, sid };
  const bad: unknown[][] = [
    [null],
    ['string'],
    [{}],
    [{ ...good, extra: true }],
    [{ hostId: host.hostId, sid: 'short' }],
    [{ hostId: host.hostId, sid: 123 }],
    [good, 'second argument'],
    [],
  ];
  for (const args of bad) {
    const ack = (await device.timeout(2000).emitWithAck('context', ...args)) as { ok: boolean; code: string };
    t.like(ack, { ok: false, code: 'QRA_ERR_INVALID_INPUT' }, JSON.stringify(args));
  }
  const badDecisions = [{ ...good, deviceId: 'A'.repeat(22), decision: 'maybe', time: 1, sig: 'A'.repeat(86) }, { decision: 'approve' }];
  for (const d of badDecisions) t.like(await device.timeout(2000).emitWithAck('decision', d), { ok: false, code: 'QRA_ERR_INVALID_INPUT' });
  t.like(await device.timeout(2000).emitWithAck('enroll', { hostId: host.hostId }), { ok: false, code: 'QRA_ERR_INVALID_INPUT' });
  t.deepEqual(host.received, { context: [], decision: [], enroll: [] }, 'nothing malformed reaches the host');
  t.is(relay.metrics.rejects.invalid_input, bad.length + badDecisions.length + 1);

  device.emit('context', good); // no ack: dropped
  device.emit('hello', good, () => {}); // unknown event: ignored
  await eventually(() => relay.metrics.rejects.no_ack === 1 && relay.metrics.rejects.unknown_event === 1);
  t.deepEqual(host.received.context, []);

  // Bigger than maxHttpBufferSize: the transport is closed, nothing reaches the host.
  device.emit('context', { ...good, pad: 'x'.repeat(MAX_MESSAGE_BYTES * 2) }, () => {});
  t.true(await disconnected(device));
  t.deepEqual(host.received.context, []);

  const next = await deviceFor(t, relay);
  t.like(await next.timeout(2000).emitWithAck('context', good), { ok: true, context: { sid } });
});

test('a decision naming another deviceId than the connection proved is refused', async (t) => {
  const relay = await relayFor(t);
  const host = await hostFor(t, relay);
  const device = await deviceFor(t, relay);
  const msg = {
    hostId: host.hostId,
    sid: host.newLogin().sid,
    deviceId: keyId(nodeCrypto, nodeCrypto.randomBytes(32)),
    decision: 'approve',
    time: Date.now(),
    sig: toB64url(nodeCrypto.randomBytes(64)),
  };
  const ack = await device.timeout(2000).emitWithAck('decision', msg);
  t.like(ack, { ok: false, code: 'QRA_ERR_INVALID_INPUT' });
  t.deepEqual(host.received.decision, []);
});

test('a malformed or mismatched host ack is never passed on', async (t) => {
  const relay = await relayFor(t);
  const host = await hostFor(t, relay);
  const device = await deviceFor(t, relay);
  const login = host.newLogin();
  const other = host.newLogin();
  const answers: unknown[] = [
    'garbage',
    null,
    { ok: true },
    { ok: true, context: { ...host.signedContext(login.sid), extra: '<script>' } },
    { ok: true, context: host.signedContext(other.sid) }, // valid, but for another login
    { ok: false, code: 'not-a-code', message: 'x' },
    { ok: false, code: 'QRA_ERR_HOST_OFFLINE', message: 'x'.repeat(600) },
  ];
  for (const answer of answers) {
    host.onContext = () => answer;
    const ack = await device.timeout(2000).emitWithAck('context', { hostId: host.hostId, sid: login.sid });
    t.like(ack, { ok: false, code: 'QRA_ERR_INTERNAL' }, JSON.stringify(answer).slice(0, 60));
    t.false(JSON.stringify(ack).includes(other.sid));
  }
  t.is(relay.metrics.rejects.invalid_host_ack, answers.length);

  host.onContext = () => ({ ok: false, code: 'QRA_ERR_MADE_UP', message: 'hello' });
  t.like(await device.timeout(2000).emitWithAck('context', { hostId: host.hostId, sid: login.sid }), { ok: false, code: 'QRA_ERR_INTERNAL' });

  host.onDecision = () => ({ ok: true, result: 'maybe' });
  const phone = await phoneFor(t, host, relay);
  host.onContext = (req) => host.contextAckFor(req.sid);
  t.like(await phone.decide(login.qrText, 'approve'), { ok: false, code: 'QRA_ERR_INTERNAL' });
  t.is(relay.metrics.approvals, 0);
});

test('when one host has two connections a success wins over an error', async (t) => {
  const relay = await relayFor(t);
  const first = await hostFor(t, relay);
  const second = await hostFor(t, relay, { seed: first.seed });
  const login = second.newLogin();
  first.onContext = () => ({ ok: false, code: 'QRA_ERR_UNKNOWN_SESSION', message: 'not mine' });
  const device = await deviceFor(t, relay);
  const ack = await device.timeout(2000).emitWithAck('context', { hostId: first.hostId, sid: login.sid });
  t.like(ack, { ok: true, context: { sid: login.sid } });
  t.is(first.received.context.length, 1);
  t.is(second.received.context.length, 1);
});

/** A redis-server of this test's own, on a free loopback port; its redis:// URL. */
async function redisFor(t: ExecutionContext): Promise<{ url: string; port: number }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'qrauth-redis-'));
  const port = await freePort();
  const redis = startDaemon(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no']);
  t.teardown(async () => {
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });
  await redis.waitFor(/Ready to accept connections/, 15_000);
  return { url: `redis://127.0.0.1:${port}`, port };
}

/** A relay node with direct routing (cross-node.ts) through that Redis, logging into `lines`. */
async function directNode(t: ExecutionContext, redisUrl: string) {
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  const redis = await connectRedisAdapter(redisUrl, log, 5000, 'direct');
  const relay = await startRelay({ ackTimeoutMs: 1000, crossNode: redis.crossNode, log });
  t.teardown(async () => {
    await relay.close();
    await redis.close();
  });
  return { relay, crossNode: redis.crossNode!, lines };
}

test("direct routing: a request from another node reaches the host as one from a phone on the host's node; one that does not parse or names another host is dropped and logged", async (t) => {
  const redis = await redisFor(t);
  const a = await directNode(t, redis.url);
  const b = await directNode(t, redis.url);
  const host = await hostFor(t, a.relay);
  const revokes: unknown[] = [];
  host.socket.on('revokeLeases', (msg, ack) => {
    revokes.push(msg);
    (ack as (x: unknown) => void)({ ok: true, revoked: 0 });
  });
  const routed = async () => (await run(['redis-cli', '-p', String(redis.port), 'GET', `qrauth:host:${host.hostId}`])).stdout.trim() === a.crossNode.nodeId;
  await until(routed, 10_000, 'the routing map naming node A');
  const phone = await phoneFor(t, host, b.relay); // on node B

  const login = host.newLogin();
  t.like(await phone.fetchContext(login.qrText), { hostId: host.hostId, sid: login.sid });
  t.deepEqual(host.received.context, [{ sid: login.sid }], 'the host gets only the sid');
  t.deepEqual(await phone.decide(login.qrText, 'approve'), { ok: true, result: 'approved' });
  t.like(host.received.decision[0], { hostId: host.hostId, sid: login.sid, deviceId: phone.deviceId, decision: 'approve' });
  await phone.enroll(formatEnrollPayload({ hostPub: fromB64url(host.hostPub, 32), token: nodeCrypto.randomBytes(16), hostname: host.hostname, relayUrl: b.relay.url }));
  t.like(host.received.enroll[0], { hostId: host.hostId, devicePub: phone.publicKey });
  const revoke = phone.signLeaseRevoke(host.hostId);
  t.deepEqual(await phone.sendLeaseRevoke(revoke), { ok: true, revoked: 0 });
  t.deepEqual(revokes, [revoke], 'a lease revoke arrives unchanged');

  // What a hostile node or Redis could publish for the host on A: never handed to the host.
  const received = () => JSON.stringify([host.received, revokes]);
  const before = received();
  const other = keyId(nodeCrypto, nodeCrypto.randomBytes(32));
  const valid = { context: { hostId: host.hostId, sid: login.sid }, decision: host.received.decision[0], enroll: host.received.enroll[0], revokeLeases: revoke };
  for (const [event, message] of Object.entries(valid) as Array<[keyof typeof valid, object]>) {
    let mark = a.lines.length;
    t.deepEqual(await b.crossNode.ask(host.hostId, event, { ...message, hostId: other }, 3000), { timedOut: false, responses: [] }, event);
    t.deepEqual(a.lines.slice(mark), [`event=error where=cross_node.deliver message="${event}: hostId differs from the routed one"`], event);
    mark = a.lines.length;
    t.deepEqual(await b.crossNode.ask(host.hostId, event, { hostId: host.hostId }, 3000), { timedOut: false, responses: [] }, event);
    const lines = a.lines.slice(mark);
    t.is(lines.length, 1, event);
    t.true(lines[0]!.startsWith('event=error where=cross_node.deliver message=') && lines[0]!.includes(`crossNode.${event}`), lines[0]);
  }
  t.is(received(), before, 'the host got none of them');
});

test('a device flooding requests gets QRA_ERR_RATE_LIMITED', async (t) => {
  const relay = await relayFor(t, { limits: { deviceEventsPer10s: 5 } });
  const host = await hostFor(t, relay);
  const device = await deviceFor(t, relay);
  const sid = host.newLogin().sid;
  const acks = (await Promise.all(
    Array.from({ length: 8 }, () => device.timeout(2000).emitWithAck('context', { hostId: host.hostId, sid })),
  )) as { ok: boolean; code?: string }[];
  t.is(acks.filter((a) => a.ok).length, 5);
  t.is(acks.filter((a) => a.code === 'QRA_ERR_RATE_LIMITED').length, 3);
  t.is(host.received.context.length, 5);
  const other = await deviceFor(t, relay);
  t.like(await other.timeout(2000).emitWithAck('context', { hostId: host.hostId, sid }), { ok: true }, 'another phone is not affected');
});

test('requests for one host are limited across all phones', async (t) => {
  const relay = await relayFor(t, { limits: { hostEventsPer10s: 3 } });
  const host = await hostFor(t, relay);
  const sid = host.newLogin().sid;
  const devices = [];
  for (let i = 0; i < 4; i++) devices.push(await deviceFor(t, relay));
  const acks = (await Promise.all(devices.map((d) => d.timeout(2000).emitWithAck('context', { hostId: host.hostId, sid })))) as {
    ok: boolean;
    code?: string;
  }[];
  t.is(acks.filter((a) => a.ok).length, 3);
  t.is(acks.filter((a) => a.code === 'QRA_ERR_RATE_LIMITED').length, 1);
  t.is(host.received.context.length, 3);
});

// ---------------------------------------------------------------- building blocks and CLI

test('the nonce cache forgets expired nonces and refuses when full of live ones', (t) => {
  let now = 1000;
  const c = new NonceCache(2, () => now);
  t.false(c.seen('a', 2000));
  t.true(c.seen('a', 2000));
  t.false(c.seen('b', 2000));
  t.throws(() => c.seen('c', 2000), { message: /too many new connections/ });
  now = 2001;
  t.false(c.seen('c', 3000));
  t.false(c.seen('a', 3000), 'an expired nonce is forgotten (the clock check rejects its handshake)');
  t.is(c.size, 2);
});

test('the allow-hosts file takes one hostId a line and names a bad line', (t) => {
  const id = 'A'.repeat(22);
  t.deepEqual([...parseAllowHosts(`# web\n${id}  # web-01\n\n${'B'.repeat(22)}\n`)], [id, 'B'.repeat(22)]);
  t.throws(() => parseAllowHosts(`${id}\nnot-an-id\n`, 'hosts.txt'), { message: /^hosts\.txt:2: / });
});

test('qrauth-relay starts from the command line, serves healthz, and stops on SIGTERM', async (t) => {
  const child = spawn(process.execPath, ['--import=tsx', 'relay/src/main.ts', '--port', '0'], {
    cwd: path.resolve(import.meta.dirname, '..'),
    env: { ...process.env, QRAUTH_RELAY_HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /qrauth-relay listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  t.is((await get(url, '/healthz')).status, 200);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  t.is(await exited, 0);
});

test('qrauth-relay refuses a bad allow-hosts file with a clear message', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'qrauth-allow-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'hosts');
  await writeFile(file, 'nope\n');
  const child = spawn(process.execPath, ['--import=tsx', 'relay/src/main.ts', '--port', '0', '--allow-hosts', file], {
    cwd: path.resolve(import.meta.dirname, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  t.is(code, 2);
  t.regex(err, /QRA_ERR_CONFIG: .*hosts:1: expected a hostId/);
});
