/**
 * The primitives qrauth needs, behind one interface so the same protocol code runs on
 * sodium-native (agent, relay, tests) and on audited noble libraries (browser, phone app).
 * protocol/vectors.json pins both to the same bytes.
 */
export interface Ed25519KeyPair {
  /** 32-byte public key */
  publicKey: Uint8Array;
  /** 32-byte seed (the private key); keep it secret */
  seed: Uint8Array;
}

export interface QrCrypto {
  randomBytes(n: number): Uint8Array;
  sha256(data: Uint8Array): Uint8Array;
  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array;
  hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  ed25519FromSeed(seed: Uint8Array): Ed25519KeyPair;
  ed25519Sign(seed: Uint8Array, message: Uint8Array): Uint8Array;
  ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean;
  /** X25519(our Ed25519 seed converted, their Ed25519 public key converted); throws on a low-order point. */
  ed25519SharedSecret(ourSeed: Uint8Array, theirPublicKey: Uint8Array): Uint8Array;
}
