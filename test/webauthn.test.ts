/**
 * Passkey (WebAuthn) approvals at the agent (issue #12): real assertions from the software
 * authenticator (P-256 and Ed25519 keys, node:crypto signatures) against agent/src/webauthn.ts,
 * with the device and its passkey read from a devices-file line by the real parser.
 */
import test, { type ExecutionContext } from 'ava';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Device, formatDeviceLine, parseDevicesText } from '../agent/src/devices-file.js';
import { formatLog, type Logger } from '../agent/src/log.js';
import { PASSKEY_COUNTERS_FILE, PasskeyVerifier, type PasskeyRefusal, type PasskeyVerdict, type UserVerificationPolicy, coseKeyAlg } from '../agent/src/webauthn.js';
import { makeConfig } from '../agent/src/config.js';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import {
  type DecisionFields,
  type ErrorCode,
  type WebAuthnAssertion,
  decisionBytes,
  fromB64url,
  parse,
  passkeyInfo,
  toB64url,
  webauthnAssertion,
  webauthnChallenge,
} from '../protocol/src/index.js';
import { prng, testSeed } from './support/seeded.js';
import { SoftAuthenticator } from './support/soft-authenticator.js';
import { tempDir } from './support/system.js';

const ORIGIN = 'https://app.qrauth.example';
const HOST_ID = toB64url(c.sha256(new TextEncoder().encode('webauthn-test-host')).subarray(0, 16));

interface Rig {
  dir: string;
  lines: string[];
  log: Logger;
  verifier: PasskeyVerifier;
  remove(): Promise<void>;
}

function rig(): Rig {
  const d = tempDir('qrauth-webauthn-');
  const lines: string[] = [];
  const log: Logger = (event, fields) => lines.push(formatLog(event, fields));
  const verifier = new PasskeyVerifier(d.path, log);
  return {
    dir: d.path,
    lines,
    log,
    verifier,
    remove: async () => {
      await verifier.counters.flush();
      d.remove();
    },
  };
}

/** A device line with this passkey, written and read back by the real devices-file code. */
function enrolled(t: ExecutionContext, auth: SoftAuthenticator | null, name = 'Alice phone'): Device {
  const kp = c.ed25519FromSeed(c.randomBytes(32));
  const line = formatDeviceLine({ publicKey: kp.publicKey, enrolled: '2026-03-01', name, passkey: auth?.passkey() });
  const f = parseDevicesText(`${line}\n`, 'devices');
  t.deepEqual(f.problems, [], line);
  t.is(f.devices.length, 1);
  return f.devices[0]!;
}

function approval(device: Device, over: Partial<DecisionFields> = {}): DecisionFields {
  return { hostId: HOST_ID, sid: toB64url(c.randomBytes(16)), nonce: c.randomBytes(16), user: 'alice', decision: 'approve', time: Date.now(), deviceId: device.deviceId, ...over };
}

/** The usual case: a rig (removed after the test), a passkey on ORIGIN enrolled as a device, and an approval by it to sign. */
function passkeyCase(t: ExecutionContext): { r: Rig; auth: SoftAuthenticator; device: Device; fields: DecisionFields } {
  const r = rig();
  t.teardown(r.remove);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const device = enrolled(t, auth);
  return { r, auth, device, fields: approval(device) };
}

async function check(r: Rig, policy: UserVerificationPolicy, device: Device, fields: DecisionFields, assertion: unknown): Promise<PasskeyVerdict> {
  return r.verifier.check(policy, { fields, device, assertion });
}

/** Refused with this reason, that reason logged, and never ok. */
function refused(t: ExecutionContext, r: Rig, v: PasskeyVerdict, reason: PasskeyRefusal, code?: ErrorCode): void {
  t.false(v.ok, `expected a refusal (${reason}), got ${JSON.stringify(v)}`);
  if (v.ok) return;
  t.is(v.reason, reason);
  if (code) t.is(v.code, code);
  t.true(v.message.length > 20);
  t.true(
    r.lines.some((l) => l.startsWith('event=passkey_refused ') && l.includes(` reason=${reason}`)),
    `no passkey_refused line with reason=${reason} in:\n${r.lines.join('\n')}`,
  );
}

for (const alg of ['ES256', 'EdDSA'] as const) {
  test(`a valid ${alg} assertion with user verification approves under "required"`, async (t) => {
    const r = rig();
    t.teardown(r.remove);
    const auth = new SoftAuthenticator({ alg, origin: ORIGIN, counter: 10 });
    const device = enrolled(t, auth);
    t.is(device.passkey?.alg, alg);
    const fields = approval(device);
    const v = await check(r, 'required', device, fields, auth.assert({ challenge: webauthnChallenge(c, fields) }));
    t.deepEqual(v, { ok: true, checked: true, userVerified: true });
    t.deepEqual(r.lines.filter((l) => l.includes('passkey_refused')), []);
  });
}

test('the challenge is SHA-256 of the exact approval bytes, lease fields included', (t) => {
  const device = enrolled(t, new SoftAuthenticator({ origin: ORIGIN }));
  const fields = approval(device);
  t.deepEqual(Buffer.from(webauthnChallenge(c, fields)), Buffer.from(c.sha256(decisionBytes(fields))));
  const leased = { ...fields, lease: { seconds: 3600, keyFp: `SHA256:${'A'.repeat(43)}` } };
  t.notDeepEqual(Buffer.from(webauthnChallenge(c, leased)), Buffer.from(webauthnChallenge(c, fields)));
});

test('an assertion made for an approval without a lease does not approve one with a lease', async (t) => {
  const { r, auth, device, fields } = passkeyCase(t);
  const a = auth.assert({ challenge: webauthnChallenge(c, fields) });
  refused(t, r, await check(r, 'required', device, { ...fields, lease: { seconds: 3600, keyFp: `SHA256:${'A'.repeat(43)}` } }, a), 'wrong_challenge', 'QRA_ERR_PASSKEY');
});

test('an assertion made on another web origin is refused', async (t) => {
  const { r, auth, device, fields } = passkeyCase(t);
  refused(t, r, await check(r, 'required', device, fields, auth.assert({ challenge: webauthnChallenge(c, fields), origin: 'https://evil.example' })), 'wrong_origin', 'QRA_ERR_PASSKEY');
});

test('an assertion made in a frame of another site is refused', async (t) => {
  const { r, auth, device, fields } = passkeyCase(t);
  refused(t, r, await check(r, 'required', device, fields, auth.assert({ challenge: webauthnChallenge(c, fields), crossOrigin: true, topOrigin: 'https://evil.example' })), 'cross_origin');
});

test('an assertion for another RP ID is refused', async (t) => {
  const { r, auth, device, fields } = passkeyCase(t);
  refused(t, r, await check(r, 'required', device, fields, auth.assert({ challenge: webauthnChallenge(c, fields), rpId: 'evil.example' })), 'wrong_rp_id', 'QRA_ERR_PASSKEY');
});

test('an assertion whose challenge is for another login (sid) is refused', async (t) => {
  const { r, auth, device, fields } = passkeyCase(t);
  const other = { ...fields, sid: toB64url(c.randomBytes(16)) };
  refused(t, r, await check(r, 'required', device, fields, auth.assert({ challenge: webauthnChallenge(c, other) })), 'wrong_challenge');
  // and for another user, and for a deny turned into an approve
  refused(t, r, await check(r, 'required', device, fields, auth.assert({ challenge: webauthnChallenge(c, { ...fields, user: 'bob' }) })), 'wrong_challenge');
  refused(t, r, await check(r, 'required', device, fields, auth.assert({ challenge: webauthnChallenge(c, { ...fields, decision: 'deny' }) })), 'wrong_challenge');
});

test('a registration (webauthn.create) client data is not an assertion', async (t) => {
  const { r, auth, device, fields } = passkeyCase(t);
  refused(t, r, await check(r, 'required', device, fields, auth.assert({ challenge: webauthnChallenge(c, fields), type: 'webauthn.create' })), 'wrong_type');
});

test('UV cleared: refused under "required" with the fingerprint/PIN message, accepted as unverified under "preferred"', async (t) => {
  const r = rig();
  t.teardown(r.remove);
  const auth = new SoftAuthenticator({ origin: ORIGIN, counter: 1 });
  const device = enrolled(t, auth);
  const fields = approval(device);
  const v = await check(r, 'required', device, fields, auth.assert({ challenge: webauthnChallenge(c, fields), uv: false }));
  refused(t, r, v, 'user_not_verified', 'QRA_ERR_USER_VERIFICATION');
  t.regex(v.ok ? '' : v.message, /fingerprint, face or PIN/);
  const fields2 = approval(device);
  t.deepEqual(await check(r, 'preferred', device, fields2, auth.assert({ challenge: webauthnChallenge(c, fields2), uv: false })), { ok: true, checked: true, userVerified: false });
});

test('UP cleared is refused under every policy that checks', async (t) => {
  const { r, auth, device } = passkeyCase(t);
  for (const policy of ['preferred', 'required'] as const) {
    const fields = approval(device);
    refused(t, r, await check(r, policy, device, fields, auth.assert({ challenge: webauthnChallenge(c, fields), up: false, uv: false })), 'user_not_present');
  }
});

test('a replayed or lower sign counter (a cloned authenticator) is refused and logged as a suspected clone', async (t) => {
  const r = rig();
  t.teardown(r.remove);
  const auth = new SoftAuthenticator({ origin: ORIGIN, counter: 41 });
  const device = enrolled(t, auth);
  const f1 = approval(device);
  t.true((await check(r, 'required', device, f1, auth.assert({ challenge: webauthnChallenge(c, f1) }))).ok); // counter 42
  for (const counter of [42, 7, 0]) {
    const f = approval(device);
    const v = await check(r, 'required', device, f, auth.assert({ challenge: webauthnChallenge(c, f), counter }));
    refused(t, r, v, 'counter_regressed', 'QRA_ERR_PASSKEY_CLONED');
  }
  t.true(r.lines.some((l) => l.startsWith('event=passkey_clone_suspected ') && l.includes('stored=42')), r.lines.join('\n'));
  const f2 = approval(device);
  t.true((await check(r, 'required', device, f2, auth.assert({ challenge: webauthnChallenge(c, f2) }))).ok, 'the real authenticator, counter 43, still works');
});

test('two assertions with the same counter checked at once: exactly one is accepted', async (t) => {
  const r = rig();
  t.teardown(r.remove);
  const auth = new SoftAuthenticator({ origin: ORIGIN, counter: 5 });
  const device = enrolled(t, auth);
  const fa = approval(device);
  const fb = approval(device);
  const [a, b] = await Promise.all([
    check(r, 'required', device, fa, auth.assert({ challenge: webauthnChallenge(c, fa), counter: 6 })),
    check(r, 'required', device, fb, auth.assert({ challenge: webauthnChallenge(c, fb), counter: 6 })),
  ]);
  t.is([a, b].filter((v) => v.ok).length, 1, JSON.stringify([a, b]));
  t.true([a, b].some((v) => !v.ok && v.reason === 'counter_regressed'));
});

test('an authenticator without a counter (always 0, like synced passkeys) keeps approving', async (t) => {
  const r = rig();
  t.teardown(r.remove);
  const auth = new SoftAuthenticator({ origin: ORIGIN, counter: 0, counterStep: 0 });
  const device = enrolled(t, auth);
  for (let i = 0; i < 3; i++) {
    const f = approval(device);
    t.true((await check(r, 'required', device, f, auth.assert({ challenge: webauthnChallenge(c, f) }))).ok);
  }
});

test("an assertion from another enrolled device's passkey (bob's phone) is refused", async (t) => {
  const r = rig();
  t.teardown(r.remove);
  const alicePasskey = new SoftAuthenticator({ origin: ORIGIN });
  const bobPasskey = new SoftAuthenticator({ origin: ORIGIN });
  const aliceDevice = enrolled(t, alicePasskey);
  enrolled(t, bobPasskey, 'Bob phone');
  const fields = approval(aliceDevice);
  // Bob's authenticator, asked for exactly this approval, under its own credential id …
  refused(t, r, await check(r, 'required', aliceDevice, fields, bobPasskey.assert({ challenge: webauthnChallenge(c, fields) })), 'wrong_credential', 'QRA_ERR_PASSKEY');
  // … and relabelled with Alice's credential id: the signature is not Alice's key's.
  const relabelled = bobPasskey.assert({ challenge: webauthnChallenge(c, fields), credentialId: alicePasskey.credentialId });
  refused(t, r, await check(r, 'required', aliceDevice, fields, relabelled), 'bad_signature', 'QRA_ERR_PASSKEY');
});

test("a user who lists someone else's credential id with a key of their own cannot push that passkey's counter", async (t) => {
  const r = rig();
  t.teardown(r.remove);
  const alicePasskey = new SoftAuthenticator({ origin: ORIGIN, counter: 1 });
  const aliceDevice = enrolled(t, alicePasskey);
  // Mallory's own authenticator, given Alice's credential id in Mallory's devices file.
  const mallory = new SoftAuthenticator({ origin: ORIGIN });
  (mallory as { credentialId: Uint8Array }).credentialId = alicePasskey.credentialId;
  const malloryDevice = enrolled(t, mallory, 'Mallory phone');
  t.is(malloryDevice.passkey?.credentialId, aliceDevice.passkey?.credentialId);
  const fm = approval(malloryDevice, { user: 'mallory' });
  t.true((await check(r, 'required', malloryDevice, fm, mallory.assert({ challenge: webauthnChallenge(c, fm), counter: 0xffffffff }))).ok);
  const fa = approval(aliceDevice);
  t.true((await check(r, 'required', aliceDevice, fa, alicePasskey.assert({ challenge: webauthnChallenge(c, fa) }))).ok, "Alice's counter 2 is still ahead of Alice's own history");
});

test('malformed assertions (base64url, JSON, CBOR, structure) are refused as malformed', async (t) => {
  const { r, auth, device, fields } = passkeyCase(t);
  const good = auth.assert({ challenge: webauthnChallenge(c, fields) });
  const cases: Array<[string, unknown]> = [
    ['not an object', 'assertion'],
    ['an array', [good.credentialId]],
    ['an unknown field', { ...good, userHandle: 'AAAA' }],
    ['a field missing', { ...good, signature: undefined }],
    ['padded base64', { ...good, signature: `${good.signature}=` }],
    ['standard base64 characters', { ...good, clientDataJSON: good.clientDataJSON.replace(/[-_]/g, '+') + (/[-_]/.test(good.clientDataJSON) ? '' : '+') }],
    ['non-canonical base64url (stray low bits)', { ...good, authenticatorData: good.authenticatorData.slice(0, -1) + (good.authenticatorData.endsWith('B') ? 'C' : 'B') }],
    ['authenticatorData too short', { ...good, authenticatorData: toB64url(fromB64url(good.authenticatorData).subarray(0, 36)) }],
    ['oversized clientDataJSON', { ...good, clientDataJSON: toB64url(new Uint8Array(2000).fill(0x20)) }],
    ['clientDataJSON not JSON', auth.assert({ challenge: webauthnChallenge(c, fields), clientDataJSONText: '{"type":"webauthn.get",' })],
    ['clientDataJSON not UTF-8', { ...good, clientDataJSON: toB64url(Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d, ...new Uint8Array(40)])) }],
    ['clientDataJSON a JSON array', auth.assert({ challenge: webauthnChallenge(c, fields), clientDataJSONText: '["webauthn.get","x","y"]' })],
    ['clientDataJSON without origin', auth.assert({ challenge: webauthnChallenge(c, fields), clientDataJSONText: JSON.stringify({ type: 'webauthn.get', challenge: toB64url(webauthnChallenge(c, fields)) }) })],
    ['extension flag with garbage CBOR', auth.assert({ challenge: webauthnChallenge(c, fields), extensionsFlag: true, authDataTail: Uint8Array.from([0xbf, 0xff, 0x61]) })],
    ['extension flag with no CBOR at all', auth.assert({ challenge: webauthnChallenge(c, fields), extensionsFlag: true })],
    ['trailing bytes after authenticatorData', auth.assert({ challenge: webauthnChallenge(c, fields), authDataTail: Uint8Array.from([1, 2, 3]) })],
  ];
  for (const [what, assertion] of cases) {
    const v = await check(r, 'required', device, fields, assertion);
    t.false(v.ok, what);
    if (!v.ok) t.is(v.reason, 'malformed', `${what}: ${v.reason}`);
  }
  t.true(r.lines.filter((l) => l.includes('reason=malformed')).length >= cases.length);
  t.true((await check(r, 'required', device, fields, good)).ok, 'the unbent assertion still verifies');
});

test('an ES256 signature with bytes after its DER sequence is refused (the library alone accepted it: found by the mutation test, seed 6221074)', async (t) => {
  const r = rig();
  t.teardown(r.remove);
  const auth = new SoftAuthenticator({ origin: ORIGIN, counterStep: 0 });
  const device = enrolled(t, auth);
  const fields = approval(device);
  const good = auth.assert({ challenge: webauthnChallenge(c, fields) });
  for (const tail of [[0x00], [0x30, 0x00], [0xde, 0xad, 0xbe, 0xef]]) {
    const bent = { ...good, signature: toB64url(Buffer.concat([fromB64url(good.signature), Buffer.from(tail)])) };
    refused(t, r, await check(r, 'required', device, fields, bent), 'malformed');
  }
  t.true((await check(r, 'required', device, fields, good)).ok);
});

test('policy: off ignores passkeys; preferred needs one only from devices that have one; required needs one from every device', async (t) => {
  const r = rig();
  t.teardown(r.remove);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const withPasskey = enrolled(t, auth);
  const without = enrolled(t, null, 'Old phone');
  t.is(without.passkey, undefined);
  const f = () => approval(withPasskey);
  t.deepEqual(await check(r, 'off', withPasskey, f(), 'garbage'), { ok: true, checked: false, userVerified: false });
  t.deepEqual(await check(r, 'preferred', without, approval(without), undefined), { ok: true, checked: false, userVerified: false });
  refused(t, r, await check(r, 'preferred', withPasskey, f(), undefined), 'missing', 'QRA_ERR_PASSKEY');
  refused(t, r, await check(r, 'required', withPasskey, f(), undefined), 'user_not_verified', 'QRA_ERR_USER_VERIFICATION');
  const v = await check(r, 'required', without, approval(without), undefined);
  refused(t, r, v, 'no_passkey', 'QRA_ERR_NO_PASSKEY');
  t.regex(v.ok ? '' : v.message, /enroll it again/);
  // A deny needs no passkey: anyone holding the phone may refuse a login.
  t.true((await check(r, 'required', without, approval(without, { decision: 'deny' }), undefined)).ok);
});

test('the sign counter survives a restart (state in stateDir, 0600), and a damaged state file stops passkey approvals', async (t) => {
  const r = rig();
  t.teardown(r.remove);
  const auth = new SoftAuthenticator({ origin: ORIGIN, counter: 99 });
  const device = enrolled(t, auth);
  const f1 = approval(device);
  t.true((await check(r, 'required', device, f1, auth.assert({ challenge: webauthnChallenge(c, f1) }))).ok); // 100
  await r.verifier.counters.flush();
  const path = join(r.dir, PASSKEY_COUNTERS_FILE);
  t.is(statSync(path).mode & 0o777, 0o600);
  t.false(readFileSync(path, 'utf8').includes(toB64url(auth.credentialId)), 'the file keys counters by a hash, not the credential id');

  const restarted: Rig = { ...r, verifier: new PasskeyVerifier(r.dir, r.log) };
  const f2 = approval(device);
  refused(t, restarted, await check(restarted, 'required', device, f2, auth.assert({ challenge: webauthnChallenge(c, f2), counter: 100 })), 'counter_regressed');
  const f3 = approval(device);
  t.true((await check(restarted, 'required', device, f3, auth.assert({ challenge: webauthnChallenge(c, f3) }))).ok); // 101
  await restarted.verifier.counters.flush();

  for (const [what, damage] of [
    ['not JSON', () => writeFileSync(path, '{"v":1,"credentials":[')],
    ['a counter out of range', () => writeFileSync(path, JSON.stringify({ v: 1, credentials: [{ key: 'A'.repeat(22), counter: 2 ** 33, used: 1 }] }))],
    ['world-writable', () => chmodSync(path, 0o666)],
  ] as const) {
    writeFileSync(path, JSON.stringify({ v: 1, credentials: [] }), { mode: 0o600 });
    chmodSync(path, 0o600);
    damage();
    const lines: string[] = [];
    const damaged: Rig = { ...r, lines, log: (e, fl) => lines.push(formatLog(e, fl)), verifier: undefined as unknown as PasskeyVerifier };
    damaged.verifier = new PasskeyVerifier(r.dir, damaged.log);
    t.true(lines.some((l) => l.startsWith('event=passkey_counters_damaged ')), what);
    const f = approval(device);
    refused(t, damaged, await check(damaged, 'required', device, f, auth.assert({ challenge: webauthnChallenge(c, f) })), 'counter_state_damaged');
    const old = enrolled(t, null, 'Old phone');
    t.true((await check(damaged, 'preferred', old, approval(old), undefined)).ok, `${what}: a device without a passkey still approves under preferred`);
  }
});

test('shutdown leaves a damaged counters file as it is: rewritten from the empty memory, it would set every counter back to 0 at the next start', async (t) => {
  const { r, auth, device, fields } = passkeyCase(t);
  const path = join(r.dir, PASSKEY_COUNTERS_FILE);
  const text = JSON.stringify({ v: 1, credentials: [{ key: 'A'.repeat(22), counter: 2 ** 33, used: 1 }] });
  writeFileSync(path, text, { mode: 0o600 });
  const damaged: Rig = { ...r, verifier: new PasskeyVerifier(r.dir, r.log) };
  refused(t, damaged, await check(damaged, 'required', device, fields, auth.assert({ challenge: webauthnChallenge(c, fields) })), 'counter_state_damaged');
  await damaged.verifier.counters.flush();
  t.is(readFileSync(path, 'utf8'), text, 'still there for the admin to see');
  t.truthy(new PasskeyVerifier(r.dir, r.log).counters.damaged, 'and passkey approvals still refused after a restart');
});

test('counter writes are coalesced and end with the latest counter; a failed write is logged and the counter still holds in memory', async (t) => {
  const r = rig();
  t.teardown(r.remove);
  const auth = new SoftAuthenticator({ origin: ORIGIN, counter: 0 });
  const device = enrolled(t, auth);
  const batch = Array.from({ length: 20 }, () => approval(device)).map((f) => ({ f, a: auth.assert({ challenge: webauthnChallenge(c, f) }) }));
  for (const { f, a } of batch) t.true((await check(r, 'required', device, f, a)).ok);
  await r.verifier.counters.flush();
  const saved = JSON.parse(readFileSync(join(r.dir, PASSKEY_COUNTERS_FILE), 'utf8')) as { credentials: Array<{ counter: number }> };
  t.deepEqual(saved.credentials.map((x) => x.counter), [20]);

  const gone = tempDir('qrauth-webauthn-gone-');
  const lines: string[] = [];
  const v = new PasskeyVerifier(gone.path, (e, fl) => lines.push(formatLog(e, fl)));
  gone.remove(); // the state directory vanishes under the agent
  const f = approval(device);
  t.true((await v.check('required', { fields: f, device, assertion: auth.assert({ challenge: webauthnChallenge(c, f) }) })).ok);
  await v.counters.flush();
  t.true(lines.some((l) => l.startsWith('event=passkey_counters_save_failed ')), lines.join('\n'));
  const again = approval(device);
  const replay = await v.check('required', { fields: again, device, assertion: auth.assert({ challenge: webauthnChallenge(c, again), counter: 21 }) });
  t.false(replay.ok);
  t.is(replay.ok ? '' : replay.reason, 'counter_regressed');
});

test('random mutations of a valid assertion never verify (seeded)', async (t) => {
  const seed = testSeed(0x5eed12);
  t.log(`seed ${seed} (replay: QRAUTH_TEST_SEED=${seed})`);
  const rand = prng(seed);
  const r = rig();
  t.teardown(r.remove);
  for (const alg of ['ES256', 'EdDSA'] as const) {
    // No counter, so the same valid assertion stays valid and each refusal is the mutation's doing.
    const auth = new SoftAuthenticator({ alg, origin: ORIGIN, counterStep: 0 });
    const device = enrolled(t, auth);
    const fields = approval(device);
    const good = auth.assert({ challenge: webauthnChallenge(c, fields) });
    t.true((await check(r, 'required', device, fields, good)).ok, 'control: the unmutated assertion verifies');
    const keys = ['credentialId', 'authenticatorData', 'clientDataJSON', 'signature'] as const;
    for (let i = 0; i < 250; i++) {
      const k = keys[rand(1)[0]! % keys.length]!;
      const bytes = Buffer.from(fromB64url(good[k]));
      const kind = rand(1)[0]! % 4;
      let mutated: Buffer;
      if (kind === 0) {
        mutated = Buffer.from(bytes);
        const at = rand(2).readUInt16BE(0) % bytes.length;
        mutated[at] = mutated[at]! ^ (1 << rand(1)[0]! % 8);
      } else if (kind === 1) mutated = bytes.subarray(0, rand(2).readUInt16BE(0) % bytes.length);
      else if (kind === 2) mutated = Buffer.concat([bytes, rand(1 + (rand(1)[0]! % 8))]);
      else mutated = rand(bytes.length);
      if (mutated.equals(bytes)) continue;
      const bent: WebAuthnAssertion = { ...good, [k]: toB64url(mutated) };
      const v = await check(r, 'required', device, fields, bent);
      t.false(v.ok, `seed ${seed} ${alg} #${i}: ${k} mutation ${kind} verified`);
    }
    t.true((await check(r, 'required', device, fields, good)).ok, 'control: still verifies after the mutations');
  }
});

test('the assertion schema bounds every field and refuses what is not canonical base64url', (t) => {
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const good = auth.assert({ challenge: new Uint8Array(32) });
  t.deepEqual(parse(webauthnAssertion, good, 'a'), good);
  t.throws(() => parse(webauthnAssertion, { ...good, signature: toB64url(new Uint8Array(129)) }, 'a'), { message: /a\.signature/ });
  t.throws(() => parse(webauthnAssertion, { ...good, credentialId: toB64url(new Uint8Array(15)) }, 'a'), { message: /a\.credentialId/ });
  t.throws(() => parse(webauthnAssertion, { ...good, extra: 1 }, 'a'), { message: /unexpected field/ });
  // The largest legal assertion with a decision fits the relay's 8 KiB message limit.
  const biggest = { credentialId: 'A'.repeat(683), authenticatorData: 'A'.repeat(683), clientDataJSON: 'A'.repeat(1366), signature: 'A'.repeat(171) };
  t.true(JSON.stringify(biggest).length < 4096);
});

test('devices file: a passkey travels in key=value options between the date and the name; old lines read as before', (t) => {
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const kp = c.ed25519FromSeed(c.randomBytes(32));
  const key = toB64url(kp.publicKey);
  const line = formatDeviceLine({ publicKey: kp.publicKey, enrolled: '2026-03-01', name: "Alice's Pixel (work)", passkey: auth.passkey() });
  t.is(line, `ed25519 ${key} 2026-03-01 passkey-id=${toB64url(auth.credentialId)} passkey-key=${toB64url(auth.cosePublicKey)} passkey-origin=${ORIGIN} Alice's Pixel (work)`);
  const f = parseDevicesText(`# comment\ned25519 ${key} 2026-03-01 Old phone\n`);
  t.deepEqual(f.problems, []);
  t.is(f.devices[0]!.name, 'Old phone');
  t.is(f.devices[0]!.passkey, undefined);
  const g = parseDevicesText(`${line}\n`);
  t.deepEqual(g.problems, []);
  t.is(g.devices[0]!.name, "Alice's Pixel (work)");
  t.like(g.devices[0]!.passkey, { ...auth.passkey(), alg: 'ES256' });
  // An explicit RP ID (a parent domain of the origin's host) is written and read back.
  const parent = new SoftAuthenticator({ alg: 'EdDSA', origin: ORIGIN, rpId: 'qrauth.example' });
  const pl = formatDeviceLine({ publicKey: kp.publicKey, enrolled: '2026-03-01', name: 'P', passkey: parent.passkey() });
  t.regex(pl, / passkey-rpid=qrauth\.example P$/);
  t.like(parseDevicesText(pl).devices[0]!.passkey, { rpId: 'qrauth.example', alg: 'EdDSA' });
  // Options in any order, tabs between words.
  const shuffled = `ed25519\t${key} 2026-03-01\tpasskey-origin=${ORIGIN} passkey-key=${toB64url(auth.cosePublicKey)}  passkey-id=${toB64url(auth.credentialId)} Phone`;
  t.is(parseDevicesText(shuffled).devices[0]?.passkey?.credentialId, toB64url(auth.credentialId));
});

test('devices file: a line with a bad passkey option is skipped with a reason, never read as a device without one', (t) => {
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const kp = c.ed25519FromSeed(c.randomBytes(32));
  const head = `ed25519 ${toB64url(kp.publicKey)} 2026-03-01`;
  const id = `passkey-id=${toB64url(auth.credentialId)}`;
  const pk = `passkey-key=${toB64url(auth.cosePublicKey)}`;
  const origin = `passkey-origin=${ORIGIN}`;
  // A P-256 COSE key whose point is not on the curve (y changed).
  const offCurve = Buffer.from(auth.cosePublicKey);
  offCurve[offCurve.length - 1] = offCurve[offCurve.length - 1]! ^ 1;
  // An EC2 (P-256) key that claims alg -8 (EdDSA): a mix no authenticator makes.
  const mixed = Buffer.from(auth.cosePublicKey);
  mixed[4] = 0x27;
  const cases: Array<[string, string, RegExp]> = [
    ['unknown option', `${head} ${id} ${pk} ${origin} passkey-uv=1 Phone`, /unknown option "passkey-uv"/],
    ['option twice', `${head} ${id} ${id} ${pk} ${origin} Phone`, /given twice/],
    ['no origin', `${head} ${id} ${pk} Phone`, /needs passkey-id, passkey-key and passkey-origin/],
    ['options and no name', `${head} ${id} ${pk} ${origin}`, /not "ed25519/],
    ['plain http origin', `${head} ${id} ${pk} passkey-origin=http://app.qrauth.example Phone`, /origin is not https/],
    ['origin with a path', `${head} ${id} ${pk} passkey-origin=${ORIGIN}/app Phone`, /origin is not an origin/],
    ['RP ID of another site', `${head} ${id} ${pk} ${origin} passkey-rpid=evil.example Phone`, /RP ID is not app\.qrauth\.example or a parent/],
    ['RP ID a bare TLD', `${head} ${id} ${pk} ${origin} passkey-rpid=example Phone`, /RP ID is not/],
    ['credential id too short', `${head} passkey-id=${toB64url(new Uint8Array(8))} ${pk} ${origin} Phone`, /passkey id is not 16\.\.512 bytes/],
    ['key not base64url', `${head} ${id} passkey-key=${toB64url(auth.cosePublicKey)}= ${origin} Phone`, /not canonical base64url/],
    ['key not CBOR', `${head} ${id} passkey-key=${toB64url(new Uint8Array(40).fill(0xff))} ${origin} Phone`, /not an ES256 \(P-256\) or EdDSA \(Ed25519\) COSE key in canonical CBOR/],
    ['key point off the curve', `${head} ${id} passkey-key=${toB64url(offCurve)} ${origin} Phone`, /not a valid public key/],
    ['key with a mixed-up alg', `${head} ${id} passkey-key=${toB64url(mixed)} ${origin} Phone`, /COSE key in canonical CBOR/],
    ['key with trailing bytes', `${head} ${id} passkey-key=${toB64url(Buffer.concat([auth.cosePublicKey, Buffer.from([0])]))} ${origin} Phone`, /COSE key in canonical CBOR/],
    ['a name with = in its first word', `${head} a=b Phone`, /unknown option "a"/],
    ['a name that is only an option', `${head} a=b`, /not "ed25519/],
  ];
  for (const [what, line, why] of cases) {
    const f = parseDevicesText(`${line}\n`, 'devices');
    t.is(f.devices.length, 0, what);
    t.is(f.problems.length, 1, what);
    t.regex(f.problems[0] ?? '', why, what);
    t.regex(f.problems[0] ?? '', /^devices:1: .*line skipped$/, what);
  }
});

test('COSE keys: ES256 and EdDSA from real authenticators are accepted; others are not', (t) => {
  t.deepEqual(coseKeyAlg(new SoftAuthenticator({ origin: ORIGIN }).cosePublicKey), { alg: 'ES256' });
  t.deepEqual(coseKeyAlg(new SoftAuthenticator({ alg: 'EdDSA', origin: ORIGIN }).cosePublicKey), { alg: 'EdDSA' });
  // EC2 map claiming P-384
  const p384 = Buffer.from(new SoftAuthenticator({ origin: ORIGIN }).cosePublicKey);
  p384[6] = 0x02;
  t.true('problem' in coseKeyAlg(p384));
  // The same ES256 map with its keys in another order: not what a conformant authenticator writes.
  const es = new SoftAuthenticator({ origin: ORIGIN }).cosePublicKey;
  const reordered = Buffer.concat([Buffer.from([0xa5, 0x03, 0x26, 0x01, 0x02]), es.subarray(5)]);
  t.true('problem' in coseKeyAlg(reordered));
  // An Ed25519 small-order point.
  const ed = Buffer.from(new SoftAuthenticator({ alg: 'EdDSA', origin: ORIGIN }).cosePublicKey);
  ed.fill(0, 10);
  ed[10] = 1; // the identity point
  t.true('problem' in coseKeyAlg(ed));
});

test('the enrollment schema of a passkey checks origin and RP ID', (t) => {
  const p = new SoftAuthenticator({ origin: ORIGIN }).passkey();
  t.deepEqual(parse(passkeyInfo, p, 'passkey'), p);
  t.deepEqual(parse(passkeyInfo, { ...p, origin: 'http://localhost:5173', rpId: 'localhost' }, 'passkey').rpId, 'localhost');
  t.throws(() => parse(passkeyInfo, { ...p, origin: 'http://10.0.0.1' }, 'passkey'), { message: /passkey\.origin: not https/ });
  t.throws(() => parse(passkeyInfo, { ...p, rpId: 'qrauth.example.evil.example' }, 'passkey'), { message: /passkey\.rpId/ });
  t.throws(() => parse(passkeyInfo, { ...p, rpId: '127.0.0.1', origin: 'https://127.0.0.1' }, 'passkey'), { message: /IP address/ });
});

test('agent config: userVerification and offlineCodes have defaults and are validated', (t) => {
  const d = makeConfig({});
  t.is(d.userVerification, 'preferred');
  t.true(d.offlineCodes);
  const strict = makeConfig({ userVerification: 'required', offlineCodes: false });
  t.is(strict.userVerification, 'required');
  t.false(strict.offlineCodes);
  t.throws(() => makeConfig({ userVerification: 'always' }), { message: /config\.userVerification: expected one of off, preferred, required/ });
  t.throws(() => makeConfig({ offlineCodes: 'no' }), { message: /config\.offlineCodes/ });
});
