/**
 * The offline code cannot be brute-forced across sessions (issue #10 item 3): a real brute force
 * through pamtester against the agent as a real process, session after session, until the
 * per-user budget locks the codes; the right code is then refused (with a message), the phone
 * still approves, the lock survives an agent restart, and `qrauth unlock-codes` lifts it. Then
 * the same through a real sshd and ssh client on a pty.
 */
import test from 'ava';
import { once } from 'node:events';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toB64url } from '../protocol/src/index.js';
import { readHostPublicKey } from '../agent/src/host-key.js';
import { startRelay, type Relay } from '../relay/src/server.js';
import { type Daemon, startDaemon } from './support/daemon.js';
import { qrauthCli } from './support/enroll.js';
import { testAgentConfig } from './support/fixtures.js';
import { HeadlessPhone } from './support/phone.js';
import { type PamtesterRun, runPamtester } from './support/pamtester.js';
import { prng, testSeed } from './support/seeded.js';
import { type PtyRun, runInPty } from './support/pty.js';
import { sshArgs, startSshd } from './support/sshd.js';
import { ALICE, BOB, LOGIN_PAYLOAD_RE } from './support/stack.js';
import { MODULE_PATH, ROOT, ensureUser, installPamService, randomName, tempDir } from './support/system.js';

/** The wrong codes come from a fixed seed, printed by each test. */
const SEED = testSeed(0x5eed_c0de);
const LOCKED_RE = /offline codes for \S+ are locked/i;

const seededBytes = prng(SEED);
function wrongCode(right: string): string {
  for (;;) {
    const c = String(seededBytes(4).readUInt32BE(0) % 1e8).padStart(8, '0');
    if (c !== right) return c;
  }
}

interface RealAgent {
  dir: string;
  configPath: string;
  socket: string;
  stateDir: string;
  proc: Daemon;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The agent as its own process (`qrauth-agent --config`), restartable on the same state dir. */
async function realAgent(name: string, extra: Record<string, unknown>): Promise<RealAgent> {
  const dir = tempDir(`qrcb-${name}-`).path;
  mkdirSync(join(dir, 'devices'), { mode: 0o755 });
  const config = {
    ...testAgentConfig(dir),
    expirySeconds: 60,
    ...extra,
  };
  const configPath = join(dir, 'agent.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  const a: RealAgent = {
    dir,
    configPath,
    socket: config.socket,
    stateDir: config.stateDir,
    proc: undefined as unknown as Daemon,
    async start() {
      a.proc = startDaemon([process.execPath, '--import', 'tsx', join(ROOT, 'agent/src/main.ts'), '--config', configPath]);
      await a.proc.waitFor(/event=started/, 30_000);
      // Phone approvals need the agent's link to the relay.
      if (extra.relayUrl) await a.proc.waitFor(/event=relay_link state=up/, 30_000);
    },
    async stop() {
      await a.proc?.stop();
    },
  };
  await a.start();
  return a;
}

const cleanups: Array<() => Promise<void> | void> = [];
test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
});

let relay: Relay;
test.before(async () => {
  ensureUser(ALICE);
  ensureUser(BOB);
  relay = await startRelay({ log: () => {} });
  cleanups.push(() => relay.close());
});

async function phoneFor(agent: RealAgent, user: string, name: string): Promise<HeadlessPhone> {
  const phone = await HeadlessPhone.create(join(agent.dir, `phone-${user}`), name);
  cleanups.push(() => phone.close());
  const { publicKey } = readHostPublicKey(agent.stateDir);
  await phone.trustHost({ hostPub: toB64url(publicKey), hostname: 'test-host', relayUrl: relay.url });
  writeFileSync(join(agent.dir, 'devices', user), `${phone.devicesLine()}\n`, { mode: 0o600 });
  return phone;
}

/** One login that shows a QR (pamtester or ssh): `act` gets the QR payload and the run, which is killed afterwards. */
async function qrLogin<R extends PamtesterRun>(run: R, act: (payload: string, run: R) => Promise<void>) {
  try {
    const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
    await run.waitFor(/press Enter/);
    await act(payload, run);
    return { code: await run.exited, output: run.output };
  } finally {
    run.kill();
  }
}

const pamLogin = (service: string, user: string, act: (payload: string, run: PamtesterRun) => Promise<void>) => qrLogin(runPamtester(service, user), act);

test.serial('a brute force across many pamtester sessions is locked out; phone approvals still work; the lock survives a restart; unlock-codes lifts it', async (t) => {
  t.log(`seed 0x${SEED.toString(16)}`);
  const agent = await realAgent('pt', { relayUrl: relay.url });
  cleanups.push(() => agent.stop());
  const phone = await phoneFor(agent, ALICE, 'Alice phone');
  const svc = randomName('qrauth-pt-cb');
  const pam = installPamService(svc, [`auth required ${MODULE_PATH} socket=${agent.socket} mode=prompt`]);
  cleanups.push(() => pam.remove());

  // The brute force: wrong codes session after session, until something other than "wrong code" comes back.
  let wrong = 0;
  let lockedAfter = -1;
  for (let session = 0; session < 20 && lockedAfter < 0; session++) {
    await pamLogin(svc, ALICE, async (payload, run) => {
      const right = phone.offlineCode(payload);
      for (let i = 0; i < 3; i++) {
        const from = run.output.length;
        run.type(`${wrongCode(right)}\n`);
        wrong++;
        const [seen] = await Promise.race([run.waitFor(/Wrong code, \d|Too many wrong codes|locked/i, 15_000, from), run.exited.then(() => ['exited'])]);
        if (LOCKED_RE.test(run.output.slice(from))) {
          lockedAfter = wrong;
          return;
        }
        if (seen !== undefined && /Too many|exited/.test(seen)) return;
      }
    });
  }
  t.is(lockedAfter, 10, `the default budget (10 wrong codes) locks the codes (seed 0x${SEED.toString(16)})`);

  // The right code is refused while locked, with a message that says why.
  const refused = await pamLogin(svc, ALICE, async (payload, run) => run.type(`${phone.offlineCode(payload)}\n`));
  t.not(refused.code, 0, `the right code logged in while the codes are locked:\n${refused.output}`);
  t.regex(refused.output, LOCKED_RE);
  t.regex(refused.output, /approve on the phone/i);

  // The phone path is not locked.
  const approved = await pamLogin(svc, ALICE, async (payload, run) => {
    t.like(await phone.decide(payload, 'approve'), { ok: true, result: 'approved' });
    run.type('\n'); // prompt mode: Enter after approving
  });
  t.is(approved.code, 0, `a phone approval failed while only the codes are locked:\n${approved.output}`);

  // The lock is on disk (0600) and survives a restart of the agent on the same state dir.
  t.is(statSync(join(agent.stateDir, 'code-budget.json')).mode & 0o777, 0o600);
  await agent.stop();
  await agent.start();
  const afterRestart = await pamLogin(svc, ALICE, async (payload, run) => run.type(`${phone.offlineCode(payload)}\n`));
  t.not(afterRestart.code, 0, `a restart forgot the lock:\n${afterRestart.output}`);
  t.regex(afterRestart.output, LOCKED_RE);

  // root sees the lock, lifts it with the real CLI, and the right code works again.
  const status = qrauthCli(agent.configPath, ['status']);
  t.is(await status.exited, 0, status.output);
  t.regex(status.output, new RegExp(`codes locked.*${ALICE}`));
  const unlock = qrauthCli(agent.configPath, ['unlock-codes', '--user', ALICE]);
  t.is(await unlock.exited, 0, unlock.output);
  const unlocked = await pamLogin(svc, ALICE, async (payload, run) => run.type(`${phone.offlineCode(payload)}\n`));
  t.is(unlocked.code, 0, `the right code after unlock-codes:\n${unlocked.output}`);
});

test.serial('through real sshd: after the budget (3 in this config) the right code is refused with the message', async (t) => {
  t.log(`seed 0x${SEED.toString(16)}`);
  const agent = await realAgent('ssh', { relayUrl: null, codeFailureLimit: 3 });
  cleanups.push(() => agent.stop());
  const phone = await phoneFor(agent, BOB, 'Bob phone');
  const service = randomName('sshd-qracb');
  const pam = installPamService(service, [`auth required ${MODULE_PATH} socket=${agent.socket}`]);
  cleanups.push(() => pam.remove());
  const sshdDir = tempDir('qrcb-sshd-');
  cleanups.push(() => sshdDir.remove());
  const sshd = await startSshd({ dir: sshdDir.path, service });
  cleanups.push(() => sshd.stop());

  const ssh = (act: (payload: string, run: PtyRun) => Promise<void>) => qrLogin(runInPty(sshArgs(sshd.port, BOB, 'echo LOGGED_IN_CB')), act);
  const first = await ssh(async (payload, run) => {
    const right = phone.offlineCode(payload);
    run.type(`${wrongCode(right)}\r`);
    await run.waitFor(/Wrong code, 2 tries left/);
    run.type(`${wrongCode(right)}\r`);
    await run.waitFor(/Wrong code, 1 try left/);
    run.type(`${wrongCode(right)}\r`);
  });
  t.not(first.code, 0);
  const second = await ssh(async (payload, run) => run.type(`${phone.offlineCode(payload)}\r`));
  t.not(second.code, 0, `the right code logged in over ssh while the codes are locked:\n${second.output}`);
  t.false(second.output.includes('LOGGED_IN_CB'));
  t.regex(second.output, LOCKED_RE);
});
