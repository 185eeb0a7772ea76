import { createHash, createHmac, hkdfSync } from 'node:crypto';
import sodium from 'sodium-native';
import type { Ed25519KeyPair, QrCrypto } from './crypto.js';
import { QrauthError } from './errors.js';

function buf(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/**
 * The expanded secret key lives for one call and is zeroed before returning. It is a plain
 * Buffer, not sodium_malloc: guarded pages cost an mmap, mprotect and mlock per call (more than
 * the signature itself, measured in bench/) and are unmapped only when the GC finalizes the
 * Buffer, so a busy agent piles up mappings; for a key zeroed microseconds later they buy nothing.
 */
function expandSeed(seed: Uint8Array): { pk: Buffer; sk: Buffer } {
  if (seed.length !== 32) throw new QrauthError('QRA_ERR_INVALID_INPUT', 'an Ed25519 seed is 32 bytes');
  const pk = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES);
  const sk = Buffer.alloc(sodium.crypto_sign_SECRETKEYBYTES);
  sodium.crypto_sign_seed_keypair(pk, sk, buf(seed));
  return { pk, sk };
}

/**
 * A signer for a long-lived key (the agent's host key signs every login's context): the
 * expanded secret key is made once, from the seed, in sodium's guarded, locked memory, instead
 * of being derived again for each signature (half of a signature's cost). The public key half
 * of the expanded key always comes from the seed itself, never from a caller.
 */
export function ed25519Signer(seed: Uint8Array): (message: Uint8Array) => Uint8Array {
  if (seed.length !== 32) throw new QrauthError('QRA_ERR_INVALID_INPUT', 'an Ed25519 seed is 32 bytes');
  const pk = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES);
  const sk = sodium.sodium_malloc(sodium.crypto_sign_SECRETKEYBYTES);
  sodium.crypto_sign_seed_keypair(pk, sk, buf(seed));
  return (message) => {
    const sig = Buffer.alloc(sodium.crypto_sign_BYTES);
    sodium.crypto_sign_detached(sig, buf(message), sk);
    return new Uint8Array(sig.buffer, sig.byteOffset, sig.byteLength);
  };
}

/** QrCrypto on sodium-native (Ed25519, X25519, randomness) and node:crypto (SHA-256, HMAC, HKDF). */
export const nodeCrypto: QrCrypto = {
  randomBytes(n) {
    const b = Buffer.alloc(n);
    sodium.randombytes_buf(b);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  },
  sha256(data) {
    return new Uint8Array(createHash('sha256').update(data).digest());
  },
  hmacSha256(key, data) {
    return new Uint8Array(createHmac('sha256', key).update(data).digest());
  },
  hkdfSha256(ikm, salt, info, length) {
    return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
  },
  ed25519FromSeed(seed): Ed25519KeyPair {
    const { pk, sk } = expandSeed(seed);
    sodium.sodium_memzero(sk);
    return { publicKey: new Uint8Array(pk), seed: new Uint8Array(seed) };
  },
  ed25519Sign(seed, message) {
    const { sk } = expandSeed(seed);
    const sig = Buffer.alloc(sodium.crypto_sign_BYTES);
    sodium.crypto_sign_detached(sig, buf(message), sk);
    sodium.sodium_memzero(sk);
    return new Uint8Array(sig);
  },
  ed25519Verify(publicKey, message, signature) {
    if (publicKey.length !== 32 || signature.length !== 64) return false;
    try {
      return sodium.crypto_sign_verify_detached(buf(signature), buf(message), buf(publicKey));
    } catch {
      return false;
    }
  },
  ed25519SharedSecret(ourSeed, theirPublicKey) {
    const { sk } = expandSeed(ourSeed);
    const xsk = Buffer.alloc(sodium.crypto_scalarmult_SCALARBYTES); // zeroed below, as in expandSeed
    const xpk = Buffer.alloc(sodium.crypto_scalarmult_BYTES);
    const shared = Buffer.alloc(sodium.crypto_scalarmult_BYTES);
    try {
      sodium.crypto_sign_ed25519_sk_to_curve25519(xsk, sk);
      sodium.crypto_sign_ed25519_pk_to_curve25519(xpk, buf(theirPublicKey));
      sodium.crypto_scalarmult(shared, xsk, xpk);
    } catch (cause) {
      throw new QrauthError('QRA_ERR_INVALID_INPUT', 'the peer public key is not a usable Ed25519 key', { cause });
    } finally {
      sodium.sodium_memzero(sk);
      sodium.sodium_memzero(xsk);
    }
    if (shared.every((b) => b === 0)) throw new QrauthError('QRA_ERR_INVALID_INPUT', 'low-order peer public key');
    return new Uint8Array(shared);
  },
};
