// The part of sodium-native's API that qrauth uses (the package ships no types).
declare module 'sodium-native' {
  const sodium: {
    crypto_sign_PUBLICKEYBYTES: number;
    crypto_sign_SECRETKEYBYTES: number;
    crypto_sign_SEEDBYTES: number;
    crypto_sign_BYTES: number;
    crypto_scalarmult_BYTES: number;
    crypto_scalarmult_SCALARBYTES: number;
    randombytes_buf(buf: Buffer): void;
    sodium_malloc(size: number): Buffer;
    sodium_memzero(buf: Buffer): void;
    sodium_memcmp(a: Buffer, b: Buffer): boolean;
    crypto_sign_seed_keypair(pk: Buffer, sk: Buffer, seed: Buffer): void;
    crypto_sign_detached(sig: Buffer, message: Buffer, sk: Buffer): void;
    crypto_sign_verify_detached(sig: Buffer, message: Buffer, pk: Buffer): boolean;
    crypto_sign_ed25519_pk_to_curve25519(x25519pk: Buffer, ed25519pk: Buffer): void;
    crypto_sign_ed25519_sk_to_curve25519(x25519sk: Buffer, ed25519sk: Buffer): void;
    crypto_scalarmult(q: Buffer, n: Buffer, p: Buffer): void;
    crypto_core_ed25519_BYTES: number;
    crypto_core_ed25519_is_valid_point(p: Buffer): boolean;
    crypto_core_ed25519_add(r: Buffer, p: Buffer, q: Buffer): void;
  };
  export default sodium;
}
