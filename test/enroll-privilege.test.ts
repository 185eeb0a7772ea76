/**
 * Root acting for a user (`sudo qrauth enroll|revoke|devices --user U`) must not follow U's
 * symlinks into places only root can write (issue #10 item 1). Before the fix the CLI wrote
 * `~U/.config/qrauth/devices` as root and chowned it to U: with `~/.config/qrauth` (or
 * `~/.config`) a symlink to a root-owned directory such as /etc/cron.daily, U got a file of
 * theirs there, made it executable, and root ran it. Each test runs the real CLI as root against
 * the real agent, relay and a headless phone, plays the user's moves, and checks the root-owned
 * stand-in directory afterwards: nothing created, nothing changed, nothing chowned.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, existsSync, linkSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import { keyId, toB64url } from '../protocol/src/index.js';
import { startRelay, type Relay } from '../relay/src/server.js';
import { ENROLL_RE, qrauthCli } from './support/enroll.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { writeDevicesFileAs } from '../agent/src/user-files.js';
import { HeadlessPhone } from './support/phone.js';
import { ROOT, ensureUser, tempDir } from './support/system.js';

// Our own users and group, so other test files' homes are not touched.
const USER = 'qra-priv1';
const ADMIN_USER = 'qra-priv2';
const GROUP = 'qra-privg';

const tmp = tempDir('qra-priv-');
let relay: Relay;
let home: AgentFixture; // agent with the authfile under the home (~/.config/qrauth/devices)
let admin: AgentFixture; // agent with an admin-managed authfile (<root-owned dir>/%u)
let u: { uid: number; gid: number; home: string };
let groupId: number;
let phoneCount = 0;

test.before(async () => {
  u = ensureUser(USER);
  ensureUser(ADMIN_USER);
  try {
    execFileSync('getent', ['group', GROUP], { stdio: 'ignore' });
  } catch {
    try {
      execFileSync('groupadd', [GROUP], { stdio: 'pipe' });
    } catch {
      execFileSync('getent', ['group', GROUP], { stdio: 'ignore' }); // created meanwhile
    }
  }
  groupId = Number(execFileSync('getent', ['group', GROUP], { encoding: 'utf8' }).split(':')[2]);
  relay = await startRelay({ log: () => {} });
  home = await startTestAgent({ relayUrl: relay.url, authfile: '~/.config/qrauth/devices' });
  admin = await startTestAgent({ relayUrl: relay.url });
  for (const a of [home, admin]) if (!a.agent.relay!.up) await once(a.agent.relay!, 'change');
});
test.after.always(async () => {
  await home?.close();
  await admin?.close();
  await relay?.close();
  resetHome();
  tmp.remove();
});

/** The user's ~/.config back to nothing (rm on a symlink removes the link, not its target). */
function resetHome(): void {
  if (!u) return;
  for (const n of ['.config', '.config.real', '.config.link']) rmSync(join(u.home, n), { recursive: true, force: true });
}

/** A root-owned directory, 0755: the stand-in for /etc/cron.daily. */
let rootDirCount = 0;
function rootOwnedDir(): string {
  const d = join(tmp.path, `root-${rootDirCount++}`);
  mkdirSync(d, { mode: 0o755 });
  chmodSync(d, 0o755);
  writeFileSync(join(d, 'marker'), 'root was here\n', { mode: 0o644 });
  return d;
}

/** Everything under `dir`, without following links: names, owners, modes, link targets, contents. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      const what = st.isSymbolicLink() ? `-> ${readlinkSync(p)}` : st.isDirectory() ? 'dir' : JSON.stringify(readFileSync(p, 'utf8'));
      out.push(`${rel}${name} uid=${st.uid} gid=${st.gid} mode=${(st.mode & 0o7777).toString(8)} nlink=${st.nlink} ${what}`);
      if (st.isDirectory()) walk(p, `${rel}${name}/`);
    }
  };
  walk(dir, '');
  return out;
}

/** A devices line for a made-up device (fixed seed `n`), so a revoke finds something to remove. */
function deviceLine(n: number, name: string): { line: string; id: string } {
  const pub = c.ed25519FromSeed(new Uint8Array(32).fill(n)).publicKey;
  return { line: `ed25519 ${toB64url(pub)} 2026-01-01 ${name}`, id: keyId(c, pub) };
}

function userConfig(): string {
  return join(u.home, '.config');
}

/** ~/.config made by the user themselves (owned by them), with whatever inside. */
function userDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  let d = path;
  while (d.startsWith(`${u.home}/`)) {
    chownSync(d, u.uid, u.gid);
    d = join(d, '..');
  }
}

/** `ln -s target link` done by the user. */
function userSymlink(target: string, link: string): void {
  symlinkSync(target, link);
  execFileSync('chown', ['-h', `${u.uid}:${u.gid}`, link]);
}

async function run(agent: AgentFixture, args: string[]): Promise<{ code: number | null; output: string }> {
  const cli = qrauthCli(agent.configPath, args);
  try {
    const code = await cli.exited;
    return { code, output: cli.output };
  } finally {
    cli.kill();
  }
}

/** `sudo qrauth enroll --user U`, with a phone that scans and a "y" when it gets that far. */
async function enroll(t: ExecutionContext, agent: AgentFixture, user: string): Promise<{ code: number | null; output: string }> {
  const phone = await HeadlessPhone.create(join(tmp.path, `phone-${phoneCount++}`), `Priv phone ${phoneCount}`);
  t.teardown(() => phone.close());
  const cli = qrauthCli(agent.configPath, ['enroll', '--user', user]);
  t.teardown(() => cli.kill());
  // The CLI may refuse before any QR (an unsafe file is refused first): then there is nothing to scan.
  const shown = await cli.waitFor(ENROLL_RE).then((m) => m[0], () => null);
  if (shown !== null) {
    const got = await phone.enroll(shown);
    t.true(got.ack.ok, 'the phone enrolls with the agent');
    await cli.waitFor(/Type y to enroll/);
    cli.type('y\r');
  }
  const code = await cli.exited;
  return { code, output: cli.output };
}

test.serial('enroll --user: ~/.config/qrauth a symlink to a root-owned directory: nothing is written there, the CLI says why and exits 1', async (t) => {
  resetHome();
  const root = rootOwnedDir();
  const before = snapshot(root);
  userDir(userConfig());
  userSymlink(root, join(userConfig(), 'qrauth'));
  const r = await enroll(t, home, USER);
  t.is(r.code, 1, r.output);
  t.regex(r.output, /qrauth: .*(symbolic link|permission denied)/i, 'the CLI says why');
  t.deepEqual(snapshot(root), before, 'the root-owned directory is unchanged');
});

test.serial('enroll --user: ~/.config a symlink to a root-owned directory: nothing is created there', async (t) => {
  resetHome();
  const root = rootOwnedDir();
  const before = snapshot(root);
  userSymlink(root, userConfig());
  const r = await enroll(t, home, USER);
  t.is(r.code, 1, r.output);
  t.regex(r.output, /qrauth: .*(symbolic link|permission denied)/i);
  t.deepEqual(snapshot(root), before);
});

/** A root-owned <dir>/qrauth/devices 0644 that lists a device, as if root had one there. */
function rootDevicesIn(root: string, name: string): { file: string; id: string } {
  const d = deviceLine(7, name);
  mkdirSync(join(root, 'qrauth'), { mode: 0o755 });
  const file = join(root, 'qrauth', 'devices');
  writeFileSync(file, `${d.line}\n`, { mode: 0o644 });
  return { file, id: d.id };
}

test.serial('revoke --user: ~/.config/qrauth a symlink to a root-owned directory: the root file there is not replaced', async (t) => {
  resetHome();
  const root = rootOwnedDir();
  rootDevicesIn(root, 'Rooted');
  const before = snapshot(root);
  userDir(userConfig());
  userSymlink(join(root, 'qrauth'), join(userConfig(), 'qrauth'));
  const r = await run(home, ['revoke', 'Rooted', '--user', USER]);
  t.is(r.code, 1, r.output);
  t.regex(r.output, /qrauth: .*(symbolic link|permission denied)/i);
  t.deepEqual(snapshot(root), before);
});

test.serial('revoke --user: ~/.config a symlink to a root-owned directory: the root file there is not replaced', async (t) => {
  resetHome();
  const root = rootOwnedDir();
  rootDevicesIn(root, 'Rooted');
  const before = snapshot(root);
  userSymlink(root, userConfig());
  const r = await run(home, ['revoke', 'Rooted', '--user', USER]);
  t.is(r.code, 1, r.output);
  t.regex(r.output, /qrauth: .*(symbolic link|permission denied)/i);
  t.deepEqual(snapshot(root), before);
});

test.serial("devices --user reads as the user: a symlink to root's private devices file is not read for them", async (t) => {
  resetHome();
  const root = rootOwnedDir();
  chmodSync(root, 0o700); // like /root: the user cannot look inside
  const { file } = rootDevicesIn(root, 'Secret');
  chmodSync(file, 0o600);
  userDir(userConfig());
  userSymlink(join(root, 'qrauth'), join(userConfig(), 'qrauth'));
  const r = await run(home, ['devices', '--user', USER, '--json']);
  t.is(r.code, 1, r.output);
  t.notRegex(r.output, /Secret/, "root's file is not listed as the user's");
  t.regex(r.output, /qrauth: .*permission denied/i);
});

test.serial('enroll and revoke --user: the devices file itself a symlink to a root file: the root file is unchanged', async (t) => {
  resetHome();
  const root = rootOwnedDir();
  const { file } = rootDevicesIn(root, 'Rooted');
  const before = snapshot(root);
  userDir(join(userConfig(), 'qrauth'));
  userSymlink(file, join(userConfig(), 'qrauth', 'devices'));
  const e = await enroll(t, home, USER);
  t.is(e.code, 1, e.output);
  t.regex(e.output, /symbolic link/);
  const r = await run(home, ['revoke', 'Rooted', '--user', USER]);
  t.is(r.code, 1, r.output);
  t.regex(r.output, /symbolic link/);
  t.deepEqual(snapshot(root), before);
});

test.serial('enroll and revoke --user: `devices` a hard link to a root-owned file: the root file is not rewritten or chowned', async (t) => {
  resetHome();
  const root = rootOwnedDir();
  const { file } = rootDevicesIn(root, 'Rooted');
  const before = snapshot(root).map((l) => l.replace(/ nlink=\d+/, ''));
  userDir(join(userConfig(), 'qrauth'));
  linkSync(file, join(userConfig(), 'qrauth', 'devices')); // made by root: protected_hardlinks stops the user
  const e = await enroll(t, home, USER);
  const r = await run(home, ['revoke', 'Rooted', '--user', USER]);
  t.log(`enroll exit ${e.code}, revoke exit ${r.code}`);
  t.deepEqual(
    snapshot(root).map((l) => l.replace(/ nlink=\d+/, '')),
    before,
    'the root file keeps its contents, owner and mode',
  );
  const own = join(userConfig(), 'qrauth', 'devices');
  if (existsSync(own)) t.is(lstatSync(own).ino === lstatSync(file).ino, false, 'a new file of the user replaced the link name, if anything was written');
});

test.serial('revoke --user: supplementary groups of root do not reach the write (a group-writable directory stays untouched)', async (t) => {
  resetHome();
  const shared = join(tmp.path, 'group-dir');
  mkdirSync(shared, { mode: 0o770 });
  chownSync(shared, 0, groupId);
  chmodSync(shared, 0o770);
  const d = deviceLine(9, 'Grouped');
  writeFileSync(join(shared, 'devices'), `${d.line}\n`, { mode: 0o644 });
  const before = snapshot(shared);
  userDir(userConfig());
  userSymlink(shared, join(userConfig(), 'qrauth'));
  // Root with the group as a supplementary group, as if root were in 'adm' or 'disk'.
  const argv = ['setpriv', `--groups=${groupId}`, '--', process.execPath, '--import', 'tsx', join(ROOT, 'agent/src/cli.ts'), '--config', home.configPath, 'revoke', 'Grouped', '--user', USER];
  const p = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (b: Buffer) => (out += b.toString()));
  p.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const [code] = (await once(p, 'close')) as [number | null];
  t.is(code, 1, out);
  t.regex(out, /permission denied/i);
  t.deepEqual(snapshot(shared), before);
});

/**
 * The user's racer: flips ~/.config between their real directory and a symlink to `target`
 * (rename is atomic), about once a millisecond, until killed. Runs as the user.
 */
function startFlipper(target: string): { stop(): Promise<number> } {
  const cfg = userConfig();
  const code = `
    const fs = require('node:fs');
    const [cfg, target] = process.argv.slice(1);
    const real = cfg + '.real', link = cfg + '.link';
    fs.symlinkSync(target, link);
    let flips = 0;
    process.on('SIGTERM', () => { process.stdout.write(String(flips)); process.exit(0); });
    const flip = () => {
      try {
        if (flips % 2 === 0) { fs.renameSync(cfg, real); fs.renameSync(link, cfg); }
        else { fs.renameSync(cfg, link); fs.renameSync(real, cfg); }
        flips++;
      } catch {}
      setTimeout(flip, flips % 3 === 0 ? 1 : 0);
    };
    flip();
  `;
  const p = spawn(process.execPath, ['-e', code, cfg, target], { uid: u.uid, gid: u.gid, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (b: Buffer) => (out += b.toString()));
  return {
    async stop() {
      if (p.exitCode === null && p.signalCode === null) {
        p.kill('SIGTERM');
        await once(p, 'close');
      }
      return Number(out);
    },
  };
}

const RACE_CLI_ROUNDS = 10;
const RESET_SCRIPT = 'umask 077; for d in "$1" "$1.real"; do [ -d "$d/qrauth" ] && printf "%s\\n" "$2" > "$d/qrauth/devices.reset" && mv -fT "$d/qrauth/devices.reset" "$d/qrauth/devices"; done; true';

test.serial(`revoke --user while the user flips ~/.config to a symlink and back (${RACE_CLI_ROUNDS} CLI rounds): the root-owned directory is never written`, async (t) => {
  resetHome();
  const root = rootOwnedDir();
  rootDevicesIn(root, 'Raced');
  const before = snapshot(root);
  const d = deviceLine(7, 'Raced');
  userDir(join(userConfig(), 'qrauth'));
  const own = join(userConfig(), 'qrauth', 'devices');
  writeFileSync(own, `${d.line}\n`, { mode: 0o600 });
  chownSync(own, u.uid, u.gid);
  const flipper = startFlipper(root);
  t.teardown(() => flipper.stop());
  const outcomes = new Map<string, number>();
  for (let i = 0; i < RACE_CLI_ROUNDS; i++) {
    const r = await run(home, ['revoke', 'Raced', '--user', USER]);
    const key = r.code === 0 ? 'revoked' : `exit ${r.code}: ${(/qrauth: (.{0,60})/.exec(r.output)?.[1] ?? '').replace(/\/tmp\/\S+/g, '…')}`;
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    // Put the device back in the user's real directory, wherever the racer has it now; done as
    // the user, so that this reset cannot itself write through the racer's symlink.
    execFileSync('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--clear-groups', 'sh', '-c', RESET_SCRIPT, 'sh', userConfig(), d.line], { stdio: 'ignore' });
  }
  const flips = await flipper.stop();
  t.log(`flips ${flips}; outcomes ${JSON.stringify([...outcomes])}`);
  t.true(flips > 0, 'the racer ran');
  t.deepEqual(snapshot(root), before, 'nothing written, chowned or replaced in the root-owned directory');
});

// Each write starts a helper process (under tsx here, slower than installed): up to 200 rounds,
// stopped after a minute on a slow machine. Every round must leave the root-owned directory alone.
const RACE_WRITE_ROUNDS = 200;
const RACE_WRITE_BUDGET_MS = 60_000;

test.serial(`root's writes for the user while ~/.config flips to a symlink and back (up to ${RACE_WRITE_ROUNDS} rounds): the root-owned directory is never written`, async (t) => {
  resetHome();
  const root = rootOwnedDir();
  rootDevicesIn(root, 'Raced');
  const before = snapshot(root);
  userDir(join(userConfig(), 'qrauth'));
  const who = { name: USER, uid: u.uid, gid: u.gid, home: u.home };
  const path = join(userConfig(), 'qrauth', 'devices');
  const flipper = startFlipper(root);
  t.teardown(() => flipper.stop());
  const outcomes = new Map<string, number>();
  const started = Date.now();
  let rounds = 0;
  while (rounds < RACE_WRITE_ROUNDS && Date.now() - started < RACE_WRITE_BUDGET_MS) {
    rounds++;
    const key = await writeDevicesFileAs(who, path, `${deviceLine(rounds % 200, `Round ${rounds}`).line}\n`).then(
      () => 'written',
      (e: Error) => e.message.replace(/\/tmp\/\S+/g, '…').slice(0, 80),
    );
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  }
  const flips = await flipper.stop();
  t.log(`${rounds} rounds, flips ${flips}; outcomes ${JSON.stringify([...outcomes])}`);
  t.true(flips > 0, 'the racer ran');
  t.deepEqual(snapshot(root), before, 'nothing written, chowned or replaced in the root-owned directory');
});

test.serial('admin-managed authfile (<root-owned dir>/%u): enroll --user writes a root-owned 0600 file, revoke removes the phone', async (t) => {
  const path = join(admin.dir, 'devices', ADMIN_USER);
  rmSync(path, { force: true });
  const e = await enroll(t, admin, ADMIN_USER);
  t.is(e.code, 0, e.output);
  const st = lstatSync(path);
  t.is(st.uid, 0);
  t.is(st.mode & 0o777, 0o600);
  const name = /Enrolled "([^"]+)"/.exec(e.output)?.[1];
  t.truthy(name, e.output);
  const r = await run(admin, ['revoke', name!, '--user', ADMIN_USER]);
  t.is(r.code, 0, r.output);
  t.notRegex(readFileSync(path, 'utf8'), /^ed25519/m);
  t.is(lstatSync(path).uid, 0);
});

test.serial('admin-managed authfile with a component the user can write: enroll and revoke --user refuse, nothing written', async (t) => {
  const dir = join(admin.dir, 'devices');
  const path = join(dir, ADMIN_USER);
  const d = deviceLine(11, 'Admin listed');
  writeFileSync(path, `${d.line}\n`, { mode: 0o600 });
  const owner = ensureUser(ADMIN_USER);
  chownSync(dir, owner.uid, owner.gid); // the user could now swap anything in it
  t.teardown(() => chownSync(dir, 0, 0));
  const before = snapshot(dir);
  const e = await enroll(t, admin, ADMIN_USER);
  t.is(e.code, 1, e.output);
  t.regex(e.output, new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} .*(owned by|writable)`));
  const r = await run(admin, ['revoke', 'Admin listed', '--user', ADMIN_USER]);
  t.is(r.code, 1, r.output);
  t.regex(r.output, /owned by|writable/);
  t.deepEqual(snapshot(dir), before);
});
