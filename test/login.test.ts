/**
 * The product end to end: the real `ssh` client on a pty → real sshd → pam_qrauth.so → agent
 * → relay → headless phone. Approve, deny, Enter before approval, codes, expiry, no device.
 */
import test from 'ava';
import { nextMarker, runInPty } from './support/pty.js';
import { decodeTerminalQr, extractQrLines } from './support/qr-decode.js';
import { sshArgs } from './support/sshd.js';
import { ALICE, BOB, CAROL, LOGIN_PAYLOAD_RE, startStack, type Stack } from './support/stack.js';
import { isRoot } from './support/system.js';

let stack: Stack;
test.before(async () => {
  if (!isRoot()) throw new Error('end-to-end tests run as root (they start sshd and create users)');
  stack = await startStack({ agent: { expirySeconds: 12 } });
});
test.after.always(async () => {
  await stack?.close();
});

function ssh(user = ALICE, marker = nextMarker('LOGGED_IN')) {
  const run = runInPty(sshArgs(stack.sshd.port, user, `echo ${marker}`));
  return { run, marker };
}

test('approve on the phone, press Enter: the shell command runs', async (t) => {
  const { run, marker } = ssh();
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  // The QR the user sees decodes, as printed by the real ssh client, to the payload.
  t.is(decodeTerminalQr(run.output, 'dark'), payload);
  t.is(decodeTerminalQr(run.output, 'light'), payload);
  // Everything the client printed for this prompt, from the "(user@host)" line to the prompt, fits 80x24.
  const all = run.output.replace(/\r/g, '').split('\n');
  const screenLines = all.slice(all.findIndex((l) => l.startsWith('(qrtest-alice@')));
  t.regex(screenLines[0]!, /^\(qrtest-alice@127\.0\.0\.1\) *$/, 'the client prefix sits on its own line, not on the QR');
  t.true(screenLines.length <= 24, `${screenLines.length} lines`);
  t.true(extractQrLines(run.output).length <= 21);
  t.true(Math.max(...screenLines.map((l) => [...l].length)) <= 80, 'fits 80 columns');
  let shown = '';
  const ack = await stack.phone.decide(payload, 'approve', (ctx) => (shown = `${ctx.user}@${ctx.hostname} from ${ctx.rhost} (${ctx.service})`));
  t.like(ack, { ok: true, result: 'approved' });
  t.is(shown, `${ALICE}@test-host from 127.0.0.1 (${stack.service})`);
  run.type('\r');
  await run.waitFor(new RegExp(marker));
  t.is(await run.exited, 0);
});

test('pressing Enter before approving waits, then approval lets the user in', async (t) => {
  const { run, marker } = ssh();
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  run.type('\r');
  await new Promise((r) => setTimeout(r, 700));
  t.false(run.output.includes(marker), 'not in before approval');
  t.like(await stack.phone.decide(payload, 'approve'), { ok: true, result: 'approved' });
  await run.waitFor(new RegExp(marker));
  t.is(await run.exited, 0);
});

test('deny on the phone: the login is refused', async (t) => {
  const { run, marker } = ssh();
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  t.like(await stack.phone.decide(payload, 'deny'), { ok: true, result: 'denied' });
  run.type('\r');
  t.not(await run.exited, 0);
  t.false(run.output.includes(marker));
  t.regex(run.output, /Permission denied/);
  t.true(stack.agent.logs.some((l) => /event=login .*how=phone result=denied/.test(l)));
});

test('the offline code from the phone typed at the prompt logs the user in', async (t) => {
  const { run, marker } = ssh();
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  run.type(`${stack.phone.offlineCode(payload)}\r`);
  await run.waitFor(new RegExp(marker));
  t.is(await run.exited, 0);
});

test('three wrong codes: refused, and the session is dead', async (t) => {
  const { run, marker } = ssh();
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  const right = stack.phone.offlineCode(payload);
  const wrong = String((Number(right) + 1) % 1e8).padStart(8, '0');
  run.type(`${wrong}\r`);
  await run.waitFor(/Wrong code, 2 tries left/);
  run.type(`${wrong}\r`);
  await run.waitFor(/Wrong code, 1 try left/);
  run.type(`${wrong}\r`);
  t.not(await run.exited, 0);
  t.false(run.output.includes(marker));
  const late = await stack.phone.decide(payload, 'approve').catch((e: Error) => e);
  t.false('ok' in late && late.ok === true, 'a dead session cannot be approved');
});

test('a user with no enrolled phone is refused', async (t) => {
  const { run, marker } = ssh(CAROL);
  t.teardown(() => run.kill());
  t.not(await run.exited, 0);
  t.false(run.output.includes(marker));
  t.false(LOGIN_PAYLOAD_RE.test(run.output), 'no QR for a user without a phone');
  t.true(stack.agent.logs.some((l) => new RegExp(`event=login .*user=${CAROL} .*result=no_device`).test(l)));
});

test("bob's phone cannot approve alice's login", async (t) => {
  const bobPhone = await stack.newPhone('Bob phone', BOB);
  const { run, marker } = ssh();
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  const ack = await bobPhone.decide(payload, 'approve');
  t.like(ack, { ok: false, code: 'QRA_ERR_NOT_ENROLLED' });
  run.type('\r');
  await new Promise((r) => setTimeout(r, 500));
  t.false(run.output.includes(marker));
  t.like(await stack.phone.decide(payload, 'deny'), { ok: true, result: 'denied' });
  t.not(await run.exited, 0);
  t.false(run.output.includes(marker));
});

test('a QR that is not approved in time expires and the login is refused', async (t) => {
  const { run, marker } = ssh();
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  run.type('\r');
  t.not(await run.exited, 0);
  t.false(run.output.includes(marker));
  const late = await stack.phone.decide(payload, 'approve').catch((e: Error) => e);
  t.false('ok' in late && late.ok === true);
  t.true(stack.agent.logs.some((l) => /event=login .*how=expiry result=expired/.test(l)));
});
