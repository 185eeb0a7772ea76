/**
 * The device key: an Ed25519 seed made on this phone, never sent anywhere.
 *
 * WebCrypto has no Ed25519 → X25519 conversion and no way to use a non-extractable Ed25519 key
 * for the offline-code ECDH, so the protocol code (noble) needs the seed bytes. What we can do
 * on the web: keep the seed at rest encrypted (AES-256-GCM) under a *non-extractable* AES key
 * that lives in IndexedDB. Script running in this origin can still ask WebCrypto to decrypt
 * (so XSS here is game over, as for any web wallet), but a copy of the browser profile or of
 * the IndexedDB files alone does not hold the seed in a usable form when the browser keeps
 * key material in an OS-protected store, and nothing in the app ever reads the AES key's bytes.
 * The seed is decrypted only for one operation and wiped after it. docs/app.md discusses this.
 */
import { webCrypto } from '../../../protocol/src/crypto-web.js';
import { DEVICE_NAME_PATTERN, QrauthError, keyId, toB64url, utf8 } from '../../../protocol/src/index.js';
import type { DeviceInfo } from '../models';
import { storeAdd, storeGet, storePut } from './platform';

const KEY = 'device';
const AAD_LABEL = 'qrauth-device-seed-v1';

interface StoredDevice extends DeviceInfo {
  v: 1;
  /** AES-256-GCM, extractable: false, usages encrypt/decrypt */
  wrapKey: CryptoKey;
  iv: Uint8Array;
  sealed: ArrayBuffer;
}

function aad(publicKey: string): Uint8Array<ArrayBuffer> {
  // Binds the ciphertext to the public key stored beside it: swapping one without the other fails.
  return new Uint8Array(utf8(`${AAD_LABEL}:${publicKey}`));
}

function publicInfo(d: StoredDevice): DeviceInfo {
  return { publicKey: d.publicKey, deviceId: d.deviceId, name: d.name, createdAt: d.createdAt };
}

export function checkDeviceName(name: string): string {
  const n = name.trim();
  if (!DEVICE_NAME_PATTERN.test(n)) {
    throw new QrauthError('QRA_ERR_INVALID_INPUT', "a device name is 1-64 letters, digits, spaces or . _ ' ( ) + -");
  }
  return n;
}

export async function loadDevice(): Promise<DeviceInfo | null> {
  const d = await storeGet<StoredDevice>(KEY);
  return d && d.v === 1 ? publicInfo(d) : null;
}

/** Makes the device key on first start. Refuses to replace an existing key. */
export async function createDevice(name: string): Promise<DeviceInfo> {
  const deviceName = checkDeviceName(name);
  const seed = webCrypto.randomBytes(32);
  try {
    const pub = webCrypto.ed25519FromSeed(seed).publicKey;
    const publicKey = toB64url(pub);
    const wrapKey = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    const iv = new Uint8Array(webCrypto.randomBytes(12));
    const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad(publicKey) }, wrapKey, new Uint8Array(seed));
    const stored: StoredDevice = { v: 1, publicKey, deviceId: keyId(webCrypto, pub), name: deviceName, createdAt: Date.now(), wrapKey, iv, sealed };
    if (!(await storeAdd(KEY, stored))) throw new QrauthError('QRA_ERR_CONFIG', 'this phone already has a device key');
    return publicInfo(stored);
  } finally {
    seed.fill(0);
  }
}

export async function renameDevice(name: string): Promise<DeviceInfo> {
  const d = await storeGet<StoredDevice>(KEY);
  if (!d) throw new QrauthError('QRA_ERR_CONFIG', 'this phone has no device key yet');
  const next = { ...d, name: checkDeviceName(name) };
  await storePut(KEY, next);
  return publicInfo(next);
}

/**
 * Runs `use` with the seed decrypted, then wipes it. The seed never leaves this call; the
 * callback must not keep it.
 */
export async function withDeviceSeed<T>(use: (seed: Uint8Array, device: DeviceInfo) => T | Promise<T>): Promise<T> {
  const d = await storeGet<StoredDevice>(KEY);
  if (!d) throw new QrauthError('QRA_ERR_CONFIG', 'this phone has no device key yet; open the app to make one');
  let seed: Uint8Array;
  try {
    seed = new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: new Uint8Array(d.iv), additionalData: aad(d.publicKey) }, d.wrapKey, d.sealed));
  } catch (cause) {
    throw new QrauthError('QRA_ERR_INTERNAL', 'the device key on this phone cannot be unlocked (the store was changed)', { cause });
  }
  try {
    if (toB64url(webCrypto.ed25519FromSeed(seed).publicKey) !== d.publicKey) {
      throw new QrauthError('QRA_ERR_INTERNAL', 'the device key on this phone does not match its public key');
    }
    return await use(seed, publicInfo(d));
  } finally {
    seed.fill(0);
  }
}
