/**
 * QrCrypto for browsers and the phone app, on the audited noble libraries (@noble/curves for
 * Ed25519/X25519, @noble/hashes for SHA-256, HMAC, HKDF) and `crypto.getRandomValues`.
 * protocol/vectors.json holds it byte for byte to the Node (sodium-native) build:
 * test/protocol-web.test.ts runs every vector through it in Node and in Chromium.
 *
 * Behaviour is aligned with libsodium where the two libraries differ by default:
 * - verification is strict RFC 8032 (`zip215: false`), as crypto_sign_verify_detached is, so a
 *   signature one side accepts the other side accepts too;
 * - the Ed25519 → X25519 conversion of the seed is SHA-512(seed)[0..32], clamped
 *   (crypto_sign_ed25519_sk_to_curve25519), and a low-order peer key is refused.
 */
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import type { Ed25519KeyPair, QrCrypto } from './crypto.js';
import { QrauthError } from './errors.js';

function checkSeed(seed: Uint8Array): void {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new QrauthError('QRA_ERR_INVALID_INPUT', 'an Ed25519 seed is 32 bytes');
}

/** getRandomValues fills at most 65536 bytes a call. */
function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) globalThis.crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
  return out;
}

export const webCrypto: QrCrypto = {
  randomBytes,
  sha256(data) {
    return sha256(data);
  },
  hmacSha256(key, data) {
    return hmac(sha256, key, data);
  },
  hkdfSha256(ikm, salt, info, length) {
    return hkdf(sha256, ikm, salt, info, length);
  },
  ed25519FromSeed(seed): Ed25519KeyPair {
    checkSeed(seed);
    return { publicKey: ed25519.getPublicKey(seed), seed: new Uint8Array(seed) };
  },
  ed25519Sign(seed, message) {
    checkSeed(seed);
    return ed25519.sign(message, seed);
  },
  ed25519Verify(publicKey, message, signature) {
    if (publicKey.length !== 32 || signature.length !== 64) return false;
    try {
      return ed25519.verify(signature, message, publicKey, { zip215: false });
    } catch {
      return false;
    }
  },
  ed25519SharedSecret(ourSeed, theirPublicKey) {
    checkSeed(ourSeed);
    let xsk: Uint8Array | undefined;
    let shared: Uint8Array;
    try {
      xsk = ed25519.utils.toMontgomerySecret(ourSeed);
      const xpk = ed25519.utils.toMontgomery(theirPublicKey);
      shared = x25519.getSharedSecret(xsk, xpk);
    } catch (cause) {
      throw new QrauthError('QRA_ERR_INVALID_INPUT', 'the peer public key is not a usable Ed25519 key', { cause });
    } finally {
      xsk?.fill(0);
    }
    if (shared.every((b) => b === 0)) throw new QrauthError('QRA_ERR_INVALID_INPUT', 'low-order peer public key');
    return shared;
  },
};
