/**
 * The agent's state files in <stateDir> (agent/src/state-file.ts) and the stores that keep them:
 * a symlink, a file not the agent's, a group- or world-writable one, a FIFO or an oversized one is
 * never read, and each store keeps its own policy for it (code budget: codes off; leases: set
 * aside, none honoured; last-used, seen addresses: start empty). Writes are 0600 and atomic, and
 * leave no temp file behind when they fail.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StateFileDamaged, readStateFile, writeStateFileAtomic, writeStateFileAtomicAsync } from '../agent/src/state-file.js';
import { CodeBudget } from '../agent/src/code-budget.js';
import { LeaseStore } from '../agent/src/leases.js';
import { LastUsed } from '../agent/src/last-used.js';
import { SeenAddresses } from '../agent/src/login-source.js';
import { formatLog, type Logger } from '../agent/src/log.js';
import { tempDir } from './support/system.js';

/** A uid that is not the agent's (tests run as root). */
const NOBODY = 65534;

function recorder(): { lines: string[]; log: Logger } {
  const lines: string[] = [];
  return { lines, log: (e, f) => lines.push(formatLog(e, f)) };
}

function freshDir(t: { teardown(fn: () => void): void }): string {
  const dir = tempDir('qrauth-statefile-');
  t.teardown(() => dir.remove());
  chmodSync(dir.path, 0o700);
  return dir.path;
}

/** The ways a state file can be there and still not be the agent's to trust. */
const UNSAFE: Array<[string, (path: string, good: string) => void]> = [
  [
    'a symlink to a good file',
    (path, good) => {
      const target = `${path}.target`;
      writeFileSync(target, good, { mode: 0o600 });
      symlinkSync(target, path);
    },
  ],
  [
    'owned by another user',
    (path, good) => {
      writeFileSync(path, good, { mode: 0o600 });
      chownSync(path, NOBODY, NOBODY);
    },
  ],
  [
    'group-writable',
    (path, good) => {
      writeFileSync(path, good);
      chmodSync(path, 0o620);
    },
  ],
  [
    'world-writable',
    (path, good) => {
      writeFileSync(path, good);
      chmodSync(path, 0o666);
    },
  ],
];

test('readStateFile: missing is null; a readable-by-others file is made 0600 and read; unsafe ones are refused with the reason', (t) => {
  const dir = freshDir(t);
  const path = join(dir, 'x.json');
  t.is(readStateFile(path, { maxBytes: 100 }), null);

  writeFileSync(path, '{"a":1}');
  chmodSync(path, 0o644);
  t.deepEqual(readStateFile(path, { maxBytes: 100 }), { text: '{"a":1}' });
  t.is(statSync(path).mode & 0o7777, 0o600);

  const reasons: Record<string, RegExp> = {
    'a symlink to a good file': /^cannot open: ELOOP$/,
    'owned by another user': /^owned by uid 65534, not the agent's \(0\)$/,
    'group-writable': /^group- or world-writable$/,
    'world-writable': /^group- or world-writable$/,
  };
  for (const [what, make] of UNSAFE) {
    const p = join(dir, `${what.replace(/\W+/g, '-')}.json`);
    make(p, '{"a":1}');
    const e = t.throws(() => readStateFile(p, { maxBytes: 100 }), { instanceOf: StateFileDamaged }, what);
    t.regex(e?.reason ?? '', reasons[what]!, what);
    t.is(e?.message, `damaged: ${e?.reason}`, what);
  }

  const fifo = join(dir, 'fifo.json');
  execFileSync('mkfifo', ['-m', '600', fifo]);
  t.is(t.throws(() => readStateFile(fifo, { maxBytes: 100 }), { instanceOf: StateFileDamaged })?.reason, 'not a regular file', 'a FIFO does not hang the agent');
  const sub = join(dir, 'dir.json');
  mkdirSync(sub, { mode: 0o700 });
  t.is(t.throws(() => readStateFile(sub, { maxBytes: 100 }), { instanceOf: StateFileDamaged })?.reason, 'not a regular file');

  const big = join(dir, 'big.json');
  writeFileSync(big, 'x'.repeat(101), { mode: 0o600 });
  t.is(t.throws(() => readStateFile(big, { maxBytes: 100 }), { instanceOf: StateFileDamaged })?.reason, 'larger than 100 bytes');
  writeFileSync(big, 'x'.repeat(100), { mode: 0o600 });
  t.is(readStateFile(big, { maxBytes: 100 })?.text.length, 100, 'exactly maxBytes is fine');
});

for (const [name, write] of [
  ['writeStateFileAtomic', async (p: string, s: string) => writeStateFileAtomic(p, s)],
  ['writeStateFileAtomicAsync', writeStateFileAtomicAsync],
] as const) {
  test(`${name}: 0600 whatever a leftover temp file was; a failed write keeps the old file and leaves no temp file`, async (t) => {
    const dir = freshDir(t);
    const path = join(dir, 'state.json');
    // A leftover temp file of ours from a crash, world-writable and someone else's: never reused.
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, 'junk');
    chmodSync(tmp, 0o666);
    chownSync(tmp, NOBODY, NOBODY);
    await write(path, 'ünïcode ✓');
    t.is(readFileSync(path, 'utf8'), 'ünïcode ✓');
    const st = statSync(path);
    t.is(st.mode & 0o7777, 0o600);
    t.is(st.uid, 0);
    t.false(existsSync(tmp));

    await write(path, 'second');
    t.is(readFileSync(path, 'utf8'), 'second');

    // The rename cannot replace a non-empty directory: the write fails, cleanly.
    const blocked = join(dir, 'blocked.json');
    mkdirSync(blocked);
    writeFileSync(join(blocked, 'keep'), 'x');
    await t.throwsAsync(async () => write(blocked, 'new'));
    t.deepEqual(readdirSync(dir).sort(), ['blocked.json', 'state.json'], 'no temp file left behind');
  });
}

test('code budget: an unsafe code-budget.json turns offline codes off (fail closed) until unlock-codes --all, which writes a fresh 0600 file', (t) => {
  const settings = { failureLimit: 3, failureWindowSeconds: 600, dailyLimit: 20, lockSeconds: 60, lockMaxSeconds: 3600, checksPerSecond: 5 };
  for (const [what, make] of UNSAFE) {
    const dir = freshDir(t);
    const path = join(dir, 'code-budget.json');
    make(path, JSON.stringify({ v: 1, users: [] }));
    const r = recorder();
    const budget = new CodeBudget(dir, settings, r.log);
    t.truthy(budget.damaged, what);
    const answer = budget.admit('alice');
    t.false(answer.ok, what);
    t.is(answer.ok ? undefined : answer.reason, 'damaged', what);
    t.true(r.lines.some((l) => l.startsWith('event=code_budget_damaged ')), what);
    budget.unlockAll();
    t.true(budget.admit('alice').ok, `${what}: unlock-codes --all trusts the file again`);
    const st = lstatSync(path);
    t.true(st.isFile() && st.uid === 0 && (st.mode & 0o7777) === 0o600, `${what}: replaced by the agent's own 0600 file`);
  }
  // The same content, safe: codes on.
  const dir = freshDir(t);
  writeFileSync(join(dir, 'code-budget.json'), JSON.stringify({ v: 1, users: [] }), { mode: 0o600 });
  t.is(new CodeBudget(dir, settings, recorder().log).damaged, null);
});

test('leases: an unsafe leases.json is set aside as leases.json.invalid and no lease from it is honoured', (t) => {
  const keyFp = `SHA256:${'A'.repeat(43)}`;
  const deviceId = 'D'.repeat(22);
  const src = freshDir(t);
  const granted = new LeaseStore(src, recorder().log).grant({ user: 'alice', service: 'sshd', host: 'h', keyFp, deviceId, deviceName: 'Phone' }, 3600);
  const good = readFileSync(join(src, 'leases.json'), 'utf8');
  t.is(statSync(join(src, 'leases.json')).mode & 0o7777, 0o600);
  t.is(new LeaseStore(src, recorder().log).find('alice', 'sshd', [keyFp], [deviceId])?.id, granted.id, 'a safe file is read back');

  for (const [what, make] of UNSAFE) {
    const dir = freshDir(t);
    const path = join(dir, 'leases.json');
    make(path, good);
    const r = recorder();
    const store = new LeaseStore(dir, r.log);
    t.is(store.find('alice', 'sshd', [keyFp], [deviceId]), undefined, what);
    t.deepEqual(store.list(), [], what);
    t.true(r.lines.some((l) => l.startsWith('event=lease_file_invalid ')), what);
    t.is(lstatSync(path, { throwIfNoEntry: false }), undefined, `${what}: moved away`);
    t.truthy(lstatSync(`${path}.invalid`, { throwIfNoEntry: false }), `${what}: set aside as leases.json.invalid`);
  }
});

test('last-used and seen addresses: an unsafe file is not read (start empty) and the next save replaces it with a 0600 file', async (t) => {
  const deviceId = 'E'.repeat(22);
  const src = freshDir(t);
  const used = new LastUsed(src);
  used.record(deviceId, new Date('2026-01-02T03:04:05Z'));
  await used.flush();
  const seen = new SeenAddresses(src);
  seen.record('alice', '192.0.2.7');
  await seen.flush();
  const goodUsed = readFileSync(join(src, 'last-used.json'), 'utf8');
  const goodSeen = readFileSync(join(src, 'seen-addresses.json'), 'utf8');
  t.is(new LastUsed(src).get(deviceId), '2026-01-02T03:04:05.000Z', 'a safe file is read back');
  t.false(new SeenAddresses(src).isFirst('alice', '192.0.2.7'), 'a safe file is read back');

  for (const [what, make] of UNSAFE) {
    const dir = freshDir(t);
    make(join(dir, 'last-used.json'), goodUsed);
    make(join(dir, 'seen-addresses.json'), goodSeen);
    const u = new LastUsed(dir);
    t.is(u.get(deviceId), undefined, `last-used, ${what}`);
    const s = new SeenAddresses(dir);
    t.true(s.isFirst('alice', '192.0.2.7'), `seen addresses, ${what}`);
    await u.flush();
    await s.flush();
    for (const f of ['last-used.json', 'seen-addresses.json']) {
      const st = lstatSync(join(dir, f));
      t.true(st.isFile() && st.uid === 0 && (st.mode & 0o7777) === 0o600, `${f}, ${what}: replaced by the agent's own 0600 file`);
    }
  }
});
