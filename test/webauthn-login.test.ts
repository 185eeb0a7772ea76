/**
 * Passkey approvals through the whole live path (issue #12): the real pamtester loads
 * pam_qrauth.so, the real agent and relay carry the decision, and a headless phone with a
 * software authenticator attaches real WebAuthn assertions. Policy off/preferred/required ×
 * a device with and without a passkey; UV refused and retried; a copied passkey; a relay that
 * strips or swaps the assertion; offline codes turned off.
 */
import test, { type ExecutionContext } from 'ava';
import { once } from 'node:events';
import { join } from 'node:path';
import type { AgentConfig } from '../agent/src/config.js';
import { OFFLINE_CODES_OFF_MESSAGE } from '../agent/src/sessions.js';
import { type DecisionAck, type WebAuthnAssertion, parseLoginPayload, toB64url } from '../protocol/src/index.js';
import { startRelay, type Relay } from '../relay/src/server.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { startHostileRelay } from './support/hostile-relay.js';
import { HeadlessPhone } from './support/phone.js';
import { runPamtester, type PamtesterRun } from './support/pamtester.js';
import { SoftAuthenticator } from './support/soft-authenticator.js';
import { ALICE, LOGIN_PAYLOAD_RE } from './support/stack.js';
import { MODULE_PATH, ensureUser, installPamService, randomName, tempDir } from './support/system.js';

const APP_ORIGIN = 'https://app.qrauth.test';

interface Host {
  agent: AgentFixture;
  /** A PAM service whose only auth line is pam_qrauth on this agent, info mode (no keystroke). */
  service: string;
  /** The same, prompt mode (a code can be typed). */
  promptService: string;
}

let relay: Relay;
let tmp: { path: string; remove(): void };
const services: Array<{ remove(): void }> = [];
const hosts: Record<'off' | 'preferred' | 'required', Host> = {} as Record<'off' | 'preferred' | 'required', Host>;
/** Alice's phone enrolled with a passkey, and her second phone enrolled without one. */
let withPasskey: HeadlessPhone;
let plain: HeadlessPhone;

function installService(socket: string, args: string): string {
  const name = randomName('qrauth-pt-wa-');
  services.push(installPamService(name, [`auth required ${MODULE_PATH} socket=${socket} ${args}`]));
  return name;
}

async function startHost(config: Partial<AgentConfig>, relayUrl: string, phones: HeadlessPhone[]): Promise<Host> {
  const agent = await startTestAgent({ relayUrl, expirySeconds: 60, ...config });
  if (!agent.agent.relay!.up) await once(agent.agent.relay!, 'change');
  for (const p of phones) await p.trustHost({ hostPub: toB64url(agent.agent.host.publicKey), hostname: 'test-host', relayUrl });
  agent.setDevices(ALICE, phones.map((p) => p.devicesLine()));
  return { agent, service: installService(agent.socket, 'mode=info'), promptService: installService(agent.socket, 'mode=prompt') };
}

test.before(async () => {
  ensureUser(ALICE);
  tmp = tempDir('qrwa-');
  relay = await startRelay({ log: () => {} });
  withPasskey = await HeadlessPhone.create(join(tmp.path, 'phone-passkey'), 'Alice passkey');
  withPasskey.authenticator = new SoftAuthenticator({ origin: APP_ORIGIN });
  plain = await HeadlessPhone.create(join(tmp.path, 'phone-plain'), 'Alice plain');
  hosts.off = await startHost({ userVerification: 'off' }, relay.url, [withPasskey, plain]);
  hosts.preferred = await startHost({ userVerification: 'preferred' }, relay.url, [withPasskey, plain]);
  hosts.required = await startHost({ userVerification: 'required', offlineCodes: false }, relay.url, [withPasskey, plain]);
});

test.after.always(async () => {
  for (const s of services) s.remove();
  await withPasskey?.close();
  await plain?.close();
  for (const h of Object.values(hosts)) await h.agent.close();
  await relay?.close();
  tmp?.remove();
});

interface Login {
  run: PamtesterRun;
  payload: string;
  sid8: string;
  /** Whether pamtester has ended (the decision that ended the session is what proves it stayed open). */
  ended(): boolean;
}

async function startLogin(t: ExecutionContext, service: string): Promise<Login> {
  const run = runPamtester(service, ALICE);
  t.teardown(() => run.kill());
  let ended = false;
  void run.exited.then(() => (ended = true));
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  return { run, payload: payload!, sid8: parseLoginPayload(payload!).sid.slice(0, 8), ended: () => ended };
}

/** The agent's `login` log line of this session (written when the verdict went to the terminal). */
function loginLine(host: Host, sid8: string): string {
  return host.agent.logs.find((l) => l.startsWith('event=login ') && l.includes(` sid=${sid8} `)) ?? '';
}

/** Each phone approves one login; the outcome and the uv= the agent logs for it. */
async function approveOnce(t: ExecutionContext, host: Host, phone: HeadlessPhone): Promise<{ ack: DecisionAck; exit: number | null; uv: string | undefined; run: PamtesterRun; sid8: string }> {
  const { run, payload, sid8 } = await startLogin(t, host.service);
  const ack = await phone.decide(payload, 'approve');
  if (!ack.ok) {
    // The login is still open after a refusal: end it from the phone, so it fails and says so.
    t.like(await plain.decide(payload, 'deny'), { ok: true, result: 'denied' }, 'the refused login was still open');
  }
  const exit = await run.exited;
  return { ack, exit, uv: /\buv=(yes|no)\b/.exec(loginLine(host, sid8))?.[1], run, sid8 };
}

const matrix: Array<{ policy: keyof typeof hosts; device: 'passkey' | 'plain'; approved: boolean; uv?: 'yes' | 'no'; code?: string; message?: RegExp }> = [
  { policy: 'off', device: 'passkey', approved: true, uv: 'no' },
  { policy: 'off', device: 'plain', approved: true, uv: 'no' },
  { policy: 'preferred', device: 'passkey', approved: true, uv: 'yes' },
  { policy: 'preferred', device: 'plain', approved: true, uv: 'no' },
  { policy: 'required', device: 'passkey', approved: true, uv: 'yes' },
  { policy: 'required', device: 'plain', approved: false, code: 'QRA_ERR_NO_PASSKEY', message: /enrolled without one: enroll it again/ },
];

for (const m of matrix) {
  test.serial(`policy ${m.policy}, device ${m.device === 'passkey' ? 'with' : 'without'} a passkey: ${m.approved ? `logs in (uv=${m.uv})` : 'refused'}`, async (t) => {
    const host = hosts[m.policy];
    const phone = m.device === 'passkey' ? withPasskey : plain;
    const out = await approveOnce(t, host, phone);
    if (m.approved) {
      t.like(out.ack, { ok: true, result: 'approved' });
      t.is(out.exit, 0, out.run.output);
      t.regex(out.run.output, /successfully authenticated/);
      t.is(out.uv, m.uv, loginLine(host, out.sid8));
    } else {
      t.like(out.ack, { ok: false, code: m.code });
      t.regex(out.ack.ok ? '' : out.ack.message, m.message!);
      t.not(out.exit, 0);
      t.notRegex(out.run.output, /successfully authenticated/);
      t.regex(loginLine(host, out.sid8), /result=denied/);
    }
  });
}

test.serial('required: the fingerprint/PIN prompt not passed (UV cleared) is refused with words a person understands; the login stays open and a verified retry logs in', async (t) => {
  const host = hosts.required;
  const { run, payload, sid8, ended } = await startLogin(t, host.service);
  withPasskey.userVerification = false;
  let ack: DecisionAck;
  try {
    ack = await withPasskey.decide(payload, 'approve');
  } finally {
    withPasskey.userVerification = true;
  }
  t.like(ack, { ok: false, code: 'QRA_ERR_USER_VERIFICATION' });
  t.regex(ack.ok ? '' : ack.message, /needs your fingerprint, face or PIN to approve/);
  t.true(host.agent.logs.some((l) => l.startsWith('event=passkey_refused ') && l.includes(`sid=${sid8}`) && l.includes('reason=user_not_verified')));
  t.false(ended(), 'the terminal still waits');
  t.notRegex(run.output, /successfully authenticated/);
  t.like(await withPasskey.decide(payload, 'approve'), { ok: true, result: 'approved' });
  t.is(await run.exited, 0, run.output);
  t.regex(loginLine(host, sid8), /\buv=yes\b.*result=approved/);
});

test.serial('preferred: a passkey phone that skipped the fingerprint/PIN still logs in (UP only), logged uv=no', async (t) => {
  withPasskey.userVerification = false;
  t.teardown(() => (withPasskey.userVerification = true));
  const out = await approveOnce(t, hosts.preferred, withPasskey);
  t.like(out.ack, { ok: true, result: 'approved' });
  t.is(out.exit, 0);
  t.is(out.uv, 'no');
});

test.serial('a copied passkey (sign counter gone backwards) ends the login, and the terminal says why', async (t) => {
  const host = hosts.preferred;
  const auth = withPasskey.authenticator!;
  t.truthy(auth.counter > 1, 'earlier approvals moved the counter');
  const { run, payload, sid8 } = await startLogin(t, host.service);
  const before = auth.counter;
  auth.counter = 0; // the clone's counter starts where the copy was made
  t.teardown(() => (auth.counter = before + 1000));
  const ack = await withPasskey.decide(payload, 'approve');
  t.like(ack, { ok: false, code: 'QRA_ERR_PASSKEY_CLONED' });
  t.not(await run.exited, 0);
  t.regex(run.output, /passkey may have been copied/);
  t.notRegex(run.output, /successfully authenticated/);
  t.true(host.agent.logs.some((l) => l.startsWith('event=passkey_clone_suspected ')));
  t.regex(loginLine(host, sid8), /result=denied/);
});

test.serial('offlineCodes false: a typed code is refused with a message that says so, even a correct one', async (t) => {
  const host = hosts.required;
  const { run, payload, sid8 } = await startLogin(t, host.promptService);
  await run.waitFor(/press Enter/);
  run.type(`${plain.offlineCode(payload)}\n`);
  t.not(await run.exited, 0);
  t.true(run.output.includes(OFFLINE_CODES_OFF_MESSAGE), run.output);
  t.notRegex(run.output, /successfully authenticated/);
  t.regex(loginLine(host, sid8), /how=code result=denied/);
});

test.serial('a hostile relay that strips the assertion, or swaps in one captured from an earlier login, gets nothing approved', async (t) => {
  let mode: 'pass' | 'strip' | 'swap' = 'pass';
  let captured: WebAuthnAssertion | undefined;
  const hostile = await startHostileRelay({
    rewriteAnswer: (_event, answer) => answer,
    rewriteRequest: (event, msg) => {
      if (event !== 'decision' || typeof msg !== 'object' || msg === null) return msg;
      const { assertion, ...rest } = msg as { assertion?: WebAuthnAssertion };
      if (mode === 'pass') {
        captured = assertion ?? captured; // a deny carries none
        return msg;
      }
      if (mode === 'strip') return rest;
      return { ...rest, assertion: captured };
    },
  });
  const phone = await HeadlessPhone.create(join(tmp.path, 'phone-hostile'), 'Alice passkey 2');
  phone.authenticator = new SoftAuthenticator({ origin: APP_ORIGIN });
  t.teardown(() => phone.close());
  const agents: Host[] = [];
  t.teardown(async () => {
    for (const h of agents) await h.agent.close();
    await hostile.close();
  });
  for (const policy of ['preferred', 'required'] as const) {
    const host = await startHost({ userVerification: policy }, hostile.url, [phone]);
    agents.push(host);
    // One genuine approval through the relay, which keeps its assertion.
    mode = 'pass';
    let login = await startLogin(t, host.service);
    t.like(await phone.decide(login.payload, 'approve'), { ok: true, result: 'approved' }, policy);
    t.is(await login.run.exited, 0);
    t.truthy(captured, 'the relay saw an assertion');
    for (const attack of ['strip', 'swap'] as const) {
      mode = attack;
      login = await startLogin(t, host.service);
      const ack = await phone.decide(login.payload, 'approve');
      t.false(ack.ok, `${policy}/${attack}: ${JSON.stringify(ack)}`);
      t.regex(ack.ok ? '' : ack.code, policy === 'required' && attack === 'strip' ? /QRA_ERR_USER_VERIFICATION/ : /QRA_ERR_PASSKEY$/, `${policy}/${attack}`);
      t.false(login.ended(), `${policy}/${attack}: the terminal still waits`);
      mode = 'pass';
      t.like(await phone.decide(login.payload, 'deny'), { ok: true, result: 'denied' });
      t.not(await login.run.exited, 0);
      t.notRegex(login.run.output, /successfully authenticated/);
    }
    const reasons = host.agent.logs.filter((l) => l.startsWith('event=passkey_refused ')).map((l) => /reason=(\w+)/.exec(l)?.[1]);
    t.deepEqual(reasons, [policy === 'required' ? 'user_not_verified' : 'missing', 'wrong_challenge'], policy);
  }
});

test.serial('one host, two PAM lines: sudo with uv=required needs the fingerprint/PIN, ssh without it stays one tap (even on a host set to off)', async (t) => {
  for (const policy of ['off', 'preferred'] as const) {
    const host = hosts[policy];
    const sudo: Host = { ...host, service: installService(host.agent.socket, 'mode=info uv=required') };
    // ssh line: the host's own policy; a phone without a passkey and one that skipped the prompt both log in.
    t.like((await approveOnce(t, host, plain)).ack, { ok: true, result: 'approved' }, `${policy}: ssh, no passkey`);
    withPasskey.userVerification = false;
    try {
      t.like((await approveOnce(t, host, withPasskey)).ack, { ok: true, result: 'approved' }, `${policy}: ssh, no UV`);
      // sudo line: UV required whatever the host says.
      const noUv = await approveOnce(t, sudo, withPasskey);
      t.like(noUv.ack, { ok: false, code: 'QRA_ERR_USER_VERIFICATION' }, `${policy}: sudo, no UV`);
      t.not(noUv.exit, 0);
      t.notRegex(noUv.run.output, /successfully authenticated/);
    } finally {
      withPasskey.userVerification = true;
    }
    const noPasskey = await approveOnce(t, sudo, plain);
    t.like(noPasskey.ack, { ok: false, code: 'QRA_ERR_NO_PASSKEY' }, `${policy}: sudo, no passkey`);
    t.not(noPasskey.exit, 0);
    const verified = await approveOnce(t, sudo, withPasskey);
    t.like(verified.ack, { ok: true, result: 'approved' }, `${policy}: sudo, UV`);
    t.is(verified.exit, 0);
    t.is(verified.uv, 'yes', `${policy}: sudo, UV`);
  }
});
