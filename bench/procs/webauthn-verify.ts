/**
 * What a passkey check adds to an approval at the agent (issue #12): in one process, alternating
 * on the same approvals, the plain path's Ed25519 verify of the decision bytes against
 * agent/src/webauthn.ts PasskeyVerifier.check ("required") of a real assertion from the software
 * authenticator: ES256 with a sign counter (so every accepted check also writes and fsyncs the
 * counter file, as in production), ES256 without a counter (synced passkeys: no write), and EdDSA.
 * The phone's signing is done before the clock starts. Prints one JSON line of p50/p99 in ms.
 *
 *   npx tsx bench/procs/webauthn-verify.ts [approvals=2000] [seed]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PasskeyVerifier, type DevicePasskey, parsePasskey } from '../../agent/src/webauthn.js';
import { nodeCrypto as c } from '../../protocol/src/crypto-node.js';
import { type DecisionFields, type WebAuthnAssertion, decisionBytes, keyId, toB64url, webauthnChallenge } from '../../protocol/src/index.js';
import { prng } from '../../test/support/seeded.js';
import { SoftAuthenticator } from '../../test/support/soft-authenticator.js';
import { seedArg } from '../lib.js';

const n = Number(process.argv[2] ?? 2000);
const warmup = Math.min(300, Math.floor(n / 5));
const ORIGIN = 'https://app.qrauth.example';
const dir = mkdtempSync(join(tmpdir(), 'qrauth-bench-webauthn-'));

interface Variant {
  name: string;
  auth: SoftAuthenticator;
  passkey: DevicePasskey;
  assertions: WebAuthnAssertion[];
  times: number[];
}

/** The keys, ids and nonces come from this seed (argv[3], else QRAUTH_TEST_SEED or the default), printed at start. */
const SEED = seedArg(process.argv[3], 0x0bec_5eed, 'webauthn-verify');
const madeUp = prng(SEED);
const device = c.ed25519FromSeed(madeUp(32));
const deviceId = keyId(c, device.publicKey);
const hostId = toB64url(madeUp(16));
const approvals: Array<{ fields: DecisionFields; sig: Uint8Array }> = Array.from({ length: n }, () => {
  const fields: DecisionFields = { hostId, sid: toB64url(madeUp(16)), nonce: madeUp(16), user: 'alice', decision: 'approve', time: Date.now(), deviceId };
  return { fields, sig: c.ed25519Sign(device.seed, decisionBytes(fields)) };
});

function variant(name: string, auth: SoftAuthenticator): Variant {
  const passkey = parsePasskey(auth.passkey());
  if ('problem' in passkey) throw new Error(passkey.problem);
  return { name, auth, passkey, assertions: approvals.map((a) => auth.assert({ challenge: webauthnChallenge(c, a.fields) })), times: [] };
}
const variants = [
  // The passkeys' key pairs and credential ids from the seed too (ES256 signatures stay randomized: ECDSA's k).
  variant('es256_counter', new SoftAuthenticator({ alg: 'ES256', origin: ORIGIN, counter: 1, seed: madeUp(32) })),
  variant('es256_no_counter', new SoftAuthenticator({ alg: 'ES256', origin: ORIGIN, counterStep: 0, seed: madeUp(32) })),
  variant('eddsa_counter', new SoftAuthenticator({ alg: 'EdDSA', origin: ORIGIN, counter: 1, seed: madeUp(32) })),
];
const verifier = new PasskeyVerifier(dir, () => {});
const plain: number[] = [];
let refused = 0;

try {
  for (let i = 0; i < n; i++) {
    const { fields, sig } = approvals[i]!;
    const t0 = process.hrtime.bigint();
    const ok = c.ed25519Verify(device.publicKey, decisionBytes(fields), sig);
    const t1 = process.hrtime.bigint();
    if (!ok) refused++;
    if (i >= warmup) plain.push(Number(t1 - t0) / 1e6);
    for (const v of variants) {
      const s = process.hrtime.bigint();
      const verdict = await verifier.check('required', { fields, device: { deviceId, passkey: v.passkey }, assertion: v.assertions[i] });
      const e = process.hrtime.bigint();
      if (!verdict.ok) refused++;
      if (i >= warmup) v.times.push(Number(e - s) / 1e6);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const q = (xs: number[], f: number) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(xs.length * f))]!;
const out: Record<string, unknown> = { n: n - warmup, refused, ed25519_verify: { p50: q(plain, 0.5), p99: q(plain, 0.99) } };
for (const v of variants) out[v.name] = { p50: q(v.times, 0.5), p99: q(v.times, 0.99) };
process.stdout.write(`${JSON.stringify(out)}\n`);
