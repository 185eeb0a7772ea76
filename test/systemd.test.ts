/**
 * The systemd units as installed, and the installed agent started the way systemd starts it:
 * the listening socket passed as fd 3 (LISTEN_FDS/LISTEN_PID) by a launcher that keeps it open
 * across restarts (test/support/fake-systemd.py), NOTIFY_SOCKET pointing at a datagram socket the
 * launcher reads. No PID 1 systemd here, so the launcher does its part; the agent and the
 * systemd-notify CLI it runs are the real ones.
 */
import test from 'ava';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import { MsgType, Result, fromB64url, keyId, offlineCode, offlineKey, parseLoginPayload, toB64url, type FrameMsg } from '../protocol/src/index.js';
import { SystemdNotifier, watchdogIntervalMs, type Notification } from '../agent/src/notify.js';
import { startRelay, type Relay } from '../relay/src/server.js';
import { type Daemon, makeInstall, run, startDaemon, until } from './support/daemon.js';
import { PamClient } from './support/pam-client.js';
import { ROOT, isRoot, tempDir } from './support/system.js';

const UNITS = ['qrauth-agent.socket', 'qrauth-agent.service', 'qrauth-relay.service'];
const tmp = tempDir('qrsd-');
const dirs = {
  PREFIX: join(tmp.path, 'usr'),
  UNITDIR: join(tmp.path, 'units'),
  SYSCONFDIR: join(tmp.path, 'etc'),
  PAMDIR: join(tmp.path, 'pam'),
  SYSUSERSDIR: join(tmp.path, 'sysusers'),
  MANDIR: join(tmp.path, 'man'),
  BUILDDIR: join(tmp.path, 'build'),
};
const unitPath = (u: string) => join(dirs.UNITDIR, u);

interface NotifyEvent {
  event: 'started' | 'notify' | 'exited';
  pid: number;
  fields?: Record<string, string>;
  status?: number;
}

let relay: Relay;
let launcher: Daemon;
const events: NotifyEvent[] = [];
const waiters = new Set<() => void>();
const stateDir = join(tmp.path, 'state');

function waitEvent(pred: (e: NotifyEvent) => boolean, from: number, timeoutMs = 20_000, what = 'event'): Promise<NotifyEvent> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const e = events.slice(from).find(pred);
      if (e) {
        clearTimeout(t);
        waiters.delete(check);
        resolve(e);
      }
    };
    const t = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`no ${what} within ${timeoutMs} ms; events: ${JSON.stringify(events.slice(from)).slice(-2000)}\n${launcher.output.slice(-2000)}`));
    }, timeoutMs);
    waiters.add(check);
    check();
  });
}
const isNotify = (key: string, re: RegExp = /.*/) => (e: NotifyEvent) => e.event === 'notify' && e.fields?.[key] !== undefined && re.test(e.fields[key]!);

const phoneSeed = new Uint8Array(32).fill(7);
const phonePub = c.ed25519FromSeed(phoneSeed).publicKey;
const phoneId = keyId(c, phonePub);

function codeFor(payload: string): string {
  const p = parseLoginPayload(payload);
  // host.pub: "ed25519 <public key b64url> <hostId>", written by the agent on first start.
  const hostPub = fromB64url(readFileSync(join(stateDir, 'host.pub'), 'utf8').split(' ')[1]!, 32);
  const k = offlineKey(c, phoneSeed, hostPub, p.hostId, phoneId);
  return offlineCode(c, k, p.hostId, p.sid, p.nonce);
}

async function beginLogin(sock: string): Promise<PamClient> {
  const client = await PamClient.connect(sock);
  client.send({ type: MsgType.BEGIN, user: 'alice', service: 'sshd', rhost: '127.0.0.1', tty: 'ssh', uid: 4242, home: '/nonexistent' } as FrameMsg);
  return client;
}

/** The rest of a login after BEGIN: CHALLENGE, then the phone's offline code, then APPROVED. */
async function finishWithCode(client: PamClient, timeoutMs = 20_000): Promise<FrameMsg | null> {
  const challenge = await client.next(timeoutMs);
  if (challenge?.type !== MsgType.CHALLENGE) throw new Error(`expected a challenge, got ${JSON.stringify(challenge)}`);
  client.send({ type: MsgType.CODE, digits: codeFor((challenge as { payload: string }).payload) } as FrameMsg);
  return client.next(timeoutMs);
}

test.before(async () => {
  if (!isRoot()) throw new Error('run as root: the test installs into a temp prefix and starts daemons');
  await makeInstall(dirs);
  relay = await startRelay({ log: () => {} });
  mkdirSync(join(tmp.path, 'devices'), { mode: 0o755 });
  writeFileSync(join(tmp.path, 'devices', 'alice'), `ed25519 ${toB64url(phonePub)} 2026-11-26 Test phone\n`, { mode: 0o600 });
  const config = join(tmp.path, 'agent.json');
  writeFileSync(
    config,
    JSON.stringify({
      socket: join(tmp.path, 'unused.sock'),
      controlSocket: join(tmp.path, 'control.sock'),
      stateDir,
      relayUrl: relay.url,
      authfile: join(tmp.path, 'devices', '%u'),
      sshdInfoMessages: 'no',
      hostname: 'sd-host',
    }),
  );
  // The command line of the installed unit, with the test's config instead of /etc's.
  const exec = /^ExecStart=(\S+)/m.exec(readFileSync(unitPath('qrauth-agent.service'), 'utf8'))![1]!;
  launcher = startDaemon(
    ['python3', join(ROOT, 'test/support/fake-systemd.py'), '--listen', join(tmp.path, 'qrauth.sock'), '--notify', join(tmp.path, 'notify.sock'), '--watchdog-usec', '2000000', '--', exec, '--config', config],
    { stdin: 'pipe' },
  );
  createInterface({ input: launcher.child.stdout! }).on('line', (line) => {
    if (!line.startsWith('{')) return;
    events.push(JSON.parse(line) as NotifyEvent);
    for (const w of [...waiters]) w();
  });
});

test.after.always(async () => {
  // The launcher stops the agent (SIGTERM, then SIGKILL after 15 s) when its stdin closes.
  launcher?.child.stdin?.end();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([launcher?.exited, new Promise((r) => (timer = setTimeout(r, 20_000)))]);
  clearTimeout(timer);
  await launcher?.stop();
  for (const e of events) {
    // Only an agent the launcher started and never saw exit (so its pid cannot have been reused).
    if (e.event !== 'started' || events.some((x) => x.event === 'exited' && x.pid === e.pid)) continue;
    try {
      process.kill(e.pid, 'SIGKILL'); // only if the launcher could not stop it
    } catch {
      /* gone, as it should be */
    }
  }
  await relay?.close();
  tmp.remove();
});

test.serial('systemd-analyze verify accepts every installed unit', async (t) => {
  const r = await run(['systemd-analyze', 'verify', '--man=no', ...UNITS.map(unitPath)]);
  t.is(r.stderr.trim(), '', r.stderr);
  t.is(r.code, 0);
});

test.serial('the units say what the design says: socket 0600, Type=notify, watchdog, qrauth user with one capability', (t) => {
  const socket = readFileSync(unitPath('qrauth-agent.socket'), 'utf8');
  t.regex(socket, /^ListenStream=\/run\/qrauth\.sock$/m);
  t.regex(socket, /^SocketMode=0600$/m);
  const svc = readFileSync(unitPath('qrauth-agent.service'), 'utf8');
  for (const line of ['Type=notify', 'NotifyAccess=all', 'User=qrauth', 'CapabilityBoundingSet=CAP_DAC_READ_SEARCH', 'AmbientCapabilities=CAP_DAC_READ_SEARCH', 'StateDirectory=qrauth', 'ProtectSystem=strict', 'ProtectHome=read-only', 'PrivateTmp=yes', 'NoNewPrivileges=yes', 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6', 'SystemCallFilter=@system-service']) {
    t.true(svc.split('\n').includes(line), line);
  }
  t.regex(svc, /^WatchdogSec=\d+s$/m);
  t.regex(svc, new RegExp(`^ExecStart=${dirs.PREFIX}/sbin/qrauth-agent --config ${dirs.SYSCONFDIR}/qrauth/agent\\.json$`, 'm'), 'make install points the unit at PREFIX and SYSCONFDIR');
});

test.serial('systemd-analyze security rates the agent unit at most 3.0 (and the relay unit too)', async (t) => {
  for (const u of ['qrauth-agent.service', 'qrauth-relay.service']) {
    const r = await run(['systemd-analyze', 'security', '--offline=yes', unitPath(u)]);
    const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout);
    t.truthy(m, r.stdout.slice(-500));
    t.log(`${u}: exposure ${m![1]}`);
    t.true(Number(m![1]) <= 3.0, `${u}: ${m![1]}`);
  }
});

test.serial('started with the socket on fd 3, the agent sends READY=1, then STATUS with the relay link, and WATCHDOG=1 pings', async (t) => {
  const started = await waitEvent((e) => e.event === 'started', 0, 5000, 'start');
  const ready = await waitEvent(isNotify('READY', /^1$/), 0, 20_000, 'READY=1');
  t.is(ready.fields!.MAINPID, String(started.pid), 'MAINPID is the agent, not the CLI that sent it');
  t.regex(ready.fields!.STATUS ?? '', /pending login/);
  t.regex(launcher.output, /event=started .*socket=fd:3/, 'the agent used the inherited socket');
  const up = await waitEvent(isNotify('STATUS', /^relay up; 0 pending logins$/), 0, 20_000, 'STATUS relay up');
  t.truthy(up);
  const first = await waitEvent(isNotify('WATCHDOG', /^1$/), 0, 10_000, 'WATCHDOG=1');
  const second = await waitEvent(isNotify('WATCHDOG', /^1$/), events.indexOf(first) + 1, 10_000, 'a second WATCHDOG=1');
  t.true(events.indexOf(second) > events.indexOf(first), 'the watchdog keeps pinging');
});

test.serial('STATUS follows the pending logins (polled, not per login) and a login by code succeeds', async (t) => {
  const from = events.length;
  const client = await beginLogin(join(tmp.path, 'qrauth.sock'));
  t.teardown(() => client.close());
  const challenge = await client.next();
  t.is(challenge?.type, MsgType.CHALLENGE);
  await waitEvent(isNotify('STATUS', /; 1 pending login$/), from, 12_000, 'STATUS with 1 pending login');
  client.send({ type: MsgType.CODE, digits: codeFor((challenge as { payload: string }).payload) } as FrameMsg);
  t.like(await client.next(), { type: MsgType.VERDICT, result: Result.APPROVED });
  await waitEvent(isNotify('STATUS', /; 0 pending logins$/), events.length - 1, 12_000, 'STATUS back to 0 pending');
});

test.serial('logins that arrive while the agent restarts wait in the socket backlog and succeed once it is back', async (t) => {
  const sock = join(tmp.path, 'qrauth.sock');
  const from = events.length;
  launcher.child.stdin!.write('stop\n');
  const exited = await waitEvent((e) => e.event === 'exited', from, 20_000, 'agent exit');
  t.is(exited.status, 0, 'SIGTERM stops the agent cleanly');
  // The agent is gone; the socket is not. Three logins connect and send BEGIN into the backlog.
  const clients = await Promise.all([0, 1, 2].map(() => beginLogin(sock)));
  t.teardown(() => clients.forEach((cl) => cl.close()));
  await new Promise((r) => setTimeout(r, 500));
  const restartFrom = events.length;
  launcher.child.stdin!.write('start\n');
  await waitEvent(isNotify('READY', /^1$/), restartFrom, 20_000, 'READY=1 after the restart');
  const verdicts = await Promise.all(clients.map((cl) => finishWithCode(cl)));
  for (const v of verdicts) t.like(v, { type: MsgType.VERDICT, result: Result.APPROVED });
});

test.serial('STATUS says when the relay link goes down', async (t) => {
  const from = events.length;
  await relay.close();
  const e = await waitEvent(isNotify('STATUS', /^relay down; /), from, 15_000, 'STATUS relay down');
  t.truthy(e);
});

test('without NOTIFY_SOCKET there is no notifier (systemd-notify would fail); a watchdog meant for another pid is ignored', (t) => {
  t.is(SystemdNotifier.fromEnv({ log: () => {}, status: () => '', env: {} }), null);
  t.is(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 42), 15_000);
  t.is(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42), 15_000);
  t.is(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '43' }, 42), undefined);
  t.is(watchdogIntervalMs({ WATCHDOG_USEC: 'junk' }, 42), undefined);
});

test('STATUS is sent only when its text changes, one CLI at a time, and a failing CLI does not stop the next', async (t) => {
  const sent: Notification[] = [];
  const logged: string[] = [];
  let text = 'relay down; 0 pending logins';
  let fail = true;
  const n = new SystemdNotifier({
    log: (e) => logged.push(e),
    status: () => text,
    statusIntervalMs: 60_000,
    env: { NOTIFY_SOCKET: '/nonexistent' },
    send: async (x) => {
      sent.push(x);
      if (fail) {
        fail = false;
        throw new Error('boom');
      }
    },
  });
  await n.ready();
  n.refresh(); // same text: nothing
  text = 'relay up; 0 pending logins';
  n.refresh();
  n.refresh();
  text = 'relay up; 1 pending login';
  n.refresh();
  await new Promise((r) => setTimeout(r, 50));
  n.close();
  t.deepEqual(sent, [{ ready: true, status: 'relay down; 0 pending logins' }, { status: 'relay up; 1 pending login' }], 'the overtaken STATUS was skipped');
  t.deepEqual(logged, ['systemd_notify_failed']);
});
