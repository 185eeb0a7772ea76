import type { QrCrypto } from './crypto.js';
import { toB64url } from './encoding.js';

/** base64url of 16 random bytes or of a 16-byte id: 22 characters. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;
/** base64url of a 32-byte Ed25519 public key: 43 characters. */
export const PUBKEY_PATTERN = /^[A-Za-z0-9_-]{43}$/;
/** base64url of a 64-byte Ed25519 signature: 86 characters. */
export const SIG_PATTERN = /^[A-Za-z0-9_-]{86}$/;

/** hostId / deviceId: base64url of the first 16 bytes of SHA-256(Ed25519 public key). */
export function keyId(crypto: Pick<QrCrypto, 'sha256'>, publicKey: Uint8Array): string {
  return toB64url(crypto.sha256(publicKey).subarray(0, 16));
}
