/**
 * What the phone learns about where a login comes from (issue #17): the source address's
 * forward-confirmed reverse name and "first login from this address" for this user, both signed
 * by the host, so a relay can neither add, change nor drop them.
 */
import test from 'ava';
import { promises as dns } from 'node:dns';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MsgType, Result, toB64url, type FrameMsg, type SignedContext } from '../protocol/src/index.js';
import { ReverseNames, SeenAddresses } from '../agent/src/login-source.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { startHostileRelay, type HostileRelay } from './support/hostile-relay.js';
import { PamClient } from './support/pam-client.js';
import { eventually } from './support/net.js';
import { HeadlessPhone } from './support/phone.js';
import { tempDir } from './support/system.js';

const tmp = tempDir('qra-src-');
const passwdPath = join(tmp.path, 'passwd');
writeFileSync(passwdPath, 'alice:x:4242:4242::/nonexistent:/bin/sh\nbob:x:4243:4243::/nonexistent:/bin/sh\n');

/** What the relay does to the host's context answer on its way to the phone. */
let rewrite: (ctx: Record<string, unknown>) => Record<string, unknown> = (ctx) => ctx;
let relay: HostileRelay;
let f: AgentFixture;
let phone: HeadlessPhone;

test.before(async () => {
  relay = await startHostileRelay({
    rewriteAnswer: (event, answer) => {
      const a = answer as { ok?: boolean; context?: Record<string, unknown> };
      return event === 'context' && a?.ok && a.context ? { ...a, context: rewrite(a.context) } : answer;
    },
  });
  f = await startTestAgent({ relayUrl: relay.url, expirySeconds: 30 }, { passwdPath });
  await relay.agent();
  phone = await HeadlessPhone.create(join(tmp.path, 'phone'), "Alice's Pixel");
  await phone.trustHost({ hostPub: toB64url(f.agent.host.publicKey), hostname: 'test-host', relayUrl: relay.url });
  f.setDevices('alice', [phone.devicesLine()]);
  f.setDevices('bob', [phone.devicesLine()]);
});
test.after.always(async () => {
  await phone?.close();
  await f?.close();
  await relay?.close();
  tmp.remove();
});

async function begin(user: string, rhost: string) {
  const client = await PamClient.connect(f.socket);
  client.send({ type: MsgType.BEGIN, user, service: 'sshd-src', rhost } as FrameMsg);
  const ch = (await client.next()) as { type: number; payload: string };
  if (ch.type !== MsgType.CHALLENGE) throw new Error(`no challenge: ${JSON.stringify(ch)}`);
  return { client, payload: ch.payload };
}

async function approve(user: string, rhost: string): Promise<SignedContext> {
  const { client, payload } = await begin(user, rhost);
  let seen: SignedContext | undefined;
  const ack = await phone.decide(payload, 'approve', (ctx) => (seen = ctx));
  if (!ack.ok) throw new Error(`not approved: ${JSON.stringify(ack)}`);
  client.send({ type: MsgType.WAIT });
  const v = (await client.next()) as { result: number };
  client.close();
  if (v.result !== Result.APPROVED) throw new Error(`verdict ${v.result}`);
  return seen!;
}

/** The name the host's resolver gives the address and confirms, as sshd's UseDNS check would. */
async function confirmedName(address: string): Promise<string | undefined> {
  for (const name of await dns.reverse(address).catch(() => [] as string[])) {
    const back = await dns.lookup(name, { all: true }).catch(() => []);
    if (back.some((a) => a.address === address)) return name;
  }
  return undefined;
}

test.serial('the context says "first login from this address" until a login from it succeeds, per user', async (t) => {
  const first = await approve('alice', '127.0.0.1');
  t.is(first.firstFromAddress, true);
  const again = await approve('alice', '127.0.0.1');
  t.is(again.firstFromAddress, false, 'alice has logged in from here now');
  // Another user from the same address, and the same user from an unseen address, are new.
  const { client, payload } = await begin('bob', '127.0.0.1');
  t.is((await phone.fetchContext(payload)).firstFromAddress, true);
  client.close();
  const other = await begin('alice', '192.0.2.10');
  t.is((await phone.fetchContext(other.payload)).firstFromAddress, true);
  // A login that is denied teaches nothing: the address stays new.
  t.like(await phone.decide(other.payload, 'deny'), { ok: true, result: 'denied' });
  other.client.close();
  const retry = await begin('alice', '192.0.2.10');
  t.is((await phone.fetchContext(retry.payload)).firstFromAddress, true);
  retry.client.close();
});

test.serial('the source name is shown only when it resolves back to the address', async (t) => {
  const ctx = await approve('alice', '127.0.0.1');
  const expected = await confirmedName('127.0.0.1');
  t.truthy(expected, 'this machine names 127.0.0.1 (/etc/hosts)');
  t.is(ctx.rhostName, expected);
  // TEST-NET-1 has no PTR record anywhere: no name, and the rest of the context is still there.
  const { client, payload } = await begin('alice', '192.0.2.11');
  const none = await phone.fetchContext(payload);
  client.close();
  t.is(none.rhostName, undefined);
  t.is(none.rhost, '192.0.2.11');
  t.is(none.firstFromAddress, true);
});

test.serial('a login without a source address (sudo, su) carries neither fact and signs v1 bytes', async (t) => {
  const { client, payload } = await begin('alice', '');
  const ctx = await phone.fetchContext(payload);
  client.close();
  t.false('firstFromAddress' in ctx);
  t.false('rhostName' in ctx);
});

test.serial('a relay that flips "first login", drops it, or swaps the name gets the context refused by the phone', async (t) => {
  const attacks: Array<[string, (c: Record<string, unknown>) => Record<string, unknown>]> = [
    ['flip first login', (c) => ({ ...c, firstFromAddress: false })],
    ['drop first login', ({ firstFromAddress: _drop, ...c }) => c],
    ['swap the name', (c) => ({ ...c, rhostName: 'bastion.corp.example' })],
    ['drop both', ({ firstFromAddress: _a, rhostName: _b, ...c }) => c],
  ];
  for (const [name, attack] of attacks) {
    const { client, payload } = await begin('alice', '198.51.100.77');
    rewrite = attack;
    try {
      const err = await t.throwsAsync(phone.decide(payload, 'approve'), undefined, name);
      t.is((err as { code?: string } | undefined)?.code, 'QRA_ERR_SIGNATURE', name);
    } finally {
      rewrite = (c) => c;
    }
    // Nothing was approved: the terminal still waits, and the untouched context still says "first".
    t.is((await phone.fetchContext(payload)).firstFromAddress, true, name);
    client.close();
  }
});

test.serial('seen addresses are kept 0600 in the state dir as salted hashes, never as addresses', async (t) => {
  const seenFile = join(f.agent.config.stateDir, 'seen-addresses.json');
  // Written a second after a login (and at close), so a burst of logins writes it once.
  await eventually(() => { try { return statSync(seenFile).isFile(); } catch { return false; } }, 5000);
  const text = readFileSync(seenFile, 'utf8');
  t.is(statSync(seenFile).mode & 0o777, 0o600);
  t.false(text.includes('127.0.0.1'));
  t.false(text.includes('alice'));
  // What a restarted agent reads back: alice from 127.0.0.1 is known, bob is not.
  const reread = new SeenAddresses(f.agent.config.stateDir);
  t.false(reread.isFirst('alice', '127.0.0.1'));
  t.false(reread.isFirst('alice', '::ffff:127.0.0.1'), 'the IPv4-mapped spelling is the same address');
  t.true(reread.isFirst('bob', '127.0.0.1'));
});

/** Made-up hosts that resolve both ways, for a ReverseNames given its resolvers by the test. */
const HOSTS: Record<string, string> = { '192.0.2.1': 'one.example.net', '192.0.2.2': 'two.example.net', '192.0.2.3': 'three.example.net' };
const ADDRESS_OF = Object.fromEntries(Object.entries(HOSTS).map(([address, name]) => [name, address]));

/** A DNS failure as node:dns reports it. */
function dnsError(code: string): Error {
  return Object.assign(new Error(`queryfailed ${code}`), { code });
}

test('a forward lookup skipped because two were running is asked again next login, not remembered as "no name" for 10 minutes', async (t) => {
  const reverseAsked: string[] = [];
  const lookupAsked: string[] = [];
  // The first two forward lookups hang, as getaddrinfo does on a slow nameserver, until released.
  const releases: Array<() => void> = [];
  let bothHeld!: () => void;
  const twoRunning = new Promise<void>((resolve) => (bothHeld = resolve));
  const names = new ReverseNames({
    reverse: async (address) => {
      reverseAsked.push(address);
      return [HOSTS[address]!];
    },
    lookup: (name) => {
      lookupAsked.push(name);
      const answer = [{ address: ADDRESS_OF[name]! }];
      if (releases.length === 2) return Promise.resolve(answer);
      return new Promise((resolve) => {
        releases.push(() => resolve(answer));
        if (releases.length === 2) bothHeld();
      });
    },
  });
  const first = names.nameOf('192.0.2.1');
  const second = names.nameOf('192.0.2.2');
  await twoRunning;
  t.is(await names.nameOf('192.0.2.3'), undefined, 'both getaddrinfo slots busy: no name this time');
  t.false(lookupAsked.includes('three.example.net'), 'no third getaddrinfo while two run');
  for (const release of releases) release();
  t.is(await first, 'one.example.net');
  t.is(await second, 'two.example.net');
  t.is(await names.nameOf('192.0.2.3'), 'three.example.net', 'the skip was not kept as an answer');
  t.deepEqual(reverseAsked.filter((a) => a === '192.0.2.3'), ['192.0.2.3', '192.0.2.3']);
  // A real answer is kept: the next login from there asks nothing.
  t.is(await names.nameOf('192.0.2.3'), 'three.example.net');
  t.is(reverseAsked.length, 4);
});

test('DNS that gave no answer (timeout, server failure, EAI_AGAIN) is asked again; "no such name" and a name elsewhere are kept', async (t) => {
  const asked = new Map<string, number>();
  const count = (key: string) => asked.set(key, (asked.get(key) ?? 0) + 1).get(key)!;
  // Each address fails its own way on the first ask, then (if asked again) answers with its name.
  const names = new ReverseNames({
    reverse: async (address) => {
      const n = count(address);
      if (address === '198.51.100.1' && n === 1) throw dnsError('ETIMEOUT');
      if (address === '198.51.100.2' && n === 1) throw dnsError('ESERVFAIL');
      if (address === '198.51.100.3') throw dnsError('ENOTFOUND');
      if (address === '198.51.100.4') throw dnsError('ENODATA');
      return [`h${address.split('.')[3]}.example.net`];
    },
    lookup: async (name) => {
      const n = count(name);
      if (name === 'h5.example.net' && n === 1) throw dnsError('EAI_AGAIN');
      if (name === 'h6.example.net') throw dnsError('ENOTFOUND');
      if (name === 'h7.example.net') return [{ address: '203.0.113.7' }];
      return [{ address: `198.51.100.${name.slice(1, name.indexOf('.'))}` }];
    },
  });
  const unanswered = ['198.51.100.1', '198.51.100.2', '198.51.100.5'];
  const answered = ['198.51.100.3', '198.51.100.4', '198.51.100.6', '198.51.100.7'];
  for (const address of [...unanswered, ...answered]) t.is(await names.nameOf(address), undefined, address);
  for (const address of unanswered) t.is(await names.nameOf(address), `h${address.split('.')[3]}.example.net`, `${address} asked again`);
  for (const address of answered) {
    t.is(await names.nameOf(address), undefined, address);
    t.is(asked.get(address), 1, `${address}: the answer was kept`);
  }
});
