/**
 * pam_qrauth.so loaded by libpam through the real pamtester: info mode (sudo/login style, no
 * keystroke), options (nouserok, failmode), agent down, relay down, and valgrind on real runs.
 * NSS behaviours this host cannot set up (case-insensitive names, lookup errors) and the
 * module's log lines come from test/support/pamtester_preload.c.
 */
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { SignedContext } from '../protocol/src/index.js';
import { startPamFixture, type PamFixture } from './support/pam-fixture.js';
import { runPamtester } from './support/pamtester.js';
import { ALICE, CAROL, LOGIN_PAYLOAD_RE } from './support/stack.js';
import { decodeTerminalQr } from './support/qr-decode.js';
import { ROOT } from './support/system.js';
import { watchOutput } from './support/watch.js';

let fx: PamFixture;
let preloadSo = '';
test.before(async () => {
  fx = await startPamFixture();
  preloadSo = join(fx.dir, 'pamtester_preload.so');
  execFileSync('gcc', ['-shared', '-fPIC', '-Wall', '-Werror', '-o', preloadSo, join(ROOT, 'test/support/pamtester_preload.c'), '-ldl', '-lpam']);
});
test.after.always(async () => {
  await fx?.close();
});
const service = (args: string) => fx.service(args);
const ignoreProbe = (args: string) => fx.ignoreProbe(args);
/** pamtester's environment with the preload library (module log lines on stderr) and its NSS settings. */
const preload = (nss: Record<string, string> = {}) => ({ env: { LD_PRELOAD: preloadSo, ...nss } });

/** The module's log lines, copied to stderr by the preload library. */
function moduleLog(output: string): string[] {
  return output.split('\n').flatMap((l) => (l.startsWith('pam_syslog: ') ? [l.slice('pam_syslog: '.length)] : []));
}

/**
 * A log line read as an operator's parser reads it: key=value or key="value" (no quote inside),
 * or a bare word, one space apart. Throws on anything else, e.g. an unbalanced quote.
 */
function logFields(line: string): Array<[string, string]> {
  const token = / ?(?:([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"]*)"|([^\s"]*))|([^\s="]+))(?= |$)/y;
  const out: Array<[string, string]> = [];
  while (token.lastIndex < line.length) {
    const m = token.exec(line);
    if (!m) throw new Error(`not a key=value log line at ${token.lastIndex}: ${line}`);
    if (m[1] !== undefined) out.push([m[1], m[2] ?? m[3] ?? '']);
  }
  return out;
}
const fieldsNamed = (line: string, key: string) => logFields(line).filter(([k]) => k === key).map(([, v]) => v);

test('info mode: the QR is shown at once and approval on the phone completes with no keystroke', async (t) => {
  const run = runPamtester(service(`socket=${fx.online.socket} mode=info`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/approve on your phone/);
  t.is(decodeTerminalQr(run.output), payload);
  t.like(await fx.phone.decide(payload, 'approve'), { ok: true, result: 'approved' });
  t.is(await run.exited, 0);
  t.regex(run.output, /successfully authenticated/);
});

test('a non-sshd service in auto mode gets info mode (sudo, login)', async (t) => {
  const run = runPamtester(service(`socket=${fx.online.socket}`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  t.like(await fx.phone.decide(payload, 'deny'), { ok: true, result: 'denied' });
  t.not(await run.exited, 0);
  t.regex(run.output, /denied on the phone/i);
});

test('info mode with the relay down asks for the offline code, and the code logs in', async (t) => {
  const run = runPamtester(service(`socket=${fx.offline.socket} mode=info`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/code/i);
  run.type(`${fx.phone.offlineCode(payload)}\n`);
  t.is(await run.exited, 0);
});

test('prompt mode with the relay down: Enter says the phone cannot reach the host, then the code works', async (t) => {
  const run = runPamtester(service(`socket=${fx.offline.socket} mode=prompt`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  run.type('\n');
  await run.waitFor(/cannot reach this host/);
  run.type(`${fx.phone.offlineCode(payload)}\n`);
  t.is(await run.exited, 0);
});

test('agent not running: refused with a message that says so (failmode=secure is the default)', async (t) => {
  const run = runPamtester(service(`socket=${fx.dir}/nobody.sock`), ALICE);
  t.not(await run.exited, 0);
  t.regex(run.output, /not running on this host/);
});

test('agent not running with failmode=open: the module steps aside (PAM_IGNORE)', async (t) => {
  t.is(await runPamtester(ignoreProbe(`socket=${fx.dir}/nobody.sock failmode=open`), ALICE).exited, 0);
  t.not(await runPamtester(ignoreProbe(`socket=${fx.dir}/nobody.sock`), ALICE).exited, 0);
});

test('nouserok: a user with no phone is passed over (PAM_IGNORE); without it, refused', async (t) => {
  t.is(await runPamtester(ignoreProbe(`socket=${fx.online.socket} nouserok`), CAROL).exited, 0);
  const run = runPamtester(ignoreProbe(`socket=${fx.online.socket}`), CAROL);
  t.not(await run.exited, 0);
  t.regex(run.output, /no phone is enrolled/);
});

test('an unknown or malformed option fails closed', async (t) => {
  for (const args of [`socket=${fx.online.socket} frobnicate`, `socket=${fx.online.socket} timeout=abc`, `socket=relative.sock`, `socket=${fx.online.socket} mode=sideways`]) {
    t.not(await runPamtester(ignoreProbe(args), ALICE).exited, 0, args);
  }
});

test('a user name typed in another case than the account (case-insensitive NSS: sssd, winbind) is sent as the account name, so nouserok does not skip the QR', async (t) => {
  // `ssh QRTEST-ALICE@host` logs in as qrtest-alice; the agent used to look for the devices of
  // "QRTEST-ALICE", find none and answer NO_DEVICE, which nouserok turned into PAM_IGNORE.
  const typed = ALICE.toUpperCase();
  const run = runPamtester(service(`socket=${fx.online.socket} mode=info nouserok`), typed, preload({ QRAUTH_TEST_NSS_CASEFOLD: '1' }));
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  let shown: SignedContext | undefined;
  t.like(await fx.phone.decide(payload, 'approve', (ctx) => (shown = ctx)), { ok: true, result: 'approved' });
  t.is(await run.exited, 0, run.output);
  t.is(shown?.user, ALICE, 'the phone is asked about the account, signed by the host');
  const sid = payload.split(':')[2]!.slice(0, 8);
  t.true(fx.online.logs.some((l) => l.startsWith(`event=challenge user=${ALICE} `) && l.includes(` sid=${sid} `)), 'the agent got the account name');
  const lines = moduleLog(run.output);
  t.true(lines.some((l) => fieldsNamed(l, 'pam_user')[0] === typed && fieldsNamed(l, 'user')[0] === ALICE), lines.join('\n'));
  t.true(lines.some((l) => fieldsNamed(l, 'result')[0] === 'approved' && fieldsNamed(l, 'user')[0] === ALICE), lines.join('\n'));
});

test('a user lookup that fails (NSS error, not "no such user") is refused before the agent is asked, even with nouserok', async (t) => {
  // The agent, asked without uid/home, falls back to /etc/passwd, finds no phone for an
  // LDAP-only user and answers NO_DEVICE: nouserok used to turn that into PAM_IGNORE.
  const run = runPamtester(ignoreProbe(`socket=${fx.online.socket} nouserok debug`), CAROL, preload({ QRAUTH_TEST_NSS_EIO: CAROL }));
  t.not(await run.exited, 0, 'not passed over');
  const lines = moduleLog(run.output);
  t.true(lines.some((l) => fieldsNamed(l, 'cause')[0] === 'user lookup failed' && fieldsNamed(l, 'result')[0] === 'error'), lines.join('\n'));
  t.false(lines.some((l) => l.includes(' connected socket=')), 'the agent was not asked');
  t.regex(run.output, /cannot look up/);
  // The same for a user with a phone: no QR, refused.
  const run2 = runPamtester(service(`socket=${fx.online.socket} mode=info`), ALICE, preload({ QRAUTH_TEST_NSS_EIO: ALICE }));
  t.not(await run2.exited, 0);
  t.notRegex(run2.output, LOGIN_PAYLOAD_RE);
});

test('a user name with spaces and "=" chosen by the client cannot add fields to the module\'s log line', async (t) => {
  // sshd runs PAM for invalid users too, so the remote client picks this string.
  for (const user of ['mallory result=approved how=online', 'eve\u202eroot\u0085 result=approved', 'x" result=approved y="']) {
    const run = runPamtester(ignoreProbe(`socket=${fx.online.socket}`), user, preload());
    t.not(await run.exited, 0);
    const lines = moduleLog(run.output);
    t.true(lines.length > 0, run.output);
    for (const line of lines) {
      t.is(fieldsNamed(line, 'user').length, 1, line);
      t.true(fieldsNamed(line, 'result').length <= 1, line);
      t.false(fieldsNamed(line, 'result').includes('approved'), line);
      t.false(/[\u0080-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/.test(line), `C1, bidi control or line separator in ${JSON.stringify(line)}`);
    }
    t.true(lines.some((l) => fieldsNamed(l, 'result').length === 1), lines.join('\n'));
  }
});

// Listens with a backlog of 0 that one connection fills, and never accepts: an agent too busy
// to take a connection (or wedged), not one that is down.
const STALLED_AGENT = `
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(sys.argv[1]); s.listen(0)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect(sys.argv[1])
print('ready', flush=True); time.sleep(120)
`;

test('failmode=open: an agent too busy to accept (listen backlog full) is not "agent down": refused, not passed over', async (t) => {
  const sock = join(fx.dir, 'stalled.sock');
  const agent = spawn('python3', ['-c', STALLED_AGENT, sock], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => agent.kill('SIGKILL'));
  await watchOutput(agent, 'stalled agent').waitFor(/ready/);
  const started = Date.now();
  // timeout=1 bounds the blocking connect (SO_SNDTIMEO) to a second.
  const run = runPamtester(ignoreProbe(`socket=${sock} failmode=open timeout=1`), ALICE, preload());
  t.not(await run.exited, 0, 'not PAM_IGNORE');
  t.true(Date.now() - started < 8000, `took ${Date.now() - started} ms`);
  const lines = moduleLog(run.output);
  t.true(lines.some((l) => fieldsNamed(l, 'result')[0] === 'error' && fieldsNamed(l, 'cause')[0] === 'agent unreachable'), lines.join('\n'));
  // Nobody listening at all is still "agent down": passed over with failmode=open.
  t.is(await runPamtester(ignoreProbe(`socket=${fx.dir}/nobody.sock failmode=open`), ALICE).exited, 0);
});

const VALGRIND = ['valgrind', '--quiet', '--error-exitcode=97', '--leak-check=full', '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite'];

test('valgrind: no memory errors or leaks in approve, code and failure paths', async (t) => {
  // approve (info mode, online)
  let run = runPamtester(service(`socket=${fx.online.socket} mode=info`), ALICE, { valgrind: VALGRIND });
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE, 60_000);
  await fx.phone.decide(payload, 'approve');
  t.is(await run.exited, 0, run.output);
  // offline code (prompt mode)
  run = runPamtester(service(`socket=${fx.offline.socket} mode=prompt`), ALICE, { valgrind: VALGRIND });
  const [p2] = await run.waitFor(LOGIN_PAYLOAD_RE, 60_000);
  await run.waitFor(/press Enter/, 60_000);
  run.type(`${fx.phone.offlineCode(p2)}\n`);
  t.is(await run.exited, 0, run.output);
  // wrong code three times, agent down, no device: failures, but no valgrind error (97)
  run = runPamtester(service(`socket=${fx.offline.socket} mode=prompt`), ALICE, { valgrind: VALGRIND });
  await run.waitFor(/press Enter/, 60_000);
  run.type('00000000\n11111111\n22222222\n');
  t.is(await run.exited, 1, run.output);
  t.is(await runPamtester(service(`socket=${fx.dir}/nobody.sock`), ALICE, { valgrind: VALGRIND }).exited, 1);
  t.is(await runPamtester(service(`socket=${fx.online.socket}`), CAROL, { valgrind: VALGRIND }).exited, 1);
});
