/**
 * The Socket.IO handshake proof (`socket.handshake.auth`) for hosts and devices: who signs it
 * (agent, phone) and who checks it (relay) share these two functions, so the bytes cannot drift.
 */
import type { QrCrypto } from './crypto.js';
import { fromB64url, toB64url } from './encoding.js';
import { RELAY_URL_MAX } from './payloads.js';
import { QrauthError } from './errors.js';
import { AUTH_CLOCK_SKEW_MS, type AuthHandshake, authHandshake, isRelayOrigin } from './events.js';
import { keyId } from './ids.js';
import { authBytes } from './signed.js';
import { parse } from './validate.js';

export type AuthRole = 'host' | 'device';

/**
 * A fresh handshake proof for the key with this seed; make a new one for every connection
 * attempt. `relay`: the URL of the relay it is for (its origin is signed, v2), so that no other
 * relay can present it; without it, v1 (tests of relays' handling of older clients only).
 */
export function makeAuthHandshake(crypto: QrCrypto, role: AuthRole, seed: Uint8Array, now: number = Date.now(), relay?: string): AuthHandshake {
  const { publicKey } = crypto.ed25519FromSeed(seed);
  const nonce = toB64url(crypto.randomBytes(16));
  const time = Math.floor(now);
  const origin = relay === undefined ? undefined : relayOriginOf(relay);
  const sig = toB64url(crypto.ed25519Sign(seed, authBytes(role, keyId(crypto, publicKey), time, nonce, origin)));
  const pub = toB64url(publicKey);
  return origin === undefined ? { v: 1, pub, time, nonce, sig } : { v: 2, pub, time, nonce, relay: origin, sig };
}

/** The origin a v2 handshake names for a relay URL (`https://relay.example/qrauth` → `https://relay.example`); throws QRA_ERR_CONFIG for anything but an http(s) URL. */
export function relayOriginOf(url: string): string {
  let origin: string;
  try {
    origin = new URL(url).origin;
  } catch {
    throw new QrauthError('QRA_ERR_CONFIG', 'relay URL is not a URL');
  }
  if (!isRelayOrigin(origin)) throw new QrauthError('QRA_ERR_CONFIG', `relay URL must be http(s) and at most ${RELAY_URL_MAX} characters`);
  return origin;
}

/**
 * What a relay holds handshakes to: `origins`, its own public origins (a v2 handshake for any
 * other relay is refused; empty: not checked), and `boundOnly`, v1 handshakes (bound to no relay)
 * refused.
 */
export interface HandshakeBinding {
  origins: ReadonlySet<string>;
  boundOnly: boolean;
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
 * over authBytes(role, keyId(pub), time, nonce[, relay]), the relay it names against `binding`,
 * then (optionally) that the nonce is fresh. Throws QrauthError QRA_ERR_UNAUTHENTICATED with the
 * reason.
 */
export function verifyAuthHandshake(
  crypto: QrCrypto,
  role: AuthRole,
  auth: unknown,
  now: number,
  seenNonce?: SeenNonce,
  binding?: HandshakeBinding,
): VerifiedAuth {
  let a: AuthHandshake;
  try {
    a = parse(authHandshake, auth, 'auth');
  } catch (e) {
    throw new QrauthError('QRA_ERR_UNAUTHENTICATED', `malformed handshake: ${(e as Error).message}`);
  }
  if (a.v === 1 && binding?.boundOnly) {
    throw new QrauthError('QRA_ERR_UNAUTHENTICATED', 'this relay takes only handshakes signed for it (v2); upgrade the agent or the app');
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
  const relay = a.v === 2 ? a.relay : undefined;
  if (!crypto.ed25519Verify(publicKey, authBytes(role, id, a.time, a.nonce, relay), sig)) {
    throw new QrauthError('QRA_ERR_UNAUTHENTICATED', 'handshake signature does not verify');
  }
  // After the signature, so that only a handshake its key really signed for another relay is
  // reported as such (an agent whose relayUrl is not one of this relay's --public-url sees why).
  // The relay's own names stay out of the message (any client may ask with a throwaway key).
  // Bound-only with no names of its own takes no v2 at all (fail closed).
  if (relay !== undefined && binding && (binding.origins.size > 0 || binding.boundOnly) && !binding.origins.has(relay)) {
    throw new QrauthError('QRA_ERR_UNAUTHENTICATED', `handshake is signed for another relay (${relay}), not this one; check the relay URL the agent or app uses against the relay's --public-url`);
  }
  if (seenNonce && seenNonce(a.nonce, a.time + AUTH_CLOCK_SKEW_MS, id)) {
    throw new QrauthError('QRA_ERR_UNAUTHENTICATED', 'handshake nonce was already used; make a fresh handshake per connection');
  }
  return { id, publicKey };
}
