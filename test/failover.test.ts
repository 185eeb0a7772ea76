/**
 * Failover without a balancer, with real relay processes: the agent's relayUrl is a list, it
 * keeps one link and moves down the list when its relay dies, and back when the preferred one
 * answers again; the phone learns the list at enrollment (signed) and tries the next relay when
 * its own cannot be reached. With Redis the relays share rooms, so a login started before the
 * agent's relay died completes through another node; without Redis a phone whose relays do not
 * have the host fails closed, with a message, and the login is not let in.
 */
import test, { type ExecutionContext } from 'ava';
import { join } from 'node:path';
import { MsgType, Result, type FrameMsg } from '../protocol/src/index.js';
import { type Daemon, startDaemon, until } from './support/daemon.js';
import { enrollPhone, qrauthCli } from './support/enroll.js';
import { type AgentFixture, startTestAgent } from './support/fixtures.js';
import { PamClient } from './support/pam-client.js';
import { HeadlessPhone } from './support/phone.js';
import { freePort } from './support/sshd.js';
import { ALICE } from './support/stack.js';
import { ensureUser, tempDir } from './support/system.js';

const tmp = tempDir('qrfo-');
const daemons: Daemon[] = [];
const phones: HeadlessPhone[] = [];
const agents: AgentFixture[] = [];
let alice: { uid: number; home: string };

interface Node {
  daemon: Daemon;
  url: string;
  port: number;
}

async function startNode(port: number, extra: string[] = []): Promise<Node> {
  const daemon = startDaemon([process.execPath, '--import', 'tsx', 'relay/src/main.ts', '--port', String(port), '--ack-timeout', '2000', ...extra]);
  daemons.push(daemon);
  const [, url] = await daemon.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/, 20_000);
  return { daemon, url: url!, port };
}

async function hostsOn(node: Node): Promise<number> {
  try {
    return ((await (await fetch(`${node.url}/healthz`)).json()) as { hosts: number }).hosts;
  } catch {
    return -1;
  }
}

async function newPhone(name: string): Promise<HeadlessPhone> {
  const p = await HeadlessPhone.create(join(tmp.path, name), name, { timeoutMs: 4000 });
  phones.push(p);
  return p;
}

/** BEGIN on the PAM socket: the open client and the QR payload of its session. */
async function begin(agent: AgentFixture): Promise<{ client: PamClient; qr: string }> {
  const client = await PamClient.connect(agent.socket);
  client.send({ type: MsgType.BEGIN, user: ALICE, service: 'sshd', rhost: '127.0.0.1', tty: 'ssh', uid: alice.uid, home: alice.home } as FrameMsg);
  const challenge = await client.next();
  if (challenge?.type !== MsgType.CHALLENGE) throw new Error(`expected a challenge, got ${JSON.stringify(challenge)}`);
  return { client, qr: (challenge as { payload: string }).payload };
}

async function verdict(client: PamClient): Promise<FrameMsg | null> {
  client.send({ type: MsgType.WAIT } as FrameMsg);
  try {
    return await client.next();
  } finally {
    client.close();
  }
}

async function status(t: ExecutionContext, agent: AgentFixture): Promise<string> {
  const cli = qrauthCli(agent.configPath, ['status']);
  const code = await cli.exited;
  t.is(code, 0, cli.output);
  return cli.output;
}

test.before(() => {
  const u = ensureUser(ALICE);
  alice = { uid: u.uid, home: u.home };
});

test.after.always(async () => {
  for (const p of phones) await p.close();
  for (const a of agents) await a.close();
  for (const d of daemons) await d.stop();
  tmp.remove();
});

test.serial("with Redis: the agent's relay dies mid-login, the agent moves to the next, the phone too, the login completes; the agent returns to the preferred relay", async (t) => {
  const redisPort = await freePort();
  const redis = startDaemon(['redis-server', '--port', String(redisPort), '--bind', '127.0.0.1', '--dir', tmp.path, '--save', '', '--appendonly', 'no', '--protected-mode', 'yes']);
  daemons.push(redis);
  await redis.waitFor(/Ready to accept connections/, 15_000);
  const withRedis = ['--redis', `redis://127.0.0.1:${redisPort}`];
  const [portA, portB, portC] = [await freePort(), await freePort(), await freePort()];
  let a = await startNode(portA, withRedis);
  const b = await startNode(portB, withRedis);
  const c = await startNode(portC, withRedis);
  const agent = await startTestAgent({ relayUrl: a.url, relayUrls: [a.url, b.url], hostname: 'test-host', expirySeconds: 60 }, { relayProbeMs: 300 });
  agents.push(agent);
  t.deepEqual(agent.agent.config.relayUrls, [a.url, b.url]);
  await until(async () => (await hostsOn(a)) === 1, 15_000, 'the agent on its preferred relay A');
  t.regex(await status(t, agent), new RegExp(`relay\\s+${a.url} \\(connected\\)`));

  // The phone learns the agent's list at enrollment, signed by the host.
  const phone = await newPhone('Enrolled phone');
  await enrollPhone(agent, ALICE, phone);
  const trusted = [...phone.hosts.values()][0]!;
  t.is(trusted.relayUrl, a.url);
  t.deepEqual(trusted.fallbackRelayUrls, [b.url], 'the further relay came in the signed enrollment answer');
  // Another phone that only knows node C (enrolled through a balancer, say).
  const phoneC = await newPhone('Phone on C');
  await phoneC.trustHost({ hostPub: trusted.hostPub, hostname: 'test-host', relayUrl: c.url });
  agent.setDevices(ALICE, [phone.devicesLine(), phoneC.devicesLine()]);

  // Two logins are waiting for a phone when relay A dies.
  const first = await begin(agent);
  const second = await begin(agent);
  await a.daemon.stop('SIGKILL');
  await until(async () => (await hostsOn(b)) === 1, 20_000, 'the agent moving to relay B');
  t.regex(await status(t, agent), new RegExp(`relay\\s+${b.url} \\(connected\\)[\\s\\S]*fallback: the preferred relay ${a.url} is unreachable`));

  // The enrolled phone cannot reach A and falls over to B, where the host now is.
  t.like(await phone.decide(first.qr, 'approve'), { ok: true, result: 'approved' });
  t.is(phone.relayUsedFor([...phone.hosts.keys()][0]!), b.url, 'the phone went through relay B');
  t.like(await verdict(first.client), { type: MsgType.VERDICT, result: Result.APPROVED });
  // The phone on C reaches the host on B through Redis.
  t.like(await phoneC.decide(second.qr, 'approve'), { ok: true, result: 'approved' });
  t.like(await verdict(second.client), { type: MsgType.VERDICT, result: Result.APPROVED });

  // A comes back on its port: the agent probes it and returns, opening the new link before closing the old.
  a = await startNode(portA, withRedis);
  await until(async () => (await hostsOn(a)) === 1 && (await hostsOn(b)) === 0, 20_000, 'the agent back on relay A');
  t.regex(await status(t, agent), new RegExp(`relay\\s+${a.url} \\(connected\\)`));
  t.notRegex(await status(t, agent), /fallback:/);
  t.true(agent.logs.some((l) => l.includes('preferred=true') && l.includes(`from=${b.url}`)), agent.logs.join('\n'));
  const third = await begin(agent);
  t.like(await phone.decide(third.qr, 'approve'), { ok: true, result: 'approved' });
  t.is(phone.relayUsedFor([...phone.hosts.keys()][0]!), a.url, 'the phone is back on its first relay');
  t.like(await verdict(third.client), { type: MsgType.VERDICT, result: Result.APPROVED });
});

test.serial("without Redis: the agent's relay dies mid-login and the phone's relays do not have the host: the phone says so and the login fails closed", async (t) => {
  const [portA, portB, portC] = [await freePort(), await freePort(), await freePort()];
  const a = await startNode(portA);
  const b = await startNode(portB);
  const c = await startNode(portC);
  const agent = await startTestAgent({ relayUrl: a.url, relayUrls: [a.url, b.url], hostname: 'test-host', expirySeconds: 5 }, { relayProbeMs: 300 });
  agents.push(agent);
  await until(async () => (await hostsOn(a)) === 1, 15_000, 'the agent on relay A');
  const phone = await newPhone('Phone on A then C');
  const hostPub = Buffer.from(agent.agent.host.publicKey).toString('base64url');
  await phone.trustHost({ hostPub, hostname: 'test-host', relayUrl: a.url, fallbackRelayUrls: [c.url] });
  agent.setDevices(ALICE, [phone.devicesLine()]);

  const login = await begin(agent);
  await a.daemon.stop('SIGKILL');
  await until(async () => (await hostsOn(b)) === 1, 20_000, 'the agent moving to relay B');
  // A is gone and C (no Redis) never saw this host: the phone tells its user, nothing is signed.
  const e = await t.throwsAsync(() => phone.decide(login.qr, 'approve'));
  t.is((e as { code?: string }).code, 'QRA_ERR_HOST_OFFLINE');
  t.regex(e?.message ?? '', /not connected to the relay/);
  const v = await verdict(login.client);
  t.is(v?.type, MsgType.VERDICT);
  t.not((v as { result?: number }).result, Result.APPROVED, 'nobody is let in');
  t.like(v, { result: Result.EXPIRED });
});

test('config: relayUrl takes a list, each entry held to the https-except-loopback rule', async (t) => {
  const { makeConfig } = await import('../agent/src/config.js');
  const cfg = makeConfig({ relayUrl: ['https://relay-a.example.net/', 'http://127.0.0.1:8080'] });
  t.deepEqual(cfg.relayUrls, ['https://relay-a.example.net', 'http://127.0.0.1:8080']);
  t.is(cfg.relayUrl, 'https://relay-a.example.net');
  t.deepEqual(makeConfig(cfg).relayUrls, cfg.relayUrls, 'a printed config reads back with its list');
  t.deepEqual(makeConfig({ ...cfg, relayUrl: 'https://other.example.net' }).relayUrls, ['https://other.example.net'], 'a changed relayUrl replaces the list');
  t.throws(() => makeConfig({ relayUrl: ['https://relay-a.example.net', 'http://relay-b.example.net'] }), { message: /config\.relayUrl\[1\]: plain http is allowed only for a relay on this machine/ });
  t.throws(() => makeConfig({ relayUrl: ['https://a.example.net', 'https://a.example.net/'] }), { message: /listed twice/ });
  t.throws(() => makeConfig({ relayUrl: Array.from({ length: 9 }, (_, i) => `https://r${i}.example.net`) }), { message: /more than 8 items/ });
  t.deepEqual(makeConfig({ relayUrl: null }).relayUrls, []);
});
