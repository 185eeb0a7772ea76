/**
 * Enrollment through the real flow: `qrauth enroll` (the CLI on a pty) ↔ agent ↔ relay ↔
 * headless phone; fingerprints compared; the devices file written only after "y". Then the
 * management commands: devices, revoke, status.
 */
import test from 'ava';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import { MsgType, QrauthError, Result, enrollBytes, enrollFingerprint, keyId, parseEnrollPayload, toB64url, tokenIdOf, type FrameMsg } from '../protocol/src/index.js';
import { startRelay, type Relay } from '../relay/src/server.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { rewriteEnrollAcceptance, startHostileRelay } from './support/hostile-relay.js';
import { PamClient } from './support/pam-client.js';
import { HeadlessPhone } from './support/phone.js';
import { runInPty } from './support/pty.js';
import { ALICE, BOB } from './support/stack.js';
import { ROOT, ensureUser, tempDir } from './support/system.js';
import { decodeTerminalQr } from './support/qr-decode.js';
import { ENROLL_RE, FINGERPRINT_LINE_RE, qrauthCli } from './support/enroll.js';

const tmp = tempDir('qre-');
let relay: Relay;
let f: AgentFixture;

test.before(async () => {
  ensureUser(ALICE);
  ensureUser(BOB);
  relay = await startRelay({ log: () => {} });
  f = await startTestAgent({ relayUrl: relay.url });
  if (!f.agent.relay!.up) await once(f.agent.relay!, 'change');
});
test.after.always(async () => {
  await f?.close();
  await relay?.close();
  tmp.remove();
});

function qrauth(args: string[], asUser?: string) {
  return qrauthCli(f.configPath, args, asUser);
}

let phoneCount = 0;
async function newPhone(name = 'Alice phone') {
  const p = await HeadlessPhone.create(join(tmp.path, `phone-${phoneCount++}`), name);
  return p;
}

async function enrollThroughCli(user: string, phone: HeadlessPhone, answer: 'y' | 'n') {
  const cli = qrauth(['enroll', '--user', user]);
  const [payload] = await cli.waitFor(ENROLL_RE);
  const got = await phone.enroll(payload);
  const [, shown] = await cli.waitFor(FINGERPRINT_LINE_RE);
  await cli.waitFor(/Type y to enroll/);
  cli.type(`${answer}\r`);
  const code = await cli.exited;
  return { cli, payload, phoneFingerprint: got.fingerprint, shown, ack: got.ack, code };
}

async function approves(phone: HeadlessPhone, user: string): Promise<boolean | string> {
  return approvesOn(f.socket, phone, user);
}

async function approvesOn(socket: string, phone: HeadlessPhone, user: string): Promise<boolean | string> {
  const client = await PamClient.connect(socket);
  client.send({ type: MsgType.BEGIN, user, service: 'sshd' } as FrameMsg);
  const ch = (await client.next()) as { type: number; payload?: string };
  if (ch.type !== MsgType.CHALLENGE) {
    client.close();
    return 'no-challenge';
  }
  const ack = await phone.decide(ch.payload!, 'approve');
  if (!ack.ok) {
    client.close();
    return ack.code;
  }
  client.send({ type: MsgType.WAIT });
  const v = (await client.next()) as { result: number };
  return v.result === Result.APPROVED;
}

test.serial('enroll: the QR decodes, both screens show the same fingerprint, "y" writes the devices file, and the phone can approve', async (t) => {
  const phone = await newPhone();
  const cli = qrauth(['enroll', '--user', ALICE]);
  t.teardown(() => cli.kill());
  const [payload] = await cli.waitFor(ENROLL_RE);
  t.is(decodeTerminalQr(cli.output), payload, 'the enrollment QR decodes to its payload');
  const p = parseEnrollPayload(payload);
  t.is(p.relayUrl, relay.url);
  t.is(p.hostname, 'test-host');
  const got = await phone.enroll(payload);
  t.like(got.ack, { ok: true, hostname: 'test-host', relayUrl: relay.url });
  t.like(phone.hosts.get(got.hostId), { hostname: 'test-host', relayUrl: relay.url }, 'the phone stores what the host signed');
  const [, shown] = await cli.waitFor(FINGERPRINT_LINE_RE);
  t.is(shown, got.fingerprint);
  const path = join(f.dir, 'devices', ALICE);
  t.false(existsSync(path), 'nothing written before the user confirms');
  await cli.waitFor(/Type y to enroll/);
  cli.type('y\r');
  t.is(await cli.exited, 0);
  t.regex(cli.output, /Enrolled "Alice phone"/);
  const st = statSync(path);
  t.is(st.mode & 0o777, 0o600);
  t.is(st.uid, 0, 'an admin-managed file (outside the home) is owned by root');
  t.true(readFileSync(path, 'utf8').includes(phone.publicKey));
  t.is(await approves(phone, ALICE), true);
  await phone.close();
});

test.serial('answering anything but y writes nothing and exits 4', async (t) => {
  const phone = await newPhone('Bob phone');
  const r = await enrollThroughCli(BOB, phone, 'n');
  t.is(r.code, 4);
  t.false(existsSync(join(f.dir, 'devices', BOB)));
  t.is(await approves(phone, BOB), 'no-challenge');
  await phone.close();
});

test.serial('a user enrolls into ~/.config/qrauth/devices without root; the file and directory are theirs, mode 0600/0700', async (t) => {
  const own = await startTestAgent({ relayUrl: relay.url, authfile: '~/.config/qrauth/devices' });
  t.teardown(() => own.close());
  if (!own.agent.relay!.up) await once(own.agent.relay!, 'change');
  const home = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${BOB}:`))!.split(':')[5]!;
  const path = join(home, '.config/qrauth/devices');
  const { rmSync } = await import('node:fs');
  rmSync(join(home, '.config/qrauth'), { recursive: true, force: true });
  const phone = await newPhone('Bob own phone');
  const cli = runInPty(['runuser', '-u', BOB, '--', process.execPath, '--import', 'tsx', join(ROOT, 'agent/src/cli.ts'), '--config', own.configPath, 'enroll']);
  t.teardown(() => cli.kill());
  const [payload] = await cli.waitFor(ENROLL_RE);
  await phone.enroll(payload);
  await cli.waitFor(/Type y to enroll/);
  cli.type('y\r');
  t.is(await cli.exited, 0, cli.output);
  const st = statSync(path);
  const bobUid = Number(readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${BOB}:`))!.split(':')[2]);
  t.is(st.uid, bobUid);
  t.is(st.mode & 0o777, 0o600);
  t.is(statSync(join(home, '.config/qrauth')).mode & 0o777, 0o700);
  rmSync(join(home, '.config/qrauth'), { recursive: true, force: true });
  await phone.close();
});

test.serial("a relay that swaps in its own key is caught: the fingerprints differ (even if it learnt the token)", async (t) => {
  // The agent of this test talks to a hostile relay; the test plays relay and phone.
  const hostile = await startHostileRelay();
  const g = await startTestAgent({ relayUrl: hostile.url });
  t.teardown(async () => {
    await g.close();
    await hostile.close();
  });
  await hostile.agent();
  const cli = runInPty([process.execPath, '--import', 'tsx', join(ROOT, 'agent/src/cli.ts'), '--config', g.configPath, 'enroll', '--user', ALICE]);
  t.teardown(() => cli.kill());
  const [payload] = await cli.waitFor(ENROLL_RE);
  const p = parseEnrollPayload(payload);
  const hostId = keyId(c, p.hostPub);
  const tokenId = tokenIdOf(c, p.token);
  const phoneSeed = new Uint8Array(32).fill(5);
  const phonePub = c.ed25519FromSeed(phoneSeed).publicKey;
  const relaySeed = new Uint8Array(32).fill(6);
  const relayPub = c.ed25519FromSeed(relaySeed).publicKey;
  const time = Date.now();
  // Without the token, the swapped key cannot be bound: the agent refuses it.
  const phoneSigned = c.ed25519Sign(phoneSeed, enrollBytes({ hostId, tokenId, token: p.token, devicePub: toB64url(phonePub), deviceName: 'Phone', time }));
  const swapped = { hostId, tokenId, devicePub: toB64url(relayPub), deviceName: 'Phone', time, sig: toB64url(phoneSigned) };
  t.like(await hostile.ask('enroll', swapped), { ok: false, code: 'QRA_ERR_ENROLL' });
  // A relay that somehow saw the QR signs with its own key: accepted, but the screens disagree.
  const relaySigned = c.ed25519Sign(relaySeed, enrollBytes({ hostId, tokenId, token: p.token, devicePub: toB64url(relayPub), deviceName: 'Phone', time }));
  t.like(await hostile.ask('enroll', { ...swapped, sig: toB64url(relaySigned) }), { ok: true });
  const [, shown] = await cli.waitFor(FINGERPRINT_LINE_RE);
  const onPhone = enrollFingerprint(c, p.hostPub, phonePub, p.token);
  t.not(shown, onPhone, 'the user sees two different fingerprints');
  await cli.waitFor(/Type y to enroll/);
  cli.type('n\r');
  t.is(await cli.exited, 4);
  t.false(existsSync(join(g.dir, 'devices', ALICE)));
});

test.serial('tampered, reused and unknown enrollment tokens are refused', async (t) => {
  const phone = await newPhone('Carol phone');
  const cli = qrauth(['enroll', '--user', ALICE]);
  t.teardown(() => cli.kill());
  const [payload] = await cli.waitFor(ENROLL_RE);
  // Tampered: another token in the same QR layout.
  const tampered = payload.replace(/^(QRE1:[^:]+:)([^:]+)/, (_m, a: string) => `${a}${toB64url(new Uint8Array(16).fill(9))}`);
  t.like((await phone.enroll(tampered)).ack, { ok: false, code: 'QRA_ERR_ENROLL' });
  // The right one works once.
  const first = await phone.enroll(payload);
  t.true(first.ack.ok);
  const other = await newPhone('Other phone');
  t.like((await other.enroll(payload)).ack, { ok: false, code: 'QRA_ERR_ENROLL' });
  await cli.waitFor(/Type y to enroll/);
  cli.type('n\r');
  t.is(await cli.exited, 4);
  await phone.close();
  await other.close();
});

test('an expired enrollment code is refused', (t) => {
  const store = f.agent.enrollments;
  const e = store.start(ALICE);
  const seed = new Uint8Array(32).fill(8);
  const pub = toB64url(c.ed25519FromSeed(seed).publicKey);
  const time = Date.now();
  const sig = toB64url(c.ed25519Sign(seed, enrollBytes({ hostId: f.agent.host.hostId, tokenId: e.tokenId, token: e.token, devicePub: pub, deviceName: 'Late', time })));
  const ack = store.handle({ hostId: f.agent.host.hostId, tokenId: e.tokenId, devicePub: pub, deviceName: 'Late', time, sig }, e.expiresAt + 1);
  t.like(ack, { ok: false, code: 'QRA_ERR_ENROLL' });
  t.regex((ack as { message: string }).message, /expired/);
});

test('a malformed enrollment QR is refused by the phone before anything is sent', async (t) => {
  const phone = await newPhone('Dave phone');
  for (const bad of ['QRE1:nonsense', 'QRA1:x:y:z', `QRE1:${'A'.repeat(43)}:${'A'.repeat(22)}::ftp://x`]) {
    await t.throwsAsync(phone.enroll(bad), { message: /not a qrauth enrollment code|invalid/ });
  }
  await phone.close();
});

test.serial('devices lists with --json, revoke by name removes the phone, and a revoked phone cannot approve', async (t) => {
  const phone = await newPhone('Spare phone');
  const r = await enrollThroughCli(ALICE, phone, 'y');
  t.is(r.code, 0);
  t.is(await approves(phone, ALICE), true);
  const list = qrauth(['devices', '--user', ALICE, '--json']);
  t.is(await list.exited, 0);
  const json = JSON.parse(list.output.slice(list.output.indexOf('{'))) as { devices: Array<{ name: string; id: string; lastUsed: string | null }> };
  const spare = json.devices.find((d) => d.name === 'Spare phone');
  t.truthy(spare);
  t.is(spare!.id, phone.deviceId);
  t.truthy(spare!.lastUsed, 'the agent knows when it last approved');
  const human = qrauth(['devices', '--user', ALICE]);
  t.is(await human.exited, 0);
  t.regex(human.output, /NAME\s+ID\s+ENROLLED\s+LAST USED/);
  const rev = qrauth(['revoke', 'Spare phone', '--user', ALICE]);
  t.is(await rev.exited, 0);
  t.regex(rev.output, /Revoked "Spare phone"/);
  t.false(readFileSync(join(f.dir, 'devices', ALICE), 'utf8').includes(phone.publicKey));
  t.is(await approves(phone, ALICE), 'QRA_ERR_NOT_ENROLLED');
  const again = qrauth(['revoke', 'Spare phone', '--user', ALICE]);
  t.is(await again.exited, 1);
  t.regex(again.output, /no device named or with id/);
  await phone.close();
});

test.serial('a devices file with a bad line: listed with the problem and its line number; enroll keeps the rest', async (t) => {
  const path = join(f.dir, 'devices', BOB);
  writeFileSync(path, '# bob\ned25519 broken 2026-01-01 Old\n', { mode: 0o600 });
  const list = qrauth(['devices', '--user', BOB]);
  t.is(await list.exited, 0);
  t.regex(list.output, new RegExp(`${BOB}:2: not "ed25519`));
  const phone = await newPhone('Bob new phone');
  t.is((await enrollThroughCli(BOB, phone, 'y')).code, 0);
  const text = readFileSync(path, 'utf8');
  t.true(text.startsWith('# bob\ned25519 broken'), 'comments and other lines are kept');
  t.true(text.includes(phone.publicKey));
  await phone.close();
});

test.serial("a user cannot read or change another user's devices, and an unsafe file is refused with nothing written", async (t) => {
  const other = qrauth(['devices', '--user', BOB], ALICE);
  t.is(await other.exited, 1);
  t.regex(other.output, /only root can manage another user's devices/);
  const path = join(f.dir, 'devices', BOB);
  const { chmodSync } = await import('node:fs');
  const before = readFileSync(path, 'utf8');
  chmodSync(path, 0o666);
  const cli = qrauth(['enroll', '--user', BOB]);
  t.teardown(() => cli.kill());
  t.is(await cli.exited, 1);
  t.regex(cli.output, /writable by group or others/);
  t.is(readFileSync(path, 'utf8'), before);
  chmodSync(path, 0o600);
});

test.serial('status reports the agent, the relay link and pending logins; --json too; agent down exits 3', async (t) => {
  const s = qrauth(['status']);
  t.is(await s.exited, 0);
  t.regex(s.output, /qrauth-agent [0-9.]+: running/);
  t.regex(s.output, new RegExp(`host\\s+test-host \\(id ${f.agent.host.hostId.replace(/[-_]/g, '.')}\\)`));
  t.regex(s.output, /relay\s+http:\/\/127\.0\.0\.1:\d+ \(connected\)/);
  const j = qrauth(['status', '--json']);
  t.is(await j.exited, 0);
  const json = JSON.parse(j.output.slice(j.output.indexOf('{'))) as { running: boolean; hostId: string; pendingLogins: number };
  t.true(json.running);
  t.is(json.hostId, f.agent.host.hostId);
  t.is(typeof json.pendingLogins, 'number');
  const cfg = join(tmp.path, 'down.json');
  writeFileSync(cfg, JSON.stringify({ controlSocket: join(tmp.path, 'none.sock') }));
  const down = runInPty([process.execPath, '--import', 'tsx', join(ROOT, 'agent/src/cli.ts'), '--config', cfg, 'status']);
  t.is(await down.exited, 3);
  t.regex(down.output, /agent is not running/);
  const badCfg = join(tmp.path, 'bad.json');
  writeFileSync(badCfg, '{"expirySeconds": "soon"}');
  const bad = runInPty([process.execPath, '--import', 'tsx', join(ROOT, 'agent/src/cli.ts'), '--config', badCfg, 'status']);
  t.is(await bad.exited, 78);
  t.regex(bad.output, /expirySeconds/);
});

// ---------------------------------------------------------------- a relay that lies about the host's answer

/** `qrauth enroll` on an agent behind `relayUrl`; returns the QR payload and the running CLI. */
async function openEnrollment(t: import('ava').ExecutionContext, configPath: string) {
  const cli = qrauthCli(configPath, ['enroll', '--user', ALICE]);
  t.teardown(() => cli.kill());
  const [payload] = await cli.waitFor(ENROLL_RE);
  return { cli, payload: payload! };
}

/** What phone.enroll ended with: the result, or the error it threw. */
async function enrollOutcome(phone: HeadlessPhone, payload: string): Promise<{ ack?: unknown; error?: QrauthError }> {
  try {
    return { ack: (await phone.enroll(payload)).ack };
  } catch (e) {
    if (e instanceof QrauthError) return { error: e };
    throw e;
  }
}

test.serial("a relay that rewrites the host's enrollment answer (host name, relay URL) is caught: the phone saves nothing and says so", async (t) => {
  const genuine: unknown[] = [];
  const hostile = await startHostileRelay({
    rewriteAnswer: rewriteEnrollAcceptance((answer) => {
      genuine.push(answer);
      // Steer the phone to a relay of its choosing under a name of its choosing.
      const changed: Record<string, unknown> = { ...answer, hostname: 'trusted-bank-host' };
      if ('relayUrl' in changed) changed.relayUrl = 'https://relay.attacker.example';
      return changed;
    }),
  });
  const g = await startTestAgent({ relayUrl: hostile.url });
  t.teardown(async () => {
    await g.close();
    await hostile.close();
  });
  await hostile.agent();
  const phone = await newPhone('Rewritten phone');
  t.teardown(() => phone.close());
  const { cli, payload } = await openEnrollment(t, g.configPath);
  const outcome = await enrollOutcome(phone, payload);
  t.is(genuine.length, 1, 'the host itself accepted the request');
  t.is(phone.hosts.size, 0, `the phone must trust nothing after a changed answer (got ${JSON.stringify(outcome.ack)})`);
  t.false(existsSync(join(phone.stateDir, 'hosts.json')), 'nothing was written');
  t.is(outcome.error?.code, 'QRA_ERR_SIGNATURE');
  t.regex(outcome.error?.message ?? '', /the relay changed the host's answer; nothing was saved/);
  await cli.waitFor(/Type y to enroll/);
  cli.type('n\r');
  t.is(await cli.exited, 4);
});

test.serial('a relay that answers "accepted" in the host\'s place is caught: the phone saves nothing', async (t) => {
  const asked: unknown[] = [];
  const hostile = await startHostileRelay({
    onDevice: (s) => {
      // The host never sees the request; the relay makes up an acceptance in every shape it might take.
      s.on('enroll', (msg: unknown, ack: (a: unknown) => void) => {
        asked.push(msg);
        ack({ ok: true, hostname: 'test-host' });
      });
    },
  });
  const g = await startTestAgent({ relayUrl: hostile.url });
  t.teardown(async () => {
    await g.close();
    await hostile.close();
  });
  await hostile.agent();
  const phone = await newPhone('Fooled phone');
  t.teardown(() => phone.close());
  const { payload } = await openEnrollment(t, g.configPath);
  const outcome = await enrollOutcome(phone, payload);
  t.is(asked.length, 1);
  t.is(phone.hosts.size, 0, `the phone must trust nothing the host did not sign (got ${JSON.stringify(outcome.ack)})`);
  t.false(existsSync(join(phone.stateDir, 'hosts.json')), 'nothing was written');
  t.is(outcome.error?.code, 'QRA_ERR_SIGNATURE');
  t.regex(outcome.error?.message ?? '', /the relay changed the host's answer; nothing was saved/);
});

// ---------------------------------------------------------------- last-used.json

test.serial('last-used.json is private (0600) after a real approval through the agent', async (t) => {
  const stateDir = join(tmp.path, 'lu-state');
  const file = join(stateDir, 'last-used.json');
  const g = await startTestAgent({ relayUrl: relay.url, stateDir });
  t.teardown(() => g.close());
  if (!g.agent.relay!.up) await once(g.agent.relay!, 'change');
  const phone = await newPhone('Last used phone');
  t.teardown(() => phone.close());
  await phone.trustHost({ hostPub: toB64url(g.agent.host.publicKey), hostname: 'test-host', relayUrl: relay.url });
  g.setDevices(ALICE, [phone.devicesLine()]);
  t.is(await approvesOn(g.socket, phone, ALICE), true);
  await g.agent.lastUsed.flush();
  t.true(readFileSync(file, 'utf8').includes(phone.deviceId), 'the approval was recorded');
  t.is(statSync(file).mode & 0o777, 0o600, 'device ids and login times are not for other users');
});

test.serial('a world-readable last-used.json left by an older agent is made 0600 when the agent starts', async (t) => {
  const stateDir = join(tmp.path, 'lu-old-state');
  mkdirSync(stateDir, { mode: 0o700 });
  const file = join(stateDir, 'last-used.json');
  writeFileSync(file, '{}', { mode: 0o644 });
  chmodSync(file, 0o644);
  const g = await startTestAgent({ stateDir });
  t.teardown(() => g.close());
  t.is(statSync(file).mode & 0o777, 0o600);
});
