import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Server } from 'socket.io';
import {
  DEVICE_NAMESPACE,
  formatEnrollPayload,
  fromB64url,
  isQrauthError,
  keyId,
  offlineCode,
  offlineKey,
  tokenIdOf,
  toB64url,
} from '../protocol/src/index.js';
import { nodeCrypto } from '../protocol/src/crypto-node.js';
import { type Relay, startRelay } from '../relay/src/server.js';
import { FakeHost, eventually } from './support/net.js';
import { HeadlessPhone } from './support/phone.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'qrauth-phone-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function relayFor(t: ExecutionContext): Promise<Relay> {
  const relay = await startRelay({ ackTimeoutMs: 1000, log: () => {} });
  t.teardown(() => relay.close());
  return relay;
}

async function setup(t: ExecutionContext) {
  const relay = await relayFor(t);
  const host = await FakeHost.connect(relay.url);
  t.teardown(() => host.close());
  const phone = await HeadlessPhone.create(await tempDir(t), 'Test phone', { timeoutMs: 3000 });
  t.teardown(() => phone.close());
  await phone.trustHost({ hostPub: host.hostPub, hostname: host.hostname, relayUrl: relay.url });
  host.enrollDevice(phone.publicKey);
  return { relay, host, phone };
}

/**
 * A lying relay: accepts any phone on /device and answers `context` with whatever the test says.
 * The phone must catch the lie with the host key it stored at enrollment.
 */
async function lyingRelay(t: ExecutionContext, answer: (req: { hostId: string; sid: string }) => unknown): Promise<string> {
  const io = new Server(0, { serveClient: false });
  t.teardown(() => io.close());
  io.of(DEVICE_NAMESPACE).on('connection', (socket) => {
    socket.on('context', (req: { hostId: string; sid: string }, ack: (a: unknown) => void) => ack(answer(req)));
  });
  const port = await new Promise<number>((resolve) => {
    const check = () => {
      const addr = io.httpServer.address();
      if (addr && typeof addr === 'object') resolve(addr.port);
      else setTimeout(check, 5);
    };
    check();
  });
  return `http://127.0.0.1:${port}`;
}

async function rejection(t: ExecutionContext, p: Promise<unknown>): Promise<{ code: string; message: string }> {
  const e = await t.throwsAsync(p);
  t.true(isQrauthError(e), String(e));
  return e as unknown as { code: string; message: string };
}

// ---------------------------------------------------------------- state

test('a new phone keeps its key in device.json (0600) and loads it back', async (t) => {
  const dir = await tempDir(t);
  const phone = await HeadlessPhone.create(dir, "Alice's Pixel");
  const file = path.join(dir, 'device.json');
  t.is((await stat(file)).mode & 0o777, 0o600);
  const json = JSON.parse(await readFile(file, 'utf8')) as { v: number; seed: string; name: string };
  t.is(json.v, 1);
  t.is(json.name, "Alice's Pixel");
  t.is(fromB64url(json.seed, 32).length, 32);
  const again = await HeadlessPhone.load(dir);
  t.is(again.deviceId, phone.deviceId);
  t.is(again.publicKey, phone.publicKey);
  t.is(phone.deviceId, keyId(nodeCrypto, fromB64url(phone.publicKey, 32)));
  t.like(await rejection(t, HeadlessPhone.create(dir, 'Other')), { code: 'QRA_ERR_CONFIG' });
  t.is((await HeadlessPhone.load(dir)).deviceId, phone.deviceId, 'create did not overwrite the key');
});

test('the devices line has the devices-file format', async (t) => {
  const phone = await HeadlessPhone.create(await tempDir(t), "Alice's Pixel");
  t.is(phone.devicesLine(new Date('2026-11-26T12:00:00Z')), `ed25519 ${phone.publicKey} 2026-11-26 Alice's Pixel`);
  t.regex(phone.devicesLine(), /^ed25519 [A-Za-z0-9_-]{43} \d{4}-\d{2}-\d{2} Alice's Pixel$/);
});

test('trusted hosts are stored by hostId and survive a reload', async (t) => {
  const dir = await tempDir(t);
  const phone = await HeadlessPhone.create(dir, 'Test phone');
  const host = new FakeHost();
  t.is(await phone.trustHost({ hostPub: host.hostPub, hostname: 'web-01', relayUrl: 'http://127.0.0.1:1/' }), host.hostId);
  const stored = JSON.parse(await readFile(path.join(dir, 'hosts.json'), 'utf8')) as Record<string, unknown>;
  t.deepEqual(stored, { [host.hostId]: { hostPub: host.hostPub, hostname: 'web-01', relayUrl: 'http://127.0.0.1:1' } });
  t.deepEqual((await HeadlessPhone.load(dir)).hosts.get(host.hostId), { hostPub: host.hostPub, hostname: 'web-01', relayUrl: 'http://127.0.0.1:1' });
});

test('loading refuses state that is missing or tampered with', async (t) => {
  const dir = await tempDir(t);
  t.like(await rejection(t, HeadlessPhone.load(dir)), { code: 'QRA_ERR_CONFIG' });
  const phone = await HeadlessPhone.create(dir, 'Test phone');
  const a = new FakeHost();
  const b = new FakeHost();
  await phone.trustHost({ hostPub: a.hostPub, hostname: 'a', relayUrl: 'http://127.0.0.1:1' });
  await writeFile(path.join(dir, 'hosts.json'), JSON.stringify({ [a.hostId]: { hostPub: b.hostPub, hostname: 'a', relayUrl: 'http://127.0.0.1:1' } }));
  t.like(await rejection(t, HeadlessPhone.load(dir)), { code: 'QRA_ERR_CONFIG' });
});

// ---------------------------------------------------------------- login

test('the phone refuses a QR of an unknown host without connecting anywhere', async (t) => {
  let connections = 0;
  const server = net.createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as net.AddressInfo).port;

  const phone = await HeadlessPhone.create(await tempDir(t), 'Test phone');
  t.teardown(() => phone.close());
  const known = new FakeHost();
  await phone.trustHost({ hostPub: known.hostPub, hostname: 'known', relayUrl: `http://127.0.0.1:${port}` });
  const stranger = new FakeHost();
  const qr = stranger.newLogin().qrText;
  t.like(await rejection(t, phone.fetchContext(qr)), { code: 'QRA_ERR_UNKNOWN_HOST' });
  t.like(await rejection(t, phone.decide(qr, 'approve')), { code: 'QRA_ERR_UNKNOWN_HOST' });
  t.throws(() => phone.offlineCode(qr), { code: 'QRA_ERR_UNKNOWN_HOST' });
  await new Promise((r) => setTimeout(r, 50));
  t.is(connections, 0);
});

test('the phone rejects text that is not a login QR', async (t) => {
  const { phone } = await setup(t);
  for (const qr of ['', 'hello', 'QRA1:x:y:z', `QRE1:${'A'.repeat(43)}`]) {
    t.like(await rejection(t, phone.fetchContext(qr)), { code: 'QRA_ERR_PAYLOAD' });
  }
});

test('approve reaches the host with a signature over the nonce, and deny too', async (t) => {
  const { host, phone } = await setup(t);
  const login = host.newLogin({ user: 'alice' });
  let seen = '';
  const ack = await phone.decide(login.qrText, 'approve', (ctx) => (seen = `${ctx.user}@${ctx.hostname}`));
  t.deepEqual(ack, { ok: true, result: 'approved' });
  t.is(seen, 'alice@web-01');
  t.like(await rejection(t, phone.decide(login.qrText, 'approve')), { code: 'QRA_ERR_UNKNOWN_SESSION' }, 'the session is over');
  t.is(host.received.decision.length, 1);
  t.deepEqual(await phone.decide(host.newLogin().qrText, 'deny'), { ok: true, result: 'denied' });
});

test('the phone reuses one connection per relay', async (t) => {
  const { relay, host, phone } = await setup(t);
  let connections = 0;
  relay.io.of(DEVICE_NAMESPACE).on('connection', () => connections++);
  await phone.fetchContext(host.newLogin().qrText);
  await phone.decide(host.newLogin().qrText, 'approve');
  await phone.fetchContext(host.newLogin().qrText);
  t.is(connections, 1);
  t.is(relay.metrics.devicesConnected, 1);
});

test('the phone rejects a context with a bad host signature', async (t) => {
  const { host, phone } = await setup(t);
  const login = host.newLogin();
  const forger = nodeCrypto.randomBytes(32);
  host.onContext = (req) => ({ ok: true, context: host.signedContext(req.sid, forger) });
  const forged = await rejection(t, phone.fetchContext(login.qrText));
  t.is(forged.code, 'QRA_ERR_SIGNATURE');
  t.regex(forged.message, /not signed by web-01/);

  // Right key, but a field changed after signing (the relay or someone rewrote "from").
  host.onContext = (req) => ({ ok: true, context: { ...host.signedContext(req.sid), rhost: '10.0.0.1' } });
  t.like(await rejection(t, phone.fetchContext(login.qrText)), { code: 'QRA_ERR_SIGNATURE' });
  t.is(host.received.decision.length, 0);
  t.like(await rejection(t, phone.decide(login.qrText, 'approve')), { code: 'QRA_ERR_SIGNATURE' });
  t.is(host.received.decision.length, 0, 'nothing is signed or sent for a forged context');
});

test('the phone rejects an expired context', async (t) => {
  const { host, phone } = await setup(t);
  const login = host.newLogin({ ttlS: -1 });
  t.like(await rejection(t, phone.decide(login.qrText, 'approve')), { code: 'QRA_ERR_EXPIRED' });
  t.is(host.received.decision.length, 0);
});

test('the phone catches a lying relay that returns the context of another login', async (t) => {
  const host = new FakeHost();
  const real = host.newLogin({ user: 'alice' });
  const other = host.newLogin({ user: 'root', rhost: '198.51.100.9' });
  const url = await lyingRelay(t, () => ({ ok: true, context: host.signedContext(other.sid) }));
  const phone = await HeadlessPhone.create(await tempDir(t), 'Test phone', { timeoutMs: 3000 });
  t.teardown(() => phone.close());
  await phone.trustHost({ hostPub: host.hostPub, hostname: host.hostname, relayUrl: url });
  const e = await rejection(t, phone.fetchContext(real.qrText));
  t.is(e.code, 'QRA_ERR_SIGNATURE');
  t.regex(e.message, /another login/);
});

test('the phone reports a relay error ack with its code', async (t) => {
  const { relay, host, phone } = await setup(t);
  const login = host.newLogin();
  host.close();
  await eventually(() => relay.metrics.hostsConnected === 0);
  t.like(await rejection(t, phone.fetchContext(login.qrText)), { code: 'QRA_ERR_HOST_OFFLINE' });
});

test('the phone says the relay is unreachable instead of hanging', async (t) => {
  const phone = await HeadlessPhone.create(await tempDir(t), 'Test phone', { timeoutMs: 500 });
  t.teardown(() => phone.close());
  const host = new FakeHost();
  await phone.trustHost({ hostPub: host.hostPub, hostname: 'web-01', relayUrl: 'http://127.0.0.1:1' });
  const e = await rejection(t, phone.fetchContext(host.newLogin().qrText));
  t.is(e.code, 'QRA_ERR_HOST_OFFLINE');
  t.regex(e.message, /cannot reach the relay/);
});

test('the offline code matches the host-side computation', async (t) => {
  const phone = await HeadlessPhone.create(await tempDir(t), 'Test phone');
  const host = new FakeHost();
  await phone.trustHost({ hostPub: host.hostPub, hostname: 'web-01', relayUrl: 'http://127.0.0.1:1' });
  const login = host.newLogin();
  const k = offlineKey(nodeCrypto, host.seed, fromB64url(phone.publicKey, 32), host.hostId, phone.deviceId);
  const expected = offlineCode(nodeCrypto, k, host.hostId, login.sid, login.nonce);
  t.regex(expected, /^[0-9]{8}$/);
  t.is(phone.offlineCode(login.qrText), expected);
  t.not(phone.offlineCode(host.newLogin().qrText), expected, 'another session has another code');
});

test('enrolling sends a signed request with the token id only and trusts the host once accepted', async (t) => {
  const relay = await relayFor(t);
  const host = await FakeHost.connect(relay.url);
  t.teardown(() => host.close());
  const phone = await HeadlessPhone.create(await tempDir(t), 'Test phone', { timeoutMs: 3000 });
  t.teardown(() => phone.close());
  const token = nodeCrypto.randomBytes(16);
  const qr = formatEnrollPayload({ hostPub: fromB64url(host.hostPub, 32), token, hostname: 'web-01', relayUrl: relay.url });
  const r = await phone.enroll(qr);
  t.like(r.ack, { ok: true, hostname: 'web-01', relayUrl: relay.url });
  t.is(r.hostId, host.hostId);
  t.regex(r.fingerprint, /^[0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){3}$/);
  t.like(host.received.enroll[0], { hostId: host.hostId, tokenId: tokenIdOf(nodeCrypto, token), devicePub: phone.publicKey, deviceName: 'Test phone' });
  t.false(JSON.stringify(host.received.enroll).includes(toB64url(token)), 'the token itself never travels');
  t.is(phone.hosts.get(host.hostId)?.hostname, 'web-01');
});

// ---------------------------------------------------------------- CLI

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, ['--import=tsx', 'test/support/phone-cli.ts', ...args], { cwd: ROOT, timeout: 15_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

test('the phone CLI makes a key, trusts a host, approves a login and prints the offline code', async (t) => {
  const relay = await relayFor(t);
  const host = await FakeHost.connect(relay.url);
  t.teardown(() => host.close());
  const state = path.join(await tempDir(t), 'phone');

  const keygen = await cli(['--state', state, 'keygen', '--name', 'CLI phone']);
  t.is(keygen.code, 0, keygen.stderr);
  const line = await cli(['--state', state, 'devices-line']);
  t.regex(line.stdout, /^ed25519 [A-Za-z0-9_-]{43} \d{4}-\d{2}-\d{2} CLI phone\n$/);
  host.enrollDevice(line.stdout.split(' ')[1]!);

  const trust = await cli(['--state', state, 'trust-host', '--host-pub', host.hostPub, '--hostname', 'web-01', '--relay', relay.url]);
  t.is(trust.code, 0, trust.stderr);
  t.regex(trust.stdout, new RegExp(`hostId ${host.hostId}`));

  const login = host.newLogin({ user: 'alice', rhost: '127.0.0.1', service: 'sshd' });
  const [approve, code] = await Promise.all([cli(['--state', state, 'approve', login.qrText]), cli(['--state', state, 'code', login.qrText])]);
  t.is(approve.code, 0, approve.stderr);
  t.is(approve.stdout, 'Approving login as alice to web-01 from 127.0.0.1 (sshd)\napproved\n');
  const phone = await HeadlessPhone.load(state);
  t.is(code.stdout.trim(), phone.offlineCode(login.qrText));

  const again = await cli(['--state', state, 'deny', login.qrText]);
  t.is(again.code, 1);
  t.regex(again.stderr, /^phone-cli: QRA_ERR_UNKNOWN_SESSION: /);
});

test('the phone CLI exits non-zero with the error code for an unknown host', async (t) => {
  const state = path.join(await tempDir(t), 'phone');
  t.is((await cli(['--state', state, 'keygen'])).code, 0);
  const host = new FakeHost();
  const r = await cli(['--state', state, 'approve', host.newLogin().qrText]);
  t.is(r.code, 1);
  t.regex(r.stderr, /^phone-cli: QRA_ERR_UNKNOWN_HOST: /);
  const help = await cli(['--help']);
  for (const c of ['keygen', 'trust-host', 'devices-line', 'approve', 'deny', 'code']) t.regex(help.stdout, new RegExp(`\\b${c}\\b`));
});
