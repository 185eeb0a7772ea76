/**
 * The phone app end to end in real Chromium: a plain static server serves ionic-app/dist on an
 * origin of its own (the relay on another allow-lists it), the app runs in a
 * 360×640 page with a fake camera that shows the QR the real `ssh` client printed, and talks to
 * the real relay → agent → sshd with pam_qrauth. Enroll (`qrauth enroll`), approve → shell, deny → refused, relay
 * down → the offline code typed into ssh → shell. Screenshots go to test-artifacts/app/.
 */
import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { Socket } from 'socket.io';
import { nodeCrypto } from '../protocol/src/crypto-node.js';
import { FINGERPRINT_PATTERN, type SignedContext, contextBytes, formatEnrollPayload, toB64url } from '../protocol/src/index.js';
import {
  type AppInChromium,
  approveAndFinishSsh,
  artifactPath,
  blankFrame,
  closeScannerIfOpen,
  createDevice,
  newAppContext,
  qrFramesFromTerminal,
  reportFailedPage,
  startAppInChromium,
  storeHostsScript,
  visibleIn,
  writeY4m,
} from './support/browser.js';
import { ENROLL_RE, FINGERPRINT_LINE_RE, enrollAppWithCli, qrauthCli } from './support/enroll.js';
import { startTestAgent } from './support/fixtures.js';
import { rewriteEnrollAcceptance, startHostileRelay } from './support/hostile-relay.js';
import { nextMarker, runInPty } from './support/pty.js';
import { sshArgs } from './support/sshd.js';
import { ALICE, LOGIN_PAYLOAD_RE, type Stack, startStack } from './support/stack.js';
import { prng, testSeed } from './support/seeded.js';
import type { StaticServer } from './support/static-server.js';
import { isRoot } from './support/system.js';

/** Login ids and keys made up by these tests come from this seed (printed by each test that uses it). */
const SEED = testSeed(0x0a99_5eed);
const seededBytes = prng(SEED);

let chromiumApp: AppInChromium;
let stack: Stack;
let app: StaticServer;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let appDeviceLine: string | null = null;
const pageErrors: string[] = [];

test.before(async () => {
  if (!isRoot()) throw new Error('end-to-end tests run as root (they start sshd and create users)');
  // The app on its own origin (a plain static server), the relay on another, as deployed.
  chromiumApp = await startAppInChromium();
  ({ app, browser } = chromiumApp);
  stack = await startStack({ agent: { expirySeconds: 60 }, relayOptions: { appOrigins: [app.origin] } });
  context = await newAppContext(browser, app.origin);
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${app.origin}/`);
  // First start: name the phone and make its key.
  await page.getByTestId('page-welcome').waitFor();
  await createDevice(page, 'Alice browser');
});

// A failed test leaves a screenshot and the page's text behind, for the next engineer.
test.afterEach.always((t) => reportFailedPage(t, page, 'failed-'));

test.after.always(async () => {
  await chromiumApp?.close();
  await stack?.close();
});

/** Shows `text`, rendered as the terminal would, to the fake camera. */
function showToCamera(terminalText: string, payload: string): void {
  writeY4m(chromiumApp.camFile, qrFramesFromTerminal(terminalText, payload));
}

/** Starts a real ssh login (killed at the end of the test), shows its QR to the camera, scans it: the login's details are on screen. */
async function scanSshLogin(t: ExecutionContext) {
  const m = marker();
  const { run, payload } = await startSsh(m);
  t.teardown(() => run.kill());
  showToCamera(run.output, payload);
  await scanWithCamera();
  await visible('login-context').waitFor();
  return { m, run };
}

async function scanWithCamera(): Promise<void> {
  // Reopened with an enrolled host, the app opens its scanner at once (issue #17): close it, so
  // the camera restarts on the picture just written (the fake camera reads its file on start).
  await closeScannerIfOpen(page);
  await page.getByTestId('tab-scan').click();
  await page.getByTestId('page-scan').waitFor({ state: 'visible' });
  await page.getByTestId('scan-camera').click();
}

function visible(testId: string) {
  return visibleIn(page, testId);
}

async function startSsh(marker: string) {
  const run = runInPty(sshArgs(stack.sshd.port, ALICE, `echo ${marker}`));
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  return { run, payload: payload! };
}

// Page-side expressions as strings: this file is type-checked without the DOM library.
const IS_DARK = "document.documentElement.classList.contains('ion-palette-dark')";
/** The same as a function, for waitForFunction: a string predicate is eval'd in the page, which the app's CSP forbids. */
type PageGlobals = { document: { documentElement: { classList: { contains(c: string): boolean } } }; navigator: { serviceWorker: { controller: { state: string } | null } } };
const isDark = () => (globalThis as unknown as PageGlobals).document.documentElement.classList.contains('ion-palette-dark');

const marker = () => nextMarker('APP_IN');

function needsEnrolledApp(t: ExecutionContext): boolean {
  if (appDeviceLine) return true;
  t.fail('the app was not enrolled (see the enrollment test)');
  return false;
}

test.serial('the protocol vectors pass in the app bundle itself (Settings → check this phone’s cryptography)', async (t) => {
  await page.getByTestId('tab-settings').click();
  await visible('self-test').click();
  const result = visible('self-test-result');
  await result.waitFor();
  t.is(await result.getAttribute('data-failed'), '0');
  t.is(await result.getAttribute('data-passed'), '47');
  // The device id shown is the id of a real Ed25519 key made in the page (22 base64url chars).
  t.regex((await visible('device-id').textContent()) ?? '', /^[A-Za-z0-9_-]{22}$/);
});

test.serial('enroll through the app with `qrauth enroll`: the camera reads its QR, both screens show the same fingerprint, "y" trusts the phone', async (t) => {
  const cli = qrauthCli(stack.agent.configPath, ['enroll', '--user', ALICE]);
  t.teardown(() => cli.kill());
  const [payload] = await cli.waitFor(ENROLL_RE);
  const host = stack.agent.agent.host;

  showToCamera(cli.output, payload!);
  await scanWithCamera();
  await visible('page-enroll').waitFor();
  t.is(await visible('enroll-hostname').textContent(), 'test-host');
  t.is(await visible('enroll-relay').textContent(), stack.relay!.url);
  const shownOnPhone = (await visible('enroll-fingerprint').textContent())?.trim() ?? '';
  t.regex(shownOnPhone, FINGERPRINT_PATTERN);
  await page.screenshot({ path: artifactPath('enroll-360.png') });

  await visible('enroll-send').click();
  await visible('enroll-waiting').waitFor();
  // The terminal shows the fingerprint the agent computed from what it received: the same.
  const [, shownOnHost] = await cli.waitFor(FINGERPRINT_LINE_RE);
  t.is(shownOnHost, shownOnPhone);
  t.regex(cli.output, /Phone "Alice browser"/);
  await cli.waitFor(/Type y to enroll/);
  cli.type('y\r');
  t.is(await cli.exited, 0, cli.output);
  await visible('enroll-result').waitFor({ timeout: 15_000 });
  t.is(await visible('enroll-result').getAttribute('data-outcome'), 'confirmed');
  // The devices file now holds the app's public key (and still the headless phone's).
  const devices = readFileSync(join(stack.agent.dir, 'devices', ALICE), 'utf8');
  const appLine = devices.split('\n').find((l) => l.endsWith(' Alice browser'));
  t.truthy(appLine, devices);
  t.true(devices.includes(stack.phone.publicKey));
  appDeviceLine = appLine!;

  await page.getByTestId('tab-hosts').click();
  const item = visible('host-item');
  await item.waitFor();
  t.is(await item.count(), 1);
  t.regex((await item.textContent()) ?? '', /test-host/);
  t.regex((await item.textContent()) ?? '', new RegExp(host.hostId));
  await page.screenshot({ path: artifactPath('hosts-360.png') });
});

test.serial('log in with ssh: the camera scans the printed QR, the app shows who/where/from, Approve → the shell runs', async (t) => {
  if (!needsEnrolledApp(t)) return;
  const { m, run } = await scanSshLogin(t);
  t.is(await visible('ctx-user').textContent(), ALICE);
  t.is(await visible('ctx-host').textContent(), 'test-host');
  t.is(await visible('ctx-rhost').textContent(), '127.0.0.1');
  t.is(await visible('ctx-service').textContent(), stack.service);
  t.regex((await visible('time-left').textContent()) ?? '', /^\d:\d\d left$/);
  t.is(await visible('offline-code').count(), 0, 'no offline code before the decision (issue #17)');
  await page.screenshot({ path: artifactPath('approve-360.png') });

  await approveAndFinishSsh(t, page, run, m);
  t.true(stack.agent.logs.some((l) => /event=login .*how=phone result=approved/.test(l)));

  await page.getByTestId('tab-history').click();
  const first = visible('history-item').first();
  await first.waitFor();
  t.regex((await first.textContent()) ?? '', new RegExp(`Approved: ${ALICE}@test-host`));
});

test.serial('deny in the app: the login is refused', async (t) => {
  if (!needsEnrolledApp(t)) return;
  const { m, run } = await scanSshLogin(t);
  await visible('deny').click();
  await visible('decision-result').waitFor();
  t.regex((await visible('decision-result').textContent()) ?? '', /Denied/);
  await page.screenshot({ path: artifactPath('denied-360.png') });
  run.type('\r');
  t.not(await run.exited, 0);
  t.false(run.output.includes(m));
  t.regex(run.output, /Permission denied/);
  t.true(stack.agent.logs.some((l) => /event=login .*how=phone result=denied/.test(l)));
});

test.serial('a login QR from a host this phone never enrolled with: "unknown host", and nothing is sent', async (t) => {
  const before = stack.relay!.metrics;
  t.log(`seed ${SEED}`);
  const stranger = `QRA1:${toB64url(seededBytes(16))}:${toB64url(seededBytes(16))}:${toB64url(seededBytes(16))}`;
  await page.getByTestId('tab-scan').click();
  await visible('payload-input').locator('textarea').fill(stranger);
  await visible('payload-submit').click();
  await visible('warning-unknown-host').waitFor();
  t.is(await visible('offline-code-box').count(), 0, 'no code for a host we hold no key of');
  t.is(await visible('approve').count(), 0);
  await page.screenshot({ path: artifactPath('unknown-host-360.png') });
  t.deepEqual(stack.relay!.metrics.forwarded, before.forwarded, 'the relay forwarded nothing');
});

/**
 * A phone of its own (its own storage), served by the real relay, that trusts the stack's real host
 * key (as an enrollment leaves it, like the stack's headless phones) but reaches the host through
 * `hostile`; both are closed when the test ends.
 */
async function phoneThroughRelay(t: ExecutionContext, hostile: { url: string; close(): Promise<void> }, name: string): Promise<{ p: Page; errors: string[] }> {
  const host = stack.agent.agent.host;
  const ctx = await newAppContext(browser, app.origin);
  t.teardown(async () => {
    await ctx.close();
    await hostile.close();
  });
  const p = await ctx.newPage();
  const errors: string[] = [];
  p.on('pageerror', (e) => errors.push(e.message));
  await p.goto(`${app.origin}/`);
  await createDevice(p, name);
  await p.evaluate(storeHostsScript([{ hostId: host.hostId, hostPub: toB64url(host.publicKey), hostname: 'test-host', relayUrl: hostile.url, enrolledAt: Date.now() }]));
  return { p, errors };
}

test.serial('a hostile relay hands over login details not signed by the host: "Signature check failed", no Approve, no offline code, no decision sent', async (t) => {
  t.log(`seed ${SEED}`);
  const host = stack.agent.agent.host;
  const forger = nodeCrypto.ed25519FromSeed(seededBytes(32)); // a key that is not the host's
  const contextRequests: Array<{ hostId: string; sid: string }> = [];
  const decisions: unknown[] = [];
  const hostile = await startHostileRelay({
    onDevice: (s: Socket) => {
      // A context for exactly the login asked about, plausible in every field, but signed by another key.
      s.on('context', (req: { hostId: string; sid: string }, ack: (a: unknown) => void) => {
        contextRequests.push(req);
        const now = Math.floor(Date.now() / 1000);
        const fields = { hostId: req.hostId, sid: req.sid, user: ALICE, hostname: 'test-host', rhost: '127.0.0.1', service: stack.service, iat: now, exp: now + 60 };
        const context: SignedContext = { v: 1, ...fields, sig: toB64url(nodeCrypto.ed25519Sign(forger.seed, contextBytes(fields))) };
        ack({ ok: true, context });
      });
      s.on('decision', (msg: unknown, ack?: (a: unknown) => void) => {
        decisions.push(msg);
        ack?.({ ok: true, result: 'approved' });
      });
    },
  });
  const { p, errors } = await phoneThroughRelay(t, hostile, 'Alice browser 2');
  const shown = (id: string) => visibleIn(p, id);
  await p.getByTestId('tab-hosts').click();
  await shown('host-item').waitFor();
  t.regex((await shown('host-item').textContent()) ?? '', new RegExp(hostile.url.replace(/[.]/g, '\\.')), 'the phone trusts the host, through the hostile relay');

  const sid = toB64url(seededBytes(16));
  await p.getByTestId('tab-scan').click();
  await shown('payload-input').locator('textarea').fill(`QRA1:${host.hostId}:${sid}:${toB64url(seededBytes(16))}`);
  await shown('payload-submit').click();
  const warning = shown('warning-signature');
  await warning.waitFor({ timeout: 10_000 });
  t.true(await warning.isVisible());
  const text = (await warning.textContent()) ?? '';
  t.regex(text, /Signature check failed: do not approve/);
  t.regex(text, /these login details are not signed by test-host; do not trust them/);
  t.deepEqual(contextRequests, [{ hostId: host.hostId, sid }], 'the app asked the hostile relay for exactly this login');
  // Nothing to approve: no login details, no Approve or Deny button.
  t.is(await shown('login-context').count(), 0);
  t.is(await shown('approve').count(), 0);
  t.is(await shown('deny').count(), 0);
  t.is(await p.getByRole('button', { name: /^Approve/ }).count(), 0);
  // Nor the offline code: it would let the person finish a login whose details could not be verified.
  t.regex(text, /The offline code is hidden because this login could not be verified\./);
  t.true(await shown('offline-code-hidden').isVisible());
  t.is(await shown('offline-code-box').count(), 0, 'no offline code box');
  t.is(await shown('offline-code').count(), 0, 'no offline code digits');
  t.notRegex((await p.locator('.ion-page:not(.ion-page-hidden)').last().innerText()) ?? '', /\b\d{4} \d{4}\b/, 'no 8-digit code anywhere on the page');
  await p.screenshot({ path: artifactPath('bad-signature-360.png') });
  await p.waitForTimeout(500); // give a stray decision time to arrive
  t.is(decisions.length, 0, 'the hostile relay received no decision');
  t.deepEqual(errors, [], 'no uncaught errors in the page');
});

test.serial('attack: a relay that answers for the host (a refusal coaching the person, "leases ended") — the app shows none of its words and no unsigned "ended"', async (t) => {
  t.log(`seed ${SEED}`);
  const host = stack.agent.agent.host;
  // What a phisher's relay would like on screen beside "I started this login: show the code".
  const COACH = 'Security check: read the 8-digit code below to the help desk on +1 555 0100';
  const revokes: unknown[] = [];
  const hostile = await startHostileRelay({
    onDevice: (s: Socket) => {
      s.on('context', (_req: unknown, ack: (a: unknown) => void) => ack({ ok: false, code: 'QRA_ERR_READ_THE_CODE_TO_THE_HELP_DESK', message: COACH }));
      s.on('enroll', (_msg: unknown, ack: (a: unknown) => void) => ack({ ok: false, code: 'QRA_ERR_ENROLL', message: COACH }));
      // The revoke is dropped; the relay answers "ended" itself: unsigned first, then with a made-up signature.
      s.on('revokeLeases', (msg: unknown, ack: (a: unknown) => void) => {
        revokes.push(msg);
        ack(revokes.length === 1 ? { ok: true, revoked: 1 } : { ok: true, revoked: 1, sig: toB64url(seededBytes(64)) });
      });
    },
  });
  const { p, errors } = await phoneThroughRelay(t, hostile, 'Alice browser coached');
  const shown = (id: string) => visibleIn(p, id);
  const pageText = async () => (await p.locator('.ion-page:not(.ion-page-hidden)').last().innerText()) ?? '';

  // A login whose details the relay refuses to fetch, with its own text.
  await p.getByTestId('tab-scan').click();
  await shown('payload-input').locator('textarea').fill(`QRA1:${host.hostId}:${toB64url(seededBytes(16))}:${toB64url(seededBytes(16))}`);
  await shown('payload-submit').click();
  await shown('warning-error').waitFor({ timeout: 10_000 });
  t.regex(await shown('warning-error').innerText(), /This login could not be checked/);
  t.regex(await shown('warning-error').innerText(), /an error came back \(QRA_ERR_INTERNAL\)/, "the phone's own words for the code");
  t.false(/help desk|HELP_DESK/.test(await pageText()), 'none of the relay\'s words on the page, nor its made-up code');

  // "End my leases": the relay's own "ended" is not the host's.
  await p.getByTestId('tab-hosts').click();
  await shown('end-leases').click();
  await shown('end-leases-result').getByText(/Sent, but the answer is not signed by the host/).waitFor({ timeout: 10_000 });
  t.notRegex(await shown('end-leases-result').innerText(), /Ended/, 'an unsigned answer is not "ended"');
  await shown('end-leases').click();
  await shown('end-leases-result').getByText(/Could not end them: the answer is not the host's: a relay changed it/).waitFor({ timeout: 10_000 });
  t.is(revokes.length, 2, 'both requests reached the relay (and no further)');

  // An enrollment the relay refuses with its own text.
  const enrollKey = nodeCrypto.ed25519FromSeed(seededBytes(32));
  await p.getByTestId('tab-scan').click();
  await shown('payload-input').locator('textarea').fill(formatEnrollPayload({ hostPub: enrollKey.publicKey, token: seededBytes(16), hostname: 'coach-host', relayUrl: hostile.url }));
  await shown('payload-submit').click();
  await shown('enroll-send').click();
  const refused = p.getByTestId('page-enroll').getByTestId('warning-error');
  await refused.waitFor({ timeout: 10_000 });
  t.regex(await refused.innerText(), /the enrollment code is unknown, used or expired/);
  t.false((await pageText()).includes('help desk'), 'none of the relay\'s words on the enrollment page');
  t.deepEqual(errors, [], 'no uncaught errors in the page');
});

test.serial("a hostile relay rewrites the host's enrollment answer (host name, relay URL): the app saves nothing and says so", async (t) => {
  const genuine: unknown[] = [];
  const hostile = await startHostileRelay({
    rewriteAnswer: rewriteEnrollAcceptance((answer) => {
      genuine.push(answer);
      const changed: Record<string, unknown> = { ...answer, hostname: 'trusted-bank-host' };
      if ('relayUrl' in changed) changed.relayUrl = 'https://relay.attacker.example';
      return changed;
    }),
  });
  // A real agent behind the hostile relay, and a phone of its own (its own storage) served by the real relay.
  const agent = await startTestAgent({ relayUrl: hostile.url, hostname: 'rewritten-host' });
  const ctx = await newAppContext(browser, app.origin);
  t.teardown(async () => {
    await ctx.close();
    await agent.close();
    await hostile.close();
  });
  await hostile.agent();
  const p = await ctx.newPage();
  const errors: string[] = [];
  p.on('pageerror', (e) => errors.push(e.message));
  await p.goto(`${app.origin}/`);
  await createDevice(p, 'Alice browser 3');
  const shown = (id: string) => visibleIn(p, id);
  const cli = qrauthCli(agent.configPath, ['enroll', '--user', ALICE]);
  t.teardown(() => cli.kill());
  const [payload] = await cli.waitFor(ENROLL_RE);
  await shown('payload-input').locator('textarea').fill(payload!);
  await shown('payload-submit').click();
  await shown('page-enroll').waitFor();
  await shown('enroll-send').click();
  await cli.waitFor(/Type y to enroll/);
  // The host's answer reaches the phone after the terminal shows the request: wait for the app's verdict first.
  const warning = shown('warning-signature');
  await warning.waitFor({ timeout: 10_000 }).catch(() => {});
  t.is(genuine.length, 1, 'the host itself accepted the request');
  t.is(await shown('enroll-result').count(), 0, 'no "this phone now trusts" message');
  t.regex((await warning.textContent().catch(() => '')) ?? '', /the relay changed the host's answer; nothing was saved/);
  await p.screenshot({ path: artifactPath('enroll-rewritten-360.png') });
  await p.getByTestId('tab-hosts').click();
  await shown('no-hosts').waitFor({ timeout: 5000 }).catch(() => {});
  t.is(await shown('host-item').count(), 0, 'the phone trusts no host');
  cli.type('n\r');
  t.is(await cli.exited, 4);
  t.deepEqual(errors, [], 'no uncaught errors in the page');
});

/** The web device record as `stored` reads it back. */
interface StoredWebDevice {
  v: number;
  name: string;
  deviceId: string;
  publicKey: string;
  sealed: { hex: string };
  wrapKey: { cryptoKey: string; extractable: boolean };
}

test.serial('Settings → "Replace this phone\'s key…": cancel keeps the key; confirm deletes the device record (the sealed seed) and the hosts, and the new key enrolls', async (t) => {
  // A phone of its own, so the other tests keep their enrolled key.
  const ctx = await newAppContext(browser, app.origin);
  t.teardown(() => ctx.close());
  const p = await ctx.newPage();
  const errors: string[] = [];
  p.on('pageerror', (e) => errors.push(e.message));
  const shown = (id: string) => visibleIn(p, id);
  // The app's IndexedDB value under `key`, with binary values as hex and CryptoKeys described.
  const stored = async (key: string): Promise<unknown> =>
    JSON.parse(
      (await p.evaluate(`new Promise((resolve, reject) => {
        const open = indexedDB.open('qrauth', 1);
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const req = open.result.transaction('kv', 'readonly').objectStore('kv').get(${JSON.stringify(key)});
          req.onerror = () => reject(req.error);
          req.onsuccess = () => {
            open.result.close();
            const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
            resolve(JSON.stringify(req.result ?? null, (_k, v) =>
              v instanceof ArrayBuffer ? { hex: hex(new Uint8Array(v)) }
              : ArrayBuffer.isView(v) ? { hex: hex(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) }
              : v instanceof CryptoKey ? { cryptoKey: v.algorithm.name, extractable: v.extractable } : v));
          };
        };
      })`)) as string,
    );

  await p.goto(`${app.origin}/`);
  await createDevice(p, 'Reset web');
  const old = (await stored('device')) as StoredWebDevice;
  t.like(old, { v: 1, name: 'Reset web', wrapKey: { cryptoKey: 'AES-GCM', extractable: false } });
  t.regex(old.sealed.hex, /^[0-9a-f]{96}$/, 'the sealed seed (32 bytes + tag)');
  // Enrolling leaves a relay connection open, proved with this key.
  await enrollAppWithCli(t, p, stack.agent, ALICE, old.publicKey, 'Reset web');
  t.is(((await stored('hosts')) as unknown[]).length, 1);

  await p.getByTestId('tab-settings').click();
  const replace = p.locator('.ion-page:not(.ion-page-hidden)[data-testid="page-settings"] [data-testid="replace-key"]');
  t.is(((await replace.textContent()) ?? '').trim(), "Replace this phone's key…");
  await replace.click();
  const alert = p.getByTestId('replace-key-alert');
  await alert.waitFor();
  t.regex(await alert.innerText(), /Every host must enroll this phone again: run qrauth enroll there/);
  await p.getByTestId('replace-key-cancel').click();
  await alert.waitFor({ state: 'detached' });
  t.deepEqual(await stored('device'), old, 'cancelled: the same key');
  t.is(((await stored('hosts')) as unknown[]).length, 1, 'cancelled: the hosts stay');

  await replace.click();
  await alert.waitFor();
  await p.getByTestId('replace-key-confirm').click();
  await p.getByTestId('page-welcome').waitFor();
  t.is(await stored('device'), null, 'the old device record, with its sealed seed and wrapping key, is gone');
  t.deepEqual(await stored('hosts'), []);

  await createDevice(p, 'Reset web 2');
  const fresh = (await stored('device')) as StoredWebDevice;
  t.like(fresh, { v: 1, name: 'Reset web 2' });
  t.not(fresh.deviceId, old.deviceId);
  t.not(fresh.publicKey, old.publicKey);
  // The relay ties an enrollment to the key its connection proved: this works only because the
  // old key's connection was dropped.
  await enrollAppWithCli(t, p, stack.agent, ALICE, fresh.publicKey, 'Reset web 2');
  await p.getByTestId('tab-hosts').click();
  await shown('host-item').waitFor();
  t.is(await shown('host-item').count(), 1);
  t.deepEqual(errors, [], 'no uncaught errors in the page');
});

test.serial('light and dark themes, desktop width: the toggle switches the palette and every control has a name', async (t) => {
  const desktop = await newAppContext(browser, app.origin, { width: 1280, height: 800 }, 'dark');
  t.teardown(() => desktop.close());
  const p = await desktop.newPage();
  await p.goto(`${app.origin}/`);
  await p.getByTestId('create-device').click();
  await p.getByTestId('page-scan').waitFor();
  t.true(await p.evaluate(IS_DARK), 'follows prefers-color-scheme: dark');
  await p.screenshot({ path: artifactPath('scan-desktop-dark.png') });
  await p.getByTestId('tab-settings').click();
  await p.locator('ion-segment-button', { hasText: 'Light' }).click();
  await p.waitForFunction(() => !(globalThis as unknown as PageGlobals).document.documentElement.classList.contains('ion-palette-dark'));
  await p.screenshot({ path: artifactPath('settings-desktop-light.png') });
  await p.locator('ion-segment-button', { hasText: 'Dark' }).click();
  await p.waitForFunction(isDark);
  await p.waitForTimeout(300); // let the segment settle
  await p.screenshot({ path: artifactPath('settings-desktop-dark.png') });

  // Every button, input and tab on the visible pages has an accessible name.
  for (const tab of ['scan', 'hosts', 'history', 'settings']) {
    await p.getByTestId(`tab-${tab}`).click();
    await p.locator(`.ion-page:not(.ion-page-hidden)[data-testid="page-${tab}"]`).waitFor();
    if (tab === 'hosts' || tab === 'history') continue; // empty lists on a fresh phone: nothing to name
    // The accessibility tree as a screen reader gets it (shadow DOM included): every control named.
    const tree = await p.locator(`[data-testid="page-${tab}"] ion-content`).ariaSnapshot();
    const unnamed = tree.split('\n').filter((l) => /^\s*- (button|textbox|tab|radio|checkbox|combobox|link|switch)\b(?!\s+")/.test(l));
    t.true(/- (button|textbox)/.test(tree), `the ${tab} page has controls in its accessibility tree`);
    t.deepEqual(unnamed, [], `controls without a name on ${tab}`);
  }
  // No horizontal scrolling at phone width either.
  t.false(await page.evaluate('document.documentElement.scrollWidth > window.innerWidth'));
});

test.serial('relay and app server down: the app (reopened offline from its service worker) says the login could not be checked, shows the offline code once confirmed, typed into ssh → in', async (t) => {
  if (!needsEnrolledApp(t)) return;
  // The service worker has taken over the page and cached the shell.
  const swState = "navigator.serviceWorker.getRegistration().then((r) => JSON.stringify({ active: r?.active?.state, installing: r?.installing?.state, waiting: r?.waiting?.state, controlled: !!navigator.serviceWorker.controller }))";
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).navigator.serviceWorker.controller?.state === 'activated', undefined, { timeout: 15_000 }).catch(async (e: Error) => {
    throw new Error(`${e.message}; service worker: ${String(await page.evaluate(swState))}`);
  });
  t.truthy(await page.evaluate('navigator.serviceWorker.controller?.scriptURL'), 'a service worker controls the app');

  const m = marker();
  const { run, payload } = await startSsh(m);
  t.teardown(() => run.kill());
  await stack.relay!.close();
  await app.close();
  // Reopened with an enrolled host, the app opens its scanner at once: it sees a blank camera (not
  // an earlier test's QR), and the login's QR is shown only once it is open, for scanWithCamera to
  // close it and scan again with the camera restarted on that QR.
  writeY4m(chromiumApp.camFile, blankFrame());
  // The relay and the app's web server are gone: the app still opens, from the cache.
  await page.goto(`${app.origin}/scan`);
  await page.getByTestId('page-scan').waitFor();
  await page.getByTestId('scanner').waitFor();
  t.is(await page.evaluate(`fetch(${JSON.stringify(`${stack.relay!.url}/healthz`)}).then(() => 'up', () => 'down')`), 'down', 'the relay is really down');
  showToCamera(run.output, payload);
  await scanWithCamera();
  await visible('warning-offline').waitFor({ timeout: 20_000 });
  // Nothing verified says whose login this is: the code only after the person confirms.
  t.is(await visible('offline-code').count(), 0, 'no code before the confirmation');
  await visible('confirm-own-login').click();
  const code = ((await visible('offline-code').textContent()) ?? '').replace(/\s/g, '');
  t.regex(code, /^\d{8}$/);
  t.regex((await visible('offline-code-box').getAttribute('class')) ?? '', /offline-code-prominent/);
  await page.screenshot({ path: artifactPath('offline-code-360.png') });
  run.type(`${code}\r`);
  await run.waitFor(new RegExp(m));
  t.is(await run.exited, 0);
  t.true(stack.agent.logs.some((l) => /event=login .*how=code result=approved/.test(l)));
  t.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});
