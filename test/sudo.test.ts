/**
 * sudo with pam_qrauth: sudo shows PAM info messages at once, so the QR appears, the user
 * approves on the phone, and the command runs with no keystroke.
 */
import test from 'ava';
import { once } from 'node:events';
import { chmodSync, unlinkSync, writeFileSync } from 'node:fs';
import { toB64url } from '../protocol/src/index.js';
import { startRelay, type Relay } from '../relay/src/server.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { HeadlessPhone } from './support/phone.js';
import { runInPty } from './support/pty.js';
import { decodeTerminalQr } from './support/qr-decode.js';
import { ALICE, LOGIN_PAYLOAD_RE } from './support/stack.js';
import { MODULE_PATH, ensureUser, installPamService, randomName, tempDir } from './support/system.js';

const tmp = tempDir('qrsudo-');
let relay: Relay;
let agent: AgentFixture;
let phone: HeadlessPhone;
let pam: { remove(): void };
// One fixed name: a run that was killed leaves nothing that a later run does not overwrite.
const sudoers = '/etc/sudoers.d/qrauth-test';

test.before(async () => {
  ensureUser(ALICE);
  relay = await startRelay({ log: () => {} });
  agent = await startTestAgent({ relayUrl: relay.url });
  if (!agent.agent.relay!.up) await once(agent.agent.relay!, 'change');
  phone = await HeadlessPhone.create(`${tmp.path}/phone`, 'Alice phone');
  await phone.trustHost({ hostPub: toB64url(agent.agent.host.publicKey), hostname: 'test-host', relayUrl: relay.url });
  agent.setDevices(ALICE, [phone.devicesLine()]);
  const service = randomName('qrauth-sudo-');
  pam = installPamService(service, [`auth required ${MODULE_PATH} socket=${agent.socket}`]);
  // sudo's own pam_service option points it at our PAM service for this user only.
  writeFileSync(sudoers, `Defaults:${ALICE} pam_service=${service}, !lecture, timestamp_timeout=0, passwd_tries=1\n${ALICE} ALL=(root) /usr/bin/id\n`);
  chmodSync(sudoers, 0o440);
});
test.after.always(async () => {
  try {
    unlinkSync(sudoers);
  } catch {
    /* not written */
  }
  pam?.remove();
  await phone?.close();
  await agent?.close();
  await relay?.close();
  tmp.remove();
});

test.serial('sudo shows the QR at once and runs the command when the phone approves, no keystroke', async (t) => {
  const run = runInPty(['runuser', '-u', ALICE, '--', 'sudo', '/usr/bin/id', '-u']);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/approve on your phone/);
  t.is(decodeTerminalQr(run.output), payload);
  let service = '';
  t.like(await phone.decide(payload, 'approve', (ctx) => (service = ctx.service)), { ok: true, result: 'approved' });
  t.regex(service, /^qrauth-sudo-/);
  await run.waitFor(/^0\r?$/m);
  t.is(await run.exited, 0);
});

test.serial('sudo refuses the command when the phone denies', async (t) => {
  const run = runInPty(['runuser', '-u', ALICE, '--', 'sudo', '/usr/bin/id', '-u']);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  t.like(await phone.decide(payload, 'deny'), { ok: true, result: 'denied' });
  t.not(await run.exited, 0);
  // sudo authenticates with PAM_SILENT (its pam_silent default), so the module's status line is
  // not shown; sudo says the attempt failed, and the agent logs why.
  t.regex(run.output, /incorrect password attempt/);
  t.notRegex(run.output, /^0\r?$/m);
  t.true(agent.logs.some((l) => /event=login .*how=phone result=denied/.test(l)));
});
