/**
 * Passkey approvals in the real app (issue #12), in real Chromium with a CDP virtual platform
 * authenticator (ctap2, internal, user verification): the app served from its own origin
 * (http://localhost: a passkey's RP ID cannot be an IP address), the real relay, agent, sshd and
 * `qrauth enroll`, on a host whose policy is userVerification "required". Enrolling makes the
 * passkey and writes it into the devices line; an ssh login approved with the fingerprint/PIN
 * check opens a shell; with the check not passed, or from a phone enrolled without a passkey,
 * the phone says why and no shell opens. The rest of the policy matrix runs beside it: the same
 * two phones enroll with an "off" and a "preferred" host (own agents on the same relay, logins by
 * pamtester) and approve there; the agent logs uv=yes only for a verified passkey on "preferred".
 */
import test, { type ExecutionContext } from 'ava';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { parseDevicesText } from '../agent/src/devices-file.js';
import {
  type AppInChromium,
  artifactPath,
  createDevice,
  newAppContext,
  pasteIntoApp,
  startAppInChromium,
  visibleIn,
} from './support/browser.js';
import { ENROLL_RE, FINGERPRINT_LINE_RE, qrauthCli } from './support/enroll.js';
import { type AgentFixture, startTestAgent } from './support/fixtures.js';
import { type PamtesterRun, runPamtester } from './support/pamtester.js';
import { nextMarker, runInPty, type PtyRun } from './support/pty.js';
import { sshArgs } from './support/sshd.js';
import { ALICE, LOGIN_PAYLOAD_RE, type Stack, startStack } from './support/stack.js';
import { MODULE_PATH, installPamService, isRoot, randomName } from './support/system.js';

let chromiumApp: AppInChromium;
let stack: Stack;
let appOrigin: string;
let browser: Browser;
/** The phone with a platform authenticator (virtual), and one without any. */
let withPasskey: { context: BrowserContext; page: Page; cdp: CDPSession; authenticatorId: string };
let plain: { context: BrowserContext; page: Page };
const pageErrors: string[] = [];
/**
 * Hosts beside the stack's "required" one, on the same relay, for the rest of the policy matrix:
 * each its own agent (host key, devices dir, config) and a pamtester PAM service (mode=info).
 */
type OtherPolicy = 'off' | 'preferred';
const policyHosts: Partial<Record<OtherPolicy, { agent: AgentFixture; service: string }>> = {};
const pamServices: Array<{ remove(): void }> = [];

test.before(async () => {
  if (!isRoot()) throw new Error('end-to-end tests run as root (they start sshd and create users)');
  chromiumApp = await startAppInChromium('qrwaapp-');
  browser = chromiumApp.browser;
  // The same server by name: WebAuthn needs a domain for the RP ID, and localhost is a secure context.
  appOrigin = chromiumApp.app.origin.replace('127.0.0.1', 'localhost');
  stack = await startStack({ agent: { expirySeconds: 60, userVerification: 'required' }, relayOptions: { appOrigins: [appOrigin] } });
  for (const policy of ['off', 'preferred'] as const) {
    const agent = await startTestAgent({ relayUrl: stack.relay!.url, expirySeconds: 60, userVerification: policy, hostname: `test-host-${policy}` });
    const service = randomName('qrauth-pt-appwa-');
    pamServices.push(installPamService(service, [`auth required ${MODULE_PATH} socket=${agent.socket} mode=info`]));
    policyHosts[policy] = { agent, service };
    if (!agent.agent.relay!.up) await once(agent.agent.relay!, 'change');
  }

  const context = await newAppContext(browser, appOrigin);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasUserVerification: true, isUserVerified: true, hasResidentKey: true, automaticPresenceSimulation: true },
  });
  withPasskey = { context, page, cdp, authenticatorId };
  const plainContext = await newAppContext(browser, appOrigin);
  plain = { context: plainContext, page: await plainContext.newPage() };
  plain.page.on('pageerror', (e) => pageErrors.push(e.message));
  for (const [p, name] of [[page, 'Alice passkey'], [plain.page, 'Alice plain']] as const) {
    await p.goto(`${appOrigin}/`);
    // First start: name the phone and make its device key.
    await p.getByTestId('page-welcome').waitFor();
    await createDevice(p, name);
  }
});

test.afterEach.always(async (t) => {
  if (t.passed) return;
  const name = t.title.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
  for (const [which, p] of [['passkey', withPasskey?.page], ['plain', plain?.page]] as const) {
    if (!p) continue;
    await p.screenshot({ path: artifactPath(`webauthn-failed-${which}-${name}.png`) }).catch(() => {});
    t.log(`${which} page: ${(await p.locator('.ion-page:not(.ion-page-hidden)').last().innerText().catch(() => '?')).slice(0, 600)}`);
  }
});

test.after.always(async () => {
  await chromiumApp?.close();
  for (const s of pamServices) s.remove();
  for (const h of Object.values(policyHosts)) await h.agent.close();
  await stack?.close();
});

/** The code (enrollment or login) handed to the app's Scan page, as its scanner would. */
const scanText = pasteIntoApp;

/** `qrauth enroll` for alice on a pty, the app scans and taps Enroll, both fingerprints compared, "y". */
async function enrollApp(t: ExecutionContext, page: Page, expectPasskey: boolean, agent: AgentFixture = stack.agent): Promise<void> {
  const shown = (id: string) => visibleIn(page, id);
  const cli = qrauthCli(agent.configPath, ['enroll', '--user', ALICE]);
  t.teardown(() => cli.kill());
  const [payload] = await cli.waitFor(ENROLL_RE);
  await scanText(page, payload!);
  await shown('page-enroll').waitFor();
  if (expectPasskey) {
    // The fingerprint covers the passkey, which is made by the tap: it is shown only after it.
    await shown('enroll-passkey-step').waitFor();
    t.is(await shown('enroll-fingerprint').count(), 0);
  } else {
    await shown('enroll-no-passkey').waitFor();
    t.regex((await shown('enroll-no-passkey').textContent()) ?? '', /cannot make a passkey here.*will refuse them/);
  }
  await shown('enroll-send').click();
  await shown('enroll-waiting').waitFor();
  const onPhone = ((await shown('enroll-fingerprint').textContent()) ?? '').trim();
  const [, onHost] = await cli.waitFor(FINGERPRINT_LINE_RE);
  t.is(onHost, onPhone);
  t.regex(cli.output, expectPasskey ? /It brings a passkey/ : /It has no passkey/);
  await cli.waitFor(/Type y to enroll/);
  cli.type('y\r');
  t.is(await cli.exited, 0, cli.output);
  await shown('enroll-result').waitFor({ timeout: 15_000 });
  t.is(await shown('enroll-result').getAttribute('data-outcome'), 'confirmed');
}

function alicesDevices(agent: AgentFixture = stack.agent) {
  return parseDevicesText(readFileSync(join(agent.dir, 'devices', ALICE), 'utf8'), 'devices');
}

/** An ssh login as alice waiting at its prompt, its QR handed to `page`, the context shown. */
async function sshLoginOn(t: ExecutionContext, page: Page): Promise<{ run: PtyRun; marker: string; sid8: string; payload: string }> {
  const marker = nextMarker('WA_IN');
  const run = runInPty(sshArgs(stack.sshd.port, ALICE, `echo ${marker}`));
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  await scanText(page, payload!);
  await visibleIn(page, 'login-context').waitFor();
  return { run, marker, sid8: payload!.split(':')[2]!.slice(0, 8), payload: payload! };
}

/** A pamtester login as alice on another policy's host, its QR handed to `page`, the context shown. */
async function pamLoginOn(t: ExecutionContext, policy: OtherPolicy, page: Page): Promise<{ run: PamtesterRun; sid8: string; payload: string }> {
  const run = runPamtester(policyHosts[policy]!.service, ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await scanText(page, payload!);
  await visibleIn(page, 'login-context').waitFor();
  return { run, sid8: payload!.split(':')[2]!.slice(0, 8), payload: payload! };
}

function loginLine(sid8: string, agent: AgentFixture = stack.agent): string {
  return agent.logs.find((l) => l.startsWith('event=login ') && l.includes(` sid=${sid8} `)) ?? '';
}

test.serial('enrolling in the app with a platform authenticator makes a passkey: both screens compare a fingerprint that covers it, and the devices line holds it', async (t) => {
  await enrollApp(t, withPasskey.page, true);
  const { credentials } = await withPasskey.cdp.send('WebAuthn.getCredentials', { authenticatorId: withPasskey.authenticatorId });
  t.is(credentials.length, 1, 'one passkey made on the phone');
  const devices = alicesDevices();
  t.deepEqual(devices.problems, []);
  const line = devices.devices.find((d) => d.passkey);
  t.truthy(line, 'a device line with a passkey');
  t.is(line!.passkey!.origin, appOrigin);
  t.is(line!.passkey!.rpId, 'localhost');
  t.is(line!.passkey!.credentialId, credentials[0]!.credentialId.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''));
  t.true(['ES256', 'EdDSA'].includes(line!.passkey!.alg));
});

test.serial('a phone without a platform authenticator enrolls without a passkey and is told what that means', async (t) => {
  await enrollApp(t, plain.page, false);
  t.is(alicesDevices().devices.filter((d) => !d.passkey).length, 2, 'the headless phone and this one, both without a passkey');
});

test.serial('ssh on a "required" host: Approve asks for the fingerprint/PIN (verified) and the login opens a shell', async (t) => {
  const { run, marker, sid8 } = await sshLoginOn(t, withPasskey.page);
  await visibleIn(withPasskey.page, 'approve').click();
  await visibleIn(withPasskey.page, 'decision-result').waitFor();
  t.regex((await visibleIn(withPasskey.page, 'decision-result').textContent()) ?? '', /Approved/);
  run.type('\r');
  await run.waitFor(new RegExp(marker));
  t.is(await run.exited, 0);
  t.regex(loginLine(sid8), /how=phone .*\buv=yes\b.*result=approved|\buv=yes\b.*how=phone.*result=approved/);
});

test.serial('ssh on a "required" host: the authenticator does not verify the person, the phone says so, no shell; Deny ends it', async (t) => {
  await withPasskey.cdp.send('WebAuthn.setUserVerified', { authenticatorId: withPasskey.authenticatorId, isUserVerified: false });
  t.teardown(() => withPasskey.cdp.send('WebAuthn.setUserVerified', { authenticatorId: withPasskey.authenticatorId, isUserVerified: true }));
  const { run, marker, sid8 } = await sshLoginOn(t, withPasskey.page);
  await visibleIn(withPasskey.page, 'approve').click();
  const problem = visibleIn(withPasskey.page, 'passkey-problem');
  await problem.waitFor();
  t.regex((await problem.textContent()) ?? '', /fingerprint, face or PIN/);
  await withPasskey.page.screenshot({ path: artifactPath('approve-uv-refused-360.png') });
  t.is(loginLine(sid8), '', 'the login is still open: nothing approved it');
  await visibleIn(withPasskey.page, 'deny').click();
  await visibleIn(withPasskey.page, 'decision-result').waitFor();
  run.type('\r');
  t.not(await run.exited, 0);
  t.false(run.output.includes(marker), 'no shell');
  t.regex(loginLine(sid8), /result=denied/);
});

test.serial('ssh on a "required" host from the phone enrolled without a passkey: refused, the phone says to enroll again, no shell', async (t) => {
  const { run, marker, sid8, payload } = await sshLoginOn(t, plain.page);
  await visibleIn(plain.page, 'approve').click();
  const needs = visibleIn(plain.page, 'needs-passkey');
  await needs.waitFor();
  t.regex((await needs.textContent()) ?? '', /enrolled with test-host without a passkey\. Run qrauth enroll there/);
  await plain.page.screenshot({ path: artifactPath('approve-needs-passkey-360.png') });
  run.type('\r');
  // The host keeps the login open for another phone until it expires; this one cannot finish it.
  t.like(await stack.phone.decide(payload, 'deny'), { ok: true, result: 'denied' });
  t.not(await run.exited, 0);
  t.false(run.output.includes(marker), 'no shell');
  t.regex(loginLine(sid8), /result=denied/);
});

test.serial('the same two phones enroll with an "off" host and a "preferred" host: one devices line with a passkey, one without, on each', async (t) => {
  for (const policy of ['off', 'preferred'] as const) {
    const agent = policyHosts[policy]!.agent;
    await enrollApp(t, withPasskey.page, true, agent);
    await enrollApp(t, plain.page, false, agent);
    const devices = alicesDevices(agent);
    t.deepEqual(devices.problems, [], policy);
    t.deepEqual(devices.devices.map((d) => Boolean(d.passkey)).sort(), [false, true], policy);
  }
});

// The app asserts with its passkey whatever the host's policy; "off" ignores it, so uv=no there.
const otherPolicyRows: Array<{ policy: OtherPolicy; device: 'passkey' | 'plain'; uv: 'yes' | 'no' }> = [
  { policy: 'off', device: 'passkey', uv: 'no' },
  { policy: 'off', device: 'plain', uv: 'no' },
  { policy: 'preferred', device: 'passkey', uv: 'yes' },
  { policy: 'preferred', device: 'plain', uv: 'no' },
];
for (const row of otherPolicyRows) {
  test.serial(`pamtester on ${row.policy === 'off' ? 'an' : 'a'} "${row.policy}" host from the phone ${row.device === 'passkey' ? 'with' : 'without'} a passkey: Approve logs in (uv=${row.uv})`, async (t) => {
    const page = row.device === 'passkey' ? withPasskey.page : plain.page;
    const agent = policyHosts[row.policy]!.agent;
    const { run, sid8 } = await pamLoginOn(t, row.policy, page);
    await visibleIn(page, 'approve').click();
    await visibleIn(page, 'decision-result').waitFor();
    t.regex((await visibleIn(page, 'decision-result').textContent()) ?? '', /Approved/);
    t.is(await run.exited, 0, run.output);
    t.regex(run.output, /successfully authenticated/);
    const line = loginLine(sid8, agent);
    t.regex(line, /\bhow=phone\b/);
    t.regex(line, /\bresult=approved\b/);
    t.is(/\buv=(yes|no)\b/.exec(line)?.[1], row.uv, line);
  });
}

test.serial('pamtester on a "preferred" host: the authenticator does not verify the person, so the phone makes no assertion and sends nothing; the login stays open; Deny ends it', async (t) => {
  await withPasskey.cdp.send('WebAuthn.setUserVerified', { authenticatorId: withPasskey.authenticatorId, isUserVerified: false });
  t.teardown(() => withPasskey.cdp.send('WebAuthn.setUserVerified', { authenticatorId: withPasskey.authenticatorId, isUserVerified: true }));
  const agent = policyHosts.preferred!.agent;
  const { run, sid8 } = await pamLoginOn(t, 'preferred', withPasskey.page);
  let ended = false;
  void run.exited.then(() => (ended = true));
  await visibleIn(withPasskey.page, 'approve').click();
  const problem = visibleIn(withPasskey.page, 'passkey-problem');
  await problem.waitFor();
  // The app asks for UV whatever the host's policy, and the authenticator cannot give it: no
  // assertion, so the app sends no approval at all (a "preferred" host would accept one without UV).
  t.regex((await problem.textContent()) ?? '', /check was cancelled, not passed or timed out; nothing was sent\. Tap Approve to try again/);
  t.is(loginLine(sid8, agent), '', 'the login is still open: nothing approved it');
  t.false(ended, 'pamtester still waits');
  await visibleIn(withPasskey.page, 'deny').click();
  await visibleIn(withPasskey.page, 'decision-result').waitFor();
  t.not(await run.exited, 0);
  t.notRegex(run.output, /successfully authenticated/);
  t.regex(loginLine(sid8, agent), /result=denied/);
});

test.serial('no page errors in either app', (t) => {
  t.deepEqual(pageErrors, []);
});
