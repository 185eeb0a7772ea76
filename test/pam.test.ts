/**
 * pam_qrauth.so loaded by libpam through the real pamtester: info mode (sudo/login style, no
 * keystroke), options (nouserok, failmode), agent down, relay down, and valgrind on real runs.
 */
import test from 'ava';
import { once } from 'node:events';
import { toB64url } from '../protocol/src/index.js';
import { startRelay, type Relay } from '../relay/src/server.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { runPamtester } from './support/pamtester.js';
import { HeadlessPhone } from './support/phone.js';
import { freePort } from './support/sshd.js';
import { ALICE, CAROL, LOGIN_PAYLOAD_RE } from './support/stack.js';
import { MODULE_PATH, ensureUser, installPamService, randomName, tempDir } from './support/system.js';
import { decodeTerminalQr } from './support/qr-decode.js';

const tmp = tempDir('qrp-');
let relay: Relay;
let online: AgentFixture; // linked to the relay
let offline: AgentFixture; // its relay is a closed port
let phone: HeadlessPhone;
const services: Array<{ remove(): void }> = [];

test.before(async () => {
  ensureUser(ALICE);
  ensureUser(CAROL);
  relay = await startRelay({ log: () => {} });
  online = await startTestAgent({ relayUrl: relay.url, expirySeconds: 30 });
  offline = await startTestAgent({ relayUrl: `http://127.0.0.1:${await freePort()}` });
  if (!online.agent.relay!.up) await once(online.agent.relay!, 'change');
  phone = await HeadlessPhone.create(`${tmp.path}/phone`, 'Alice phone');
  for (const f of [online, offline]) {
    await phone.trustHost({ hostPub: toB64url(f.agent.host.publicKey), hostname: 'test-host', relayUrl: relay.url });
    f.setDevices(ALICE, [phone.devicesLine()]);
  }
});
test.after.always(async () => {
  for (const s of services) s.remove();
  await phone?.close();
  await online?.close();
  await offline?.close();
  await relay?.close();
  tmp.remove();
});

/** A PAM service whose only auth module is ours, with the given options. */
function service(args: string): string {
  const name = randomName('qrauth-pt-');
  services.push(installPamService(name, [`auth required ${MODULE_PATH} ${args}`]));
  return name;
}

/** A stack where success means pam_qrauth returned PAM_IGNORE (it jumps over pam_deny). */
function ignoreProbe(args: string): string {
  const name = randomName('qrauth-pt-');
  services.push(
    installPamService(name, [
      `auth [ignore=1 default=die] ${MODULE_PATH} ${args}`,
      'auth requisite pam_deny.so',
      'auth required pam_permit.so',
    ]),
  );
  return name;
}

test('info mode: the QR is shown at once and approval on the phone completes with no keystroke', async (t) => {
  const run = runPamtester(service(`socket=${online.socket} mode=info`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/approve on your phone/);
  t.is(decodeTerminalQr(run.output), payload);
  t.like(await phone.decide(payload, 'approve'), { ok: true, result: 'approved' });
  t.is(await run.exited, 0);
  t.regex(run.output, /successfully authenticated/);
});

test('a non-sshd service in auto mode gets info mode (sudo, login)', async (t) => {
  const run = runPamtester(service(`socket=${online.socket}`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  t.like(await phone.decide(payload, 'deny'), { ok: true, result: 'denied' });
  t.not(await run.exited, 0);
  t.regex(run.output, /denied on the phone/i);
});

test('info mode with the relay down asks for the offline code, and the code logs in', async (t) => {
  const run = runPamtester(service(`socket=${offline.socket} mode=info`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/code/i);
  run.type(`${phone.offlineCode(payload)}\n`);
  t.is(await run.exited, 0);
});

test('prompt mode with the relay down: Enter says the phone cannot reach the host, then the code works', async (t) => {
  const run = runPamtester(service(`socket=${offline.socket} mode=prompt`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  run.type('\n');
  await run.waitFor(/cannot reach this host/);
  run.type(`${phone.offlineCode(payload)}\n`);
  t.is(await run.exited, 0);
});

test('agent not running: refused with a message that says so (failmode=secure is the default)', async (t) => {
  const run = runPamtester(service(`socket=${tmp.path}/nobody.sock`), ALICE);
  t.not(await run.exited, 0);
  t.regex(run.output, /not running on this host/);
});

test('agent not running with failmode=open: the module steps aside (PAM_IGNORE)', async (t) => {
  t.is(await runPamtester(ignoreProbe(`socket=${tmp.path}/nobody.sock failmode=open`), ALICE).exited, 0);
  t.not(await runPamtester(ignoreProbe(`socket=${tmp.path}/nobody.sock`), ALICE).exited, 0);
});

test('nouserok: a user with no phone is passed over (PAM_IGNORE); without it, refused', async (t) => {
  t.is(await runPamtester(ignoreProbe(`socket=${online.socket} nouserok`), CAROL).exited, 0);
  const run = runPamtester(ignoreProbe(`socket=${online.socket}`), CAROL);
  t.not(await run.exited, 0);
  t.regex(run.output, /no phone is enrolled/);
});

test('an unknown or malformed option fails closed', async (t) => {
  for (const args of [`socket=${online.socket} frobnicate`, `socket=${online.socket} timeout=abc`, `socket=relative.sock`, `socket=${online.socket} mode=sideways`]) {
    t.not(await runPamtester(ignoreProbe(args), ALICE).exited, 0, args);
  }
});

const VALGRIND = ['valgrind', '--quiet', '--error-exitcode=97', '--leak-check=full', '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite'];

test('valgrind: no memory errors or leaks in approve, code and failure paths', async (t) => {
  // approve (info mode, online)
  let run = runPamtester(service(`socket=${online.socket} mode=info`), ALICE, { valgrind: VALGRIND });
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE, 60_000);
  await phone.decide(payload, 'approve');
  t.is(await run.exited, 0, run.output);
  // offline code (prompt mode)
  run = runPamtester(service(`socket=${offline.socket} mode=prompt`), ALICE, { valgrind: VALGRIND });
  const [p2] = await run.waitFor(LOGIN_PAYLOAD_RE, 60_000);
  await run.waitFor(/press Enter/, 60_000);
  run.type(`${phone.offlineCode(p2)}\n`);
  t.is(await run.exited, 0, run.output);
  // wrong code three times, agent down, no device: failures, but no valgrind error (97)
  run = runPamtester(service(`socket=${offline.socket} mode=prompt`), ALICE, { valgrind: VALGRIND });
  await run.waitFor(/press Enter/, 60_000);
  run.type('00000000\n11111111\n22222222\n');
  t.is(await run.exited, 1, run.output);
  t.is(await runPamtester(service(`socket=${tmp.path}/nobody.sock`), ALICE, { valgrind: VALGRIND }).exited, 1);
  t.is(await runPamtester(service(`socket=${online.socket}`), CAROL, { valgrind: VALGRIND }).exited, 1);
});
