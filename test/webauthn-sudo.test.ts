/**
 * Step-up for sudo on one host (issue #12): the real sudo's PAM line has `uv=required`, the real
 * sshd's line has not, both on one agent whose own policy is "off". Headless phones (one with a
 * software authenticator, enrolled through the real `qrauth enroll`; one without a passkey)
 * approve. ssh stays one tap for both; sudo runs its command only after an approval whose passkey
 * assertion carries UV.
 */
import test from 'ava';
import { once } from 'node:events';
import { chmodSync, unlinkSync, writeFileSync } from 'node:fs';
import { startRelay, type Relay } from '../relay/src/server.js';
import { enrollPhone } from './support/enroll.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { HeadlessPhone } from './support/phone.js';
import { nextMarker, runInPty, type PtyRun } from './support/pty.js';
import { prng, testSeed } from './support/seeded.js';
import { SoftAuthenticator } from './support/soft-authenticator.js';
import { sshArgs, startSshd, type Sshd } from './support/sshd.js';
import { LOGIN_PAYLOAD_RE } from './support/stack.js';
import { MODULE_PATH, ensureUser, installPamService, randomName, tempDir } from './support/system.js';

// A user of its own: sudoers `Defaults:<user> pam_service=` is per user, and test files run in parallel.
const USER = 'qrtest-uvsudo';
const sudoers = '/etc/sudoers.d/qrauth-test-uv';
const tmp = tempDir('qrwasudo-');
/** The passkey's key pair and credential id come from this seed (printed when a test fails). */
const SEED = testSeed(0x5d_5eed);
let relay: Relay;
let agent: AgentFixture;
let sshd: Sshd;
let withPasskey: HeadlessPhone;
let plain: HeadlessPhone;
const pams: Array<{ remove(): void }> = [];

test.before(async () => {
  ensureUser(USER);
  relay = await startRelay({ log: () => {} });
  agent = await startTestAgent({ relayUrl: relay.url, userVerification: 'off', expirySeconds: 60 });
  if (!agent.agent.relay!.up) await once(agent.agent.relay!, 'change');
  withPasskey = await HeadlessPhone.create(`${tmp.path}/phone-passkey`, 'UV phone');
  withPasskey.authenticator = new SoftAuthenticator({ origin: 'https://app.qrauth.test', seed: prng(SEED)(32) });
  plain = await HeadlessPhone.create(`${tmp.path}/phone-plain`, 'Plain phone');
  await enrollPhone(agent, USER, withPasskey);
  await enrollPhone(agent, USER, plain);
  const sshService = randomName('sshd-qrauv-');
  const sudoService = randomName('qrauth-sudo-uv-');
  pams.push(installPamService(sshService, [`auth required ${MODULE_PATH} socket=${agent.socket}`]));
  pams.push(installPamService(sudoService, [`auth required ${MODULE_PATH} socket=${agent.socket} uv=required`]));
  writeFileSync(sudoers, `Defaults:${USER} pam_service=${sudoService}, !lecture, timestamp_timeout=0, passwd_tries=1\n${USER} ALL=(root) /usr/bin/id\n`);
  chmodSync(sudoers, 0o440);
  sshd = await startSshd({ dir: tmp.path, service: sshService });
});

test.afterEach.always((t) => {
  if (!t.passed) t.log(`seed ${SEED} (QRAUTH_TEST_SEED replays it)`);
});

test.after.always(async () => {
  try {
    unlinkSync(sudoers);
  } catch {
    /* not written */
  }
  await sshd?.stop();
  for (const p of pams) p.remove();
  await withPasskey?.close();
  await plain?.close();
  await agent?.close();
  await relay?.close();
  tmp.remove();
});

function sudo(): PtyRun {
  return runInPty(['runuser', '-u', USER, '--', 'sudo', '/usr/bin/id', '-u']);
}

function loginLine(payload: string): string {
  const sid8 = payload.split(':')[2]!.slice(0, 8);
  return agent.logs.find((l) => l.startsWith('event=login ') && l.includes(` sid=${sid8} `)) ?? '';
}

test.serial('ssh on the same host stays one tap: a phone without a passkey, and one whose owner skipped the fingerprint/PIN, both get a shell', async (t) => {
  withPasskey.userVerification = false;
  t.teardown(() => (withPasskey.userVerification = true));
  for (const phone of [plain, withPasskey]) {
    const marker = nextMarker('UVSSH');
    const run = runInPty(sshArgs(sshd.port, USER, `echo ${marker}`));
    t.teardown(() => run.kill());
    const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
    await run.waitFor(/press Enter/);
    t.like(await phone.decide(payload!, 'approve'), { ok: true, result: 'approved' }, phone.name);
    run.type('\r');
    await run.waitFor(new RegExp(marker));
    t.is(await run.exited, 0, phone.name);
    t.regex(loginLine(payload!), /\buv=no\b.*result=approved/, phone.name);
  }
});

test.serial('sudo (uv=required): an approval without UV is refused and the command waits; the verified retry runs it', async (t) => {
  const run = sudo();
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  withPasskey.userVerification = false;
  let ack;
  try {
    ack = await withPasskey.decide(payload!, 'approve');
  } finally {
    withPasskey.userVerification = true;
  }
  t.like(ack, { ok: false, code: 'QRA_ERR_USER_VERIFICATION' });
  t.regex(ack.ok ? '' : ack.message, /fingerprint, face or PIN/);
  t.notRegex(run.output, /^0\r?$/m, 'the command did not run');
  t.like(await withPasskey.decide(payload!, 'approve'), { ok: true, result: 'approved' });
  await run.waitFor(/^0\r?$/m);
  t.is(await run.exited, 0);
  t.regex(loginLine(payload!), /\buv=yes\b.*result=approved/);
});

test.serial('sudo (uv=required) from the phone enrolled without a passkey: refused, the command does not run', async (t) => {
  const run = sudo();
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  const ack = await plain.decide(payload!, 'approve');
  t.like(ack, { ok: false, code: 'QRA_ERR_NO_PASSKEY' });
  t.like(await plain.decide(payload!, 'deny'), { ok: true, result: 'denied' });
  t.not(await run.exited, 0);
  t.notRegex(run.output, /^0\r?$/m);
  t.regex(loginLine(payload!), /result=denied/);
});
