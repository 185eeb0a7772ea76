/**
 * The agent verifies passkey assertions itself (agent/src/webauthn.ts: its own checks and a
 * synchronous node:crypto signature verify, for speed). These tests hold it to
 * @simplewebauthn/server's verifyAuthenticationResponse: on seeded assertions, signed and bent in
 * every way the software authenticator can, nothing the agent accepts is refused by the library.
 */
import test from 'ava';
import { verifyAuthenticationResponse } from '@simplewebauthn/server';
import { type Device, formatDeviceLine, parseDevicesText } from '../agent/src/devices-file.js';
import { formatLog, type Logger } from '../agent/src/log.js';
import { PasskeyCounters, PasskeyVerifier, type UserVerificationPolicy } from '../agent/src/webauthn.js';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import { type DecisionFields, type WebAuthnAssertion, fromB64url, toB64url, webauthnChallenge, webauthnChallengeText } from '../protocol/src/index.js';
import { prng, testSeed } from './support/seeded.js';
import { type AssertOptions, SoftAuthenticator } from './support/soft-authenticator.js';
import { tempDir } from './support/system.js';

const ORIGIN = 'https://app.qrauth.example';
const HOST_ID = toB64url(c.sha256(new TextEncoder().encode('webauthn-parity-host')).subarray(0, 16));

function enrolledDevice(auth: SoftAuthenticator, rand: (n: number) => Uint8Array): Device {
  const line = formatDeviceLine({ publicKey: c.ed25519FromSeed(rand(32)).publicKey, enrolled: '2026-03-01', name: 'Parity phone', passkey: auth.passkey() });
  const f = parseDevicesText(`${line}\n`, 'devices');
  if (f.devices.length !== 1) throw new Error(`the devices line did not parse: ${f.problems.join('; ')}`);
  return f.devices[0]!;
}

/** A login's approval bytes, all from the seed (a fixed time: nothing here checks freshness). */
function approvalFields(device: Device, rand: (n: number) => Uint8Array): DecisionFields {
  return { hostId: HOST_ID, sid: toB64url(rand(16)), nonce: rand(16), user: 'alice', decision: 'approve', time: Date.UTC(2026, 2, 1), deviceId: device.deviceId };
}

/** What the library says of this assertion, given the counter the agent has stored. */
async function libraryVerifies(device: Device, fields: DecisionFields, a: WebAuthnAssertion, policy: UserVerificationPolicy, storedCounter: number): Promise<boolean> {
  const passkey = device.passkey!;
  try {
    const result = await verifyAuthenticationResponse({
      response: {
        id: a.credentialId,
        rawId: a.credentialId,
        type: 'public-key',
        clientExtensionResults: {},
        response: { authenticatorData: a.authenticatorData, clientDataJSON: a.clientDataJSON, signature: a.signature },
      },
      expectedChallenge: webauthnChallengeText(c, fields),
      expectedOrigin: passkey.origin,
      expectedRPID: passkey.rpId,
      expectedType: 'webauthn.get',
      credential: { id: passkey.credentialId, publicKey: new Uint8Array(passkey.publicKeyBytes), counter: storedCounter },
      requireUserVerification: policy === 'required',
    });
    // The library does not compare the credential id with the one asked for; the agent must.
    return result.verified && a.credentialId === passkey.credentialId;
  } catch {
    return false;
  }
}

function pick<T>(rand: (n: number) => Buffer, xs: readonly T[]): T {
  return xs[rand(1)[0]! % xs.length]!;
}

/** Client data as a browser writes it, with one field possibly bent (the authenticator still signs it). */
function clientDataText(rand: (n: number) => Buffer, challenge: Uint8Array): string | undefined {
  const base: Record<string, unknown> = { type: 'webauthn.get', challenge: toB64url(challenge), origin: ORIGIN, crossOrigin: false };
  switch (rand(1)[0]! % 10) {
    case 0:
      return JSON.stringify({ ...base, tokenBinding: pick(rand, [{ status: 'supported' }, { status: 'present', id: 'AAAA' }, { status: 'bogus' }, 'present', 1, null, [], {}]) });
    case 1:
      return JSON.stringify({ ...base, crossOrigin: pick(rand, [true, 'yes', 1, null]) });
    case 2:
      return JSON.stringify({ ...base, topOrigin: pick(rand, [ORIGIN, 'https://evil.example', '']) });
    case 3:
      return JSON.stringify({ ...base, challenge: `${toB64url(challenge)}${pick(rand, ['', 'A', '='])}` });
    case 4:
      return JSON.stringify({ ...base, origin: pick(rand, [`${ORIGIN}/`, ORIGIN.toUpperCase(), 'http://app.qrauth.example', ORIGIN]) });
    case 5:
      return JSON.stringify({ ...base, type: pick(rand, ['webauthn.create', 'webauthn.get ', 'webauthn.get']) });
    case 6:
      return JSON.stringify({ ...base, other_keys_can_be_added_here: 'do not compare clientDataJSON against a template' });
    default:
      return undefined; // the authenticator's own text
  }
}

test('every assertion the agent accepts, @simplewebauthn/server also accepts (seeded: signed variants and byte mutations)', async (t) => {
  const seed = testSeed(0x9a217e);
  t.log(`seed ${seed} (replay: QRAUTH_TEST_SEED=${seed})`);
  const rand = prng(seed);
  const d = tempDir('qrauth-webauthn-parity-');
  const lines: string[] = [];
  const log: Logger = (event, fields) => lines.push(formatLog(event, fields));
  const verifier = new PasskeyVerifier(d.path, log);
  t.teardown(async () => {
    await verifier.counters.flush();
    d.remove();
  });
  let bothAccepted = 0;
  let agentRefused = 0;
  for (const alg of ['ES256', 'EdDSA'] as const) {
    for (const counterStart of [0, 5]) {
      const auth = new SoftAuthenticator({ alg, origin: ORIGIN, counter: counterStart, counterStep: counterStart === 0 ? 0 : 1, seed: rand(32) });
      const device = enrolledDevice(auth, rand);
      const key = PasskeyCounters.keyOf(device.passkey!);
      for (let i = 0; i < 120; i++) {
        const fields = approvalFields(device, rand);
        const challenge = webauthnChallenge(c, fields);
        const policy = pick(rand, ['required', 'preferred'] as const);
        const stored = verifier.counters.get(key);
        const o: AssertOptions = { challenge, up: rand(1)[0]! % 8 !== 0, uv: rand(1)[0]! % 4 !== 0 };
        const text = clientDataText(rand, challenge);
        if (text !== undefined) o.clientDataJSONText = text;
        const knob = rand(1)[0]! % 8;
        if (knob === 0) o.counter = pick(rand, [0, stored, stored + 1, Math.max(0, stored - 1), 0xffffffff]);
        else if (knob === 1) o.rpId = pick(rand, ['qrauth.example', 'evil.example', auth.rpId]);
        else if (knob === 2) o.credentialId = pick(rand, [rand(32), auth.credentialId]);
        else if (knob === 3) {
          o.extensionsFlag = rand(1)[0]! % 2 === 0;
          o.authDataTail = pick(rand, [Uint8Array.of(0xa0), Uint8Array.of(0xa1, 0x61, 0x78, 0xf5), Uint8Array.of(1, 2, 3)]);
        }
        let a = auth.assert(o);
        if (rand(1)[0]! % 5 === 0) {
          // A byte bent after signing, in any field.
          const k = pick(rand, ['authenticatorData', 'clientDataJSON', 'signature'] as const);
          const bytes = Buffer.from(fromB64url(a[k]));
          const at = rand(2).readUInt16BE(0) % bytes.length;
          bytes[at] = bytes[at]! ^ (1 << rand(1)[0]! % 8);
          a = { ...a, [k]: toB64url(bytes) };
        }
        const library = await libraryVerifies(device, fields, a, policy, stored);
        const agent = await verifier.check(policy, { fields, device, assertion: a });
        t.false(agent.ok && !library, `seed ${seed} ${alg} counter ${counterStart} #${i} (${policy}): the agent accepted what the library refuses: ${JSON.stringify(a)}`);
        if (agent.ok && library) bothAccepted++;
        if (!agent.ok) agentRefused++;
      }
    }
  }
  // Both kinds occur, so the comparison above was made on accepted and refused assertions alike.
  t.true(bothAccepted >= 40, `seed ${seed}: only ${bothAccepted} accepted by both`);
  t.true(agentRefused >= 40, `seed ${seed}: only ${agentRefused} refused by the agent`);
});

test("clientDataJSON's tokenBinding is held to the library's rule: absent or one of the three statuses", async (t) => {
  const d = tempDir('qrauth-webauthn-tb-');
  const lines: string[] = [];
  const verifier = new PasskeyVerifier(d.path, (event, fields) => lines.push(formatLog(event, fields)));
  t.teardown(async () => {
    await verifier.counters.flush();
    d.remove();
  });
  const rand = prng(testSeed(0x7b_1d));
  const auth = new SoftAuthenticator({ origin: ORIGIN, counterStep: 0, seed: rand(32) });
  const device = enrolledDevice(auth, rand);
  const cases: Array<[unknown, boolean]> = [
    [{ status: 'supported' }, true],
    [{ status: 'present', id: 'AAAA' }, true],
    [{ status: 'notSupported' }, true],
    [{ status: 'bogus' }, false],
    [{}, false],
    ['present', false],
    [1, false],
  ];
  for (const [tokenBinding, accepted] of cases) {
    const fields = approvalFields(device, rand);
    const challenge = webauthnChallenge(c, fields);
    const a = auth.assert({ challenge, clientDataJSONText: JSON.stringify({ type: 'webauthn.get', challenge: toB64url(challenge), origin: ORIGIN, crossOrigin: false, tokenBinding }) });
    const v = await verifier.check('required', { fields, device, assertion: a });
    t.is(v.ok, accepted, `tokenBinding ${JSON.stringify(tokenBinding)}`);
    if (!v.ok) t.is(v.reason, 'verifier_refused', `tokenBinding ${JSON.stringify(tokenBinding)}`);
    t.is(await libraryVerifies(device, fields, a, 'required', 0), accepted, `library, tokenBinding ${JSON.stringify(tokenBinding)}`);
  }
});
