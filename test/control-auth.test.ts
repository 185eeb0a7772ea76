/**
 * The control socket knows who calls: two real local users (alice, bob) run a real client as
 * themselves (`runuser`), and the agent decides by the uid their proof shows. Issue #10 item 5.
 */
import test from 'ava';
import { chownSync, chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { ControlClient } from '../agent/src/control-client.js';
import { type Daemon, run, startDaemon } from './support/daemon.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { HeadlessPhone } from './support/phone.js';
import { qrauthCli } from './support/enroll.js';
import { freePort } from './support/sshd.js';
import { ALICE, BOB } from './support/stack.js';
import { prng, testSeed } from './support/seeded.js';
import { ROOT, ensureUser, tempDir } from './support/system.js';

const tmp = tempDir('qrca-');
let f: AgentFixture;
let bobUid: number;
let bobDevice: string;
const LAST_USED = new Date('2024-05-06T07:08:09.000Z');

test.before(async () => {
  ensureUser(ALICE);
  bobUid = ensureUser(BOB).uid;
  // A relay URL is needed to open enrollments; nothing is listening there, nothing needs to be.
  f = await startTestAgent({ relayUrl: `http://127.0.0.1:${await freePort()}` });
  const phone = await HeadlessPhone.create(join(tmp.path, 'bob-phone'), 'Bob phone');
  f.setDevices(BOB, [phone.devicesLine()]);
  bobDevice = phone.deviceId;
  f.agent.lastUsed.record(bobDevice, LAST_USED);
  await phone.close();
});
test.after.always(async () => {
  await f?.close();
  tmp.remove();
});

const CALL = [process.execPath, '--import', 'tsx', join(ROOT, 'test/support/control-call.ts')];
const socket = () => f.agent.config.controlSocket;

/** Run control-call.ts as `user`; its JSON lines. */
async function callAs(user: string, args: string[]): Promise<Array<Record<string, unknown>>> {
  const r = await run(['runuser', '-u', user, '--', ...CALL, ...args], { timeoutMs: 30_000 });
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
const replies = (lines: Array<Record<string, unknown>>) => lines.filter((l) => 'reply' in l).map((l) => l.reply as Record<string, unknown>);
/** Whether the agent logged an enrollment opened for `user` since log line `since`. */
const enrollOpenedFor = (user: string, since = 0) => f.logs.slice(since).some((l) => l.startsWith('event=enroll_open ') && l.includes(` user=${user} `));

function holdAs(user: string, args: string[]): Daemon {
  return startDaemon(['runuser', '-u', user, '--', ...CALL, ...args], { stdin: 'pipe' });
}

test.serial('a user cannot open an enrollment for another user: refused, nothing opened', async (t) => {
  const lines = await callAs(ALICE, ['call', socket(), JSON.stringify({ op: 'enroll', user: BOB })]);
  const got = replies(lines);
  t.false(
    got.some((r) => r.event === 'open'),
    `alice must not get bob's enrollment code: ${JSON.stringify(lines)}`,
  );
  t.false(enrollOpenedFor(BOB), 'no enrollment was opened for bob');
  t.true(
    got.some((r) => r.ok === false && r.code === 'QRA_ERR_FORBIDDEN'),
    JSON.stringify(lines),
  );
  // The same user for herself: allowed (the check is not simply "refuse everyone").
  const own = replies(await callAs(ALICE, ['call', socket(), JSON.stringify({ op: 'enroll', user: ALICE })]));
  t.true(
    own.some((r) => r.event === 'open'),
    JSON.stringify(own),
  );
});

test.serial("a user cannot read another user's last-used times; the owner can", async (t) => {
  const when = LAST_USED.toISOString();
  for (const req of [
    { op: 'last-used', deviceIds: [bobDevice] },
    { op: 'last-used', user: BOB, deviceIds: [bobDevice] },
  ]) {
    const lines = await callAs(ALICE, ['call', socket(), JSON.stringify(req)]);
    t.false(JSON.stringify(lines).includes(when), `alice read bob's last-used time with ${JSON.stringify(req)}: ${JSON.stringify(lines)}`);
  }
  const own = replies(await callAs(BOB, ['call', socket(), JSON.stringify({ op: 'last-used', deviceIds: [bobDevice] })]));
  t.deepEqual(own[0], { ok: true, lastUsed: { [bobDevice]: when } });
});

test.serial("one user holding many connections does not stop root's qrauth status", async (t) => {
  const hold = holdAs(ALICE, ['hold', socket(), '100']);
  t.teardown(() => hold.stop());
  await hold.waitFor(/"holding":true/, 30_000);
  for (let i = 0; i < 3; i++) {
    const status = qrauthCli(f.configPath, ['status']);
    t.teardown(() => status.kill());
    const code = await status.exited;
    t.is(code, 0, `root's qrauth status failed while alice holds connections (try ${i + 1}):\n${status.output}`);
    t.regex(status.output, /running/);
  }
});

test.serial('one user cannot take every enrollment slot: root still opens one for another user', async (t) => {
  const hold = holdAs(ALICE, ['enroll-hold', socket(), '40', ALICE]);
  t.teardown(() => hold.stop());
  const [line] = await hold.waitFor(/\{"opened":\d+,"refused":\d+\}/, 30_000);
  const { opened } = JSON.parse(line!) as { opened: number };
  t.true(opened < 32, `alice alone opened ${opened} enrollments`);
  const root = await ControlClient.connect(socket());
  t.teardown(() => root.close());
  const r = (await root.request({ op: 'enroll', user: BOB })) as { ok: boolean; event?: string; message?: string };
  t.is(r.event, 'open', `root could not open an enrollment for bob: ${JSON.stringify(r)}`);
});

test.serial('a forged proof of identity is refused: a hard link, a renamed file, a symlink, a wrong token', async (t) => {
  for (const how of ['hardlink', 'rename', 'symlink', 'wrong-token']) {
    // A file of bob's that alice can write (world-writable, in a directory alice can write).
    const dir = join(tmp.path, `victim-${how}`);
    mkdirSync(dir, { mode: 0o777 });
    chmodSync(dir, 0o777);
    const victim = join(dir, 'notes');
    writeFileSync(victim, 'bob\n');
    chownSync(victim, bobUid, bobUid);
    chmodSync(victim, 0o666);
    const since = f.logs.length;
    const lines = await callAs(ALICE, ['forge', socket(), how, victim, JSON.stringify({ op: 'enroll', user: BOB })]);
    t.false(
      lines.some((l) => 'forgeError' in l),
      `${how}: the forgery itself must succeed as alice, or this proves nothing: ${JSON.stringify(lines)}`,
    );
    const got = replies(lines);
    t.log(how, (got.find((r) => r.ok === false)?.message as string | undefined) ?? '');
    t.false(
      got.some((r) => r.event === 'open'),
      `${how}: a forged proof got bob's enrollment: ${JSON.stringify(lines)}`,
    );
    t.false(enrollOpenedFor(BOB, since), `${how}: no enrollment was opened for bob`);
    t.true(
      got.some((r) => r.ok === false && r.code === 'QRA_ERR_UNAUTHENTICATED'),
      `${how}: ${JSON.stringify(lines)}`,
    );
  }
});

test.serial('a connection that never proves who it is gets nothing and is cut off', async (t) => {
  const lines = await callAs(ALICE, ['forge', socket(), 'silent', '/nonexistent', JSON.stringify({ op: 'status' })]);
  t.false(
    replies(lines).some((r) => r.ok === true && 'version' in r),
    `status answered without a proof: ${JSON.stringify(lines)}`,
  );
});

test.serial('garbage before and after the proof ends only that connection; the agent keeps answering', async (t) => {
  const seed = testSeed(0x5eed10);
  const rand = prng(seed);
  const raw = async (proveFirst: boolean, blob: Buffer) => {
    const c = proveFirst ? await ControlClient.connect(socket()) : null;
    const s = c ? c.sock : connect(socket());
    await new Promise<void>((resolve) => {
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.write(blob, () => undefined);
      // Half the blobs end with a newline (a complete "request"), half are left hanging.
      setTimeout(() => s.destroy(), 50).unref();
    });
  };
  const hostile = [
    Buffer.from('{"op":"proved"}\n'),
    Buffer.from('{"op":"enroll","user":{"__proto__":{"x":1}}}\n'),
    Buffer.from('{"op":"last-used","deviceIds":null}\n'),
    Buffer.from('[]\nnull\n1e309\n"\\ud800"\n'),
    Buffer.from(`${'{'.repeat(10_000)}\n`),
    Buffer.alloc(40_000, 0x41),
  ];
  for (let i = 0; i < 120; i++) {
    const blob = i < hostile.length ? hostile[i]! : Buffer.concat([rand(1 + (rand(2).readUInt16BE(0) % 3000)), Buffer.from(i % 2 ? '\n' : '')]);
    await raw(i % 3 === 0, blob);
  }
  const c = await ControlClient.connect(socket());
  const s = (await c.request({ op: 'status' })) as { ok?: boolean; version?: string };
  c.close();
  t.true(s.ok === true && typeof s.version === 'string', `status after the garbage (seed ${seed}): ${JSON.stringify(s)}`);
  t.false(
    f.logs.some((l) => l.startsWith('event=internal_error ') || l.startsWith('event=fatal ')),
    `no handler failed (seed ${seed}): ${f.logs.filter((l) => l.includes('internal_error')).join('\n')}`,
  );
});
