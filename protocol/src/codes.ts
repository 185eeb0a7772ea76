/**
 * Offline codes and enrollment fingerprints: short values two screens compare or a user types.
 */
import type { QrCrypto } from './crypto.js';
import { concatBytes, fromB64url, toB64url, utf8 } from './encoding.js';
import { LABELS, canonical } from './signed.js';
import type { PasskeyInfo } from './webauthn.js';

export const CODE_DIGITS = 8;
export const MAX_CODE_TRIES = 3;

/**
 * K = HKDF-SHA256(X25519(our key, their key), salt = label, info = hostId || deviceId).
 * Either side computes the same K from its own seed and the other's public key.
 */
export function offlineKey(crypto: QrCrypto, ourSeed: Uint8Array, theirPub: Uint8Array, hostId: string, deviceId: string): Uint8Array {
  const shared = crypto.ed25519SharedSecret(ourSeed, theirPub);
  const info = concatBytes(fromB64url(hostId, 16), fromB64url(deviceId, 16));
  const k = crypto.hkdfSha256(shared, utf8(LABELS.offlineKey), info, 32);
  shared.fill(0);
  return k;
}

/** code = dynamic-truncate(HMAC-SHA256(K, "offline-v1" || hostId || sid || nonce)) mod 10^8, 8 digits. */
export function offlineCode(crypto: QrCrypto, key: Uint8Array, hostId: string, sid: string, nonce: Uint8Array): string {
  const mac = crypto.hmacSha256(key, concatBytes(utf8(LABELS.offlineCode), fromB64url(hostId, 16), fromB64url(sid, 16), nonce));
  const off = mac[mac.length - 1]! & 0x0f;
  const bin = ((mac[off]! & 0x7f) << 24) | (mac[off + 1]! << 16) | (mac[off + 2]! << 8) | mac[off + 3]!;
  mac.fill(0);
  return String(bin % 10 ** CODE_DIGITS).padStart(CODE_DIGITS, '0');
}

/** Normalise what a user typed: drop spaces and dashes; only digits remain or null. */
export function normaliseCode(typed: string): string | null {
  const s = typed.replace(/[\s-]/g, '');
  return /^[0-9]{1,16}$/.test(s) ? s : null;
}

/** Public id of an enrollment token: lets the agent find the token without the relay learning it. */
export function tokenIdOf(crypto: QrCrypto, token: Uint8Array): string {
  return toB64url(crypto.sha256(canonical('qrauth-token-id-v1', [token])).subarray(0, 16));
}

/** Crockford base32: no I, L, O, U, so nothing reads as another character. */
export const FINGERPRINT_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** Characters in a fingerprint (5 bits each: 80 bits), shown in groups of four. */
export const FINGERPRINT_CHARS = 16;
/** What an enrollment fingerprint looks like: "7KQ2-M9XD-4HTB-W3RE". */
export const FINGERPRINT_PATTERN = /^[0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){3}$/;

/**
 * The fingerprint both screens show during enrollment, from both public keys and the token:
 * 16 characters (80 bits) as "XXXX-XXXX-XXXX-XXXX". A relay that swaps either key changes it.
 * 80 bits, not fewer: a relay that learnt the token could grind device keys for a match while
 * the enrollment is open (40 bits is hours on rented GPUs; 80 bits is out of reach). Four
 * groups of four are read and compared a group at a time, like the shorter form before.
 */
export function enrollFingerprint(
  crypto: QrCrypto,
  hostPub: Uint8Array,
  devicePub: Uint8Array,
  token: Uint8Array,
  /** The passkey the phone enrolls with (EnrollFields.passkey): a relay that swaps or strips it changes the fingerprint. */
  passkey?: PasskeyInfo,
): string {
  const input = passkey
    ? canonical(LABELS.enrollFingerprintPasskey, [hostPub, devicePub, token, passkey.credentialId, passkey.publicKey, passkey.origin, passkey.rpId])
    : canonical(LABELS.enrollFingerprint, [hostPub, devicePub, token]);
  const h = crypto.sha256(input);
  const bytes = (FINGERPRINT_CHARS * 5) / 8;
  let bits = 0n;
  for (let i = 0; i < bytes; i++) bits = (bits << 8n) | BigInt(h[i]!);
  let out = '';
  for (let i = FINGERPRINT_CHARS - 1; i >= 0; i--) out += FINGERPRINT_ALPHABET[Number((bits >> BigInt(i * 5)) & 31n)];
  return out.match(/.{4}/g)!.join('-');
}
