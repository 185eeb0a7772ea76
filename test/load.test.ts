/**
 * Many logins at once, each checked for its own outcome: 200 through the real pamtester
 * (libpam → pam_qrauth.so → agent → relay → phone) and 50 through real sshd and ssh. Approved
 * ones get in, denied and phoneless ones do not, and no login ever gets another's verdict.
 * No timing is asserted: only that every outcome is right.
 */
import test, { type ExecutionContext } from 'ava';
import { once } from 'node:events';
import { toB64url } from '../protocol/src/index.js';
import { type RelayLimits, startRelay, type Relay } from '../relay/src/server.js';
import type { AgentConfig } from '../agent/src/config.js';
import { until } from './support/daemon.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { runPamtester, type PamtesterRun } from './support/pamtester.js';
import { HeadlessPhone } from './support/phone.js';
import { nextMarker, runInPty } from './support/pty.js';
import { prng, testSeed } from './support/seeded.js';
import { sshArgs } from './support/sshd.js';
import { ALICE, BOB, CAROL, LOGIN_PAYLOAD_RE, startStack } from './support/stack.js';
import { MODULE_PATH, ensureUser, installPamService, isRoot, randomName, tempDir } from './support/system.js';

// Each login is two requests to the host through the relay (context, decision); the default
// per-host limit (300 per 10 s, 100 of them from one address) is meant for one real host's
// logins, not a test's burst of 200 from loopback.
const LOAD_LIMITS = { hostEventsPer10s: 10_000, hostEventsPerAddressPer10s: 10_000, deviceEventsPer10s: 10_000 };

/** The order the logins start in comes from this seed (printed; QRAUTH_TEST_SEED replays it). */
const SEED = testSeed(0x10ad_0200);
const seededBytes = prng(SEED);

/**
 * A relay, an agent linked to it, and a PAM service of the module for pamtester (mode=info);
 * every pamtester run pushed to `runs` is killed, and everything removed, when the test ends.
 */
async function pamtesterRig(t: ExecutionContext, name: string, agentConfig: Partial<AgentConfig>, limits?: Partial<RelayLimits>) {
  const tmp = tempDir(`qr-${name}-`);
  const relay: Relay = await startRelay({ log: () => {}, ...(limits ? { limits } : {}) });
  const agent: AgentFixture = await startTestAgent({ relayUrl: relay.url, ...agentConfig }, { noControl: true });
  const service = randomName(`qrauth-pt-${name}`);
  const pam = installPamService(service, [`auth required ${MODULE_PATH} socket=${agent.socket} mode=info`]);
  const runs: PamtesterRun[] = [];
  t.teardown(async () => {
    runs.forEach((r) => r.kill());
    pam.remove();
    await agent.close();
    await relay.close();
    tmp.remove();
  });
  if (!agent.agent.relay!.up) await once(agent.agent.relay!, 'change');
  return { tmp, relay, agent, service, runs };
}

test.serial('200 logins at once through pamtester: each gets exactly its own verdict', async (t) => {
  if (!isRoot()) throw new Error('runs as root (PAM service files, users)');
  for (const u of [ALICE, BOB, CAROL]) ensureUser(u);
  const { tmp, relay, agent, service, runs } = await pamtesterRig(t, 'load', { expirySeconds: 90 }, LOAD_LIMITS);
  const alicePhone = await HeadlessPhone.create(`${tmp.path}/alice`, 'Alice phone');
  const bobPhone = await HeadlessPhone.create(`${tmp.path}/bob`, 'Bob phone');
  t.teardown(async () => {
    await alicePhone.close();
    await bobPhone.close();
  });
  for (const p of [alicePhone, bobPhone]) await p.trustHost({ hostPub: toB64url(agent.agent.host.publicKey), hostname: 'test-host', relayUrl: relay.url });
  agent.setDevices(ALICE, [alicePhone.devicesLine()]);
  agent.setDevices(BOB, [bobPhone.devicesLine()]);

  type Plan = 'approve' | 'deny' | 'wrong phone, then deny' | 'no phone';
  const plans: Array<{ user: string; plan: Plan }> = [
    ...Array.from({ length: 100 }, () => ({ user: ALICE, plan: 'approve' as const })),
    ...Array.from({ length: 50 }, () => ({ user: BOB, plan: 'deny' as const })),
    ...Array.from({ length: 30 }, () => ({ user: ALICE, plan: 'wrong phone, then deny' as const })),
    ...Array.from({ length: 20 }, () => ({ user: CAROL, plan: 'no phone' as const })),
  ];
  // The order the logins start in: shuffled from the printed seed (Fisher-Yates).
  t.log(`seed ${SEED}`);
  for (let i = plans.length - 1; i > 0; i--) {
    const j = seededBytes(4).readUInt32LE(0) % (i + 1);
    [plans[i], plans[j]] = [plans[j]!, plans[i]!];
  }

  const outcomes = await Promise.all(
    plans.map(async ({ user, plan }) => {
      const run = runPamtester(service, user);
      runs.push(run);
      if (plan === 'no phone') return { plan, code: await run.exited, output: run.output, payload: '' };
      const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE, 60_000);
      const own = user === ALICE ? alicePhone : bobPhone;
      if (plan === 'approve') t.like(await own.decide(payload, 'approve'), { ok: true, result: 'approved' });
      if (plan === 'deny') t.like(await own.decide(payload, 'deny'), { ok: true, result: 'denied' });
      if (plan === 'wrong phone, then deny') {
        t.like(await bobPhone.decide(payload, 'approve'), { ok: false, code: 'QRA_ERR_NOT_ENROLLED' });
        t.like(await alicePhone.decide(payload, 'deny'), { ok: true, result: 'denied' });
      }
      return { plan, code: await run.exited, output: run.output, payload };
    }),
  );
  for (const o of outcomes) {
    if (o.plan === 'approve') t.is(o.code, 0, o.output.slice(-300));
    else t.not(o.code, 0, `${o.plan}: ${o.output.slice(-300)}`);
    if (o.plan === 'no phone') t.regex(o.output, /no phone is enrolled/);
    if (o.plan === 'deny' || o.plan === 'wrong phone, then deny') t.regex(o.output, /denied on the phone/i);
  }
  const payloads = outcomes.map((o) => o.payload).filter(Boolean);
  t.is(new Set(payloads).size, payloads.length, 'every login had its own QR');
  t.is(agent.logs.filter((l) => /event=login .*result=approved/.test(l)).length, 100);
  t.false(agent.logs.some((l) => new RegExp(`event=login user=(${BOB}|${CAROL}) .*result=approved`).test(l)));
  t.is(relay.metrics.approvals, 100);
  t.is(agent.agent.sessions.size, 0);
});

test.serial('one caller (PAM_RUSER, as su and sudo set it) holds at most maxConnectionsPerCaller waiting logins; other callers and logins without one keep theirs', async (t) => {
  if (!isRoot()) throw new Error('runs as root (PAM service files, users)');
  ensureUser(ALICE);
  const { tmp, relay, agent, service, runs } = await pamtesterRig(t, 'caller', { expirySeconds: 60, maxConnectionsPerCaller: 3 });
  const phone = await HeadlessPhone.create(`${tmp.path}/alice`, 'Alice phone');
  t.teardown(() => phone.close());
  await phone.trustHost({ hostPub: toB64url(agent.agent.host.publicKey), hostname: 'test-host', relayUrl: relay.url });
  agent.setDevices(ALICE, [phone.devicesLine()]);
  const start = (ruser?: string) => {
    const run = runPamtester(service, ALICE, ruser ? { items: [`ruser=${ruser}`] } : {});
    runs.push(run);
    return run;
  };

  // mallory (a local user running `su alice` over and over) fills her share: three QRs, left waiting.
  const mallory = [start('mallory'), start('mallory'), start('mallory')];
  await Promise.all(mallory.map((r) => r.waitFor(LOGIN_PAYLOAD_RE, 30_000)));
  const fourth = start('mallory');
  t.not(await fourth.exited, 0, fourth.output);
  t.regex(fourth.output, /too many of your logins are waiting for approval/);
  t.notRegex(fourth.output, LOGIN_PAYLOAD_RE, 'no QR for the one over her share');
  t.true(agent.logs.some((l) => /^event=login user=\S+ .*ruser=mallory .*result=error cause="too many logins waiting from this caller"/.test(l)), agent.logs.join('\n'));

  // Another caller and a login that names none (sshd's) still get their QR, and are approved.
  for (const other of [start('bob'), start()]) {
    const [payload] = await other.waitFor(LOGIN_PAYLOAD_RE, 30_000);
    t.like(await phone.decide(payload!, 'approve'), { ok: true, result: 'approved' });
    t.is(await other.exited, 0, other.output.slice(-300));
  }
  // One of mallory's logins goes away (su interrupted): its place is hers again.
  mallory[0]!.kill();
  await mallory[0]!.exited;
  await until(() => agent.logs.some((l) => /result=cancelled/.test(l)), 10_000);
  const again = start('mallory');
  const [payload] = await again.waitFor(LOGIN_PAYLOAD_RE, 30_000);
  t.like(await phone.decide(payload!, 'approve'), { ok: true, result: 'approved' });
  t.is(await again.exited, 0, again.output.slice(-300));
});

test.serial('50 ssh logins at once through real sshd: approved ones get a shell, denied ones do not', async (t) => {
  if (!isRoot()) throw new Error('runs as root (sshd, users)');
  const stack = await startStack({ agent: { expirySeconds: 90 }, relayOptions: { log: () => {}, limits: LOAD_LIMITS } });
  const runs: Array<ReturnType<typeof runInPty>> = [];
  t.teardown(async () => {
    runs.forEach((r) => r.kill());
    await stack.close();
  });
  const plans = Array.from({ length: 50 }, (_, i) => (i % 5 === 4 ? 'deny' : 'approve'));
  const outcomes = await Promise.all(
    plans.map(async (plan, i) => {
      const marker = nextMarker(`LOAD_OK_${i}`);
      const run = runInPty(sshArgs(stack.sshd.port, ALICE, `echo ${marker}`));
      runs.push(run);
      const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE, 60_000);
      await run.waitFor(/press Enter/, 60_000);
      run.type('\r'); // Enter first: the module waits for the phone
      const ack = await stack.phone.decide(payload, plan === 'approve' ? 'approve' : 'deny');
      t.like(ack, { ok: true }, JSON.stringify(ack));
      const code = await run.exited;
      return { plan, code, marker, output: run.output };
    }),
  );
  for (const o of outcomes) {
    const shell = o.output.includes(o.marker);
    if (o.plan === 'approve') {
      t.true(shell, o.output.slice(-400));
      t.is(o.code, 0);
    } else {
      t.false(shell);
      t.not(o.code, 0);
      t.regex(o.output, /Permission denied/);
    }
  }
  // Every shell printed its own marker only: no login ran another's command.
  const crossed = outcomes.filter((o) => outcomes.some((other) => other !== o && o.output.includes(other.marker)));
  t.deepEqual(crossed, []);
  t.is(stack.agent.logs.filter((l) => /event=login .*how=phone result=approved/.test(l)).length, 40);
  t.is(stack.agent.logs.filter((l) => /event=login .*how=phone result=denied/.test(l)).length, 10);
});
