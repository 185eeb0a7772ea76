/**
 * A relay in a host's list that lies, replaying handshakes: the agent and the phone sign each
 * handshake for the relay they are connecting to (v2, the relay's origin), and a relay started
 * with --public-url refuses one signed for any other. The hostile relay here is a Socket.IO
 * server that keeps every handshake it is sent and presents it to the real qrauth-relay process
 * at once (well inside the 120 s clock window, with a nonce that relay has never seen); the
 * clients are the real agent (RelayLink) and the test phone, which signs as the app does.
 */
import test from 'ava';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Server } from 'socket.io';
import { DEVICE_NAMESPACE, HOST_NAMESPACE, MsgType, type FrameMsg, makeAuthHandshake, toB64url } from '../protocol/src/index.js';
import { nodeCrypto } from '../protocol/src/crypto-node.js';
import { type Daemon, startDaemon, until } from './support/daemon.js';
import { type AgentFixture, startTestAgent } from './support/fixtures.js';
import { qrauthCli } from './support/enroll.js';
import { startRelay } from '../relay/src/server.js';
import { tryConnect } from './support/net.js';
import { PamClient } from './support/pam-client.js';
import { HeadlessPhone } from './support/phone.js';
import { freePort } from './support/sshd.js';
import { ALICE, startBoundRelay } from './support/stack.js';
import { ensureUser, tempDir } from './support/system.js';
import { prng, testSeed } from './support/seeded.js';

/** The test keys of the v1/v2 cases come from this seed (printed by the tests that use it). */
const SEED = testSeed(0x0b0e_2e1a);
const seededBytes = prng(SEED);

const tmp = tempDir('qrhb-');
const daemons: Daemon[] = [];
const closers: Array<() => Promise<unknown>> = [];

/**
 * The real qrauth-relay process on a free port, told its own URL: `publicUrl` writes it from the
 * port (default: as the clients do). A port taken between freePort and the relay's bind (tests
 * run in parallel) is tried again with another.
 */
async function relayProcess(more: string[] = [], publicUrl = (port: number) => ['--public-url', `http://127.0.0.1:${port}`], env: NodeJS.ProcessEnv = {}): Promise<{ daemon: Daemon; url: string }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const daemon = startDaemon([process.execPath, '--import', 'tsx', 'relay/src/main.ts', '--port', String(port), ...publicUrl(port), ...more], { env });
    daemons.push(daemon);
    const up = await Promise.race([daemon.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/, 20_000), daemon.exited.then(() => null)]);
    if (up) return { daemon, url: up[1]! };
    if (!/EADDRINUSE/.test(daemon.output) || attempt >= 5) throw new Error(`the relay did not start: ${daemon.output.slice(-500)}`);
  }
}

/** The exit code, or "still running" after 15 s (the relay started when it should have refused; stopped after the tests). */
function exitedWithin(d: Daemon): Promise<number | null | 'still running'> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([d.exited, new Promise<'still running'>((r) => (timer = setTimeout(() => r('still running'), 15_000)))]).finally(() => clearTimeout(timer));
}

/** The hostile relay: accepts every connection on /host and /device and keeps its handshake. */
async function hostileRelay(): Promise<{ url: string; handshakes: { host: object[]; device: object[] } }> {
  const http = createServer();
  const io = new Server(http, { serveClient: false });
  const handshakes = { host: [] as object[], device: [] as object[] };
  io.of(HOST_NAMESPACE).use((socket, next) => {
    handshakes.host.push(socket.handshake.auth);
    next();
  });
  io.of(DEVICE_NAMESPACE).use((socket, next) => {
    handshakes.device.push(socket.handshake.auth);
    next();
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  closers.push(() => io.close().then(() => undefined, () => undefined));
  return { url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`, handshakes };
}

async function hostsOn(url: string): Promise<number> {
  return ((await (await fetch(`${url}/healthz`)).json()) as { hosts: number }).hosts;
}

test.before(() => {
  ensureUser(ALICE);
});

test.after.always(async () => {
  for (const d of daemons) await d.stop();
  for (const c of closers) await c();
  tmp.remove();
});

test.serial("the agent's handshake, kept by a hostile relay in its list, is refused by the host's honest relay", async (t) => {
  const honest = await relayProcess();
  const hostile = await hostileRelay();
  // The hostile relay first in the list: the agent connects there.
  const agent: AgentFixture = await startTestAgent({ relayUrl: hostile.url, relayUrls: [hostile.url, honest.url] });
  closers.push(() => agent.close());
  await until(() => hostile.handshakes.host.length > 0, 10_000);
  const replayed = await tryConnect(honest.url, HOST_NAMESPACE, hostile.handshakes.host[0]!);
  t.like(replayed, { ok: false, code: 'QRA_ERR_UNAUTHENTICATED' });
  t.regex(replayed.ok ? '' : replayed.message, new RegExp(`signed for another relay \\(${hostile.url.replace(/[.]/g, '\\.')}\\), not this one`));
  t.notRegex(replayed.ok ? '' : replayed.message, new RegExp(`${honest.url.replace(/[.]/g, '\\.')}(?!\\d)`), 'the relay\'s own names are not told to the client');
  t.is(await hostsOn(honest.url), 0, 'nobody sits in the host\'s room on the honest relay');
  await honest.daemon.waitFor(/event=handshake role=host result=refused/, 5000);
  // The agent's own handshake for the honest relay is taken: here it is, in the room.
  const direct = await startTestAgent({ relayUrl: honest.url });
  closers.push(() => direct.close());
  await until(async () => (await hostsOn(honest.url)) === 1, 10_000).catch(() => {});
  t.is(await hostsOn(honest.url), 1, "the agent's own handshake for this relay puts it in its room");
  t.true(direct.agent.relay!.up);
});

test.serial("the phone's handshake, kept by a hostile relay, is refused by the host's honest relay", async (t) => {
  const honest = await relayProcess();
  const hostile = await hostileRelay();
  const agent = await startTestAgent({ relayUrl: hostile.url });
  closers.push(() => agent.close());
  const alice = ensureUser(ALICE);
  const phone = await HeadlessPhone.create(join(tmp.path, 'phone'), 'Alice phone', { timeoutMs: 1500 });
  closers.push(() => phone.close());
  agent.setDevices(ALICE, [phone.devicesLine()]);
  await phone.trustHost({ hostPub: toB64url(agent.agent.host.publicKey), hostname: 'web-01', relayUrl: hostile.url });
  const client = await PamClient.connect(agent.socket);
  closers.push(async () => client.close());
  client.send({ type: MsgType.BEGIN, user: ALICE, service: 'sshd', rhost: '127.0.0.1', tty: 'ssh', uid: alice.uid, home: alice.home } as FrameMsg);
  const challenge = (await client.next()) as { type: number; payload: string } | null;
  t.is(challenge?.type, MsgType.CHALLENGE);
  // The hostile relay never answers; the phone's handshake is what it was after.
  await t.throwsAsync(phone.fetchContext(challenge!.payload));
  t.true(hostile.handshakes.device.length > 0, 'the phone connected to the hostile relay');
  const replayed = await tryConnect(honest.url, DEVICE_NAMESPACE, hostile.handshakes.device[0]!);
  t.like(replayed, { ok: false, code: 'QRA_ERR_UNAUTHENTICATED' });
  t.regex(replayed.ok ? '' : replayed.message, /signed for another relay/);
});

test.serial('--public-url written with a path and a trailing slash, or in capitals, or as a comma-separated env list, matches the clients\' spelling; an empty env value is refused', async (t) => {
  t.log(`seed ${SEED}`);
  const seed = seededBytes(32);
  // The clients sign URL.origin of the URL they use: http://127.0.0.1:PORT.
  for (const spell of [(p: number) => `http://127.0.0.1:${p}/qrauth/`, (p: number) => `HTTP://127.0.0.1:${p}`]) {
    const r = await relayProcess([], (p) => ['--public-url', spell(p)]);
    const c = await tryConnect(r.url, HOST_NAMESPACE, makeAuthHandshake(nodeCrypto, 'host', seed, Date.now(), `${r.url}/`));
    t.true(c.ok, `${spell(1)}: ${c.ok ? '' : c.message}`);
    if (c.ok) c.socket.disconnect();
  }
  const viaEnv = await relayProcess([], () => [], { QRAUTH_RELAY_PUBLIC_URLS: 'https://relay.example, http://127.0.0.1:1' });
  const other = await tryConnect(viaEnv.url, HOST_NAMESPACE, makeAuthHandshake(nodeCrypto, 'host', seed, Date.now(), viaEnv.url));
  t.like(other, { ok: false, code: 'QRA_ERR_UNAUTHENTICATED' }, 'the env list is checked: this relay is not on it');
  const listed = await tryConnect(viaEnv.url, HOST_NAMESPACE, makeAuthHandshake(nodeCrypto, 'host', seed, Date.now(), 'https://relay.example'));
  t.true(listed.ok, 'a name on the env list is taken');
  if (listed.ok) listed.socket.disconnect();
  for (const empty of ['', ' , ']) {
    const d = startDaemon([process.execPath, '--import', 'tsx', 'relay/src/main.ts', '--port', '0'], { env: { QRAUTH_RELAY_PUBLIC_URLS: empty } });
    daemons.push(d);
    t.is(await exitedWithin(d), 1, `QRAUTH_RELAY_PUBLIC_URLS=${JSON.stringify(empty)} is a usage error`);
    t.regex(d.output, /not an empty value/);
  }
});

test.serial('older clients (v1 handshakes) still connect, unless the relay takes only bound ones; a mistyped --public-url is a config error', async (t) => {
  t.log(`seed ${SEED}`);
  const seed = seededBytes(32);
  const lenient = await relayProcess();
  const old = await tryConnect(lenient.url, HOST_NAMESPACE, makeAuthHandshake(nodeCrypto, 'host', seed));
  t.true(old.ok, 'a v1 handshake is taken by default');
  if (old.ok) old.socket.disconnect();
  const strict = await relayProcess(['--bound-handshakes-only']);
  const refused = await tryConnect(strict.url, HOST_NAMESPACE, makeAuthHandshake(nodeCrypto, 'host', seed));
  t.like(refused, { ok: false, code: 'QRA_ERR_UNAUTHENTICATED' });
  t.regex(refused.ok ? '' : refused.message, /only handshakes signed for it/);
  const bound = await tryConnect(strict.url, HOST_NAMESPACE, makeAuthHandshake(nodeCrypto, 'host', seed, Date.now(), strict.url));
  t.true(bound.ok, 'a v2 handshake for this relay is taken');
  if (bound.ok) bound.socket.disconnect();

  // Usage errors are commander's (exit 1, as for any bad option); a contradiction in the
  // configuration is the relay's QRA_ERR_CONFIG (exit 2). Neither starts listening.
  for (const [args, exit, message] of [
    [['--public-url', 'relay.example'], 1, /--public-url.*not a URL/s],
    [['--public-url', 'ftp://relay.example'], 1, /--public-url.*http\(s\)/s],
    [['--bound-handshakes-only'], 2, /QRA_ERR_CONFIG: .*needs the relay's public URL/],
  ] as const) {
    const d = startDaemon([process.execPath, '--import', 'tsx', 'relay/src/main.ts', '--port', '0', ...args]);
    daemons.push(d);
    t.is(await exitedWithin(d), exit, `${args.join(' ')}: exit ${exit}`);
    t.regex(d.output, message);
    t.notRegex(d.output, /listening on/);
  }
});

test.serial('an agent whose relays include one that does not check handshake binding says so (log, qrauth status), even while on another; with all checking, nothing', async (t) => {
  const unchecked = await startRelay({ log: () => {} });
  closers.push(() => unchecked.close());
  const checked = await startBoundRelay();
  closers.push(() => checked.close());
  // On the checking relay (first in the list): the other one is still the one a replay would go to.
  const agent = await startTestAgent({ relayUrl: checked.url, relayUrls: [checked.url, unchecked.url] });
  closers.push(() => agent.close());
  await until(() => agent.agent.relay!.boundHandshakes(unchecked.url) !== undefined && agent.agent.relay!.boundHandshakes(checked.url) !== undefined, 10_000);
  t.is(agent.agent.relay!.url, checked.url, 'the link is on the checking relay');
  t.deepEqual(agent.agent.relay!.unboundRelays, [unchecked.url]);
  const warned = agent.logs.filter((l) => l.startsWith('event=relay_warning '));
  t.is(warned.length, 1, warned.join('\n'));
  t.true(warned[0]!.includes(`relay=${unchecked.url}`) && /does not check which relay a handshake is signed for/.test(warned[0]!), warned[0]);
  const cli = qrauthCli(agent.configPath, ['status']);
  t.is(await cli.exited, 0, cli.output);
  t.regex(cli.output, new RegExp(`warning: ${unchecked.url.replace(/[.]/g, '\\.')} does not check which relay a handshake was signed for; its operator should start it with --public-url`));

  const allChecked = await startTestAgent({ relayUrl: checked.url });
  closers.push(() => allChecked.close());
  await until(() => allChecked.agent.relay!.boundHandshakes(checked.url) !== undefined, 10_000);
  t.deepEqual(allChecked.agent.relay!.unboundRelays, []);
  t.false(allChecked.logs.some((l) => l.startsWith('event=relay_warning ')));
  const ok = qrauthCli(allChecked.configPath, ['status']);
  t.is(await ok.exited, 0, ok.output);
  t.notRegex(ok.output, /warning:/);
});
