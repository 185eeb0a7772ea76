/**
 * The relay is not trusted: one that forges, replays, swaps, reorders, delays or floods
 * messages can only make a login fail. Each case drives the agent as a hostile relay and
 * checks what the PAM side gets, and that the agent logs the reject.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import { MsgType, Result, decisionBytes, keyId, parseLoginPayload, toB64url, type FrameMsg } from '../protocol/src/index.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { startHostileRelay, type HostileRelay } from './support/hostile-relay.js';
import { PamClient } from './support/pam-client.js';
import { tempDir } from './support/system.js';
import { eventually } from './support/net.js';

const passwd = tempDir('qra-pw-');
const passwdPath = join(passwd.path, 'passwd');
writeFileSync(passwdPath, 'alice:x:4242:4242::/nonexistent:/bin/sh\nbob:x:4243:4243::/nonexistent:/bin/sh\n');

function device(fill: number) {
  const seed = new Uint8Array(32).fill(fill);
  const { publicKey } = c.ed25519FromSeed(seed);
  return { seed, deviceId: keyId(c, publicKey), line: `ed25519 ${toB64url(publicKey)} 2026-11-26 Phone ${fill}` };
}
const alicePhone = device(2);
const bobPhone = device(3);
const stranger = device(7);

let relay: HostileRelay;
let f: AgentFixture;
test.before(async () => {
  relay = await startHostileRelay();
  f = await startTestAgent({ relayUrl: relay.url, expirySeconds: 6 }, { passwdPath });
  f.setDevices('alice', [alicePhone.line]);
  f.setDevices('bob', [bobPhone.line]);
  await relay.agent();
});
test.after.always(async () => {
  await f?.close();
  await relay?.close();
  passwd.remove();
});

async function login(user = 'alice') {
  const client = await PamClient.connect(f.socket);
  client.send({ type: MsgType.BEGIN, user, service: 'sshd', rhost: '198.51.100.1' } as FrameMsg);
  const ch = (await client.next()) as { payload: string };
  const p = parseLoginPayload(ch.payload);
  return { client, ...p, payload: ch.payload };
}

function signed(d: ReturnType<typeof device>, s: { hostId: string; sid: string; nonce: Uint8Array }, user: string, decision: 'approve' | 'deny', time = Date.now()) {
  const sig = c.ed25519Sign(d.seed, decisionBytes({ hostId: s.hostId, sid: s.sid, nonce: s.nonce, user, decision, time, deviceId: d.deviceId }));
  return { hostId: s.hostId, sid: s.sid, deviceId: d.deviceId, decision, time, sig: toB64url(sig) };
}

/** The PAM side's verdict after a WAIT, or 'pending' if none comes in `ms`. */
async function verdictAfter(client: PamClient, ms: number): Promise<number | 'pending'> {
  client.send({ type: MsgType.WAIT });
  try {
    const m = (await client.next(ms)) as { result: number } | null;
    return m ? m.result : 'pending';
  } catch {
    return 'pending';
  }
}

test('a forged approval from a key that is not enrolled is rejected and logged', async (t) => {
  const s = await login();
  const ack = await relay.ask('decision', signed(stranger, s, 'alice', 'approve'));
  t.like(ack, { ok: false, code: 'QRA_ERR_NOT_ENROLLED' });
  t.is(await verdictAfter(s.client, 300), 'pending');
  t.true(f.logs.some((l) => /decision_rejected .*code=QRA_ERR_NOT_ENROLLED/.test(l)));
  s.client.close();
});

test('an approval with a bad signature from the enrolled device id is rejected', async (t) => {
  const s = await login();
  const msg = signed(alicePhone, s, 'alice', 'approve');
  const bad = { ...msg, sig: toB64url(c.ed25519Sign(stranger.seed, new Uint8Array([1]))) };
  t.like(await relay.ask('decision', bad), { ok: false, code: 'QRA_ERR_SIGNATURE' });
  t.is(await verdictAfter(s.client, 300), 'pending');
  s.client.close();
});

test('an approval signed for one session, swapped onto another sid, opens neither', async (t) => {
  const a = await login();
  const b = await login();
  const forA = signed(alicePhone, a, 'alice', 'approve');
  t.like(await relay.ask('decision', { ...forA, sid: b.sid }), { ok: false, code: 'QRA_ERR_SIGNATURE' });
  t.is(await verdictAfter(b.client, 300), 'pending');
  a.client.close();
  b.client.close();
});

test('a replayed approval opens the same session only once and no later session', async (t) => {
  const a = await login();
  const msg = signed(alicePhone, a, 'alice', 'approve');
  a.client.send({ type: MsgType.WAIT });
  t.like(await relay.ask('decision', msg), { ok: true, result: 'approved' });
  t.like(await a.client.next(), { result: Result.APPROVED });
  t.like(await relay.ask('decision', msg), { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION' });
  const b = await login();
  t.like(await relay.ask('decision', { ...msg, sid: b.sid }), { ok: false });
  t.is(await verdictAfter(b.client, 300), 'pending');
  b.client.close();
});

test('a deny followed by a reordered approve: the first answer wins and it is a deny', async (t) => {
  const s = await login();
  const approve = signed(alicePhone, s, 'alice', 'approve');
  const deny = signed(alicePhone, s, 'alice', 'deny');
  s.client.send({ type: MsgType.WAIT });
  t.like(await relay.ask('decision', deny), { ok: true, result: 'denied' });
  t.like(await relay.ask('decision', approve), { ok: false });
  t.like(await s.client.next(), { result: Result.DENIED });
});

test("bob's device signing for alice's session is refused", async (t) => {
  const s = await login();
  t.like(await relay.ask('decision', signed(bobPhone, s, 'alice', 'approve')), { ok: false, code: 'QRA_ERR_NOT_ENROLLED' });
  // Even claiming bob's own user name in the signed bytes does not help.
  t.like(await relay.ask('decision', signed(bobPhone, s, 'bob', 'approve')), { ok: false });
  t.is(await verdictAfter(s.client, 300), 'pending');
  s.client.close();
});

test('an approval held back past expiry is refused', async (t) => {
  const s = await login();
  const msg = signed(alicePhone, s, 'alice', 'approve');
  s.client.send({ type: MsgType.WAIT });
  t.like(await s.client.next(8000), { result: Result.EXPIRED });
  t.like(await relay.ask('decision', msg), { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION' });
});

test('malformed and oversized relay messages get an error ack and change nothing', async (t) => {
  const s = await login();
  const good = signed(alicePhone, s, 'alice', 'approve');
  const junk: unknown[] = [
    null, 42, 'approve', [], {}, { ...good, extra: true }, { ...good, decision: 'APPROVE' }, { ...good, time: -1 },
    { ...good, sid: 'x'.repeat(100_000) }, { ...good, sig: good.sig.slice(1) }, { sid: s.sid },
  ];
  for (const j of junk) t.like(await relay.ask('decision', j), { ok: false }, JSON.stringify(j)?.slice(0, 60));
  for (const j of [null, {}, { sid: 'short' }, { sid: s.sid, more: 1 }]) t.like(await relay.ask('context', j), { ok: false });
  t.like(await relay.ask('enroll', { nonsense: true }), { ok: false });
  t.is(await relay.ask('no-such-event', {}, 300), 'timeout', 'unknown events get no answer');
  // The real approval still works afterwards.
  s.client.send({ type: MsgType.WAIT });
  t.like(await relay.ask('decision', good), { ok: true });
  t.like(await s.client.next(), { result: Result.APPROVED });
});

test('a flood of forged decisions is rejected and the agent keeps serving', async (t) => {
  const s = await login();
  const sock = await relay.agent();
  const acks: Promise<unknown>[] = [];
  for (let i = 0; i < 500; i++) {
    acks.push(sock.timeout(5000).emitWithAck('decision', signed(stranger, s, 'alice', 'approve', Date.now() + i)).catch(() => 'timeout'));
  }
  const results = await Promise.all(acks);
  t.true(results.every((r) => typeof r === 'object' && r !== null && (r as { ok: boolean }).ok === false));
  t.is(await verdictAfter(s.client, 200), 'pending');
  s.client.close();
  const fresh = await login();
  fresh.client.send({ type: MsgType.WAIT });
  t.like(await relay.ask('decision', signed(alicePhone, fresh, 'alice', 'approve')), { ok: true });
  t.like(await fresh.client.next(), { result: Result.APPROVED });
});

test('the context a relay can fetch carries no nonce and the host signs it', async (t) => {
  const s = await login();
  const ack = (await relay.ask('context', { sid: s.sid })) as { ok: boolean; context: Record<string, unknown> };
  t.true(ack.ok);
  const text = JSON.stringify(ack);
  t.false(text.includes(toB64url(s.nonce)));
  t.is(ack.context.user, 'alice');
  t.is(ack.context.rhost, '198.51.100.1');
  s.client.close();
  await eventually(() => f.agent.sessions.get(s.sid) === undefined, 5000).catch(() => {});
  t.like(await relay.ask('context', { sid: s.sid }), { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION' });
});
