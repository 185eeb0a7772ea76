/**
 * Passkey (WebAuthn) checks of an approval, on the agent (issue #12; docs/protocol.md §5).
 *
 * The device's Ed25519 signature says which enrolled phone approved; the assertion says the
 * phone's authenticator saw the person (UP) and, where the policy asks for it, checked their
 * fingerprint, face or PIN (UV), for exactly this approval (the challenge is SHA-256 of the
 * approval bytes). This file makes every check of @simplewebauthn/server's verifyAuthenticationResponse
 * (client data type, challenge, origin, frames, token binding, RP ID hash, flags, signature), each
 * refused with its own reason, then the sign counter against <stateDir>/passkey-counters.json. The
 * signature is verified synchronously with node:crypto and a key object made once per passkey: the
 * library's WebCrypto path (a JWK import at every check, two digests and the verify, each a round
 * trip through libuv's thread pool) made a passkey approval +1.9 ms slower than a plain one at p50,
 * now +0.5 ms (docs/BENCHMARKS.md, row 9). test/webauthn-parity.test.ts holds this to the library.
 *
 * Policy (`userVerification` in agent.json):
 * - off: passkeys are not used; an assertion, if one comes, is ignored.
 * - preferred: a device enrolled with a passkey must send a valid assertion (UP; UV if it did);
 *   a device without one approves with its signature alone.
 * - required: every approval needs a valid assertion with UV from the device's passkey; a device
 *   enrolled without a passkey cannot approve.
 * A deny never needs an assertion: anybody holding the phone may refuse a login.
 */
import sodium from 'sodium-native';
import { type KeyObject, createPublicKey, verify as verifySignature } from 'node:crypto';
import { join } from 'node:path';
import { parseAuthenticatorData } from '@simplewebauthn/server/helpers';
import {
  type DecisionFields,
  type ErrorCode,
  type PasskeyAlg,
  type PasskeyInfo,
  type WebAuthnAssertion,
  type Parsed,
  arrayOf,
  canonical,
  fromB64url,
  fromUtf8,
  int,
  literal,
  object,
  parse,
  passkeyOriginProblem,
  passkeyRpIdProblem,
  str,
  toB64url,
  webauthnAssertion,
  webauthnChallengeText,
} from '../../protocol/src/index.js';
import type { QrCrypto } from '../../protocol/src/crypto.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import type { Logger } from './log.js';
import { StateFileDamaged, readStateJson, writeStateFileAtomicAsync } from './state-file.js';

export type UserVerificationPolicy = 'off' | 'preferred' | 'required';
export const USER_VERIFICATION_POLICIES = ['off', 'preferred', 'required'] as const;

/** A passkey of an enrolled device, checked when the devices file was parsed. */
export interface DevicePasskey extends PasskeyInfo {
  alg: PasskeyAlg;
  credentialIdBytes: Uint8Array;
  /** The COSE_Key bytes, as the authenticator reported them at enrollment. */
  publicKeyBytes: Uint8Array;
}

/**
 * Decode a passkey's text fields and check them: base64url, the origin and RP ID rules, and a
 * COSE key qrauth can use. Returns the passkey or why it is unusable (for the devices file's
 * problem list).
 */
export function parsePasskey(info: PasskeyInfo): DevicePasskey | { problem: string } {
  let credentialIdBytes: Uint8Array;
  let publicKeyBytes: Uint8Array;
  try {
    credentialIdBytes = fromB64url(info.credentialId);
    publicKeyBytes = fromB64url(info.publicKey);
  } catch {
    return { problem: 'the passkey id or key is not canonical base64url' };
  }
  if (credentialIdBytes.length < 16 || credentialIdBytes.length > 512) return { problem: 'the passkey id is not 16..512 bytes' };
  const originProblem = passkeyOriginProblem(info.origin);
  if (originProblem) return { problem: `the passkey origin is ${originProblem}` };
  const rpProblem = passkeyRpIdProblem(info.rpId, info.origin);
  if (rpProblem) return { problem: `the passkey RP ID is ${rpProblem}` };
  const key = coseKeyAlg(publicKeyBytes);
  if ('problem' in key) return key;
  return { ...info, alg: key.alg, credentialIdBytes, publicKeyBytes };
}

// The only encodings of the two COSE_Keys qrauth accepts in CTAP2's canonical CBOR (which
// authenticators must use): the map's keys in canonical order 1, 3, -1, -2 (, -3), each coordinate a
// 32-byte string. Comparing with these fixed heads is exact and takes microseconds; a CBOR decoder
// took ~0.1 ms a key, at every change of a devices file of up to 100 passkeys.
const COSE_ES256_HEAD = Uint8Array.from([0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20]); // {1:2, 3:-7, -1:1, -2: x}
const COSE_ES256_Y = Uint8Array.from([0x22, 0x58, 0x20]); // -3: y
const COSE_EDDSA_HEAD = Uint8Array.from([0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20]); // {1:1, 3:-8, -1:6, -2: x}

function startsWith(bytes: Uint8Array, head: Uint8Array, at = 0): boolean {
  if (bytes.length < at + head.length) return false;
  for (let i = 0; i < head.length; i++) if (bytes[at + i] !== head[i]) return false;
  return true;
}

/**
 * Which algorithm a COSE_Key is for, if it is one qrauth verifies: ES256 on P-256 with a point on
 * the curve, or EdDSA on Ed25519 with a valid point; exactly the map a conformant authenticator
 * writes (CTAP2 canonical CBOR), nothing before or after it.
 */
export function coseKeyAlg(bytes: Uint8Array): { alg: PasskeyAlg } | { problem: string } {
  if (bytes.length === 77 && startsWith(bytes, COSE_ES256_HEAD) && startsWith(bytes, COSE_ES256_Y, 42)) {
    return isP256Point(bytes.subarray(10, 42), bytes.subarray(45, 77)) ? { alg: 'ES256' } : { problem: 'the passkey key is not a valid public key (not a P-256 point)' };
  }
  if (bytes.length === 42 && startsWith(bytes, COSE_EDDSA_HEAD)) {
    // Canonical, on the curve, in the prime-order subgroup (as for device keys).
    return sodium.crypto_core_ed25519_is_valid_point(Buffer.from(bytes.subarray(10, 42)))
      ? { alg: 'EdDSA' }
      : { problem: 'the passkey key is not a valid public key (not an Ed25519 point)' };
  }
  return { problem: 'the passkey key is not an ES256 (P-256) or EdDSA (Ed25519) COSE key in canonical CBOR' };
}

const P256_P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const P256_B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;

/**
 * Whether (x, y) is an affine point of P-256: both below p and y² = x³ − 3x + b (mod p). P-256 has
 * cofactor 1, so every such point is in the group. Checked with BigInt because node:crypto's JWK
 * import took 0.24 ms a key (110 ms for a 64 KiB devices file of passkey lines, at every change of it).
 */
function isP256Point(xBytes: Uint8Array, yBytes: Uint8Array): boolean {
  const x = BigInt(`0x${Buffer.from(xBytes).toString('hex')}`);
  const y = BigInt(`0x${Buffer.from(yBytes).toString('hex')}`);
  if (x >= P256_P || y >= P256_P) return false;
  return (y * y) % P256_P === (((x * x) % P256_P) * x - 3n * x + P256_B + 3n * P256_P) % P256_P;
}

/**
 * Whether `sig` is the one encoding a signature of `alg` may have: EdDSA 64 bytes; ES256 a DER
 * SEQUENCE of two minimal positive INTEGERs and nothing after it. The library's DER reader ignores
 * bytes after the SEQUENCE, so without this an approval's signature could be sent in many byte forms.
 */
export function isStrictSignature(alg: PasskeyAlg, sig: Uint8Array): boolean {
  if (alg === 'EdDSA') return sig.length === 64;
  if (sig.length < 8 || sig[0] !== 0x30 || sig[1] !== sig.length - 2) return false;
  let at = 2;
  for (let n = 0; n < 2; n++) {
    if (sig[at] !== 0x02) return false;
    const len = sig[at + 1] ?? 0;
    const body = sig.subarray(at + 2, at + 2 + len);
    if (len < 1 || len > 33 || body.length !== len) return false;
    if ((body[0]! & 0x80) !== 0) return false; // negative
    if (len > 1 && body[0] === 0 && (body[1]! & 0x80) === 0) return false; // not minimal
    at += 2 + len;
  }
  return at === sig.length;
}

// SubjectPublicKeyInfo DER heads for the two key kinds coseKeyAlg accepts: EC P-256 (id-ecPublicKey,
// prime256v1) before the uncompressed point 04‖x‖y, and Ed25519 (RFC 8410) before its 32 bytes.
const SPKI_P256_HEAD = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
const SPKI_ED25519_HEAD = Buffer.from('302a300506032b6570032100', 'hex');

// One key object per parsed passkey (devices-file.ts caches and freezes them while the file is
// unchanged): an import costs ~0.1-0.25 ms, the verify itself less. Weak: a passkey dropped from
// the parse cache takes its key with it.
const passkeyKeys = new WeakMap<DevicePasskey, KeyObject>();

function passkeyKeyObject(passkey: DevicePasskey): KeyObject {
  let key = passkeyKeys.get(passkey);
  if (!key) {
    const cose = passkey.publicKeyBytes;
    // Offsets as checked by coseKeyAlg: x at 10..42 (and y at 45..77 for ES256).
    const der =
      passkey.alg === 'ES256'
        ? Buffer.concat([SPKI_P256_HEAD, Uint8Array.of(0x04), cose.subarray(10, 42), cose.subarray(45, 77)])
        : Buffer.concat([SPKI_ED25519_HEAD, cose.subarray(10, 42)]);
    key = createPublicKey({ key: der, format: 'der', type: 'spki' });
    passkeyKeys.set(passkey, key);
  }
  return key;
}

/**
 * Whether `signature` (already checked by isStrictSignature) is the passkey's signature over
 * authenticatorData ‖ SHA-256(clientDataJSON) (WebAuthn §7.2 step 21): ES256 is ECDSA P-256 with
 * SHA-256, EdDSA is Ed25519. Synchronous (node:crypto on this thread): no thread-pool round trip.
 */
function passkeySignatureVerifies(passkey: DevicePasskey, authData: Uint8Array, clientDataHash: Uint8Array, signature: Uint8Array): boolean {
  const signed = Buffer.concat([authData, clientDataHash]);
  const key = passkeyKeyObject(passkey);
  return passkey.alg === 'ES256' ? verifySignature('sha256', signed, { key, dsaEncoding: 'der' }, signature) : verifySignature(null, signed, key, signature);
}

/** Why an assertion was refused: stable words for the log (`passkey_refused reason=…`). */
export type PasskeyRefusal =
  | 'no_passkey'
  | 'missing'
  | 'malformed'
  | 'wrong_credential'
  | 'wrong_type'
  | 'wrong_challenge'
  | 'wrong_origin'
  | 'cross_origin'
  | 'wrong_rp_id'
  | 'user_not_present'
  | 'user_not_verified'
  | 'bad_signature'
  | 'verifier_refused'
  | 'counter_regressed'
  | 'counter_state_damaged';

export type PasskeyVerdict =
  | { ok: true; /** an assertion was verified */ checked: boolean; userVerified: boolean }
  | { ok: false; reason: PasskeyRefusal; code: ErrorCode; message: string };

/** The approval as the agent rebuilt it from its own session, and what the phone sent. */
export interface ApprovalToCheck {
  fields: DecisionFields;
  device: { deviceId: string; passkey?: DevicePasskey | undefined };
  /** The assertion as it came (validated here again: callers may pass it straight from the wire). */
  assertion: unknown;
}

const UV_MESSAGE = "This host needs your fingerprint, face or PIN to approve: approve again and confirm the phone's prompt.";

function refusal(reason: PasskeyRefusal, detail?: string): Extract<PasskeyVerdict, { ok: false }> {
  switch (reason) {
    case 'no_passkey':
      return {
        ok: false,
        reason,
        code: 'QRA_ERR_NO_PASSKEY',
        message: 'This host requires a passkey (fingerprint, face or PIN) and this phone was enrolled without one: enroll it again (qrauth enroll).',
      };
    case 'user_not_verified':
      return { ok: false, reason, code: 'QRA_ERR_USER_VERIFICATION', message: UV_MESSAGE };
    case 'counter_regressed':
      return {
        ok: false,
        reason,
        code: 'QRA_ERR_PASSKEY_CLONED',
        message: "This phone's passkey may have been copied (its signature counter went backwards); the approval is refused. Tell the admin of this host.",
      };
    case 'counter_state_damaged':
      return { ok: false, reason, code: 'QRA_ERR_PASSKEY', message: 'This host cannot check passkeys right now (its passkey state needs an admin); ask the admin, or type the code from the app.' };
    default:
      return { ok: false, reason, code: 'QRA_ERR_PASSKEY', message: `The passkey check failed (${detail ?? reason.replace(/_/g, ' ')}); approve again from the qrauth app this phone was enrolled with.` };
  }
}

export const PASSKEY_COUNTERS_FILE = 'passkey-counters.json';
/** Credentials remembered; the least recently used goes when a new one comes (logged). */
export const PASSKEY_COUNTERS_MAX = 4096;
const COUNTERS_FILE_MAX_BYTES = 1 << 20;
const COUNTER_KEY_LABEL = 'qrauth-passkey-counter-v1';

const countersSchema = object({
  v: literal(1),
  credentials: arrayOf(
    object({
      key: str({ max: 22, min: 22, pattern: /^[A-Za-z0-9_-]{22}$/ }),
      counter: int({ min: 0, max: 0xffffffff }),
      used: int({ min: 0, max: 2 ** 50 }),
    }),
    PASSKEY_COUNTERS_MAX,
  ),
});

/**
 * The last sign counter seen for each credential. Keyed by the credential id AND its public key:
 * keyed by the id alone, a user could list someone else's credential id with a key of their own
 * and push that id's counter to 2^32-1, locking the owner out as a "clone".
 *
 * The counters in memory are the authority while the agent runs: a check and its update happen in
 * one synchronous step. <stateDir>/passkey-counters.json (0600, bounded, validated on load) follows
 * them, written atomically (temp file, fsync, rename) in the background, one write at a time with
 * changes coalesced: an fsync on the event loop at every approval cost ~4 ms p50 and 36 ms p99 of
 * every login on the host (bench/procs/webauthn-verify.ts). So a crash within milliseconds of an
 * approval can forget that one counter step; nothing else is lost.
 * A file that is there but unreadable, unsafe or invalid stops every passkey approval (fail closed:
 * a forgotten counter would let a clone through) until an admin moves it away and restarts the
 * agent (docs/operations.md).
 *
 * Not a SavedRecords (saved-records.ts), whose policy differs at each point that matters here: it
 * saves a second after a change (here at the next turn: a crash forgets milliseconds of counters,
 * not a second of them); its flush() rewrites the file even when nothing changed (here a damaged
 * file must stay for the admin: rewritten from the empty memory, it would set every counter back
 * to 0 at the next start); and it drops evictions and failed saves silently (here both are logged).
 */
export class PasskeyCounters {
  readonly path: string;
  damaged: string | null = null;
  private readonly entries = new Map<string, { counter: number; used: number }>();
  private dirty = false;
  private writing: Promise<void> | null = null;

  constructor(
    stateDir: string,
    private readonly log: Logger,
  ) {
    this.path = join(stateDir, PASSKEY_COUNTERS_FILE);
    this.load();
  }

  static keyOf(passkey: Pick<DevicePasskey, 'credentialIdBytes' | 'publicKeyBytes'>, crypto: QrCrypto = nodeCrypto): string {
    return toB64url(crypto.sha256(canonical(COUNTER_KEY_LABEL, [passkey.credentialIdBytes, passkey.publicKeyBytes])).subarray(0, 16));
  }

  get(key: string): number {
    return this.entries.get(key)?.counter ?? 0;
  }

  /** Remember a counter the caller has checked is higher; written to the file soon after (flush() waits). */
  advance(key: string, counter: number, now = Date.now()): void {
    this.entries.delete(key); // re-insert: Map order is least recently used first
    this.entries.set(key, { counter, used: now });
    while (this.entries.size > PASSKEY_COUNTERS_MAX) {
      const oldest = this.entries.keys().next().value!;
      this.entries.delete(oldest);
      this.log('passkey_counter_forgotten', { credential: oldest, cause: `more than ${PASSKEY_COUNTERS_MAX} passkeys` });
    }
    this.dirty = true;
    this.scheduleSave();
  }

  /** Resolves once every counter remembered so far is on disk (or its write failed and was logged). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private scheduleSave(): void {
    if (this.writing) return; // the running loop takes the change
    // Started on the next turn of the event loop: the snapshot and the first file call then come
    // after the verdict this approval sends, not before it. flush() sees the write at once.
    this.writing = new Promise<void>((resolve) => setImmediate(resolve))
      .then(async () => this.writeLoop())
      .finally(() => {
        this.writing = null;
        if (this.dirty) this.scheduleSave();
      });
  }

  private async writeLoop(): Promise<void> {
    while (this.dirty) {
      this.dirty = false;
      await this.save();
    }
  }

  private load(): void {
    let state: Parsed<typeof countersSchema> | null;
    try {
      state = readStateJson(this.path, { maxBytes: COUNTERS_FILE_MAX_BYTES }, (json) => parse(countersSchema, json, 'passkey-counters'));
    } catch (e) {
      return this.markDamaged(e instanceof StateFileDamaged ? e.reason : (e as Error).message);
    }
    if (!state) return;
    const sorted = [...state.credentials].sort((a, b) => a.used - b.used);
    for (const c of sorted) this.entries.set(c.key, { counter: c.counter, used: c.used });
  }

  private markDamaged(why: string): void {
    this.damaged = why;
    this.log('passkey_counters_damaged', { file: this.path, cause: why, effect: 'passkey approvals refused until an admin moves the file away and restarts the agent' });
  }

  /** Atomic (state-file.ts): a crash leaves the old state or the new, never half. */
  private async save(): Promise<void> {
    // The snapshot is taken at once, so changes made while the write runs go into the next one.
    const text = JSON.stringify({ v: 1, credentials: [...this.entries].map(([key, e]) => ({ key, counter: e.counter, used: e.used })) });
    try {
      await writeStateFileAtomicAsync(this.path, text);
    } catch (e) {
      // The counter still holds in memory; only a restart before the next save would forget it.
      this.log('passkey_counters_save_failed', { file: this.path, cause: (e as Error).message });
    }
  }
}

interface ClientData {
  type: string;
  challenge: string;
  origin: string;
  crossOrigin?: unknown;
  topOrigin?: unknown;
  tokenBinding?: unknown;
}

/** As verifyAuthenticationResponse checks it: absent, or an object with one of the three statuses. */
function tokenBindingAcceptable(tokenBinding: unknown): boolean {
  if (!tokenBinding) return true;
  if (typeof tokenBinding !== 'object') return false;
  const status = (tokenBinding as { status?: unknown }).status;
  return status === 'present' || status === 'supported' || status === 'notSupported';
}

function decodeClientData(text: string): ClientData | null {
  try {
    const json: unknown = JSON.parse(fromUtf8(fromB64url(text)));
    if (typeof json !== 'object' || json === null || Array.isArray(json)) return null;
    const c = json as Record<string, unknown>;
    if (typeof c.type !== 'string' || typeof c.challenge !== 'string' || typeof c.origin !== 'string') return null;
    return c as unknown as ClientData;
  } catch {
    return null;
  }
}

/** Checks approvals against the device's passkey and the policy; one per agent (it owns the counters). */
export class PasskeyVerifier {
  readonly counters: PasskeyCounters;

  constructor(
    stateDir: string,
    private readonly log: Logger,
    private readonly crypto: QrCrypto = nodeCrypto,
  ) {
    this.counters = new PasskeyCounters(stateDir, log);
  }

  /**
   * Whether `approval` satisfies `policy`. Resolves, never rejects: every refusal comes back with
   * its reason (also logged as `passkey_refused`), its QRA_ERR code and a message for the person.
   * The work is synchronous now (node:crypto), but the verdict comes as a promise: a caller must
   * still check after the await that its session is open, so a verifier that yields stays safe.
   */
  async check(policy: UserVerificationPolicy, approval: ApprovalToCheck): Promise<PasskeyVerdict> {
    const verdict = this.evaluate(policy, approval);
    if (!verdict.ok) {
      const f = approval.fields;
      this.log('passkey_refused', { user: f.user, sid: f.sid.slice(0, 8), device: approval.device.deviceId, policy, reason: verdict.reason });
    }
    return verdict;
  }

  private evaluate(policy: UserVerificationPolicy, approval: ApprovalToCheck): PasskeyVerdict {
    const { fields, device } = approval;
    if (policy === 'off' || fields.decision !== 'approve') return { ok: true, checked: false, userVerified: false };
    const passkey = device.passkey;
    if (!passkey) return policy === 'required' ? refusal('no_passkey') : { ok: true, checked: false, userVerified: false };
    if (approval.assertion === undefined || approval.assertion === null) {
      return policy === 'required' ? refusal('user_not_verified') : refusal('missing', 'the phone did not use its passkey');
    }
    if (this.counters.damaged) return refusal('counter_state_damaged');

    let assertion: WebAuthnAssertion;
    try {
      assertion = parse(webauthnAssertion, approval.assertion, 'assertion');
    } catch {
      return refusal('malformed', 'the assertion is not well-formed');
    }
    if (assertion.credentialId !== passkey.credentialId) return refusal('wrong_credential', "the assertion is from another passkey than this device's");

    const clientData = decodeClientData(assertion.clientDataJSON);
    if (!clientData) return refusal('malformed', 'clientDataJSON is not the JSON a browser writes');
    if (clientData.type !== 'webauthn.get') return refusal('wrong_type', 'the assertion is not a WebAuthn get');
    if (clientData.challenge !== webauthnChallengeText(this.crypto, fields)) return refusal('wrong_challenge', 'the assertion was made for another approval');
    if (clientData.origin !== passkey.origin) return refusal('wrong_origin', 'the assertion was made on another web origin than the enrolled app');
    if (clientData.crossOrigin === true || clientData.topOrigin !== undefined) return refusal('cross_origin', 'the assertion was made inside a frame of another site');
    if (!tokenBindingAcceptable(clientData.tokenBinding)) return refusal('verifier_refused', "clientDataJSON's tokenBinding is not one a browser writes");

    let authDataBytes: Uint8Array;
    let authData: ReturnType<typeof parseAuthenticatorData>;
    try {
      authDataBytes = fromB64url(assertion.authenticatorData);
      authData = parseAuthenticatorData(new Uint8Array(authDataBytes));
    } catch {
      return refusal('malformed', 'authenticatorData does not parse');
    }
    // Attested credential data belongs to registration, never to an assertion.
    if (authData.flags.at) return refusal('malformed', 'authenticatorData carries attested credential data');
    if (toB64url(authData.rpIdHash) !== toB64url(this.crypto.sha256(new TextEncoder().encode(passkey.rpId)))) {
      return refusal('wrong_rp_id', 'the assertion is for another RP ID');
    }
    if (!authData.flags.up) return refusal('user_not_present', 'the authenticator did not see the person');
    if (policy === 'required' && !authData.flags.uv) return refusal('user_not_verified');
    const signature = fromB64url(assertion.signature);
    if (!isStrictSignature(passkey.alg, signature)) return refusal('malformed', `the signature is not one strict ${passkey.alg} encoding`);

    // The counter is checked below, against the stored one, only once the signature is known good:
    // a forged assertion with a low counter is a bad signature, not evidence of a clone.
    let verified: boolean;
    try {
      verified = passkeySignatureVerifies(passkey, authDataBytes, this.crypto.sha256(fromB64url(assertion.clientDataJSON)), signature);
    } catch {
      return refusal('verifier_refused', 'the assertion did not verify');
    }
    if (!verified) return refusal('bad_signature', 'the passkey signature does not verify');

    // Synchronous from here to the save: no other check can slip in between read and write.
    const key = PasskeyCounters.keyOf(passkey, this.crypto);
    const stored = this.counters.get(key);
    const counter = authData.counter;
    if ((counter > 0 || stored > 0) && counter <= stored) {
      this.log('passkey_clone_suspected', { user: fields.user, device: device.deviceId, counter, stored, action: 'refused; revoke the device and enroll the phone again' });
      return refusal('counter_regressed');
    }
    // Authenticators without a counter (synced passkeys) always send 0: nothing to remember.
    if (counter > stored) this.counters.advance(key, counter);
    return { ok: true, checked: true, userVerified: authData.flags.uv };
  }
}
