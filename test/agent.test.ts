/**
 * The agent behind its PAM socket, driven by a TS client speaking the real framed protocol.
 * No relay here: online approvals are in login.test.ts; this is sessions, codes, files, input.
 */
import test from 'ava';
import { once } from 'node:events';
import { chmodSync, chownSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import { MsgType, Result, keyId, offlineCode, offlineKey, parseLoginPayload, toB64url, type FrameMsg } from '../protocol/src/index.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { PamClient } from './support/pam-client.js';
import { decodeTerminalQr, extractQrLines } from './support/qr-decode.js';
import { tempDir } from './support/system.js';
import { readDevicesFile } from '../agent/src/devices-file.js';
import { eventually } from './support/net.js';

const passwd = tempDir('qra-pw-');
const passwdPath = join(passwd.path, 'passwd');
writeFileSync(passwdPath, 'alice:x:4242:4242::/nonexistent:/bin/sh\nbob:x:4243:4243::/nonexistent:/bin/sh\n');
test.after.always(() => passwd.remove());

function phoneKey(fill: number) {
  const seed = new Uint8Array(32).fill(fill);
  const { publicKey } = c.ed25519FromSeed(seed);
  return { seed, publicKey, deviceId: keyId(c, publicKey), line: `ed25519 ${toB64url(publicKey)} 2026-11-26 Phone ${fill}` };
}

async function withAgent(t: { teardown(fn: () => Promise<void>): void }, overrides = {}, frameTimeoutMs?: number): Promise<AgentFixture> {
  const f = await startTestAgent(overrides, { passwdPath, ...(frameTimeoutMs ? { frameTimeoutMs } : {}) });
  t.teardown(() => f.close());
  return f;
}

async function begin(f: AgentFixture, user = 'alice', extra: Partial<FrameMsg> = {}) {
  const client = await PamClient.connect(f.socket);
  client.send({ type: MsgType.BEGIN, user, service: 'sshd', rhost: '203.0.113.7', tty: 'ssh', ...extra } as FrameMsg);
  const reply = await client.next();
  return { client, reply };
}

function codeFor(f: AgentFixture, phone: ReturnType<typeof phoneKey>, payload: string): string {
  const p = parseLoginPayload(payload);
  const k = offlineKey(c, phone.seed, f.agent.host.publicKey, p.hostId, phone.deviceId);
  return offlineCode(c, k, p.hostId, p.sid, p.nonce);
}

test('a user with no enrolled device gets NO_DEVICE and a message saying how to enroll', async (t) => {
  const f = await withAgent(t);
  const { client, reply } = await begin(f);
  t.like(reply, { type: MsgType.VERDICT, result: Result.NO_DEVICE });
  t.regex((reply as { message: string }).message, /qrauth enroll/);
  await client.closed();
  t.true(f.logs.some((l) => /event=login .*user=alice .*result=no_device/.test(l)));
});

test('the challenge QR decodes back to its payload on dark and light terminals and fits 80x24 with the prompt', async (t) => {
  const f = await withAgent(t);
  f.setDevices('alice', [phoneKey(2).line]);
  const { client, reply } = await begin(f);
  t.is(reply?.type, MsgType.CHALLENGE);
  const ch = reply as Extract<FrameMsg, { type: typeof MsgType.CHALLENGE }>;
  t.is(ch.mode, 1, 'sshd without info-at-once gets prompt mode');
  t.regex(ch.payload, /^QRA1:/);
  t.is(parseLoginPayload(ch.payload).hostId, f.agent.host.hostId);
  t.is(decodeTerminalQr(ch.qrText, 'dark'), ch.payload);
  t.is(decodeTerminalQr(ch.qrText, 'light'), ch.payload);
  const shown = `${ch.qrText}${ch.prompt}`.split('\n');
  t.true(shown.length <= 24, `${shown.length} lines`);
  t.true(Math.max(...shown.map((l) => [...l].length)) <= 80);
  t.true(extractQrLines(ch.qrText).length <= 21);
  t.true(ch.expires > 80 && ch.expires <= 90);
  client.close();
});

test('a correct offline code logs the user in', async (t) => {
  const f = await withAgent(t);
  const phone = phoneKey(2);
  f.setDevices('alice', [phoneKey(9).line, phone.line]);
  const { client, reply } = await begin(f);
  const payload = (reply as { payload: string }).payload;
  client.send({ type: MsgType.CODE, digits: codeFor(f, phone, payload) });
  t.like(await client.next(), { type: MsgType.VERDICT, result: Result.APPROVED });
  await client.closed();
  t.true(f.logs.some((l) => /event=login .*user=alice .*how=code result=approved/.test(l)));
});

test('three wrong codes lock the session and the right code no longer works', async (t) => {
  const f = await withAgent(t);
  const phone = phoneKey(2);
  f.setDevices('alice', [phone.line]);
  const { client, reply } = await begin(f);
  const payload = (reply as { payload: string }).payload;
  const right = codeFor(f, phone, payload);
  const wrong = String((Number(right) + 1) % 1e8).padStart(8, '0');
  client.send({ type: MsgType.CODE, digits: wrong });
  t.like(await client.next(), { result: Result.CODE_WRONG, triesLeft: 2 });
  client.send({ type: MsgType.CODE, digits: 'not digits' });
  t.like(await client.next(), { result: Result.CODE_WRONG, triesLeft: 1 });
  client.send({ type: MsgType.CODE, digits: wrong });
  t.like(await client.next(), { result: Result.LOCKED });
  await client.closed();
  t.is(f.agent.sessions.get(parseLoginPayload(payload).sid), undefined, 'session is gone');
});

test("a code made with bob's device does not log alice in", async (t) => {
  const f = await withAgent(t);
  const alicePhone = phoneKey(2);
  const bobPhone = phoneKey(3);
  f.setDevices('alice', [alicePhone.line]);
  f.setDevices('bob', [bobPhone.line]);
  const { client, reply } = await begin(f);
  client.send({ type: MsgType.CODE, digits: codeFor(f, bobPhone, (reply as { payload: string }).payload) });
  t.like(await client.next(), { result: Result.CODE_WRONG });
  client.close();
});

test('a code for one session does not open another', async (t) => {
  const f = await withAgent(t);
  const phone = phoneKey(2);
  f.setDevices('alice', [phone.line]);
  const a = await begin(f);
  const b = await begin(f);
  const codeA = codeFor(f, phone, (a.reply as { payload: string }).payload);
  b.client.send({ type: MsgType.CODE, digits: codeA });
  t.like(await b.client.next(), { result: Result.CODE_WRONG });
  a.client.send({ type: MsgType.CODE, digits: codeA });
  t.like(await a.client.next(), { result: Result.APPROVED });
  b.client.close();
});

test('WAIT with no relay answers OFFLINE at once so the module can ask for the code', async (t) => {
  const f = await withAgent(t);
  f.setDevices('alice', [phoneKey(2).line]);
  const { client } = await begin(f);
  client.send({ type: MsgType.WAIT });
  t.like(await client.next(2000), { type: MsgType.VERDICT, result: Result.OFFLINE });
  client.close();
});

test('an expired session answers EXPIRED and accepts no code', async (t) => {
  const f = await withAgent(t, { expirySeconds: 5 });
  const phone = phoneKey(2);
  f.setDevices('alice', [phone.line]);
  const { client, reply } = await begin(f);
  const code = codeFor(f, phone, (reply as { payload: string }).payload);
  await sleep(5200);
  client.send({ type: MsgType.CODE, digits: code });
  t.like(await client.next(), { result: Result.EXPIRED });
  t.true(f.logs.some((l) => /event=login .*how=expiry result=expired/.test(l)));
});

test('the PAM client going away cancels its session', async (t) => {
  const f = await withAgent(t);
  f.setDevices('alice', [phoneKey(2).line]);
  const { client, reply } = await begin(f);
  const sid = parseLoginPayload((reply as { payload: string }).payload).sid;
  t.truthy(f.agent.sessions.get(sid));
  client.close();
  await eventually(() => f.agent.sessions.get(sid) === undefined, 5000).catch(() => {});
  t.is(f.agent.sessions.get(sid), undefined);
});

test('unsafe devices files are refused: the client gets ERROR with no path, the log says why (world-writable, foreign owner, symlink)', async (t) => {
  const f = await withAgent(t);
  const path = join(f.dir, 'devices', 'alice');
  const refused = (r: { reply: FrameMsg | null }, why: RegExp) => {
    t.like(r.reply, { result: Result.ERROR, message: 'cannot check your devices file; ask the administrator (see the system log)' });
    t.regex(f.logs.at(-1) ?? '', why);
  };
  f.setDevices('alice', [phoneKey(2).line]);
  chmodSync(path, 0o666);
  refused(await begin(f), /event=login user=alice .*result=error cause=".*writable by group or others/);
  chmodSync(path, 0o600);
  chownSync(path, 4243, 4243);
  refused(await begin(f), /event=login user=alice .*result=error cause=".*must be owned by alice or root/);
  f.setDevices('bob', [phoneKey(3).line]);
  symlinkSync(join(f.dir, 'devices', 'bob'), join(f.dir, 'devices', 'carol'));
  writeFileSync(passwdPath, 'alice:x:4242:4242::/nonexistent:/bin/sh\nbob:x:4243:4243::/nonexistent:/bin/sh\ncarol:x:4244:4244::/x:/bin/sh\n');
  refused(await begin(f, 'carol'), /event=login user=carol .*result=error cause=".*symbolic link/);
});

test('a bad line in a devices file is skipped and logged with its line number; good lines still work', async (t) => {
  const f = await withAgent(t);
  const phone = phoneKey(2);
  f.setDevices('alice', ['# my phones', 'ed25519 not-a-key 2026-01-01 Broken', phone.line]);
  const { client, reply } = await begin(f);
  t.is(reply?.type, MsgType.CHALLENGE);
  t.true(f.logs.some((l) => /devices_file_problem .*alice:2:/.test(l)));
  client.send({ type: MsgType.CODE, digits: codeFor(f, phone, (reply as { payload: string }).payload) });
  t.like(await client.next(), { result: Result.APPROVED });
});

test('garbage, oversized and truncated frames close the connection and the agent keeps serving', async (t) => {
  const f = await withAgent(t, {}, 300);
  f.setDevices('alice', [phoneKey(2).line]);
  const bad = [
    Buffer.from('GET / HTTP/1.1\r\n\r\n'),
    Buffer.from([0, 0, 0x40, 1, 1]), // length past QR_MAX_FRAME
    Buffer.from([0, 0, 0, 1, 0x03]), // CODE without digits
    Buffer.from([0, 0, 0, 2, 0x02]), // stalls mid-frame
  ];
  for (const b of bad) {
    const s = connect(f.socket);
    s.on('error', () => {});
    s.write(b);
    await new Promise<void>((r) => s.on('close', () => r()));
  }
  const quiet = connect(f.socket); // never says anything
  quiet.on('error', () => {});
  await new Promise<void>((r) => quiet.on('close', () => r()));
  const { reply } = await begin(f);
  t.is(reply?.type, MsgType.CHALLENGE, 'still serving real logins');
  t.true(f.logs.some((l) => /pam_protocol_error/.test(l)));
});

test('a message out of order (WAIT before BEGIN) is a protocol error', async (t) => {
  const f = await withAgent(t);
  const client = await PamClient.connect(f.socket);
  client.send({ type: MsgType.WAIT });
  t.is(await client.next(), null);
});

test('no log line carries the nonce or the offline code', async (t) => {
  const f = await withAgent(t);
  const phone = phoneKey(2);
  f.setDevices('alice', [phone.line]);
  const { client, reply } = await begin(f);
  const payload = (reply as { payload: string }).payload;
  const code = codeFor(f, phone, payload);
  client.send({ type: MsgType.CODE, digits: '00000000' === code ? '11111111' : '00000000' });
  await client.next();
  client.send({ type: MsgType.CODE, digits: code });
  await client.next();
  const nonce = payload.split(':')[3]!;
  const all = f.logs.join('\n');
  t.false(all.includes(nonce));
  t.false(all.includes(code));
  t.false(all.includes(payload));
});

test('an unknown user gets the same NO_DEVICE answer as a user without a phone', async (t) => {
  const f = await withAgent(t);
  const { reply } = await begin(f, 'nobody-here');
  t.like(reply, { type: MsgType.VERDICT, result: Result.NO_DEVICE });
});

test('uid and home from the module are used for the devices file (NSS users need no /etc/passwd line)', async (t) => {
  const f = await withAgent(t, { authfile: '~/devices' });
  const home = join(f.dir, 'ldap-home');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(home);
  writeFileSync(join(home, 'devices'), `${phoneKey(2).line}\n`, { mode: 0o600 });
  const { reply } = await begin(f, 'ldapuser', { uid: 0, home } as Partial<FrameMsg>);
  t.is(reply?.type, MsgType.CHALLENGE);
});

test('a BEGIN with values out of range is refused with ERROR', async (t) => {
  const f = await withAgent(t);
  f.setDevices('alice', [phoneKey(2).line]);
  for (const extra of [{ mode: 9 }, { qr: 7 }, { timeout: 0 }, { timeout: 99999 }, { uid: 5 }]) {
    const { reply } = await begin(f, 'alice', extra as Partial<FrameMsg>);
    t.like(reply, { type: MsgType.VERDICT, result: Result.ERROR }, JSON.stringify(extra));
  }
});

test('mode=info on sshd before 10.3 falls back to prompt; auto gives sshd prompt and sudo info', async (t) => {
  const f = await withAgent(t);
  f.setDevices('alice', [phoneKey(2).line]);
  const cases: Array<[Partial<FrameMsg>, number]> = [
    [{ service: 'sshd', mode: 2 }, 1],
    [{ service: 'sshd', mode: 0 }, 1],
    [{ service: 'sudo', mode: 0 }, 2],
    [{ service: 'login', mode: 1 }, 1],
  ];
  for (const [extra, mode] of cases) {
    const { client, reply } = await begin(f, 'alice', extra);
    t.like(reply, { type: MsgType.CHALLENGE, mode }, JSON.stringify(extra));
    client.close();
  }
});

test('prepared challenges are handed out once each, decode to their payload, and the pool refills', async (t) => {
  const { ChallengePool } = await import('../agent/src/challenge-pool.js');
  const pool = new ChallengePool('NHUPmL1Z_PyUbaRaqr6TOw', 4);
  const full = async () => {
    for (let i = 0; i < 200 && pool.available < 4; i++) await sleep(25);
    return pool.available;
  };
  t.is(await full(), 4);
  const seen = new Set<string>();
  for (let i = 0; i < 10; i++) {
    const c = pool.take();
    t.false(seen.has(c.sid), 'never the same sid twice');
    seen.add(c.sid);
    t.is(parseLoginPayload(c.payload).sid, c.sid);
    t.is(decodeTerminalQr(c.qrText), c.payload);
  }
  t.is(await full(), 4, 'refilled in the background');
  const kept = pool.take();
  pool.close();
  t.is(pool.available, 0);
  t.true(kept.nonce.some((b) => b !== 0), 'a handed-out nonce is the session’s, not wiped by close');
});

test('a devices file rewritten in place with the same length is read anew (the parse is reused only for identical text)', (t) => {
  const dir = tempDir('qra-dev-');
  t.teardown(() => dir.remove());
  const path = join(dir.path, 'alice');
  const user = { name: 'alice', uid: process.getuid!(), home: dir.path };
  const a = phoneKey(5);
  const b = phoneKey(6);
  writeFileSync(path, `${a.line}\n`, { mode: 0o600 });
  const first = readDevicesFile(path, user);
  t.deepEqual(first.devices.map((d) => d.deviceId), [a.deviceId]);
  t.is(readDevicesFile(path, user), first); // same text: the same (frozen) parse
  t.true(Object.isFrozen(first.devices) && Object.isFrozen(first.devices[0]));
  // Same length, same inode, written in place (not renamed): only the content differs.
  t.is(a.line.length, b.line.length);
  writeFileSync(path, `${b.line}\n`, { mode: 0o600 });
  t.deepEqual(readDevicesFile(path, user).devices.map((d) => d.deviceId), [b.deviceId]);
  writeFileSync(path, `# revoked\n`, { mode: 0o600 });
  t.deepEqual(readDevicesFile(path, user).devices, []);
});

test('a BEGIN that arrives once the agent is stopping gets no answer and no session (the module sends it to the next agent)', async (t) => {
  const f = await withAgent(t);
  f.setDevices('alice', [phoneKey(5).line]);
  // Accepted before the stop (systemctl restart with a login in the socket's backlog), its BEGIN after it.
  // The stop waits for the accept: a stop before it would close the listener on a connection still in the
  // backlog, which the agent never reads (the next test), and the BEGIN would never meet the stopping check.
  const accepted = once(f.agent.pam.server, 'connection');
  const client = await PamClient.connect(f.socket);
  await accepted;
  const resets: string[] = [];
  client.sock.on('error', (e: NodeJS.ErrnoException) => resets.push(e.code ?? e.message));
  f.agent.pam.stopAccepting();
  t.false(f.agent.pam.server.listening, 'the listener is closed');
  t.is(f.agent.pam.connectionCount, 1, 'the accepted connection is still open: its BEGIN decides');
  client.send({ type: MsgType.BEGIN, user: 'alice', service: 'sshd', rhost: '203.0.113.7', tty: 'ssh' } as FrameMsg);
  t.is(await client.next(), null, 'closed without a reply byte: no QR for a login the stopping agent would drop');
  t.deepEqual(resets, [], 'an orderly close after the agent read the BEGIN, not a reset of an unread connection');
  await eventually(() => f.agent.pam.connectionCount === 0);
  t.is(f.agent.sessions.size, 0, 'no session was opened');
  t.false(f.logs.some((l) => /event=challenge /.test(l)), 'no challenge was issued');
  t.false(f.logs.some((l) => /pam_protocol_error/.test(l)), 'closed as a stopping agent, not as a protocol error');
});

test('once stopping, the agent accepts nothing more: a connection still in the backlog is never taken, no session, no challenge', async (t) => {
  const f = await withAgent(t);
  f.setDevices('alice', [phoneKey(5).line]);
  let accepted = 0;
  f.agent.pam.server.on('connection', () => accepted++);
  // connect() queues the connection in the kernel before it returns; the agent could accept it only on a
  // later turn of the event loop, so the stop below always comes first. Here the agent owns the listener
  // (a path), so closing it resets what is left in its backlog, which pam_qrauth takes as a close and
  // retries; under socket activation systemd keeps the listener and the connection waits for the next agent.
  const s = connect(f.socket);
  let connected = false;
  s.on('connect', () => (connected = true));
  f.agent.pam.stopAccepting();
  const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException];
  t.is(err.code, 'ECONNRESET', 'the kernel reset the connection the closed listener left in its backlog');
  t.false(connected, 'the client never saw its connection established');
  t.is(accepted, 0, 'the agent never accepted it');
  t.is(f.agent.pam.connectionCount, 0);
  t.is(f.agent.sessions.size, 0, 'no session was opened');
  t.false(f.logs.some((l) => /event=challenge /.test(l)), 'no challenge was issued');
});
