/**
 * Enrollment carries the phone's passkey (issue #12), signed: the real `qrauth enroll` on a pty,
 * the real agent and relay (or a hostile relay), a headless phone with a software authenticator.
 * The passkey lands in the devices file line and then approves a uv=required login through the
 * real pamtester; a relay that strips or swaps it at enrollment gets nothing written.
 */
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentConfig } from '../agent/src/config.js';
import { parseDevicesText } from '../agent/src/devices-file.js';
import { type EnrollMessage, type PasskeyInfo } from '../protocol/src/index.js';
import { startRelay, type Relay } from '../relay/src/server.js';
import { ENROLL_RE, FINGERPRINT_LINE_RE, enrollPhone, qrauthCli } from './support/enroll.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { startHostileRelay } from './support/hostile-relay.js';
import { runPamtester } from './support/pamtester.js';
import { HeadlessPhone } from './support/phone.js';
import { testSeed } from './support/seeded.js';
import { SoftAuthenticator } from './support/soft-authenticator.js';
import { ALICE, LOGIN_PAYLOAD_RE } from './support/stack.js';
import { MODULE_PATH, ensureUser, installPamService, randomName, tempDir } from './support/system.js';

const APP_ORIGIN = 'https://app.qrauth.test';
/** The passkeys' key pairs and credential ids come from this seed (printed when a test fails). */
const SEED = testSeed(0x0e_5eed);

/**
 * A software authenticator whose key and credential id derive from SEED and `label`, one label a
 * passkey: the tests here run concurrently, so a shared stream would hand out bytes in a different
 * order from run to run.
 */
function passkeyFor(label: string): SoftAuthenticator {
  return new SoftAuthenticator({ origin: APP_ORIGIN, seed: createHash('sha256').update(`${SEED}:${label}`).digest() });
}

let relay: Relay;
let tmp: { path: string; remove(): void };
const cleanups: Array<() => unknown> = [];

test.before(async () => {
  ensureUser(ALICE);
  tmp = tempDir('qrwae-');
  relay = await startRelay({ log: () => {} });
});

test.afterEach.always((t) => {
  if (!t.passed) t.log(`seed ${SEED} (QRAUTH_TEST_SEED replays it)`);
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
  await relay?.close();
  tmp?.remove();
});

async function host(t: ExecutionContext, relayUrl: string, config: Partial<AgentConfig> = {}): Promise<AgentFixture> {
  const agent = await startTestAgent({ relayUrl, expirySeconds: 60, ...config });
  t.teardown(() => agent.close());
  if (!agent.agent.relay!.up) await once(agent.agent.relay!, 'change');
  return agent;
}

let phonesMade = 0;

async function phone(t: ExecutionContext, name: string, withPasskey: boolean): Promise<HeadlessPhone> {
  phonesMade += 1;
  const p = await HeadlessPhone.create(join(tmp.path, `${name}-${phonesMade}`), name);
  if (withPasskey) p.authenticator = passkeyFor(`phone ${name}`);
  t.teardown(() => p.close());
  return p;
}

function devicesText(agent: AgentFixture, user: string): string {
  const path = join(agent.dir, 'devices', user);
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}

/** A pamtester login on a `uv=required` PAM line of this agent, approved by `p`; its exit code and the agent's login line. */
async function requiredLogin(t: ExecutionContext, agent: AgentFixture, p: HeadlessPhone): Promise<{ ok: boolean; exit: number | null; line: string; code?: string }> {
  const service = randomName('qrauth-pt-wae-');
  const svc = installPamService(service, [`auth required ${MODULE_PATH} socket=${agent.socket} mode=info uv=required`]);
  t.teardown(() => svc.remove());
  const run = runPamtester(service, ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  const ack = await p.decide(payload!, 'approve');
  if (!ack.ok) await p.decide(payload!, 'deny'); // end the login the refusal left open
  const exit = await run.exited;
  const line = agent.logs.find((l) => l.startsWith('event=login ') && l.includes(`user=${ALICE}`) && l.includes(' uv=')) ?? '';
  return { ok: ack.ok, exit, line, ...(ack.ok ? {} : { code: ack.code }) };
}

test('a phone with a passkey enrolls through `qrauth enroll`: the terminal says so, the devices line holds the passkey, and a uv=required login then passes with it', async (t) => {
  const agent = await host(t, relay.url);
  const p = await phone(t, 'Alice passkey', true);
  const cli = qrauthCli(agent.configPath, ['enroll', '--user', ALICE]);
  t.teardown(() => cli.kill());
  const [payload] = await cli.waitFor(ENROLL_RE);
  const { fingerprint, ack } = await p.enroll(payload!);
  t.true(ack.ok, JSON.stringify(ack));
  const [, shown] = await cli.waitFor(FINGERPRINT_LINE_RE);
  t.is(shown, fingerprint);
  t.regex(cli.output, /It brings a passkey \(fingerprint, face or PIN on the phone; app https:\/\/app\.qrauth\.test\)/);
  await cli.waitFor(/Type y to enroll/);
  cli.type('y\r');
  t.is(await cli.exited, 0, cli.output);

  const text = devicesText(agent, ALICE);
  const parsed = parseDevicesText(text, 'devices');
  t.deepEqual(parsed.problems, []);
  t.is(parsed.devices.length, 1);
  const stored = parsed.devices[0]!;
  t.is(stored.deviceId, p.deviceId);
  const want: PasskeyInfo = p.authenticator!.passkey();
  t.like(stored.passkey, { credentialId: want.credentialId, publicKey: want.publicKey, origin: want.origin, rpId: want.rpId, alg: 'ES256' });
  t.true(agent.logs.some((l) => l.startsWith('event=enroll_request ') && l.includes('passkey=yes')));

  const login = await requiredLogin(t, agent, p);
  t.true(login.ok);
  t.is(login.exit, 0);
  t.regex(login.line, /\buv=yes\b.*result=approved/);
});

test('a phone without a passkey still enrolls (v1 bytes, the old line format); the terminal says what that means, and uv=required then refuses it', async (t) => {
  const agent = await host(t, relay.url);
  const p = await phone(t, 'Alice plain', false);
  await enrollPhone(agent, ALICE, p);
  const text = devicesText(agent, ALICE);
  const line = text.split('\n').find((l) => l.includes(p.publicKey))!;
  t.regex(line, /^ed25519 [A-Za-z0-9_-]{43} \d{4}-\d{2}-\d{2} Alice plain$/);
  t.true(agent.logs.some((l) => l.startsWith('event=enroll_request ') && l.includes('passkey=no')));
  const login = await requiredLogin(t, agent, p);
  t.false(login.ok);
  t.is(login.code, 'QRA_ERR_NO_PASSKEY');
  t.not(login.exit, 0);
});

test('enrolling the same phone again with a passkey adds it to its line (the way to fix "this host requires a passkey")', async (t) => {
  const agent = await host(t, relay.url);
  const p = await phone(t, 'Alice later', false);
  await enrollPhone(agent, ALICE, p);
  t.false(devicesText(agent, ALICE).includes('passkey-id='));
  p.authenticator = passkeyFor(`phone ${p.name}`);
  await enrollPhone(agent, ALICE, p);
  const parsed = parseDevicesText(devicesText(agent, ALICE), 'devices');
  t.is(parsed.devices.length, 1, 'one line for the phone, not two');
  t.is(parsed.devices[0]!.passkey?.credentialId, p.authenticator.passkey().credentialId);
  t.true((await requiredLogin(t, agent, p)).ok);
});

for (const attack of ['strip', 'swap'] as const) {
  test(`a hostile relay that ${attack}s the passkey in the enroll message gets the enrollment refused (signature): nothing is written, the terminal still waits`, async (t) => {
    const relaysOwn = passkeyFor(`relay ${attack}`);
    let rewritten = 0;
    const hostile = await startHostileRelay({
      rewriteAnswer: (_event, answer) => answer,
      rewriteRequest: (event, msg) => {
        if (event !== 'enroll' || typeof msg !== 'object' || msg === null) return msg;
        const { passkey, ...rest } = msg as EnrollMessage;
        if (!passkey) return msg;
        rewritten++;
        // Strip: the host would store the phone as one without a passkey (no UV ever).
        // Swap: the host would store a passkey the relay holds (its assertions would count as UV).
        return attack === 'strip' ? rest : { ...rest, passkey: relaysOwn.passkey() };
      },
    });
    t.teardown(() => hostile.close());
    const agent = await host(t, hostile.url);
    const p = await phone(t, `Alice ${attack}`, true);
    const cli = qrauthCli(agent.configPath, ['enroll', '--user', ALICE]);
    t.teardown(() => cli.kill());
    const [payload] = await cli.waitFor(ENROLL_RE);
    const { ack } = await p.enroll(payload!);
    t.is(rewritten, 1, 'the phone sent a passkey and the relay rewrote it');
    t.false(ack.ok, JSON.stringify(ack));
    t.is(ack.ok ? '' : ack.code, 'QRA_ERR_ENROLL');
    t.true(agent.logs.some((l) => l.startsWith('event=enroll_rejected ') && l.includes('signature does not verify')), agent.logs.join('\n'));
    t.is(devicesText(agent, ALICE), '');
    t.notRegex(cli.output, /Fingerprint:/);
    t.is(cli.child.exitCode, null, 'qrauth enroll still waits for a genuine request');
  });
}
