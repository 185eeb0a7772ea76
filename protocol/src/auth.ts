/**
 * The Socket.IO handshake proof (`socket.handshake.auth`) for hosts and devices: who signs it
 * (agent, phone) and who checks it (relay) share these two functions, so the bytes cannot drift.
 */
import type { QrCrypto } from './crypto.js';
import { fromB64url, toB64url } from './encoding.js';
import { QrauthError } from './errors.js';
import { AUTH_CLOCK_SKEW_MS, type AuthHandshake, authHandshake } from './events.js';
import { keyId } from './ids.js';
import { authBytes } from './signed.js';
import { parse } from './validate.js';

export type AuthRole = 'host' | 'device';

/** A fresh handshake proof for the key with this seed; make a new one for every connection attempt. */
export function makeAuthHandshake(crypto: QrCrypto, role: AuthRole, seed: Uint8Array, now: number = Date.now()): AuthHandshake {
  const { publicKey } = crypto.ed25519FromSeed(seed);
  const nonce = toB64url(crypto.randomBytes(16));
  const time = Math.floor(now);
  const sig = crypto.ed25519Sign(seed, authBytes(role, keyId(crypto, publicKey), time, nonce));
  return { v: 1, pub: toB64url(publicKey), time, nonce, sig: toB64url(sig) };
}

/**
 * Remembers handshake nonces. Called only once the signature is valid, so nobody can burn a
 * nonce they did not sign, with the id that key proves, so that a checker which admits only
 * some ids (the relay's allow-list) can leave the others' nonces out. Returns true when `nonce`
 * was already used; otherwise records it until `until` (unix ms), after which the clock check
 * alone rejects a replay.
 */
export type SeenNonce = (nonce: string, until: number, id: string) => boolean;

export interface VerifiedAuth {
  /** hostId or deviceId, derived from `pub`: a peer cannot claim an id it holds no key for. */
  id: string;
  publicKey: Uint8Array;
}

/**
 * Checks a handshake proof: schema, clock within AUTH_CLOCK_SKEW_MS of `now`, Ed25519 signature
 * over authBytes(role, keyId(pub), time, nonce), then (optionally) that the nonce is fresh.
 * Throws QrauthError QRA_ERR_UNAUTHENTICATED with the reason.
 */
export function verifyAuthHandshake(crypto: QrCrypto, role: AuthRole, auth: unknown, now: number, seenNonce?: SeenNonce): VerifiedAuth {
  let a: AuthHandshake;
  try {
    a = parse(authHandshake, auth, 'auth');
  } catch (e) {
    throw new QrauthError('QRA_ERR_UNAUTHENTICATED', `malformed handshake: ${(e as Error).message}`);
  }
  if (Math.abs(now - a.time) > AUTH_CLOCK_SKEW_MS) {
    throw new QrauthError(
      'QRA_ERR_UNAUTHENTICATED',
      `handshake time is more than ${AUTH_CLOCK_SKEW_MS / 1000} s away from the relay clock; check the clock (NTP)`,
    );
  }
  let publicKey: Uint8Array;
  let sig: Uint8Array;
  try {
    publicKey = fromB64url(a.pub, 32);
    sig = fromB64url(a.sig, 64);
    fromB64url(a.nonce, 16);
  } catch {
    throw new QrauthError('QRA_ERR_UNAUTHENTICATED', 'malformed handshake: non-canonical base64url');
  }
  const id = keyId(crypto, publicKey);
  if (!crypto.ed25519Verify(publicKey, authBytes(role, id, a.time, a.nonce), sig)) {
    throw new QrauthError('QRA_ERR_UNAUTHENTICATED', 'handshake signature does not verify');
  }
  if (seenNonce && seenNonce(a.nonce, a.time + AUTH_CLOCK_SKEW_MS, id)) {
    throw new QrauthError('QRA_ERR_UNAUTHENTICATED', 'handshake nonce was already used; make a fresh handshake per connection');
  }
  return { id, publicKey };
}
