/**
 * The control socket knows who calls: two real local users (alice, bob) run a real client as
 * themselves (`runuser`), and the agent decides by the uid their proof shows. Issue #10 item 5.
 */
import test, { type ExecutionContext } from 'ava';
import fs, { chownSync, chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { type Socket, connect } from 'node:net';
import { join } from 'node:path';
import { ControlClient } from '../agent/src/control-client.js';
import { CONTROL_MAX_UNSENT, ControlServer } from '../agent/src/control-server.js';
import { readDevicesFile } from '../agent/src/devices-file.js';
import { formatLog } from '../agent/src/log.js';
import { type Daemon, run, startDaemon, until } from './support/daemon.js';
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

/**
 * A client that proves who it is, then sends status requests in batches of 8, each batch only
 * once the agent has read everything sent so far (SIOCOUTQ == 0, so no read of the agent holds
 * 16 requests, the old per-read limit), and never reads a reply. The security review's PoC,
 * bounded: it stops after <total> requests, <seconds> seconds, when the agent has left a batch
 * unread for a second ("stalled") or when the agent closes. Then it holds the connection open
 * until stdin closes, so the test can look at the agent while the flood's state is still there.
 */
const FLOOD_PY = String.raw`
import fcntl, json, os, socket, struct, sys, termios, time
path, total, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path)
f = s.makefile('rb')
m = json.loads(f.readline())
fd = os.open(os.path.join(os.path.dirname(path), 'cred', m['name']), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
os.fchmod(fd, 0o644); os.write(fd, m['token'].encode()); os.close(fd)
s.sendall(b'{"op":"proved"}\n')
print(json.dumps({'caller': json.loads(f.readline())}), flush=True)
outq = lambda: struct.unpack('i', fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b'\0\0\0\0'))[0]
batch = b'{"op":"status"}\n' * 8
sent, ended, t0 = 0, 'done', time.time()
try:
    while sent < total:
        if time.time() - t0 > limit:
            ended = 'time'; break
        w = time.time()
        while outq() > 0 and time.time() - w < 1.0: time.sleep(0.0002)
        if outq() > 0:
            ended = 'stalled'; break
        s.sendall(batch); sent += len(batch) // 16
except OSError as e:
    ended = 'closed'
print(json.dumps({'flood': {'sent': sent, 'ended': ended, 'seconds': round(time.time() - t0, 2)}}), flush=True)
sys.stdin.read()
`;

test.serial('a client that sends status requests and never reads the replies cannot fill the agent: its unread output stays bounded, others are still answered (review: control-socket flood)', async (t) => {
  const control = f.agent.control!;
  // The agent's side of every control connection from now on: what it holds unsent for each.
  const conns = new Set<Socket>();
  const onConnection = (s: Socket) => conns.add(s);
  control.server.on('connection', onConnection);
  t.teardown(() => control.server.off('connection', onConnection));
  let maxUnsent = 0;
  const sample = () => {
    for (const s of conns) maxUnsent = Math.max(maxUnsent, s.writableLength);
  };
  const sampler = setInterval(sample, 5);
  t.teardown(() => clearInterval(sampler));
  const since = f.logs.length;
  const memBefore = process.memoryUsage();

  const flood = startDaemon(['runuser', '-u', ALICE, '--', 'python3', '-c', FLOOD_PY, socket(), '200000', '10'], { stdin: 'pipe' });
  t.teardown(() => flood.stop());
  await flood.waitFor(/"caller"/, 10_000);
  const [line] = await flood.waitFor(/\{"flood": .*\}/, 30_000);
  sample();
  const { sent, ended, seconds } = (JSON.parse(line!) as { flood: { sent: number; ended: string; seconds: number } }).flood;
  const memAfter = process.memoryUsage();
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  t.log(`flood: ${sent} requests in ${seconds} s, ended: ${ended}; most output the agent held unsent for one connection: ${(maxUnsent / 1024).toFixed(1)} KiB`);
  t.log(`agent process: rss ${mib(memBefore.rss)} -> ${mib(memAfter.rss)}, heapUsed ${mib(memBefore.heapUsed)} -> ${mib(memAfter.heapUsed)}`);
  t.true(maxUnsent < 256 * 1024, `the agent held ${mib(maxUnsent)} of unread replies for one client (${sent} requests sent)`);
  t.true(ended === 'stalled' || ended === 'closed', `the agent kept reading a client that reads nothing (${sent} requests, ended: ${ended})`);

  // While the flooding connection is still open: another user's status is answered.
  const bob = replies(await callAs(BOB, ['call', socket(), JSON.stringify({ op: 'status' })]));
  t.true(
    bob.some((r) => r.ok === true && typeof r.version === 'string'),
    `bob's status during the flood: ${JSON.stringify(bob)}`,
  );
  flood.child.stdin!.end();
  await flood.exited;
  // The agent lets go of the flood's connection, and still answers.
  await until(() => [...conns].every((s) => s.destroyed), 5000, 'the agent closed its side of the flood');
  const c = await ControlClient.connect(socket());
  const s = (await c.request({ op: 'status' })) as { ok?: boolean; version?: string };
  c.close();
  t.true(s.ok === true && typeof s.version === 'string', JSON.stringify(s));
  t.false(
    f.logs.slice(since).some((l) => l.startsWith('event=internal_error ') || l.startsWith('event=fatal ')),
    f.logs.slice(since).filter((l) => l.includes('internal_error')).join('\n'),
  );
});

test.serial('a reply larger than the unsent-output cap ends that connection with one log line; the server keeps answering', async (t) => {
  // Backpressure stops reading long before this; only one huge reply gets past the cap. A control
  // server whose status is 2 MiB (a host name no config allows) stands in for one.
  const logs: string[] = [];
  const huge = 'h'.repeat(2 * CONTROL_MAX_UNSENT);
  let big = true;
  const server = new ControlServer({
    status: () => ({ ok: true, version: 'test', hostId: 'test', hostname: big ? huge : 'small', relay: { url: null, state: 'none' }, pendingLogins: 0, openEnrollments: 0, uptimeSeconds: 0 }),
    enrollments: f.agent.enrollments,
    hostPub: f.agent.host.publicKey,
    hostname: 'test',
    relayUrl: null,
    lastUsed: () => undefined,
    deviceIdsOf: () => [],
    codeLocks: () => [],
    codeStateDamaged: () => null,
    unlockCodes: () => false,
    unlockAllCodes: () => undefined,
    log: (event, fields) => logs.push(formatLog(event, fields)),
  });
  const path = join(tmp.path, 'capped', 'control.sock');
  await server.listen(path);
  t.teardown(() => server.close());
  const c = await ControlClient.connect(path);
  t.teardown(() => c.close());
  c.sock.pause(); // a client that reads nothing more
  c.send({ op: 'status' });
  await until(() => logs.some((l) => l.startsWith('event=control_dropped ')), 10_000, 'the connection dropped');
  const closed = new Promise<void>((resolve) => c.sock.once('close', () => resolve()));
  c.sock.resume();
  await closed; // the agent's side is gone: the client reads its end
  const dropped = logs.filter((l) => l.startsWith('event=control_dropped '));
  t.is(dropped.length, 1, logs.join('\n'));
  t.regex(dropped[0]!, /^event=control_dropped uid=0 cause="replies not read" unsent=\d+$/);
  big = false;
  const again = await ControlClient.connect(path);
  const r = (await again.request({ op: 'status' })) as { ok?: boolean; hostname?: string };
  again.close();
  t.like(r, { ok: true, hostname: 'small' });
});

test.serial("terminal escapes in a user's devices file do not reach the admin's terminal through qrauth devices --user (review: problem messages)", async (t) => {
  // alice writes her own ~/.config/qrauth/devices (as she can); root lists her phones.
  const alice = ensureUser(ALICE);
  const cfgDir = await aliceQrauthDir(t);
  const file = join(cfgDir, 'devices');
  await run(['runuser', '-u', ALICE, '--', 'mkdir', '-m', '0700', cfgDir]);
  const phone = await HeadlessPhone.create(join(tmp.path, 'alice-phone'), 'Alice phone');
  const good = phone.devicesLine();
  await phone.close();
  // An option word (it has a "=") carrying OSC (set the window title), BEL, CSI (clear the
  // screen), a C1 CSI and a bidi override: the parser quotes it back in its problem message.
  const evil = good.replace(/^(ed25519 \S+ \S+) /, '$1 x\u001b]0;pwned\u0007=\u001b[2J\u009b31m\u202eevil ');
  t.not(evil, good);
  writeFileSync(file, `${evil}\n`, { mode: 0o600 });
  chownSync(file, alice.uid, alice.gid);
  const cfg = JSON.parse(readFileSync(f.configPath, 'utf8')) as Record<string, unknown>;
  const cfgPath = join(tmp.path, 'agent-home-devices.json');
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, authfile: '~/.config/qrauth/devices' }));
  const r = await run([process.execPath, '--import', 'tsx', join(ROOT, 'agent/src/cli.ts'), '--config', cfgPath, 'devices', '--user', ALICE], { timeoutMs: 30_000 });
  t.log(JSON.stringify(r.stderr));
  t.regex(r.stderr, /option .*is not name=value/, 'the line is reported as a problem');
  // eslint-disable-next-line no-control-regex
  const controls = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
  t.false(controls.test(r.stderr), `control characters on stderr: ${JSON.stringify(r.stderr)}`);
  t.false(controls.test(r.stdout), `control characters on stdout: ${JSON.stringify(r.stdout)}`);
});

/** alice's ~/.config/qrauth for one test: whatever is there is set aside, and put back after. */
async function aliceQrauthDir(t: ExecutionContext): Promise<string> {
  const alice = ensureUser(ALICE);
  const config = join(alice.home, '.config');
  const dir = join(config, 'qrauth');
  const madeConfig = !existsSync(config);
  let present = true;
  try {
    lstatSync(dir);
  } catch {
    present = false;
  }
  const aside = present ? `${dir}.qrca-aside` : null;
  if (aside) await run(['mv', dir, aside]);
  t.teardown(async () => {
    rmSync(dir, { recursive: true, force: true });
    if (aside) await run(['mv', aside, dir]);
    if (madeConfig) rmSync(config, { recursive: true, force: true });
  });
  await run(['runuser', '-u', ALICE, '--', 'mkdir', '-p', config]);
  return dir;
}

test.serial("a user's ~/.config/qrauth symlinked into root's directory does not reveal root's devices or their last use, nor the file's metadata (review: last-used through a directory symlink)", async (t) => {
  // An agent whose devices files are in the users' homes (the default layout).
  const home = await startTestAgent({ authfile: '~/.config/qrauth/devices' });
  t.teardown(() => home.close());
  const alice = ensureUser(ALICE);
  // Root's own devices, in a 0700 directory alice cannot enter.
  const rootOnly = tempDir('qrca-rootonly-');
  t.teardown(() => rootOnly.remove());
  chmodSync(rootOnly.path, 0o700);
  const rootPhone = await HeadlessPhone.create(join(tmp.path, 'root-phone'), 'Root phone');
  const rootFile = join(rootOnly.path, 'devices');
  writeFileSync(rootFile, `${rootPhone.devicesLine()}\n`, { mode: 0o600 });
  const rootDevice = rootPhone.deviceId;
  await rootPhone.close();
  const when = new Date('2023-04-05T06:07:08.000Z');
  home.agent.lastUsed.record(rootDevice, when);

  // alice: ~/.config/qrauth -> the root-only directory (what she can do with her own home).
  const link = await aliceQrauthDir(t);
  await run(['runuser', '-u', ALICE, '--', 'ln', '-s', rootOnly.path, link]);
  const cat = await run(['runuser', '-u', ALICE, '--', 'cat', join(link, 'devices')]);
  t.not(cat.code, 0, 'alice herself cannot read the file through her link (else this proves nothing)');

  const ask = async () => callAs(ALICE, ['call', home.agent.config.controlSocket, JSON.stringify({ op: 'last-used', deviceIds: [rootDevice] })]);
  const lines = await ask();
  t.log(JSON.stringify(replies(lines)));
  t.false(JSON.stringify(lines).includes(when.toISOString()), `alice learned when root's phone last approved: ${JSON.stringify(lines)}`);
  t.false(
    replies(lines).some((r) => r.ok === true && (r.lastUsed as Record<string, unknown> | undefined)?.[rootDevice] != null),
    JSON.stringify(lines),
  );

  // Damaged root-only files: what is wrong with them is not alice's to learn.
  const metadata = /writable|regular file|64 KiB|owned by|symbolic link|qrca-rootonly|\/devices/;
  for (const [what, damage] of [
    ['group-writable', () => chmodSync(rootFile, 0o620)],
    ['over 64 KiB', () => writeFileSync(rootFile, `${'#'.repeat(70 * 1024)}\n`, { mode: 0o600 })],
    ['a directory', () => {
      rmSync(rootFile, { force: true });
      mkdirSync(rootFile, { mode: 0o700 });
    }],
  ] as const) {
    damage();
    const got = replies(await ask());
    t.log(what, JSON.stringify(got));
    const text = got.map((r) => String(r.message ?? '')).join('\n');
    t.false(metadata.test(text), `${what}: the reply tells alice about a file she cannot read: ${JSON.stringify(got)}`);
    t.false(JSON.stringify(got).includes(when.toISOString()), what);
  }

  t.true(home.logs.some((l) => l.startsWith('event=devices_file_refused ') && l.includes('uid=')), 'the cause goes to the log');

  // Her own real directory and file still work: the owner gets her phone's time.
  rmSync(link, { recursive: true, force: true });
  const own = await HeadlessPhone.create(join(tmp.path, 'alice-own-phone'), 'Alice own');
  await run(['runuser', '-u', ALICE, '--', 'mkdir', '-m', '0700', link]);
  writeFileSync(join(link, 'devices'), `${own.devicesLine()}\n`, { mode: 0o600 });
  chownSync(join(link, 'devices'), alice.uid, alice.gid);
  const ownDevice = own.deviceId;
  await own.close();
  const ownWhen = new Date('2022-03-04T05:06:07.000Z');
  home.agent.lastUsed.record(ownDevice, ownWhen);
  const mine = replies(await callAs(ALICE, ['call', home.agent.config.controlSocket, JSON.stringify({ op: 'last-used', deviceIds: [ownDevice, rootDevice] })]));
  t.deepEqual(mine[0], { ok: true, lastUsed: { [ownDevice]: ownWhen.toISOString(), [rootDevice]: null } });
});

/** What the last-used refusals above must not tell a user about a file. */
const FILE_METADATA = /writable|regular file|64 KiB|owned by|symbolic link|too many|\/devices|\/home\//;

/** The one reply to a refused last-used: the generic devices-file error, with nothing of the file or its devices. */
function assertRefused(t: ExecutionContext, got: Array<Record<string, unknown>>, what: string, leaks: string[]): void {
  t.is(got.length, 1, `${what}: one reply: ${JSON.stringify(got)}`);
  t.like(got[0], { ok: false, code: 'QRA_ERR_DEVICES_FILE' }, what);
  t.false(got[0] !== undefined && 'lastUsed' in got[0], `${what}: no lastUsed in a refusal: ${JSON.stringify(got)}`);
  t.false(FILE_METADATA.test(String(got[0]?.message ?? '')), `${what}: the reply describes the file: ${JSON.stringify(got)}`);
  for (const leak of leaks) t.false(JSON.stringify(got).includes(leak), `${what}: the reply holds ${leak}: ${JSON.stringify(got)}`);
}

test.serial("a user's devices file that is itself a symlink is refused for last-used as a login refuses it, even to a file she may read (review: the walk followed the last link)", async (t) => {
  const home = await startTestAgent({ authfile: '~/.config/qrauth/devices' });
  t.teardown(() => home.close());
  const sock = home.agent.config.controlSocket;
  const alice = ensureUser(ALICE);
  const dir = await aliceQrauthDir(t);
  await run(['runuser', '-u', ALICE, '--', 'mkdir', '-m', '0700', dir]);
  const phone = await HeadlessPhone.create(join(tmp.path, 'alice-linked-phone'), 'Alice linked');
  const line = `${phone.devicesLine()}\n`;
  const device = phone.deviceId;
  await phone.close();
  const real = join(dir, 'devices.real');
  writeFileSync(real, line, { mode: 0o600 });
  chownSync(real, alice.uid, alice.gid);
  const file = join(dir, 'devices');
  await run(['runuser', '-u', ALICE, '--', 'ln', '-s', 'devices.real', file]);
  const cat = await run(['runuser', '-u', ALICE, '--', 'cat', file]);
  t.is(cat.stdout, line, 'alice can read her file through the link herself: the refusal is for the link, not for her rights');
  const when = new Date('2021-02-03T04:05:06.000Z');
  home.agent.lastUsed.record(device, when);

  // The login reads as root with O_NOFOLLOW; a read limited to alice must refuse the same file.
  const user = { name: ALICE, uid: alice.uid, home: alice.home };
  t.throws(() => readDevicesFile(file, user), { code: 'QRA_ERR_DEVICES_FILE', message: /symbolic link/ }, 'the login refuses it');
  t.throws(() => readDevicesFile(file, { ...user, onlyAs: { uid: alice.uid, gid: alice.gid } }), { code: 'QRA_ERR_DEVICES_FILE', message: /symbolic link/ }, 'so does the read as alice');

  const ask = async () => replies(await callAs(ALICE, ['call', sock, JSON.stringify({ op: 'last-used', deviceIds: [device] })]));
  const since = home.logs.length;
  const linked = await ask();
  t.log('linked', JSON.stringify(linked));
  assertRefused(t, linked, 'the file a symlink', [when.toISOString(), device]);
  t.true(
    home.logs.slice(since).some((l) => l.startsWith('event=devices_file_refused ') && l.includes(`uid=${alice.uid} `) && l.includes('symbolic link')),
    home.logs.slice(since).join('\n'),
  );

  // The same answer as any other refusal (here: a group-writable file in the link's place).
  rmSync(file);
  writeFileSync(file, line, { mode: 0o620 });
  chmodSync(file, 0o620);
  chownSync(file, alice.uid, alice.gid);
  t.deepEqual(linked, await ask(), 'a symlinked file gets the reply any refused file gets');
  // The same file, safe and not a link: alice gets her phone's time (the check above refused the link, not her).
  chmodSync(file, 0o600);
  t.deepEqual(await ask(), [{ ok: true, lastUsed: { [device]: when.toISOString() } }]);
});

test.serial('a symlink loop in the path to a devices file gets last-used the generic refusal, the file itself or directories on the way', async (t) => {
  const home = await startTestAgent({ authfile: '~/.config/qrauth/devices' });
  t.teardown(() => home.close());
  const sock = home.agent.config.controlSocket;
  const dir = await aliceQrauthDir(t);
  const loops = join(tmp.path, 'loops');
  mkdirSync(loops, { mode: 0o755 });
  chmodSync(loops, 0o755);
  const device = bobDevice; // any id with a time on record: a refusal must not carry it
  home.agent.lastUsed.record(device, LAST_USED);
  const ask = async () => replies(await callAs(ALICE, ['call', sock, JSON.stringify({ op: 'last-used', deviceIds: [device] })]));

  // The file a link to itself.
  await run(['runuser', '-u', ALICE, '--', 'mkdir', '-m', '0700', dir]);
  await run(['runuser', '-u', ALICE, '--', 'ln', '-s', 'devices', join(dir, 'devices')]);
  assertRefused(t, await ask(), 'devices -> devices', [LAST_USED.toISOString()]);

  // ~/.config/qrauth -> loops/a -> loops/b -> loops/a: absolute links between directories, past the walk's limit.
  rmSync(dir, { recursive: true, force: true });
  symlinkSync(join(loops, 'b'), join(loops, 'a'));
  symlinkSync(join(loops, 'a'), join(loops, 'b'));
  await run(['runuser', '-u', ALICE, '--', 'ln', '-s', join(loops, 'a'), dir]);
  const since = home.logs.length;
  assertRefused(t, await ask(), 'qrauth -> a -> b -> a', [LAST_USED.toISOString()]);
  t.true(
    home.logs.slice(since).some((l) => l.startsWith('event=devices_file_refused ') && l.includes('too many symbolic links')),
    home.logs.slice(since).join('\n'),
  );

  // The agent still answers alice after both.
  const status = replies(await callAs(ALICE, ['call', sock, JSON.stringify({ op: 'status' })]));
  t.true(
    status.some((r) => r.ok === true),
    JSON.stringify(status),
  );
});

type FsCall = 'openSync' | 'closeSync' | 'lstatSync' | 'readlinkSync' | 'fstatSync' | 'readSync';
const FAULTABLE: Array<Exclude<FsCall, 'closeSync'>> = ['openSync', 'lstatSync', 'readlinkSync', 'fstatSync', 'readSync'];
const fsCalls = fs as unknown as Record<FsCall, (...args: unknown[]) => unknown>;
const sorted = (fds: number[]) => [...fds].sort((a, b) => a - b);

/**
 * Run `body` with the nth call to `failing` (node:fs) throwing (EMFILE for an open, EIO for the
 * rest), and every descriptor opened and closed counted. The agent's named imports of node:fs
 * follow syncBuiltinESMExports; all is put back before this returns (body is synchronous).
 */
function withFsFault(failing: Exclude<FsCall, 'closeSync'>, nth: number, body: () => unknown): { opened: number[]; closed: number[]; injected: boolean; error: unknown } {
  const saved = Object.fromEntries([...FAULTABLE, 'closeSync'].map((name) => [name, fsCalls[name as FsCall]])) as typeof fsCalls;
  const opened: number[] = [];
  const closed: number[] = [];
  let calls = 0;
  let injected = false;
  for (const name of FAULTABLE) {
    const call = saved[name];
    fsCalls[name] = (...args) => {
      if (name === failing && ++calls === nth) {
        injected = true;
        throw Object.assign(new Error(`${name}: injected failure`), { code: name === 'openSync' ? 'EMFILE' : 'EIO' });
      }
      const r = call(...args);
      if (name === 'openSync') opened.push(r as number);
      return r;
    };
  }
  fsCalls.closeSync = (...args) => {
    closed.push(args[0] as number);
    return saved.closeSync(...args);
  };
  syncBuiltinESMExports();
  let error: unknown;
  try {
    body();
  } catch (e) {
    error = e;
  } finally {
    Object.assign(fsCalls, saved);
    syncBuiltinESMExports();
  }
  return { opened, closed, injected, error };
}

test.serial('a devices file read as the user closes each descriptor it opened exactly once, whichever step fails (review: a double close after an absolute link, an fd left open when fstat failed)', (t) => {
  // EMFILE at the open after an absolute link, or an fstat that fails, cannot be had on cue from
  // the real system: each fs call of the read fails in turn, and the descriptors are counted.
  const alice = ensureUser(ALICE);
  const base = join(tmp.path, 'fd-walk');
  const home = join(base, 'home');
  const elsewhere = join(base, 'elsewhere');
  for (const d of [base, home, elsewhere]) {
    mkdirSync(d, { mode: 0o755 });
    chmodSync(d, 0o755);
  }
  const text = '# no devices yet\n';
  writeFileSync(join(elsewhere, 'devices'), text, { mode: 0o644 });
  symlinkSync(elsewhere, join(home, 'qrauth')); // absolute: the walk starts again from /
  const path = join(home, 'qrauth', 'devices');
  const reader = { name: ALICE, uid: alice.uid, home, onlyAs: { uid: alice.uid, gid: alice.gid } };
  const clean = withFsFault('openSync', 0, () => t.is(readDevicesFile(path, reader).text, text, 'read through the absolute link'));
  t.true(clean.opened.length >= 4, `the walk opened directories: ${JSON.stringify(clean)}`);
  t.deepEqual(sorted(clean.closed), sorted(clean.opened));
  let faults = 0;
  for (const failing of FAULTABLE) {
    for (let nth = 1; ; nth++) {
      const r = withFsFault(failing, nth, () => readDevicesFile(path, reader));
      if (!r.injected) break;
      faults++;
      const what = `call ${nth} of ${failing} failing`;
      t.truthy(r.error, `${what}: the read fails`);
      t.deepEqual(sorted(r.closed), sorted(r.opened), `${what}: each descriptor opened is closed once (opened ${r.opened}, closed ${r.closed}; ${String(r.error)})`);
    }
  }
  t.log(`${faults} failures injected`);
  t.true(faults > 10);
});
