/**
 * Leases in the phone app (issue #13), in real Chromium: the app on its own origin, the real
 * relay, agent (maxLeaseSeconds 3600) and sshd (AuthenticationMethods publickey,keyboard-interactive,
 * pam_qrauth with `lease`), a real ssh key. The app shows the key sshd verified and only the
 * durations the host signed; "1 h" there lets the next login with the same key in with no QR.
 */
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { startRelay, type Relay } from '../relay/src/server.js';
import { APP_DIST, artifactPath, blankFrame, ensureAppBuilt, launchChromium, newAppContext, visibleIn, writeY4m } from './support/browser.js';
import { enrollAppWithCli } from './support/enroll.js';
import { type AgentFixture, startTestAgent } from './support/fixtures.js';
import { runInPty } from './support/pty.js';
import { startSshd, type Sshd } from './support/sshd.js';
import { LOGIN_PAYLOAD_RE } from './support/stack.js';
import { type StaticServer, startStaticServer } from './support/static-server.js';
import { MODULE_PATH, ensureUser, installPamService, isRoot, randomName, tempDir } from './support/system.js';

const USER = 'qrtest-lease-app';
const tmp = tempDir('qrlapp-');
const key = join(tmp.path, 'key');
let app: StaticServer;
let relay: Relay;
let agent: AgentFixture;
let sshd: Sshd;
let browser: Browser;
let page: Page;
let camDir: string;
let removePam: (() => void) | undefined;

const READ_DEVICE_PUBLIC_KEY = `new Promise((resolve, reject) => {
  const open = indexedDB.open('qrauth', 1);
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const req = open.result.transaction('kv', 'readonly').objectStore('kv').get('device');
    req.onsuccess = () => { open.result.close(); resolve(req.result ? req.result.publicKey : null); };
    req.onerror = () => reject(req.error);
  };
})`;

function sshKeyArgs(): string[] {
  return [
    '-F', '/dev/null',
    '-p', String(sshd.port),
    '-i', key,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'PreferredAuthentications=publickey,keyboard-interactive',
    '-o', 'NumberOfPasswordPrompts=1',
    '-o', 'ConnectTimeout=10',
  ];
}

test.before(async () => {
  if (!isRoot()) throw new Error('end-to-end tests run as root (they start sshd and create users)');
  ensureUser(USER);
  ensureAppBuilt();
  app = await startStaticServer(APP_DIST);
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
  camDir = mkdtempSync(join(tmpdir(), 'qrcam-'));
  const camFile = join(camDir, 'camera.y4m');
  writeY4m(camFile, blankFrame()); // this test pastes codes instead of scanning
  browser = await launchChromium(camFile);
  const context = await newAppContext(browser, app.origin);
  page = await context.newPage();
  await page.goto(`${app.origin}/`);
  await page.getByTestId('device-name-input').locator('input').fill('Alice web');
  await page.getByTestId('create-device').click();
  await page.getByTestId('page-scan').waitFor();
});

test.afterEach.always(async (t) => {
  if (t.passed || !page) return;
  await page.screenshot({ path: artifactPath('failed-lease.png') }).catch(() => {});
  t.log(`visible page text: ${(await page.locator('.ion-page:not(.ion-page-hidden)').last().innerText().catch(() => '?')).slice(0, 800)}`);
});

test.after.always(async () => {
  await browser?.close();
  await sshd?.stop();
  removePam?.();
  await agent?.close();
  await relay?.close();
  await app?.close();
  if (camDir) rmSync(camDir, { recursive: true, force: true });
  tmp.remove();
});

test.serial('the app shows the key, offers only the host’s durations; "1 h" lets the next ssh with that key in with no QR', async (t) => {
  const publicKey = (await page.evaluate(READ_DEVICE_PUBLIC_KEY)) as string;
  await enrollAppWithCli(t, page, agent, USER, publicKey, 'Alice web');
  const marker = `LEASE_APP_${Math.random().toString(36).slice(2, 8)}`;
  const run = runInPty(['ssh', ...sshKeyArgs(), `${USER}@127.0.0.1`, `echo ${marker}`]);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  await page.getByTestId('tab-scan').click();
  await page.locator('.ion-page:not(.ion-page-hidden)[data-testid="page-scan"]').waitFor();
  await visibleIn(page, 'payload-input').locator('textarea').fill(payload!);
  await visibleIn(page, 'payload-submit').click();
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
  const second = await new Promise<{ code: number; out: string }>((resolve) => {
    const child = execFile('ssh', [...sshKeyArgs(), '-T', `${USER}@127.0.0.1`, 'true'], { timeout: 20_000 }, (err, so, se) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, out: `${so}${se}` }),
    );
    child.stdin?.end();
  });
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
  const third = runInPty(['ssh', ...sshKeyArgs(), `${USER}@127.0.0.1`, 'true']);
  t.teardown(() => third.kill());
  await third.waitFor(LOGIN_PAYLOAD_RE);
  third.kill();
  // Ending them again finds none.
  await end.click();
  await page.getByText('This phone had no lease there.').waitFor();
});
