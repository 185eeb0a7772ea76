/**
 * A software WebAuthn authenticator: makes a credential (a real P-256 or Ed25519 key pair, its
 * COSE public key and a credential id) and answers navigator.credentials.get the way a phone's
 * platform authenticator does, with REAL assertions: authenticatorData (rpIdHash, flags, sign
 * counter), clientDataJSON, and an ES256 (DER) or EdDSA signature over
 * authenticatorData || SHA-256(clientDataJSON). UP, UV and the counter are settable, and each
 * field can be bent, so tests can make every kind of wrong assertion a hostile phone or relay could.
 *
 * Independent of the verifier under test on purpose: it writes its CBOR and authenticatorData by
 * hand and signs with node:crypto, so a bug shared with @simplewebauthn/server cannot hide.
 */
import { createECDH, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { type PasskeyAlg, type PasskeyInfo, type WebAuthnAssertion, defaultRpId, toB64url } from '../../protocol/src/index.js';

export interface SoftAuthenticatorOptions {
  /** @default 'ES256' (what phones make) */
  alg?: PasskeyAlg;
  /** The web origin of the app that makes and uses the credential. */
  origin: string;
  /** @default the origin's host */
  rpId?: string;
  /** The sign counter's start; 0 is an authenticator without a counter (synced passkeys). @default 0 */
  counter?: number;
  /** Bytes of credential id. @default 32 */
  credentialIdBytes?: number;
  /** Step the counter by this much at each assertion; 0 keeps it at its start. @default 1 */
  counterStep?: number;
  /**
   * 32 bytes the key pair and credential id derive from (a seeded test's replay); without it they
   * are random. ES256 signatures stay randomized (ECDSA's k), EdDSA ones are deterministic.
   */
  seed?: Uint8Array;
}

/** PKCS#8 DER of an Ed25519 private key, up to its 32-byte seed (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function derived(seed: Uint8Array, label: string): Buffer {
  return createHash('sha256').update(label).update(seed).digest();
}

function keyPairFrom(alg: PasskeyAlg, seed: Uint8Array | undefined): { privateKey: KeyObject; publicKey: KeyObject } {
  if (!seed) return alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  if (alg === 'ES256') {
    // A scalar ≥ the group order has a chance of about 2^-32: the seed is a test's constant.
    const d = derived(seed, 'soft-authenticator es256');
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(d);
    const point = ecdh.getPublicKey();
    const jwk = { kty: 'EC', crv: 'P-256', d: d.toString('base64url'), x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33, 65).toString('base64url') };
    const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
    return { privateKey, publicKey: createPublicKey(privateKey) };
  }
  const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, derived(seed, 'soft-authenticator ed25519')]), format: 'der', type: 'pkcs8' });
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

export interface AssertOptions {
  /** The challenge bytes (webauthnChallenge of the approval). */
  challenge: Uint8Array;
  /** User present flag. @default true */
  up?: boolean;
  /** User verified flag (fingerprint, face, PIN). @default true */
  uv?: boolean;
  /** Use this counter instead of the next one (a clone, a replay). */
  counter?: number;
  /** What clientDataJSON says; defaults: this credential's origin, 'webauthn.get'. */
  origin?: string;
  type?: string;
  crossOrigin?: boolean;
  topOrigin?: string;
  /** Hash this RP ID into authenticatorData instead of the credential's. */
  rpId?: string;
  /** Send another credential id than this one's (the signature stays this key's). */
  credentialId?: Uint8Array;
  /** Replace clientDataJSON's text entirely (it is still signed). */
  clientDataJSONText?: string;
  /** Extra bytes appended to authenticatorData (signed); sets the ED flag when `extensionsFlag`. */
  authDataTail?: Uint8Array;
  extensionsFlag?: boolean;
}

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_ED = 0x80;

function sha256(b: Uint8Array | string): Buffer {
  return createHash('sha256').update(b).digest();
}

/** CBOR head of a byte string of `n` < 256 bytes. */
function cborBytes(b: Uint8Array): Buffer {
  if (b.length < 24) return Buffer.concat([Buffer.from([0x40 | b.length]), b]);
  return Buffer.concat([Buffer.from([0x58, b.length]), b]);
}

export class SoftAuthenticator {
  readonly alg: PasskeyAlg;
  readonly credentialId: Uint8Array;
  /** COSE_Key of the public key, as a platform authenticator reports it at registration. */
  readonly cosePublicKey: Uint8Array;
  readonly origin: string;
  readonly rpId: string;
  counter: number;
  private readonly counterStep: number;
  private readonly privateKey: KeyObject;

  constructor(opts: SoftAuthenticatorOptions) {
    this.alg = opts.alg ?? 'ES256';
    this.origin = opts.origin;
    this.rpId = opts.rpId ?? defaultRpId(opts.origin);
    this.counter = opts.counter ?? 0;
    this.counterStep = opts.counterStep ?? 1;
    const idBytes = opts.credentialIdBytes ?? 32;
    this.credentialId = new Uint8Array(opts.seed ? Buffer.concat([derived(opts.seed, 'soft-authenticator id'), derived(opts.seed, 'soft-authenticator id 2')]).subarray(0, idBytes) : randomBytes(idBytes));
    if (this.alg === 'ES256') {
      const { privateKey, publicKey } = keyPairFrom('ES256', opts.seed);
      this.privateKey = privateKey;
      const jwk = publicKey.export({ format: 'jwk' });
      const x = Buffer.from(jwk.x!, 'base64url');
      const y = Buffer.from(jwk.y!, 'base64url');
      // {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}
      this.cosePublicKey = new Uint8Array(Buffer.concat([Buffer.from([0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21]), cborBytes(x), Buffer.from([0x22]), cborBytes(y)]));
    } else {
      const { privateKey, publicKey } = keyPairFrom('EdDSA', opts.seed);
      this.privateKey = privateKey;
      const x = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
      // {1: 1 (OKP), 3: -8 (EdDSA), -1: 6 (Ed25519), -2: x}
      this.cosePublicKey = new Uint8Array(Buffer.concat([Buffer.from([0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21]), cborBytes(x)]));
    }
  }

  /** The passkey as enrollment records it (what goes into the devices file line). */
  passkey(): PasskeyInfo {
    return { credentialId: toB64url(this.credentialId), publicKey: toB64url(this.cosePublicKey), origin: this.origin, rpId: this.rpId };
  }

  /** Sign any bytes with this credential's key, as the authenticator would (ES256: DER). */
  signRaw(data: Uint8Array): Buffer {
    return this.alg === 'ES256' ? sign('sha256', data, { key: this.privateKey, dsaEncoding: 'der' }) : sign(null, data, this.privateKey);
  }

  /** navigator.credentials.get({ publicKey: { challenge, rpId, allowCredentials: [this] } }). */
  assert(o: AssertOptions): WebAuthnAssertion {
    let counter: number;
    if (o.counter !== undefined) counter = o.counter;
    else {
      this.counter = this.counterStep === 0 ? this.counter : this.counter + this.counterStep;
      counter = this.counter;
    }
    const flags = (o.up ?? true ? FLAG_UP : 0) | (o.uv ?? true ? FLAG_UV : 0) | (o.extensionsFlag ? FLAG_ED : 0);
    const head = Buffer.alloc(37);
    sha256(o.rpId ?? this.rpId).copy(head, 0);
    head[32] = flags;
    head.writeUInt32BE(counter >>> 0, 33);
    const authData = Buffer.concat([head, o.authDataTail ?? Buffer.alloc(0)]);
    const clientData: Record<string, unknown> = {
      type: o.type ?? 'webauthn.get',
      challenge: toB64url(o.challenge),
      origin: o.origin ?? this.origin,
      crossOrigin: o.crossOrigin ?? false,
    };
    if (o.topOrigin !== undefined) clientData.topOrigin = o.topOrigin;
    const clientDataJSON = Buffer.from(o.clientDataJSONText ?? JSON.stringify(clientData), 'utf8');
    const signature = this.signRaw(Buffer.concat([authData, sha256(clientDataJSON)]));
    return {
      credentialId: toB64url(o.credentialId ?? this.credentialId),
      authenticatorData: toB64url(authData),
      clientDataJSON: toB64url(clientDataJSON),
      signature: toB64url(signature),
    };
  }
}
