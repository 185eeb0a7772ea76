/**
 * The phone's passkey (WebAuthn, issue #12): made on the platform authenticator when the phone
 * enrolls with a host, then asked at every Approve for an assertion over that approval's bytes
 * (docs/protocol.md §5). The host verifies it, so it learns that the phone's owner passed the
 * phone's own fingerprint, face or PIN check with a key that stays in the phone's hardware.
 *
 * Web API only: inside the native (Capacitor) shell it works where the platform's WebView offers
 * WebAuthn; docs/app.md says what a native build needs beyond that.
 */
import {
  PASSKEY_ALGS,
  type PasskeyInfo,
  type WebAuthnAssertion,
  fromB64url,
  parse,
  passkeyInfo,
  passkeyOriginProblem,
  passkeyRpIdProblem,
  toB64url,
} from '../../../protocol/src/index.js';

/** Why no passkey was made or used: the screens say each in their own words. */
export type PasskeyProblem =
  /** The person cancelled the prompt, or it timed out (WebAuthn's NotAllowedError): nothing was sent. */
  | 'cancelled'
  /** This phone (or this browser, or this origin) cannot make or use a platform passkey. */
  | 'unavailable';

export class PasskeyError extends Error {
  constructor(
    readonly problem: PasskeyProblem,
    message: string,
  ) {
    super(message);
    this.name = 'PasskeyError';
  }
}

const CANCELLED = 'the fingerprint, face or PIN check was cancelled or timed out; nothing was sent';

/** Turns what navigator.credentials threw into a PasskeyError the screens can explain. */
function passkeyError(e: unknown, what: string): PasskeyError {
  const name = e instanceof Error ? e.name : '';
  if (name === 'NotAllowedError' || name === 'AbortError') return new PasskeyError('cancelled', CANCELLED);
  return new PasskeyError('unavailable', `${what}: ${e instanceof Error ? e.message : String(e)}`);
}

/**
 * Whether this phone can make a passkey that checks its owner (a user-verifying platform
 * authenticator) at this app's origin. False in an insecure context, where the origin cannot be
 * a passkey's (an IP address, plain http off loopback), or when the browser says there is none.
 */
export async function platformPasskeyAvailable(): Promise<boolean> {
  if (typeof window === 'undefined' || !window.isSecureContext || typeof PublicKeyCredential === 'undefined') return false;
  const origin = window.location.origin;
  if (passkeyOriginProblem(origin) || passkeyRpIdProblem(window.location.hostname, origin)) return false;
  try {
    return await PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable();
  } catch {
    return false;
  }
}

function randomBuffer(n: number): ArrayBuffer {
  const b = new Uint8Array(n);
  crypto.getRandomValues(b);
  return b.buffer;
}

const COSE_HEADS: ReadonlyArray<{ head: readonly number[]; length: number }> = [
  // {1: 2, 3: -7 (ES256), -1: 1 (P-256), -2: x(32), -3: y(32)}, as CTAP2 canonical CBOR writes it
  { head: [0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20], length: 77 },
  // {1: 1, 3: -8 (EdDSA), -1: 6 (Ed25519), -2: x(32)}
  { head: [0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20], length: 42 },
];

/**
 * The credential id and COSE public key from a registration's authenticatorData: rpIdHash (32),
 * flags (1), signCount (4), then attested credential data: AAGUID (16), id length (2), id, COSE
 * key. Only the two key encodings qrauth verifies are taken (the host checks them again); no
 * general CBOR decoder is needed for them.
 */
export function credentialFromAuthData(authData: Uint8Array): { credentialId: Uint8Array; publicKey: Uint8Array; flags: number } {
  if (authData.length < 55) throw new PasskeyError('unavailable', 'the authenticator returned no credential');
  const flags = authData[32]!;
  if ((flags & 0x40) === 0) throw new PasskeyError('unavailable', 'the authenticator returned no credential');
  const idLength = (authData[53]! << 8) | authData[54]!;
  const credentialId = authData.slice(55, 55 + idLength);
  const rest = authData.subarray(55 + idLength);
  for (const { head, length } of COSE_HEADS) {
    if (rest.length >= length && head.every((b, i) => rest[i] === b)) return { credentialId, publicKey: rest.slice(0, length), flags };
  }
  throw new PasskeyError('unavailable', 'this phone made a passkey of a kind qrauth does not use (only ES256 and EdDSA)');
}

/**
 * authenticatorData inside an attestationObject ({"fmt", "attStmt", "authData"} in CBOR), for
 * browsers without getAuthenticatorData(): the byte string after the text key "authData".
 */
export function authDataFromAttestation(att: Uint8Array): Uint8Array {
  const key = [0x68, ...Array.from('authData', (c) => c.charCodeAt(0))];
  for (let i = 0; i + key.length + 3 <= att.length; i++) {
    if (!key.every((b, j) => att[i + j] === b)) continue;
    let at = i + key.length;
    const head = att[at++]!;
    let n: number;
    if (head === 0x58) n = att[at++]!;
    else if (head === 0x59) {
      n = (att[at]! << 8) | att[at + 1]!;
      at += 2;
    } else if (head >= 0x40 && head < 0x58) n = head - 0x40;
    else break;
    if (at + n > att.length) break;
    return att.slice(at, at + n);
  }
  throw new PasskeyError('unavailable', 'the authenticator returned an attestation qrauth cannot read');
}

/**
 * Makes a passkey on this phone's platform authenticator for an enrollment with `hostname`:
 * userVerification required (the prompt for fingerprint, face or PIN comes now), a resident key
 * where the phone offers one, ES256 or EdDSA, RP ID = this app's host. One per enrollment, with
 * its own user handle, so enrolling with another host never replaces this one on the phone.
 * Throws PasskeyError ('cancelled' or 'unavailable').
 */
export async function createPasskey(deviceName: string, hostname: string): Promise<PasskeyInfo> {
  const origin = window.location.origin;
  const rpId = window.location.hostname;
  let cred: Credential | null;
  try {
    cred = await navigator.credentials.create({
      publicKey: {
        rp: { id: rpId, name: 'qrauth' },
        user: { id: randomBuffer(16), name: `${deviceName} · ${hostname}`, displayName: `qrauth approvals for ${hostname}` },
        // No attestation is checked: the device key's signature and the fingerprint bind this key.
        challenge: randomBuffer(32),
        pubKeyCredParams: [
          { type: 'public-key', alg: PASSKEY_ALGS.ES256 },
          { type: 'public-key', alg: PASSKEY_ALGS.EdDSA },
        ],
        authenticatorSelection: { authenticatorAttachment: 'platform', residentKey: 'preferred', requireResidentKey: false, userVerification: 'required' },
        attestation: 'none',
        timeout: 120_000,
      },
    });
  } catch (e) {
    throw passkeyError(e, 'this phone could not make a passkey');
  }
  if (!(cred instanceof PublicKeyCredential) || !(cred.response instanceof AuthenticatorAttestationResponse)) {
    throw new PasskeyError('unavailable', 'this phone returned no passkey');
  }
  const response = cred.response;
  const authData =
    typeof response.getAuthenticatorData === 'function' ? new Uint8Array(response.getAuthenticatorData()) : authDataFromAttestation(new Uint8Array(response.attestationObject));
  const { credentialId, publicKey, flags } = credentialFromAuthData(authData);
  if ((flags & 0x04) === 0) throw new PasskeyError('unavailable', 'this phone made a passkey without checking your fingerprint, face or PIN');
  if (toB64url(credentialId) !== toB64url(new Uint8Array(cred.rawId))) throw new PasskeyError('unavailable', 'the authenticator returned an inconsistent credential');
  // The same checks the host makes, so a passkey it would refuse is never sent.
  try {
    return parse(passkeyInfo, { credentialId: toB64url(credentialId), publicKey: toB64url(publicKey), origin, rpId }, 'passkey');
  } catch (e) {
    throw new PasskeyError('unavailable', `this phone's passkey cannot be used: ${(e as Error).message}`);
  }
}

/**
 * Asks the platform authenticator to sign `challenge` (SHA-256 of the approval bytes) with the
 * passkey made at enrollment, checking the owner (fingerprint, face or PIN). Throws PasskeyError.
 */
export async function assertPasskey(passkey: PasskeyInfo, challenge: Uint8Array): Promise<WebAuthnAssertion> {
  let cred: Credential | null;
  try {
    cred = await navigator.credentials.get({
      publicKey: {
        challenge: new Uint8Array(challenge).buffer,
        rpId: passkey.rpId,
        allowCredentials: [{ type: 'public-key', id: new Uint8Array(fromB64url(passkey.credentialId)).buffer }],
        userVerification: 'required',
        timeout: 60_000,
      },
    });
  } catch (e) {
    throw passkeyError(e, "this phone's passkey could not be used");
  }
  if (!(cred instanceof PublicKeyCredential) || !(cred.response instanceof AuthenticatorAssertionResponse)) {
    throw new PasskeyError('unavailable', "this phone's passkey gave no answer");
  }
  const r = cred.response;
  return {
    credentialId: toB64url(new Uint8Array(cred.rawId)),
    authenticatorData: toB64url(new Uint8Array(r.authenticatorData)),
    clientDataJSON: toB64url(new Uint8Array(r.clientDataJSON)),
    signature: toB64url(new Uint8Array(r.signature)),
  };
}
