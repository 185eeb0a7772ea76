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
import { tryConnect } from './support/net.js';
import { PamClient } from './support/pam-client.js';
import { HeadlessPhone } from './support/phone.js';
import { freePort } from './support/sshd.js';
import { ALICE } from './support/stack.js';
import { ensureUser, tempDir } from './support/system.js';

const tmp = tempDir('qrhb-');
const daemons: Daemon[] = [];
const closers: Array<() => Promise<unknown>> = [];

/** The real qrauth-relay process on a free port, told its own URL (--public-url) unless `publicUrl` is false. */
async function relayProcess(more: string[] = [], publicUrl = true): Promise<{ daemon: Daemon; url: string }> {
  const port = await freePort();
  const self = `http://127.0.0.1:${port}`;
  const daemon = startDaemon([process.execPath, '--import', 'tsx', 'relay/src/main.ts', '--port', String(port), ...(publicUrl ? ['--public-url', self] : []), ...more]);
  daemons.push(daemon);
  const [, url] = await daemon.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/, 20_000);
  return { daemon, url: url! };
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
  t.regex(replayed.ok ? '' : replayed.message, /signed for another relay \(http:\/\/127\.0\.0\.1:\d+\)/);
  t.is(await hostsOn(honest.url), 0, 'nobody sits in the host\'s room on the honest relay');
  t.true(honest.daemon.output.includes('result=refused'), 'the honest relay logged the refusal');
  // The agent's own handshake for the honest relay is taken: here it is, in the room.
  const direct = await startTestAgent({ relayUrl: honest.url });
  closers.push(() => direct.close());
  await until(async () => (await hostsOn(honest.url)) === 1, 10_000);
  t.pass();
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

test.serial('older clients (v1 handshakes) still connect, unless the relay takes only bound ones; a mistyped --public-url is a config error', async (t) => {
  const seed = nodeCrypto.randomBytes(32);
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
    t.is(await d.exited, exit, `${args.join(' ')}: exit ${exit}`);
    t.regex(d.output, message);
    t.notRegex(d.output, /listening on/);
  }
});
