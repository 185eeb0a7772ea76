/**
 * `make install` into a DESTDIR: the tree a sysadmin gets, then a real ssh login through sshd with
 * the installed pam_qrauth.so, the installed agent, the installed `qrauth enroll` and the installed
 * relay; `make uninstall` last.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Daemon, makeInstall, startDaemon } from './support/daemon.js';
import { ENROLL_RE, FINGERPRINT_LINE_RE } from './support/enroll.js';
import { HeadlessPhone } from './support/phone.js';
import { runInPty } from './support/pty.js';
import { type Sshd, startSshd } from './support/sshd.js';
import { ALICE, sshLoginApprovedByPhone } from './support/stack.js';
import { ensureUser, installPamService, isRoot, randomName, tempDir } from './support/system.js';

const tmp = tempDir('qrin-');
const DEST = join(tmp.path, 'dest');
const vars = { DESTDIR: DEST, BUILDDIR: join(tmp.path, 'build') };
const PREFIX = '/usr/local';
const PAMDIR = `${execFileSync('pkg-config', ['--variable=libdir', 'pam']).toString().trim() || `/lib/${execFileSync('gcc', ['-print-multiarch']).toString().trim()}`}/security`;
const d = (p: string) => join(DEST, p);
const mode = (p: string) => lstatSync(d(p)).mode & 0o7777;

const cleanups: Array<() => Promise<void> | void> = [];
test.before(async () => {
  if (!isRoot()) throw new Error('run as root: the test starts sshd and creates users');
  await makeInstall(vars);
});
test.after.always(async () => {
  for (const f of cleanups.reverse()) await f();
  tmp.remove();
});

test.serial('make install lays out the module, code, wrappers, units, sysusers, config and man pages', (t) => {
  const expected: Array<[string, number]> = [
    [`${PAMDIR}/pam_qrauth.so`, 0o644],
    [`${PREFIX}/bin/qrauth`, 0o755],
    [`${PREFIX}/sbin/qrauth-agent`, 0o755],
    [`${PREFIX}/bin/qrauth-relay`, 0o755],
    [`${PREFIX}/lib/qrauth/package.json`, 0o644],
    [`${PREFIX}/lib/qrauth/agent/src/main.js`, 0o644],
    [`${PREFIX}/lib/qrauth/agent/src/cli.js`, 0o644],
    [`${PREFIX}/lib/qrauth/agent/src/notify.js`, 0o644],
    [`${PREFIX}/lib/qrauth/relay/src/main.js`, 0o644],
    [`${PREFIX}/lib/qrauth/protocol/src/index.js`, 0o644],
    ['/lib/systemd/system/qrauth-agent.socket', 0o644],
    ['/lib/systemd/system/qrauth-agent.service', 0o644],
    ['/lib/systemd/system/qrauth-relay.service', 0o644],
    ['/usr/lib/sysusers.d/qrauth.conf', 0o644],
    ['/etc/qrauth/agent.json', 0o644],
  ];
  for (const m of ['man1/qrauth.1', 'man8/pam_qrauth.8']) if (existsSync(`docs/${m.split('/')[1]}`)) expected.push([`${PREFIX}/share/man/${m}`, 0o644]);
  for (const [p, m] of expected) {
    t.true(existsSync(d(p)), `${p} installed`);
    if (existsSync(d(p))) t.is(mode(p).toString(8), m.toString(8), `${p} mode`);
  }
  t.is(JSON.parse(readFileSync(d(`${PREFIX}/lib/qrauth/package.json`), 'utf8')).type, 'module');
  // Every field of the default config is one the agent accepts.
  const out = execFileSync(d(`${PREFIX}/sbin/qrauth-agent`), ['--config', d('/etc/qrauth/agent.json'), '--check-config']).toString();
  t.like(JSON.parse(out), { relayUrl: null, socket: '/run/qrauth.sock', stateDir: '/var/lib/qrauth' });
});

test.serial('only production dependencies are installed, and only this platform of sodium-native', (t) => {
  const mods = readdirSync(d(`${PREFIX}/lib/qrauth/node_modules`));
  for (const needed of ['socket.io', 'socket.io-client', 'sodium-native', 'commander', 'qrcode', 'systemd-notify', 'redis', '@socket.io']) t.true(mods.includes(needed), needed);
  for (const dev of ['ava', 'typescript', 'tsx', 'playwright-core', 'jsqr', 'esbuild']) t.false(mods.includes(dev), `${dev} is a dev dependency`);
  t.deepEqual(readdirSync(d(`${PREFIX}/lib/qrauth/node_modules/sodium-native/prebuilds`)), [`${process.platform}-${process.arch}`]);
});

test.serial('the units and wrappers point at the installed paths', (t) => {
  t.regex(readFileSync(d('/lib/systemd/system/qrauth-agent.service'), 'utf8'), /^ExecStart=\/usr\/local\/sbin\/qrauth-agent --config \/etc\/qrauth\/agent\.json$/m);
  t.regex(readFileSync(d('/lib/systemd/system/qrauth-relay.service'), 'utf8'), /^ExecStart=\/usr\/local\/bin\/qrauth-relay$/m);
  t.regex(readFileSync(d(`${PREFIX}/sbin/qrauth-agent`), 'utf8'), /^exec \/\S*node "\$\(dirname "\$\(readlink -f "\$0"\)"\)\/\.\.\/lib\/qrauth\/agent\/src\/main\.js" "\$@"$/m);
  t.regex(readFileSync(d('/usr/lib/sysusers.d/qrauth.conf'), 'utf8'), /^u qrauth - /m);
});

test.serial('a second make install keeps the admin\'s /etc/qrauth/agent.json', async (t) => {
  const mine = '{ "relayUrl": "https://relay.example.org", "expirySeconds": 60 }\n';
  writeFileSync(d('/etc/qrauth/agent.json'), mine);
  await makeInstall(vars);
  t.is(readFileSync(d('/etc/qrauth/agent.json'), 'utf8'), mine);
});

test.serial('a real ssh login with the installed module, agent, qrauth enroll and relay', async (t) => {
  ensureUser(ALICE);
  const work = join(tmp.path, 'run');
  mkdirSync(join(work, 'devices'), { recursive: true, mode: 0o755 });
  const relay: Daemon = startDaemon([d(`${PREFIX}/bin/qrauth-relay`), '--port', '0']);
  cleanups.push(() => relay.stop());
  const [, relayUrl] = await relay.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);

  const config = join(work, 'agent.json');
  const sock = join(work, 'qrauth.sock');
  writeFileSync(
    config,
    JSON.stringify({ socket: sock, controlSocket: join(work, 'control.sock'), stateDir: join(work, 'state'), relayUrl, authfile: join(work, 'devices', '%u'), sshdInfoMessages: 'no', hostname: 'installed-host' }),
  );
  const agent = startDaemon([d(`${PREFIX}/sbin/qrauth-agent`), '--config', config]);
  cleanups.push(() => agent.stop());
  await agent.waitFor(/event=relay_link state=up/);

  // Enrollment with the installed CLI, through the installed relay.
  const phone = await HeadlessPhone.create(join(work, 'phone'), 'Installed phone');
  cleanups.push(() => phone.close());
  const cli = runInPty([d(`${PREFIX}/bin/qrauth`), '--config', config, 'enroll', '--user', ALICE]);
  cleanups.push(() => cli.kill());
  const [enrollPayload] = await cli.waitFor(ENROLL_RE);
  const enrolled = await phone.enroll(enrollPayload);
  t.like(enrolled.ack, { ok: true });
  const [, shown] = await cli.waitFor(FINGERPRINT_LINE_RE);
  t.is(shown, enrolled.fingerprint);
  await cli.waitFor(/Type y to enroll/);
  cli.type('y\r');
  t.is(await cli.exited, 0, cli.output);

  const service = randomName('sshd-qra');
  const pam = installPamService(service, [`auth required ${d(`${PAMDIR}/pam_qrauth.so`)} socket=${sock}`]);
  cleanups.push(() => pam.remove());
  const sshd: Sshd = await startSshd({ dir: work, service });
  cleanups.push(() => sshd.stop());

  const login = await sshLoginApprovedByPhone(sshd.port, ALICE, phone);
  t.is(login.code, 0);
  t.regex(agent.output, /event=login .*result=approved/);
});

test.serial('make uninstall removes what make install put there, except the config', async (t) => {
  await makeInstall(vars, 'uninstall');
  for (const p of [`${PAMDIR}/pam_qrauth.so`, `${PREFIX}/bin/qrauth`, `${PREFIX}/sbin/qrauth-agent`, `${PREFIX}/bin/qrauth-relay`, `${PREFIX}/lib/qrauth`, '/lib/systemd/system/qrauth-agent.service', '/lib/systemd/system/qrauth-agent.socket', '/lib/systemd/system/qrauth-relay.service', '/usr/lib/sysusers.d/qrauth.conf', `${PREFIX}/share/man/man1/qrauth.1`]) {
    t.false(existsSync(d(p)), `${p} removed`);
  }
  t.true(existsSync(d('/etc/qrauth/agent.json')), 'the config stays');
});
