/**
 * OpenSSH ≥ 10.3 shows PAM info messages at once: there the module puts the QR in an info
 * message and waits for the verdict, so the user scans, approves, and is in with no keystroke.
 * Runs Debian sid's sshd (10.x) in a chroot with our module; the agent detects the version.
 */
import test from 'ava';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { once } from 'node:events';
import { toB64url } from '../protocol/src/index.js';
import { startRelay, type Relay } from '../relay/src/server.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { HeadlessPhone } from './support/phone.js';
import { nextMarker, runInPty } from './support/pty.js';
import { decodeTerminalQr } from './support/qr-decode.js';
import { ensureSidRoot, sidSshdVersion } from './support/sid-chroot.js';
import { sshArgs, sshKeyArgs, sshNoTty, startSshd, type Sshd } from './support/sshd.js';
import { ALICE, LOGIN_PAYLOAD_RE } from './support/stack.js';
import { MODULE_PATH, ensureUser, randomName, tempDir } from './support/system.js';
import { parseOpenSshVersion, showsInfoAtOnce } from '../agent/src/sshd-version.js';

let root: string;
let relay: Relay;
let agent: AgentFixture;
let sshd: Sshd;
let phone: HeadlessPhone;
let sshdDir: string;
let pamFile: string;
let setModuleArgs: (args: string) => void;
const tmp = tempDir('qrsid-');

test.before(async () => {
  root = ensureSidRoot();
  ensureUser(ALICE);
  try {
    execFileSync('chroot', [root, 'id', ALICE], { stdio: 'ignore' });
  } catch {
    execFileSync('chroot', [root, 'useradd', '-m', '-s', '/bin/sh', ALICE], { stdio: 'pipe' });
  }
  mkdirSync(`${root}/usr/local/lib/qrauth`, { recursive: true });
  copyFileSync(MODULE_PATH, `${root}/usr/local/lib/qrauth/pam_qrauth.so`);
  // The agent asks "sshd -V" of the sshd that will run: the one in the chroot.
  const sshdWrapper = join(tmp.path, 'sshd');
  writeFileSync(sshdWrapper, `#!/bin/sh\nexec chroot ${root} /usr/sbin/sshd "$@"\n`);
  chmodSync(sshdWrapper, 0o755);
  relay = await startRelay({ log: () => {} });
  const sockName = `${randomName('qra-sid-')}.sock`;
  // Leases allowed by the agent; only a PAM line with `lease` asks for them (the lease test).
  agent = await startTestAgent({ relayUrl: relay.url, socket: `${root}/run/${sockName}`, sshdInfoMessages: 'auto', sshdPath: sshdWrapper, maxLeaseSeconds: 3600 });
  if (!agent.agent.relay!.up) await once(agent.agent.relay!, 'change');
  phone = await HeadlessPhone.create(join(tmp.path, 'phone'), 'Alice phone');
  await phone.trustHost({ hostPub: toB64url(agent.agent.host.publicKey), hostname: 'test-host', relayUrl: relay.url });
  agent.setDevices(ALICE, [phone.devicesLine()]);
  // OpenSSH 10 authenticates in its sshd-auth helper, which uses the PAM service "sshd" whatever
  // the name sshd was started under; the chroot is ours alone, so its sshd service file is too.
  const service = 'sshd';
  pamFile = `${root}/etc/pam.d/${service}`;
  setModuleArgs = (args: string) =>
    writeFileSync(pamFile, `auth required /usr/local/lib/qrauth/pam_qrauth.so socket=/run/${sockName} ${args}\naccount required pam_permit.so\nsession required pam_permit.so\n`);
  setModuleArgs('');
  sshdDir = `${root}/tmp/${randomName('qrs-')}`;
  mkdirSync(sshdDir, { recursive: true });
  sshd = await startSshd({ dir: sshdDir, service: randomName('sshd-qrsid'), chroot: root });
});

test.after.always(async () => {
  await phone?.close();
  await sshd?.stop();
  await agent?.close();
  await relay?.close();
  if (sshdDir) execFileSync('rm', ['-rf', sshdDir]);
  tmp.remove();
});

test('the agent detects the chroot sshd as OpenSSH >= 10.3', (t) => {
  const v = parseOpenSshVersion(sidSshdVersion(root));
  t.truthy(v);
  t.true(showsInfoAtOnce(v));
  t.true(agent.agent.sshdInfoAtOnce);
});

test.serial('OpenSSH >= 10.3 with mode=info: the QR shows before approval and the login completes on approval with no key pressed', async (t) => {
  setModuleArgs('mode=info');
  const marker = nextMarker('SID_LOGIN');
  const run = runInPty(sshArgs(sshd.port, ALICE, `echo ${marker}`));
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/approve on your phone/);
  t.is(decodeTerminalQr(run.output), payload, 'the QR is visible before approval and decodes');
  t.false(/press Enter/.test(run.output), 'no prompt: nothing to type');
  t.like(await phone.decide(payload, 'approve'), { ok: true, result: 'approved' });
  await run.waitFor(new RegExp(marker));
  t.is(await run.exited, 0);
});

test.serial('OpenSSH >= 10.3 in auto mode keeps the compact UTF-8 QR in the prompt (it fits 80x24); Enter after approval', async (t) => {
  setModuleArgs('');
  const marker = nextMarker('SID_LOGIN');
  const run = runInPty(sshArgs(sshd.port, ALICE, `echo ${marker}`));
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  t.regex(run.output, /▀|▄|█/, 'half blocks reach the client unescaped in a prompt');
  t.is(decodeTerminalQr(run.output), payload);
  t.like(await phone.decide(payload, 'approve'), { ok: true, result: 'approved' });
  run.type('\r');
  await run.waitFor(new RegExp(marker));
  t.is(await run.exited, 0);
});

test.serial('OpenSSH 10.6, publickey then keyboard-interactive with `lease`: approved for 1 h, the next login with the key is approved by lease, with the note shown at once', async (t) => {
  // A second sshd in the chroot that verifies a key before PAM runs (SSH_AUTH_INFO_0 has it).
  const dir = `${root}/tmp/${randomName('qrsl-')}`;
  mkdirSync(join(dir, 'authkeys'), { recursive: true });
  t.teardown(() => execFileSync('rm', ['-rf', dir]));
  const key = join(tmp.path, 'lease-key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  writeFileSync(join(dir, 'authkeys', ALICE), readFileSync(`${key}.pub`), { mode: 0o644 });
  const inner = dir.slice(root.length);
  const leaseSshd = await startSshd({
    dir,
    service: randomName('sshd-qrsl'),
    chroot: root,
    extraConfig: ['Match all', 'PubkeyAuthentication yes', 'AuthenticationMethods publickey,keyboard-interactive', `AuthorizedKeysFile ${inner}/authkeys/%u`],
  });
  t.teardown(() => leaseSshd.stop());
  setModuleArgs('mode=info lease');
  t.teardown(() => setModuleArgs(''));
  const marker = nextMarker('SID_LEASE');
  const run = runInPty(['ssh', ...sshKeyArgs(leaseSshd.port, key), `${ALICE}@127.0.0.1`, `echo ${marker}`]);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/approve on your phone/);
  let keyFp: string | undefined;
  t.like(await phone.decide(payload, 'approve', (ctx) => (keyFp = ctx.keyFp), 3600), { ok: true, result: 'approved' });
  t.is(keyFp, execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${key}.pub`]).toString().split(' ')[1], 'the key sshd 10.6 verified');
  await run.waitFor(new RegExp(marker));
  t.is(await run.exited, 0);

  const second = await sshNoTty(leaseSshd.port, key, ALICE, 'true');
  t.is(second.code, 0, second.out);
  t.notRegex(second.out, LOGIN_PAYLOAD_RE, 'no QR under the lease');
  t.regex(second.out, /approved by lease from Alice phone until \d\d:\d\d/, 'the info message shows at once on OpenSSH >= 10.3');
  t.true(agent.logs.some((l) => /event=login .*how=lease/.test(l)));
});
