/**
 * Approvals backed by a passkey (WebAuthn) on the phone: the one definition of what the phone
 * sends beside its signed decision, of the challenge it asks its authenticator to sign, and of
 * the passkey an enrollment records (docs/protocol.md §5).
 *
 * The Ed25519 device signature still decides who approves; the assertion adds that the phone's
 * authenticator saw the person (UP) and checked their fingerprint, face or PIN (UV) for exactly
 * this approval: its challenge is SHA-256 of the approval bytes, so it cannot be moved to
 * another login, user, decision or time.
 */
import type { QrCrypto } from './crypto.js';
import { fromB64url, toB64url } from './encoding.js';
import { QrauthError } from './errors.js';
import { type DecisionFields, decisionBytes } from './signed.js';
import { type Check, object, refine, str } from './validate.js';

/**
 * Size bounds, in bytes before base64url. Generous for phone platform authenticators (credential
 * ids of 16–65 bytes, authenticatorData of 37 bytes, clientDataJSON under 300 bytes, ES256 DER
 * signatures of at most 72 bytes) and small enough that a decision with an assertion stays far
 * below the relay's 8 KiB message limit.
 */
export const WEBAUTHN_LIMITS = {
  credentialId: { min: 16, max: 512 },
  /** rpIdHash (32) + flags (1) + signCount (4), then at most a few extension outputs. */
  authenticatorData: { min: 37, max: 512 },
  clientDataJSON: { min: 32, max: 1024 },
  /** ES256 DER (≤ 72) or EdDSA (64). */
  signature: { min: 64, max: 128 },
  /** COSE_Key of an ES256 (77 bytes) or EdDSA (42 bytes) public key. */
  publicKey: { min: 32, max: 128 },
  /** `https://host[:port]` (or http on loopback): characters. */
  origin: 200,
  /** A domain, the origin's host or a parent of it: characters. */
  rpId: 200,
} as const;

/** The COSE algorithms qrauth accepts for a passkey: ES256 (P-256, what phones make) and EdDSA (Ed25519). */
export const PASSKEY_ALGS = { ES256: -7, EdDSA: -8 } as const;
export type PasskeyAlg = keyof typeof PASSKEY_ALGS;

const B64URL_TEXT = /^[A-Za-z0-9_-]+$/;

/**
 * A base64url text field that must decode canonically (no padding, no stray bits) to a number of
 * bytes within bounds. Returns the text unchanged: callers decode it again where they use it.
 */
export function b64urlBytes(bounds: { min: number; max: number }): Check<string> {
  const text = str({ max: Math.ceil((bounds.max * 4) / 3), min: Math.ceil((bounds.min * 4) / 3), pattern: B64URL_TEXT });
  return refine(text, (s) => {
    let n: number;
    try {
      n = fromB64url(s).length;
    } catch {
      return 'not canonical unpadded base64url';
    }
    return n < bounds.min || n > bounds.max ? `${n} bytes, expected ${bounds.min}..${bounds.max}` : null;
  });
}

/**
 * What the phone sends with an approval: the authenticator's answer to navigator.credentials.get,
 * each field base64url of the raw bytes (the same names as WebAuthn's AuthenticatorAssertionResponse).
 * No userHandle: the agent finds the credential by the device the decision names, never by the user.
 */
export interface WebAuthnAssertion {
  credentialId: string;
  authenticatorData: string;
  clientDataJSON: string;
  signature: string;
}

export const webauthnAssertion: Check<WebAuthnAssertion> = object({
  credentialId: b64urlBytes(WEBAUTHN_LIMITS.credentialId),
  authenticatorData: b64urlBytes(WEBAUTHN_LIMITS.authenticatorData),
  clientDataJSON: b64urlBytes(WEBAUTHN_LIMITS.clientDataJSON),
  signature: b64urlBytes(WEBAUTHN_LIMITS.signature),
});

/**
 * The challenge the phone passes to navigator.credentials.get for this approval: SHA-256 of the
 * exact bytes its device key signs (decisionBytes, whichever version those fields make). The
 * agent rebuilds the fields from its own session (its nonce, its user) and compares.
 */
export function webauthnChallenge(crypto: QrCrypto, fields: DecisionFields): Uint8Array {
  return crypto.sha256(decisionBytes(fields));
}

/** The challenge as clientDataJSON carries it: base64url, no padding. */
export function webauthnChallengeText(crypto: QrCrypto, fields: DecisionFields): string {
  return toB64url(webauthnChallenge(crypto, fields));
}

/**
 * A passkey as enrollment records it (and the devices file stores it): the credential id and COSE
 * public key as base64url, and the web origin and RP ID the app created it under.
 */
export interface PasskeyInfo {
  credentialId: string;
  publicKey: string;
  origin: string;
  rpId: string;
}

/**
 * Why `origin` cannot be a passkey's origin, or null. WebAuthn runs only in a secure context:
 * https, or http on loopback. The text must be exactly the origin's serialisation (scheme, lower
 * case host, port only when not the default, no path or trailing slash), so one origin has one text.
 */
export function passkeyOriginProblem(origin: string): string | null {
  if (typeof origin !== 'string' || origin.length === 0 || origin.length > WEBAUTHN_LIMITS.origin) return `not 1..${WEBAUTHN_LIMITS.origin} characters`;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return 'not a URL';
  }
  if (url.origin !== origin) return `not an origin as browsers write it (expected ${url.origin === 'null' ? 'https://host[:port]' : url.origin})`;
  const loopback = url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) return 'not https (plain http only on localhost)';
  return null;
}

/**
 * Why `rpId` cannot be the RP ID of a passkey made at `origin`, or null. Browsers allow the
 * origin's host or a parent domain of it (not a public suffix: the browser checks that when it
 * makes the credential; here a parent must at least have a dot). IP addresses are not RP IDs.
 */
export function passkeyRpIdProblem(rpId: string, origin: string): string | null {
  if (typeof rpId !== 'string' || rpId.length === 0 || rpId.length > WEBAUTHN_LIMITS.rpId) return `not 1..${WEBAUTHN_LIMITS.rpId} characters`;
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(rpId)) return 'not a lower-case domain name';
  if (/^[0-9.]+$/.test(rpId)) return 'an IP address cannot be an RP ID';
  let host: string;
  try {
    host = new URL(origin).hostname;
  } catch {
    return 'the origin is not a URL';
  }
  if (rpId === host) return null;
  if (host.endsWith(`.${rpId}`) && rpId.includes('.')) return null;
  return `not ${host} or a parent domain of it`;
}

/** The RP ID a passkey gets when the app does not name one: the origin's host. */
export function defaultRpId(origin: string): string {
  return new URL(origin).hostname;
}

/** Schema of a passkey as it travels (enrollment): the bytes bounded, the origin and RP ID checked. */
export const passkeyInfo: Check<PasskeyInfo> = refine(
  object({
    credentialId: b64urlBytes(WEBAUTHN_LIMITS.credentialId),
    publicKey: b64urlBytes(WEBAUTHN_LIMITS.publicKey),
    origin: refine(str({ max: WEBAUTHN_LIMITS.origin, min: 1 }), passkeyOriginProblem),
    rpId: str({ max: WEBAUTHN_LIMITS.rpId, min: 1 }),
  }),
  (p) => {
    const problem = passkeyRpIdProblem(p.rpId, p.origin);
    return problem ? { field: 'rpId', problem } : null;
  },
);
