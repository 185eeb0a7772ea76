/**
 * pam_qrauth.so loaded by libpam through the real pamtester: info mode (sudo/login style, no
 * keystroke), options (nouserok, failmode), agent down, relay down, and valgrind on real runs.
 */
import test from 'ava';
import { startPamFixture, type PamFixture } from './support/pam-fixture.js';
import { runPamtester } from './support/pamtester.js';
import { ALICE, CAROL, LOGIN_PAYLOAD_RE } from './support/stack.js';
import { decodeTerminalQr } from './support/qr-decode.js';

let fx: PamFixture;
test.before(async () => {
  fx = await startPamFixture();
});
test.after.always(async () => {
  await fx?.close();
});
const service = (args: string) => fx.service(args);
const ignoreProbe = (args: string) => fx.ignoreProbe(args);

test('info mode: the QR is shown at once and approval on the phone completes with no keystroke', async (t) => {
  const run = runPamtester(service(`socket=${fx.online.socket} mode=info`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/approve on your phone/);
  t.is(decodeTerminalQr(run.output), payload);
  t.like(await fx.phone.decide(payload, 'approve'), { ok: true, result: 'approved' });
  t.is(await run.exited, 0);
  t.regex(run.output, /successfully authenticated/);
});

test('a non-sshd service in auto mode gets info mode (sudo, login)', async (t) => {
  const run = runPamtester(service(`socket=${fx.online.socket}`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  t.like(await fx.phone.decide(payload, 'deny'), { ok: true, result: 'denied' });
  t.not(await run.exited, 0);
  t.regex(run.output, /denied on the phone/i);
});

test('info mode with the relay down asks for the offline code, and the code logs in', async (t) => {
  const run = runPamtester(service(`socket=${fx.offline.socket} mode=info`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/code/i);
  run.type(`${fx.phone.offlineCode(payload)}\n`);
  t.is(await run.exited, 0);
});

test('prompt mode with the relay down: Enter says the phone cannot reach the host, then the code works', async (t) => {
  const run = runPamtester(service(`socket=${fx.offline.socket} mode=prompt`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  run.type('\n');
  await run.waitFor(/cannot reach this host/);
  run.type(`${fx.phone.offlineCode(payload)}\n`);
  t.is(await run.exited, 0);
});

test('agent not running: refused with a message that says so (failmode=secure is the default)', async (t) => {
  const run = runPamtester(service(`socket=${fx.dir}/nobody.sock`), ALICE);
  t.not(await run.exited, 0);
  t.regex(run.output, /not running on this host/);
});

test('agent not running with failmode=open: the module steps aside (PAM_IGNORE)', async (t) => {
  t.is(await runPamtester(ignoreProbe(`socket=${fx.dir}/nobody.sock failmode=open`), ALICE).exited, 0);
  t.not(await runPamtester(ignoreProbe(`socket=${fx.dir}/nobody.sock`), ALICE).exited, 0);
});

test('nouserok: a user with no phone is passed over (PAM_IGNORE); without it, refused', async (t) => {
  t.is(await runPamtester(ignoreProbe(`socket=${fx.online.socket} nouserok`), CAROL).exited, 0);
  const run = runPamtester(ignoreProbe(`socket=${fx.online.socket}`), CAROL);
  t.not(await run.exited, 0);
  t.regex(run.output, /no phone is enrolled/);
});

test('an unknown or malformed option fails closed', async (t) => {
  for (const args of [`socket=${fx.online.socket} frobnicate`, `socket=${fx.online.socket} timeout=abc`, `socket=relative.sock`, `socket=${fx.online.socket} mode=sideways`]) {
    t.not(await runPamtester(ignoreProbe(args), ALICE).exited, 0, args);
  }
});

const VALGRIND = ['valgrind', '--quiet', '--error-exitcode=97', '--leak-check=full', '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite'];

test('valgrind: no memory errors or leaks in approve, code and failure paths', async (t) => {
  // approve (info mode, online)
  let run = runPamtester(service(`socket=${fx.online.socket} mode=info`), ALICE, { valgrind: VALGRIND });
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE, 60_000);
  await fx.phone.decide(payload, 'approve');
  t.is(await run.exited, 0, run.output);
  // offline code (prompt mode)
  run = runPamtester(service(`socket=${fx.offline.socket} mode=prompt`), ALICE, { valgrind: VALGRIND });
  const [p2] = await run.waitFor(LOGIN_PAYLOAD_RE, 60_000);
  await run.waitFor(/press Enter/, 60_000);
  run.type(`${fx.phone.offlineCode(p2)}\n`);
  t.is(await run.exited, 0, run.output);
  // wrong code three times, agent down, no device: failures, but no valgrind error (97)
  run = runPamtester(service(`socket=${fx.offline.socket} mode=prompt`), ALICE, { valgrind: VALGRIND });
  await run.waitFor(/press Enter/, 60_000);
  run.type('00000000\n11111111\n22222222\n');
  t.is(await run.exited, 1, run.output);
  t.is(await runPamtester(service(`socket=${fx.dir}/nobody.sock`), ALICE, { valgrind: VALGRIND }).exited, 1);
  t.is(await runPamtester(service(`socket=${fx.online.socket}`), CAROL, { valgrind: VALGRIND }).exited, 1);
});
