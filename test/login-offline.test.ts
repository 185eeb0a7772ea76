/**
 * The real ssh client when parts are down: relay down → the offline code still logs in;
 * agent down → refused, and the user is told why (not just "Permission denied").
 */
import test from 'ava';
import { nextMarker, runInPty } from './support/pty.js';
import { sshArgs, startSshd, freePort, type Sshd } from './support/sshd.js';
import { ALICE, LOGIN_PAYLOAD_RE, startStack, type Stack } from './support/stack.js';
import { MODULE_PATH, installPamService, randomName, tempDir } from './support/system.js';

let stack: Stack;
let deadSshd: Sshd;
let deadPam: { remove(): void };
const tmp = tempDir('qrso-');

test.before(async () => {
  // An agent whose relay is a closed port: online approval cannot come.
  stack = await startStack({ withRelay: false, relayUrl: `http://127.0.0.1:${await freePort()}` });
  const service = randomName('sshd-qra');
  deadPam = installPamService(service, [`auth required ${MODULE_PATH} socket=${tmp.path}/no-agent.sock`]);
  deadSshd = await startSshd({ dir: tmp.path, service });
});
test.after.always(async () => {
  await deadSshd?.stop();
  deadPam?.remove();
  await stack?.close();
  tmp.remove();
});

test('relay down: Enter says the phone cannot reach the host, and the offline code logs in', async (t) => {
  const marker = nextMarker('OFFLINE_OK');
  const run = runInPty(sshArgs(stack.sshd.port, ALICE, `echo ${marker}`));
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  run.type('\r');
  await run.waitFor(/cannot reach this host/);
  run.type(`${stack.phone.offlineCode(payload)}\r`);
  await run.waitFor(new RegExp(marker));
  t.is(await run.exited, 0);
});

test('agent down: refused, and the ssh user is told the approval service is not running', async (t) => {
  const marker = nextMarker('NEVER');
  const run = runInPty(sshArgs(deadSshd.port, ALICE, `echo ${marker}`));
  t.teardown(() => run.kill());
  await run.waitFor(/login approval service is not running on this host.*Press Enter/);
  run.type('\r');
  t.not(await run.exited, 0);
  t.false(run.output.includes(marker));
  t.regex(run.output, /Permission denied/);
});
