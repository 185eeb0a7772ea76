/**
 * `make demo`: the whole product on this machine, for a person to try.
 * Starts the relay, the agent and an sshd on 127.0.0.1:2222 with pam_qrauth, makes a demo user
 * and a headless phone enrolled for it, then approves the logins you paste. Ctrl-C stops all.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { payloadKind, toB64url, isQrauthError } from '../../protocol/src/index.js';
import { readHostPublicKey } from '../../agent/src/host-key.js';
import { HeadlessPhone } from './phone.js';
import { SoftAuthenticator } from './soft-authenticator.js';
import { freePort, startSshd, type Sshd } from './sshd.js';
import { MODULE_PATH, ROOT, ensureUser, installPamService, isRoot, tempDir } from './system.js';

const USER = 'qrauth-demo';
const SSH_PORT = Number(process.env.QRAUTH_DEMO_SSH_PORT ?? 2222);

function waitForLine(child: ChildProcess, pattern: RegExp, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const t = setTimeout(() => reject(new Error(`${what} did not start:\n${seen}`)), 15_000);
    const on = (d: Buffer) => {
      seen += d;
      if (pattern.test(seen)) {
        clearTimeout(t);
        resolve();
      }
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}):\n${seen}`)));
  });
}

async function main() {
  if (!isRoot()) throw new Error('make demo runs as root: it starts sshd and creates the demo user');
  const dir = tempDir('qrauth-demo-');
  const children: ChildProcess[] = [];
  let sshd: Sshd | null = null;
  let pam: { remove(): void } | null = null;
  let phone: HeadlessPhone | null = null;
  let stopping = false;
  // Everything the demo started goes, however it ends: the children run in their own process
  // groups (so Ctrl-C reaches the demo first and it stops them in order), which means nothing
  // else stops them if the demo dies, e.g. when its output pipe closes (`make demo | tee` and ^C).
  let cleaned = false;
  const cleanupSync = () => {
    if (cleaned) return;
    cleaned = true;
    for (const pid of [sshd?.pid, ...children.map((c) => (c.exitCode === null ? c.pid : undefined))]) {
      try {
        if (pid) process.kill(pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
    try {
      pam?.remove();
    } catch {
      /* best effort: a leftover /etc/pam.d file would be named sshd-qrauth-demo */
    }
    dir.remove();
  };
  process.on('exit', cleanupSync);
  const say = (line: string) => {
    try {
      console.log(line);
    } catch {
      /* the terminal or pipe is gone; stopping matters more */
    }
  };
  // A closed stdout (EPIPE) would otherwise throw from the next write, maybe inside stop().
  process.stdout.on('error', () => void stop(1));
  const stop = async (code = 0) => {
    if (stopping) return;
    stopping = true;
    say('\nStopping the demo...');
    await phone?.close().catch(() => {});
    await sshd?.stop().catch(() => {});
    cleanupSync();
    process.exit(code);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());

  try {
    const node = process.execPath;
    const dist = join(ROOT, 'dist');
    if (!existsSync(join(dist, 'agent/src/main.js'))) throw new Error('run `make` first (dist/ is missing)');
    const relayPort = await freePort();
    const appDir = join(ROOT, 'ionic-app', 'dist');
    // One box: the relay serves the app too, which makes it trusted by the app's users; fine for a
    // demo on this machine, never in production (docs/app.md).
    const relay = spawn(node, [join(dist, 'relay/src/main.js'), '--port', String(relayPort), '--public-url', `http://127.0.0.1:${relayPort}`, ...(existsSync(appDir) ? ['--serve-app-trusting-relay', appDir] : [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // own process group: Ctrl-C reaches the demo, which stops them in order
    });
    children.push(relay);
    await waitForLine(relay, /listening/, 'the relay');
    const relayUrl = `http://127.0.0.1:${relayPort}`;

    const state = join(dir.path, 'state');
    mkdirSync(join(dir.path, 'devices'), { recursive: true });
    const cfgPath = join(dir.path, 'agent.json');
    const socket = join(dir.path, 'qrauth.sock');
    writeFileSync(
      cfgPath,
      JSON.stringify({ socket, controlSocket: join(dir.path, 'control.sock'), stateDir: state, relayUrl, authfile: join(dir.path, 'devices', '%u'), hostname: 'qrauth-demo-host', userVerification: 'required' }, null, 2),
    );
    const agent = spawn(node, [join(dist, 'agent/src/main.js'), '--config', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    children.push(agent);
    agent.stderr!.on('data', (d) => process.stdout.write(`  [agent] ${d}`));
    await waitForLine(agent, /relay_link state=up/, 'the agent');

    ensureUser(USER);
    pam = installPamService('sshd-qrauth-demo', [`auth required ${MODULE_PATH} socket=${socket}`]);
    sshd = await startSshd({ dir: dir.path, service: 'sshd-qrauth-demo', allowUsers: USER, fixedPort: SSH_PORT });

    const host = readHostPublicKey(state);
    phone = await HeadlessPhone.create(join(dir.path, 'phone'), 'Demo phone');
    // The passkey path (issue #12): the host requires UV, the phone answers with a software passkey.
    phone.authenticator = new SoftAuthenticator({ origin: 'https://app.qrauth.invalid' });
    await phone.trustHost({ hostPub: toB64url(host.publicKey), hostname: 'qrauth-demo-host', relayUrl });
    writeFileSync(join(dir.path, 'devices', USER), `${phone.devicesLine()}\n`, { mode: 0o600 });

    console.log(`
qrauth demo is running.
  relay   ${relayUrl}${existsSync(appDir) ? '   (the phone app is served here too: demo only, see docs/app.md)' : ''}
  agent   socket ${socket}, host id ${host.hostId}
  sshd    127.0.0.1:${sshd.port}, PAM service sshd-qrauth-demo with pam_qrauth

In another terminal, log in:

    ssh -p ${sshd.port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null ${USER}@127.0.0.1

A QR code appears with a line starting QRA1:. This terminal is the demo user's phone:
paste that line here and press Enter to approve (the host requires a passkey with the
owner's fingerprint or PIN: this phone's software authenticator signs one), or type
    deny <QRA1 line>    to deny
    code <QRA1 line>    to see the 8-digit offline code to type into ssh instead
Then press Enter in the ssh terminal. Ctrl-C stops everything the demo started.
`);
    const rl = createInterface({ input: process.stdin });
    rl.on('line', async (line) => {
      const [verb, arg] = /^(deny|code)\s+/.test(line.trim()) ? line.trim().split(/\s+/, 2) : ['approve', line.trim()];
      if (!arg) return;
      if (payloadKind(arg) !== 'login') return console.log('That is not a qrauth login line (it starts with QRA1:).');
      try {
        if (verb === 'code') return console.log(`Offline code: ${phone!.offlineCode(arg)}`);
        const ack = await phone!.decide(arg, verb === 'deny' ? 'deny' : 'approve', (ctx) =>
          console.log(`Phone: ${verb === 'deny' ? 'denying' : 'approving'} login as ${ctx.user} to ${ctx.hostname} from ${ctx.rhost || 'local'} (${ctx.service})`),
        );
        const passkeyNote = verb === 'deny' ? '' : ' (with a passkey assertion: fingerprint/PIN verified, checked by the host)';
        console.log(ack.ok ? `Phone: ${ack.result}${passkeyNote}. Press Enter in the ssh terminal.` : `Phone: refused: ${ack.message}`);
      } catch (e) {
        console.log(`Phone: ${isQrauthError(e) ? e.message : (e as Error).message}`);
      }
    });
    rl.on('close', () => {
      if (!process.stdin.isTTY) return; // keep running when started without a terminal
      void stop();
    });
  } catch (e) {
    console.error(`demo: ${(e as Error).message}`);
    await stop(1);
  }
}

await main();
