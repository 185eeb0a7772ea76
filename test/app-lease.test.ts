/**
 * Leases in the phone app (issue #13), in real Chromium: the app on its own origin, the real
 * relay, agent (maxLeaseSeconds 3600) and sshd (AuthenticationMethods publickey,keyboard-interactive,
 * pam_qrauth with `lease`), a real ssh key. The app shows the key sshd verified and only the
 * durations the host signed; "1 h" there lets the next login with the same key in with no QR.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { startRelay, type Relay } from '../relay/src/server.js';
import {
  type AppInChromium,
  READ_DEVICE_PUBLIC_KEY,
  artifactPath,
  createDevice,
  newAppContext,
  pasteIntoApp,
  reportFailedPage,
  startAppInChromium,
  visibleIn,
} from './support/browser.js';
import { enrollAppWithCli } from './support/enroll.js';
import { type AgentFixture, startTestAgent } from './support/fixtures.js';
import { nextMarker, runInPty } from './support/pty.js';
import { sshKeyArgs, sshNoTty, startSshd, type Sshd } from './support/sshd.js';
import { LOGIN_PAYLOAD_RE } from './support/stack.js';
import { MODULE_PATH, ensureUser, installPamService, isRoot, randomName, tempDir } from './support/system.js';

const USER = 'qrtest-lease-app';
const tmp = tempDir('qrlapp-');
const key = join(tmp.path, 'key');
let chromiumApp: AppInChromium;
let relay: Relay;
let agent: AgentFixture;
let sshd: Sshd;
let page: Page;
let removePam: (() => void) | undefined;

test.before(async () => {
  if (!isRoot()) throw new Error('end-to-end tests run as root (they start sshd and create users)');
  ensureUser(USER);
  chromiumApp = await startAppInChromium(); // this test pastes codes instead of scanning
  const { app } = chromiumApp;
  relay = await startRelay({ log: () => {}, appOrigins: [app.origin] });
  agent = await startTestAgent({ relayUrl: relay.url, maxLeaseSeconds: 3600 });
  if (!agent.agent.relay!.up) await once(agent.agent.relay!, 'change');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  mkdirSync(join(tmp.path, 'authkeys'), { mode: 0o755 });
  writeFileSync(join(tmp.path, 'authkeys', USER), readFileSync(`${key}.pub`), { mode: 0o644 });
  const service = randomName('sshd-qrlapp');
  removePam = installPamService(service, [`auth required ${MODULE_PATH} socket=${agent.socket} lease`]).remove;
  sshd = await startSshd({
    dir: tmp.path,
    service,
    extraConfig: ['Match all', 'PubkeyAuthentication yes', 'AuthenticationMethods publickey,keyboard-interactive', `AuthorizedKeysFile ${join(tmp.path, 'authkeys', '%u')}`],
  });
  const context = await newAppContext(chromiumApp.browser, app.origin);
  page = await context.newPage();
  await page.goto(`${app.origin}/`);
  await createDevice(page, 'Alice web');
});

test.afterEach.always((t) => reportFailedPage(t, page, 'failed-lease-'));

test.after.always(async () => {
  await chromiumApp?.close();
  await sshd?.stop();
  removePam?.();
  await agent?.close();
  await relay?.close();
  tmp.remove();
});

test.serial('the app shows the key, offers only the host’s durations; "1 h" lets the next ssh with that key in with no QR', async (t) => {
  const publicKey = (await page.evaluate(READ_DEVICE_PUBLIC_KEY)) as string;
  await enrollAppWithCli(t, page, agent, USER, publicKey, 'Alice web');
  const marker = nextMarker('LEASE_APP');
  const run = runInPty(['ssh', ...sshKeyArgs(sshd.port, key), `${USER}@127.0.0.1`, `echo ${marker}`]);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  await pasteIntoApp(page, payload!);
  await visibleIn(page, 'login-context').waitFor();

  const fingerprint = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${key}.pub`]).toString().split(' ')[1]!;
  t.regex((await visibleIn(page, 'ctx-key').textContent()) ?? '', new RegExp(`with key ${fingerprint.replace(/[+/]/g, '\\$&')}`));
  // maxLeaseSeconds 3600: 15 min and 1 h, not 8 h.
  t.true(await visibleIn(page, 'approve-lease-900').isVisible());
  t.is(await visibleIn(page, 'approve-lease-28800').count(), 0, 'a duration the host did not sign is not offered');
  await page.screenshot({ path: artifactPath('approve-lease-360.png') });
  await visibleIn(page, 'approve-lease-3600').click();
  await visibleIn(page, 'decision-result').waitFor();
  t.regex((await visibleIn(page, 'decision-result').textContent()) ?? '', /Approved, and for 1 h from this key/);
  run.type('\r');
  await run.waitFor(new RegExp(marker));
  t.is(await run.exited, 0);
  t.true(agent.logs.some((l) => /event=lease_granted .*seconds=3600/.test(l)), agent.logs.join('\n'));

  // The next login with the same key: no terminal, no QR, no phone.
  const second = await sshNoTty(sshd.port, key, USER, 'true');
  t.is(second.code, 0, second.out);
  t.notRegex(second.out, LOGIN_PAYLOAD_RE);
  t.true(agent.logs.some((l) => /event=login .*how=lease/.test(l)));

  // "End my leases on test-host" in the app: signed by the phone, sent through the relay.
  await page.getByTestId('tab-hosts').click();
  await page.locator('.ion-page:not(.ion-page-hidden)[data-testid="page-hosts"]').waitFor();
  const end = visibleIn(page, 'end-leases');
  t.regex(await end.innerText(), /^End my leases on test-host$/i);
  await end.click();
  await page.getByText(/Ended 1 lease: the next login there needs this phone again/).waitFor();
  t.true(agent.logs.some((l) => /event=leases_revoked by=phone .*count=1/.test(l)), agent.logs.join('\n'));
  t.deepEqual(agent.agent.leases.list(USER), [], 'the agent holds no lease for the user any more');

  // The same key again: the QR is back (the lease is gone), and the login waits for the phone.
  const third = runInPty(['ssh', ...sshKeyArgs(sshd.port, key), `${USER}@127.0.0.1`, 'true']);
  t.teardown(() => third.kill());
  await third.waitFor(LOGIN_PAYLOAD_RE);
  third.kill();
  // Ending them again finds none.
  await end.click();
  await page.getByText('This phone had no lease there.').waitFor();
});
