/**
 * The Debian packages as a sysadmin uses them: `make deb`, then `apt-get install ./*.deb` on a
 * Debian 13 (trixie) root booted with systemd as PID 1 (systemd-nspawn, on a throwaway overlay
 * of a cached root). From the host: socket activation, READY/STATUS, watchdog, the hardening as
 * systemd applies it, a real ssh login and sudo approved by the headless phone through the
 * packaged relay, the offline code, a restart with a login in the backlog, remove and purge.
 * Set QRAUTH_DEBS=<dir with qrauth_*.deb and qrauth-relay_*.deb> to skip `make deb`.
 */
import test from 'ava';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MsgType, Result, type FrameMsg } from '../protocol/src/index.js';
import { run, until } from './support/daemon.js';
import { ENROLL_RE } from './support/enroll.js';
import { PamClient } from './support/pam-client.js';
import { HeadlessPhone } from './support/phone.js';
import { nextMarker, runInPty } from './support/pty.js';
import { freePort, sshArgs } from './support/sshd.js';
import { ALICE, LOGIN_PAYLOAD_RE, sshLoginApprovedByPhone } from './support/stack.js';
import { isRoot, randomName, tempDir } from './support/system.js';
import { type BootedRoot, bootRoot, ensureTrixieRoot } from './support/trixie-root.js';

const tmp = tempDir('qrdeb-');
let box: BootedRoot;
let phone: HeadlessPhone;
let sshPort: number;
let relayPort: number;
let installLog = '';
let firstWatchdogPing = 0;

const progress = (line: string) => process.stderr.write(`deb.test: ${line}\n`);
const show = async (unit: string, ...props: string[]): Promise<Record<string, string>> => {
  const out = await box.sh(`systemctl show ${unit} ${props.map((p) => `-p ${p}`).join(' ')}`);
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
};
const agentPid = async () => Number((await show('qrauth-agent.service', 'MainPID')).MainPID);

/** BEGIN on the packaged agent's socket, through the container's root as the host sees it. */
async function beginLogin(user: string): Promise<PamClient> {
  const client = await PamClient.connect(box.path('/run/qrauth.sock'));
  client.send({ type: MsgType.BEGIN, user, service: 'sshd', rhost: '127.0.0.1', tty: 'ssh', uid: 4242, home: '/nonexistent' } as FrameMsg);
  return client;
}

test.before(async (t) => {
  if (!isRoot()) throw new Error('run as root: the test boots a container and mounts an overlay');
  // First run: debootstrap (about a minute or two) and make deb (a few minutes with lintian).
  t.timeout(40 * 60_000);
  let debDir = process.env.QRAUTH_DEBS ?? '';
  if (!debDir) {
    progress('make deb (dpkg-buildpackage, lintian)');
    const build = join(tmp.path, 'build');
    const r = await run(['make', '-s', '-o', 'node_modules/.package-lock.json', 'deb', `BUILDDIR=${build}`], { timeoutMs: 20 * 60_000 });
    if (r.code !== 0) throw new Error(`make deb failed (${r.code}):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
    t.log(r.stdout.split('\n').filter((l) => /^[EWI]: /.test(l)).join('\n') || 'lintian: nothing to report');
    debDir = join(build, 'deb');
  }
  const debs = readdirSync(debDir).filter((f) => /^qrauth(-relay)?_.*\.deb$/.test(f));
  if (debs.length !== 2) throw new Error(`expected qrauth and qrauth-relay .debs in ${debDir}, found: ${debs.join(' ')}`);
  const root = ensureTrixieRoot(progress);
  sshPort = await freePort();
  relayPort = await freePort();
  progress(`booting ${root} (ssh on 127.0.0.1:${sshPort}, relay on 127.0.0.1:${relayPort})`);
  box = await bootRoot(root, {
    work: join(tmp.path, 'box'),
    name: randomName('qrdeb-'),
    prepare(dir) {
      mkdirSync(join(dir, 'root/debs'), { recursive: true });
      for (const f of debs) copyFileSync(join(debDir, f), join(dir, 'root/debs', f));
      // The admin's sshd setup (docs/install.md 3b), on the test's port: nspawn shares the host's network.
      writeFileSync(
        join(dir, 'etc/ssh/sshd_config.d/test-login.conf'),
        [`Port ${sshPort}`, 'ListenAddress 127.0.0.1', 'UsePAM yes', 'KbdInteractiveAuthentication yes', 'PasswordAuthentication no', 'PubkeyAuthentication no', 'AuthenticationMethods keyboard-interactive', `AllowUsers ${ALICE}`, 'UseDNS no', 'PrintMotd no', ''].join('\n'),
      );
    },
  });
  // The relay's port for this boot only (/run), so that neither install nor purge sees the file.
  mkdirSync(box.path('/run/systemd/system/qrauth-relay.service.d'), { recursive: true });
  writeFileSync(box.path('/run/systemd/system/qrauth-relay.service.d/port.conf'), `[Service]\nEnvironment=QRAUTH_RELAY_PORT=${relayPort}\n`);
  await box.sh('systemctl daemon-reload');
  progress('booted');
});

test.after.always(async () => {
  await phone?.close();
  await box?.stop();
  tmp.remove();
});

test.serial('apt-get install ./*.deb pulls nodejs from Debian, makes the qrauth user, enables (not starts) the socket, starts the relay, and edits no PAM or sshd file', async (t) => {
  const before = await box.sh('sha256sum /etc/pam.d/* /etc/ssh/sshd_config');
  installLog = await box.sh('cd /root/debs && apt-get install -y --no-install-recommends ./qrauth_*.deb ./qrauth-relay_*.deb 2>&1', 10 * 60_000);
  t.regex(installLog, /Setting up nodejs \(20\./, 'nodejs 20 comes from Debian');
  t.regex(installLog, /auth \[success=done default=die\] pam_qrauth\.so/, 'postinst prints the PAM line to add');
  t.regex(installLog, /AuthenticationMethods publickey,keyboard-interactive/, 'and the sshd lines');
  t.is(await box.sh('sha256sum /etc/pam.d/* /etc/ssh/sshd_config'), before, 'no PAM or sshd file changed');
  t.regex(await box.sh('getent passwd qrauth'), /^qrauth:x:\d+:\d+:qrauth agent:\/var\/lib\/qrauth:\/usr\/sbin\/nologin$/m);
  t.is((await box.run(['systemctl', 'is-enabled', 'qrauth-agent.socket'])).stdout.trim(), 'enabled');
  t.is((await box.run(['systemctl', 'is-active', 'qrauth-agent.socket'])).stdout.trim(), 'inactive', 'enabled, not started');
  t.is((await box.run(['systemctl', 'is-active', 'qrauth-agent.service'])).stdout.trim(), 'inactive');
  t.is((await box.run(['systemctl', 'is-enabled', 'qrauth-agent.service'])).stdout.trim(), 'disabled', 'the socket starts it, not the boot');
  t.is((await box.run(['systemctl', 'is-active', 'qrauth-relay.service'])).stdout.trim(), 'active');
  t.regex(await box.sh('dpkg -L qrauth'), /^\/usr\/lib\/[a-z0-9_-]+-linux-gnu\/security\/pam_qrauth\.so$/m, 'the module where libpam looks');
});

test.serial('the package refuses a /usr/bin/node older than 20 with a message that says what to do', async (t) => {
  // A fake node 18 bind-mounted over /usr/bin/node in a private mount namespace, then postinst.
  const r = await box.run([
    'unshare', '-m', 'sh', '-c',
    `printf '#!/bin/sh\\ncase "$1" in --version) echo v18.19.0;; *) echo 18;; esac\\n' > /run/fake-node && chmod 755 /run/fake-node && mount --bind /run/fake-node "$(readlink -f /usr/bin/node)" && /var/lib/dpkg/info/qrauth.postinst configure 0.0.1`,
  ]);
  t.not(r.code, 0);
  t.regex(r.stderr, /qrauth needs Node\.js >= 20; \/usr\/bin\/node is v18\.19\.0\./);
  t.regex(r.stderr, /Debian 12 \(bookworm\) ships Node\.js 18/);
  await box.sh('rm -f /run/fake-node');
});

test.serial('the first connection starts the agent (socket activation); READY, STATUS and the watchdog reach systemd', async (t) => {
  // The admin's steps from the postinst message: relayUrl, then start the socket.
  await box.sh(`sed -i 's#"relayUrl": null#"relayUrl": "http://127.0.0.1:${relayPort}"#' /etc/qrauth/agent.json && systemctl start qrauth-agent.socket`);
  t.is((await box.run(['systemctl', 'is-active', 'qrauth-agent.socket'])).stdout.trim(), 'active');
  t.like(await show('qrauth-agent.service', 'ActiveState', 'MainPID'), { ActiveState: 'inactive', MainPID: '0' }, 'nothing runs before a login');
  const client = await beginLogin('nobody');
  t.teardown(() => client.close());
  t.like(await client.next(30_000), { type: MsgType.VERDICT, result: Result.NO_DEVICE });
  // Type=notify: "active" only after READY=1.
  t.like(await show('qrauth-agent.service', 'ActiveState', 'SubState', 'Type'), { ActiveState: 'active', SubState: 'running', Type: 'notify' });
  const status = await until(async () => {
    const s = (await show('qrauth-agent.service', 'StatusText')).StatusText!;
    return /^relay up; 0 pending logins$/.test(s) ? s : null;
  }, 30_000, 'STATUS=relay up');
  t.is(status, 'relay up; 0 pending logins');
  firstWatchdogPing = Number((await show('qrauth-agent.service', 'WatchdogTimestampMonotonic')).WatchdogTimestampMonotonic);
  t.true(firstWatchdogPing > 0, 'a WATCHDOG=1 reached systemd');
  t.regex(await box.sh('journalctl -u qrauth-agent -o cat'), /event=started .*socket=fd:3/, 'the agent uses the socket systemd passed');
});

test.serial('every hardening option of the unit is active, and the agent runs under them', async (t) => {
  t.like(await show('qrauth-agent.service', 'User', 'NotifyAccess', 'WatchdogUSec', 'CapabilityBoundingSet', 'AmbientCapabilities', 'NoNewPrivileges', 'ProtectSystem', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'PrivateIPC', 'PrivateMounts', 'DevicePolicy', 'ProtectClock', 'ProtectHostname', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups', 'ProtectProc', 'ProcSubset', 'KeyringMode', 'RemoveIPC', 'LockPersonality', 'RestrictRealtime', 'RestrictSUIDSGID', 'RestrictNamespaces', 'RestrictAddressFamilies', 'SystemCallArchitectures', 'SystemCallErrorNumber', 'UMask'), {
    User: 'qrauth',
    NotifyAccess: 'all',
    WatchdogUSec: '30s',
    CapabilityBoundingSet: 'cap_dac_read_search',
    AmbientCapabilities: 'cap_dac_read_search',
    NoNewPrivileges: 'yes',
    ProtectSystem: 'strict',
    ProtectHome: 'read-only',
    PrivateTmp: 'yes',
    PrivateDevices: 'yes',
    PrivateIPC: 'yes',
    PrivateMounts: 'yes',
    DevicePolicy: 'closed',
    ProtectClock: 'yes',
    ProtectHostname: 'yes',
    ProtectKernelTunables: 'yes',
    ProtectKernelModules: 'yes',
    ProtectKernelLogs: 'yes',
    ProtectControlGroups: 'yes',
    ProtectProc: 'invisible',
    ProcSubset: 'pid',
    KeyringMode: 'private',
    RemoveIPC: 'yes',
    LockPersonality: 'yes',
    RestrictRealtime: 'yes',
    RestrictSUIDSGID: 'yes',
    RestrictNamespaces: 'yes',
    RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX',
    SystemCallArchitectures: 'native',
    SystemCallErrorNumber: '1', // EPERM
    UMask: '0077',
  });
  const allowed = new Set((await show('qrauth-agent.service', 'SystemCallFilter')).SystemCallFilter!.split(' '));
  for (const s of ['read', 'openat', 'epoll_wait', 'sendmsg']) t.true(allowed.has(s), `${s} allowed`);
  for (const s of ['mount', 'reboot', 'swapon', 'init_module', 'ptrace', 'settimeofday', 'setrlimit']) t.false(allowed.has(s), `${s} filtered`);
  // What the kernel says about the running agent.
  const pid = await agentPid();
  const status = await box.sh(`cat /proc/${pid}/status`);
  const uid = (await box.sh('id -u qrauth')).trim();
  t.regex(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'));
  t.regex(status, /^NoNewPrivs:\s+1$/m);
  t.regex(status, /^Seccomp:\s+2$/m, 'a seccomp filter is on');
  for (const c of ['CapEff', 'CapPrm', 'CapBnd', 'CapAmb']) t.regex(status, new RegExp(`^${c}:\\s+0000000000000004$`, 'm'), `${c}: CAP_DAC_READ_SEARCH only`);
  const mounts = await box.sh(`cat /proc/${pid}/mountinfo`);
  t.regex(mounts, /^\S+ \S+ \S+ \S+ \/ ro,/m, '/ is read-only for it');
  t.regex(mounts, /^\S+ \S+ \S+ \S+ \/var\/lib\/qrauth rw,/m, 'its state dir is writable');
});

test.serial('a real ssh login from the host to the container\'s sshd, enrolled and approved by the phone through the packaged relay; the journal has the audit fields', async (t) => {
  // The admin: a user, the PAM line from the postinst message, sshd on.
  await box.sh(`useradd -m -s /bin/sh ${ALICE} && sed -i 's/^@include common-auth$/auth [success=done default=die] pam_qrauth.so/' /etc/pam.d/sshd && grep -q '^auth .*pam_qrauth.so$' /etc/pam.d/sshd && systemctl enable --now ssh.service`);
  phone = await HeadlessPhone.create(join(tmp.path, 'phone'), 'Packaged phone');
  const cli = runInPty(box.cmd(['qrauth', 'enroll', '--user', ALICE]));
  t.teardown(() => cli.kill());
  const [enrollPayload] = await cli.waitFor(ENROLL_RE);
  const enrolled = await phone.enroll(enrollPayload);
  t.like(enrolled.ack, { ok: true });
  await cli.waitFor(/Type y to enroll/);
  cli.type('y\r');
  t.is(await cli.exited, 0, cli.output);

  const login = await sshLoginApprovedByPhone(sshPort, ALICE, phone);
  t.is(login.code, 0);
  const journal = await box.sh('journalctl -u qrauth-agent -o cat');
  t.regex(journal, new RegExp(`event=login user=${ALICE} rhost=127\\.0\\.0\\.1 service=sshd sid=\\S+ device=\\S+ (?:uv=\\S+ )?how=phone result=approved`));
});

test.serial('sudo in the container shows the QR and runs the command when the phone approves', async (t) => {
  await box.sh(
    `sed -i 's/^@include common-auth$/auth [success=done ignore=ignore default=die] pam_qrauth.so nouserok\\n@include common-auth/' /etc/pam.d/sudo && printf 'Defaults:${ALICE} !lecture, timestamp_timeout=0, passwd_tries=1\\n${ALICE} ALL=(root) /usr/bin/id\\n' > /etc/sudoers.d/test-sudo && chmod 0440 /etc/sudoers.d/test-sudo`,
  );
  const sudo = runInPty(box.cmd(['runuser', '-u', ALICE, '--', 'sudo', '/usr/bin/id', '-u']));
  t.teardown(() => sudo.kill());
  const [payload] = await sudo.waitFor(LOGIN_PAYLOAD_RE);
  t.like(await phone.decide(payload, 'approve'), { ok: true, result: 'approved' });
  await sudo.waitFor(/^0\r?$/m);
  t.is(await sudo.exited, 0);
  t.regex(await box.sh('journalctl -u qrauth-agent -o cat'), new RegExp(`event=login user=${ALICE} service=sudo .*how=phone result=approved`));
});

test.serial('systemctl restart qrauth-agent while a login waits in the socket backlog: the login completes', async (t) => {
  const pid = await agentPid();
  // A stopped agent accepts nothing: the login's connection stays in the socket's queue.
  await box.sh(`kill -STOP ${pid}`);
  const marker = 'BACKLOG_RESTARTED';
  const ssh = runInPty(sshArgs(sshPort, ALICE, `echo ${marker}`));
  t.teardown(() => ssh.kill());
  // ss on the host sees it: nspawn shares the network namespace, Unix sockets included.
  await until(async () => /^u_str\s+LISTEN\s+[1-9]\d*\s+\d+\s+\/run\/qrauth\.sock\s/m.test((await run(['ss', '-xlH'])).stdout), 20_000, 'a login queued on /run/qrauth.sock');
  // restart sends SIGTERM then SIGCONT: woken, the old agent may accept the queued login in the same
  // turn as it handles SIGTERM and close it unanswered; the module then sends its BEGIN once more,
  // to the new agent (pam_qrauth.c, begin_retry). Before that retry this login was lost.
  await box.sh('systemctl restart qrauth-agent.service', 60_000);
  t.not(await agentPid(), pid);
  const [payload] = await ssh.waitFor(LOGIN_PAYLOAD_RE).catch(async (e: Error) => {
    // What the module and both agents said: the story of a lost login is in the journal.
    throw new Error(`${e.message}\njournal:\n${await box.sh('journalctl --since=-2min -o short-monotonic --no-pager | grep -E "qrauth|sshd" | tail -60')}`);
  });
  await ssh.waitFor(/press Enter/);
  // The new agent answers the queued BEGIN at once; its relay link comes up a moment later, and
  // until then a phone is told the host is offline (and would offer the code). Wait for the link.
  await until(async () => /^relay up;/.test((await show('qrauth-agent.service', 'StatusText')).StatusText ?? ''), 20_000, 'the new agent linked to the relay (STATUS)');
  t.like(await phone.decide(payload, 'approve'), { ok: true });
  ssh.type('\r');
  await ssh.waitFor(new RegExp(marker));
  t.is(await ssh.exited, 0);
});

test.serial('the watchdog keeps pinging, and an agent whose event loop stops (SIGSTOP) is restarted by systemd', async (t) => {
  t.timeout(120_000);
  const pinged = await until(async () => {
    const ts = Number((await show('qrauth-agent.service', 'WatchdogTimestampMonotonic')).WatchdogTimestampMonotonic);
    return ts > firstWatchdogPing ? ts : null;
  }, 40_000, 'a later WATCHDOG=1', 1000);
  t.true(pinged > firstWatchdogPing);
  const before = await show('qrauth-agent.service', 'MainPID', 'NRestarts');
  await box.sh(`kill -STOP ${before.MainPID}`);
  // WatchdogSec=30s: systemd kills the silent agent (SIGABRT), then Restart=on-failure.
  const after = await until(async () => {
    const s = await show('qrauth-agent.service', 'MainPID', 'NRestarts', 'ActiveState');
    return s.ActiveState === 'active' && s.MainPID !== before.MainPID && s.MainPID !== '0' ? s : null;
  }, 90_000, 'the agent restarted after the watchdog timeout', 1000);
  t.is(Number(after.NRestarts), Number(before.NRestarts) + 1);
  t.regex(await box.sh('journalctl -u qrauth-agent -o cat'), /[Ww]atchdog timeout/);
});

test.serial('relay stopped: the offline code from the phone logs in', async (t) => {
  await box.sh('systemctl stop qrauth-relay.service');
  const marker = nextMarker('OFFLINE');
  const ssh = runInPty(sshArgs(sshPort, ALICE, `echo ${marker}`));
  t.teardown(() => ssh.kill());
  const [payload] = await ssh.waitFor(LOGIN_PAYLOAD_RE);
  await ssh.waitFor(/press Enter/);
  ssh.type(`${phone.offlineCode(payload)}\r`);
  await ssh.waitFor(new RegExp(marker));
  t.is(await ssh.exited, 0);
  t.regex(await box.sh('journalctl -u qrauth-agent -o cat'), new RegExp(`event=login user=${ALICE} .*how=code result=approved`));
});

test.serial('systemd-analyze security rates the running agent unit at most 2.0', async (t) => {
  const out = await box.sh('systemd-analyze security --no-pager qrauth-agent.service');
  const m = /Overall exposure level for qrauth-agent\.service: (\d+\.\d+)/.exec(out);
  t.truthy(m, out.slice(-500));
  t.log(`qrauth-agent.service under systemd ${(await box.sh('systemctl --version')).split('\n')[0]}: exposure ${m![1]}`);
  t.true(Number(m![1]) <= 2.0, m![1]);
});

test.serial('apt-get remove keeps the config and the host key; purge leaves nothing of qrauth but its system user', async (t) => {
  const hostKey = await box.sh('sha256sum /var/lib/qrauth/host.key');
  await box.sh('apt-get remove -y qrauth qrauth-relay 2>&1', 5 * 60_000);
  t.is(await box.sh('sha256sum /var/lib/qrauth/host.key'), hostKey, 'the host key stays');
  t.true(existsSync(box.path('/etc/qrauth/agent.json')), 'the config stays');
  for (const p of ['/usr/lib/qrauth', '/usr/lib/qrauth-relay', '/usr/bin/qrauth', '/usr/sbin/qrauth-agent', '/usr/bin/qrauth-relay', '/usr/lib/systemd/system/qrauth-agent.socket', '/usr/lib/sysusers.d/qrauth.conf', '/run/qrauth.sock']) {
    t.false(existsSync(box.path(p)), `${p} removed`);
  }
  t.is((await box.run(['systemctl', 'is-active', 'qrauth-agent.service', 'qrauth-agent.socket', 'qrauth-relay.service'])).stdout.trim().split('\n').filter((s) => s !== 'inactive').length, 0, 'nothing of qrauth runs');

  await box.sh('apt-get purge -y qrauth qrauth-relay 2>&1', 5 * 60_000);
  await box.sh('rm -rf /root/debs');
  t.false(existsSync(box.path('/var/lib/qrauth')), 'purge removes the state');
  t.false(existsSync(box.path('/etc/qrauth')), 'and the config');
  t.notRegex((await box.run(['dpkg-query', '-W', '-f', '${Status}\n', 'qrauth', 'qrauth-relay'])).stdout, /ok installed|config-files/, 'dpkg knows nothing of them');
  // The overlay's upper layer holds every file the run made: none may carry qrauth's name, but
  // for the user's own enrolled-devices file in their home, which no package may touch.
  const left = (await run(['find', box.changes, '-name', '*qrauth*', '-not', '-path', `${box.changes}/home/*`])).stdout.trim();
  t.is(left, '', 'files left by the packages');
  t.regex(await box.sh('getent passwd qrauth'), /^qrauth:/, 'the system user stays, as Debian does');
});
