/**
 * The device key: an Ed25519 seed made on this phone, never sent anywhere.
 *
 * WebCrypto has no Ed25519 → X25519 conversion and no way to use a non-extractable Ed25519 key
 * for the offline-code ECDH, so the protocol code (noble) needs the seed bytes. Where they rest:
 *
 * - Native builds (Capacitor): in the platform keystore (iOS Keychain, this device only, while
 *   unlocked; Android: encrypted under a key that never leaves the Android Keystore), through
 *   platform.ts. IndexedDB holds only the public part; the seed is never written to IndexedDB
 *   or localStorage there.
 * - Web: encrypted (AES-256-GCM) under a *non-extractable* AES key that lives in IndexedDB.
 *   Script running in this origin can still ask WebCrypto to decrypt (so XSS here is game over,
 *   as for any web wallet), but a copy of the browser profile or of the IndexedDB files alone
 *   does not hold the seed in a usable form when the browser keeps key material in an
 *   OS-protected store, and nothing in the app ever reads the AES key's bytes.
 *
 * Either way the seed is in memory only for one operation (withDeviceSeed) and wiped after it.
 * docs/app.md discusses this.
 */
import { DEVICE_NAME_PATTERN, type ErrorCode, QrauthError, keyId, toB64url, utf8 } from '../../../protocol/src/index.js';
import type { DeviceInfo } from '../models';
import { hasNativeSecureStorage, isNativePlatform, secretDelete, secretGet, secretKeys, secretPut, storeAdd, storeDelete, storeGet, storePut } from './platform';
import { DEVICE_KEY } from './kv';
import { writeStartHint } from './start-hint';
import { clearHosts } from './store';

/** The signing code (noble Ed25519) loads when a key is made or used, not when the app opens. */
const loadWebCrypto = () => import('../../../protocol/src/crypto-web.js').then((m) => m.webCrypto);

const KEY = DEVICE_KEY;
const AAD_LABEL = 'qrauth-device-seed-v1';
/** Keystore entries holding a seed are named this + the device id (one name per key ever made). */
const SEED_SECRET_PREFIX = 'device-seed-';

/** Web: the seed sealed under a non-extractable AES key, both in IndexedDB. */
interface WebStoredDevice extends DeviceInfo {
  v: 1;
  /** AES-256-GCM, extractable: false, usages encrypt/decrypt */
  wrapKey: CryptoKey;
  iv: Uint8Array;
  sealed: ArrayBuffer;
}

/** Native: only the public part in IndexedDB; the seed is in the keystore under seedSecretName(deviceId). */
interface NativeStoredDevice extends DeviceInfo {
  v: 2;
  store: 'keystore';
}

type StoredDevice = WebStoredDevice | NativeStoredDevice;

/**
 * The device key cannot be used: none made yet, gone from the keystore, or not the key this
 * phone's public key belongs to. Nothing can be signed; screens say so instead of going on.
 */
export class DeviceKeyError extends QrauthError {
  /**
   * True when the key is gone or wrong for good, so making a new one is the remedy; false when
   * reading it failed in a way that may pass (a locked phone): screens then offer no reset, which
   * would throw away a key that works again after unlocking.
   */
  readonly lost: boolean;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; lost?: boolean }) {
    super(code, message, options);
    this.name = 'DeviceKeyError';
    this.lost = options?.lost ?? true;
  }
}

/** What the person can do about a key that cannot be used: resetDevice, from this screen or Settings. */
const SET_UP_AGAIN = 'make a new device key and enroll this phone again on each host';

function seedSecretName(deviceId: string): string {
  return `${SEED_SECRET_PREFIX}${deviceId}`;
}

function aad(publicKey: string): Uint8Array<ArrayBuffer> {
  // Binds the ciphertext to the public key stored beside it: swapping one without the other fails.
  return new Uint8Array(utf8(`${AAD_LABEL}:${publicKey}`));
}

function publicInfo(d: StoredDevice): DeviceInfo {
  return { publicKey: d.publicKey, deviceId: d.deviceId, name: d.name, createdAt: d.createdAt };
}

function isKnownRecord(d: StoredDevice | undefined): d is StoredDevice {
  return d !== undefined && (d.v === 1 || (d.v === 2 && d.store === 'keystore'));
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
  return isKnownRecord(d) ? publicInfo(d) : null;
}

/** Makes the device key on first start. Refuses to replace an existing key. */
export async function createDevice(name: string): Promise<DeviceInfo> {
  const deviceName = checkDeviceName(name);
  if (!isNativePlatform()) return createWebDevice(deviceName);
  if (!hasNativeSecureStorage()) {
    // Never fall back to IndexedDB on a phone: a build without the plugin is a packaging mistake.
    throw new QrauthError('QRA_ERR_CONFIG', 'this build of the app cannot reach the phone keystore (its secure storage plugin is missing), so it makes no device key');
  }
  return createNativeDevice(deviceName);
}

async function createWebDevice(deviceName: string): Promise<DeviceInfo> {
  const webCrypto = await loadWebCrypto();
  const seed = webCrypto.randomBytes(32);
  try {
    const pub = webCrypto.ed25519FromSeed(seed).publicKey;
    const publicKey = toB64url(pub);
    const wrapKey = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    const iv = new Uint8Array(webCrypto.randomBytes(12));
    const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad(publicKey) }, wrapKey, new Uint8Array(seed));
    const stored: WebStoredDevice = { v: 1, publicKey, deviceId: keyId(webCrypto, pub), name: deviceName, createdAt: Date.now(), wrapKey, iv, sealed };
    if (!(await storeAdd(KEY, stored))) throw new QrauthError('QRA_ERR_CONFIG', 'this phone already has a device key');
    return publicInfo(stored);
  } finally {
    seed.fill(0);
  }
}

/**
 * The seed goes to the keystore first, then the public part to IndexedDB with add-only semantics.
 * A failure at either step removes the seed again, so no half-made key stays behind; the seed's
 * entry name is unique to this key, so undoing it can never touch another key's entry.
 */
async function createNativeDevice(deviceName: string): Promise<DeviceInfo> {
  const webCrypto = await loadWebCrypto();
  if ((await storeGet<StoredDevice>(KEY)) !== undefined) throw new QrauthError('QRA_ERR_CONFIG', 'this phone already has a device key');
  const seed = webCrypto.randomBytes(32);
  try {
    const pub = webCrypto.ed25519FromSeed(seed).publicKey;
    const stored: NativeStoredDevice = { v: 2, store: 'keystore', publicKey: toB64url(pub), deviceId: keyId(webCrypto, pub), name: deviceName, createdAt: Date.now() };
    const secret = seedSecretName(stored.deviceId);
    const undo = () => secretDelete(secret).catch(() => false);
    try {
      await secretPut(secret, seed);
    } catch (cause) {
      await undo(); // a failed write may still have left a keystore key or entry behind
      throw new QrauthError('QRA_ERR_INTERNAL', `the device key could not be saved: ${(cause as Error).message}`, { cause });
    }
    let added: boolean;
    try {
      added = await storeAdd(KEY, stored);
    } catch (cause) {
      await undo();
      throw cause;
    }
    if (!added) {
      await undo();
      throw new QrauthError('QRA_ERR_CONFIG', 'this phone already has a device key');
    }
    await removeOrphanSeeds(secret);
    return publicInfo(stored);
  } finally {
    seed.fill(0);
  }
}

/**
 * iOS keeps Keychain items when an app is deleted, so a reinstalled app can find the seed of an
 * earlier install, which nothing refers to any more (its IndexedDB went with the app). Removed
 * once a new key is in place; best effort, since a leftover entry is unused, not a fault.
 */
async function removeOrphanSeeds(current: string): Promise<void> {
  try {
    for (const name of await secretKeys()) {
      if (name.startsWith(SEED_SECRET_PREFIX) && name !== current) await secretDelete(name);
    }
  } catch {
    // ignored: see above
  }
}

export async function renameDevice(name: string): Promise<DeviceInfo> {
  const d = await storeGet<StoredDevice>(KEY);
  if (!d) throw new QrauthError('QRA_ERR_CONFIG', 'this phone has no device key yet');
  const next = { ...d, name: checkDeviceName(name) };
  await storePut(KEY, next);
  return publicInfo(next);
}

async function unsealWebSeed(d: WebStoredDevice): Promise<Uint8Array> {
  try {
    return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: new Uint8Array(d.iv), additionalData: aad(d.publicKey) }, d.wrapKey, d.sealed));
  } catch (cause) {
    throw new DeviceKeyError('QRA_ERR_INTERNAL', `the device key on this phone cannot be unlocked (the store was changed) — ${SET_UP_AGAIN}`, { cause });
  }
}

async function readKeystoreSeed(d: NativeStoredDevice): Promise<Uint8Array> {
  let seed: Uint8Array | null;
  try {
    seed = await secretGet(seedSecretName(d.deviceId));
  } catch (cause) {
    // Most likely transient (iOS refuses Keychain reads while the phone is locked).
    throw new DeviceKeyError('QRA_ERR_INTERNAL', `the device key could not be read: ${(cause as Error).message}; unlock the phone and try again`, { cause, lost: false });
  }
  if (seed === null) {
    // What a restored backup looks like: IndexedDB came back, the keystore entry cannot.
    throw new DeviceKeyError('QRA_ERR_CONFIG', `the device key is missing from this phone's keystore (was the app's data restored from a backup?) — ${SET_UP_AGAIN}`);
  }
  return seed;
}

/**
 * Runs `use` with the seed, then wipes it. The seed never leaves this call; the callback must
 * not keep it. Throws DeviceKeyError when the key cannot be used.
 */
export async function withDeviceSeed<T>(use: (seed: Uint8Array, device: DeviceInfo) => T | Promise<T>): Promise<T> {
  const d = await storeGet<StoredDevice>(KEY);
  if (!isKnownRecord(d)) throw new DeviceKeyError('QRA_ERR_CONFIG', 'this phone has no device key yet; open the app to make one');
  const webCrypto = await loadWebCrypto();
  const seed = d.v === 2 ? await readKeystoreSeed(d) : await unsealWebSeed(d);
  try {
    if (seed.length !== 32 || toB64url(webCrypto.ed25519FromSeed(seed).publicKey) !== d.publicKey) {
      throw d.v === 2
        ? new DeviceKeyError('QRA_ERR_CONFIG', `the device key in this phone's keystore does not match this phone's public key — ${SET_UP_AGAIN}`)
        : new DeviceKeyError('QRA_ERR_INTERNAL', `the device key on this phone does not match its public key — ${SET_UP_AGAIN}`);
    }
    return await use(seed, publicInfo(d));
  } finally {
    seed.fill(0);
  }
}

const resetListeners = new Set<() => void>();
/**
 * Called when resetDevice starts: whatever was proved with the old key (relay connections, whose
 * handshake the relay ties every later enroll and decision to) must not be used any more.
 */
export function onDeviceReset(cb: () => void): () => void {
  resetListeners.add(cb);
  return () => resetListeners.delete(cb);
}

/**
 * Deletes this phone's device key and the list of hosts enrolled with it, so that the first-start
 * screen makes a new key (createDevice). For a key that cannot be used any more (gone from the
 * keystore after a backup restore, or not matching), or a person who wants a new one. History and
 * settings stay. Nothing is sent anywhere: the hosts keep the old public key until
 * `qrauth revoke`, but nobody holds its seed any more.
 *
 * The order makes every failure leave a state the app already handles, from which trying again
 * finishes the job:
 *
 * 1. Native: the keystore entry of this device id (the seed). If this fails, nothing has changed.
 * 2. The hosts list: each entry is only useful with the old key (those hosts know only its public
 *    key), and must not end up beside a new one.
 * 3. The device record, last: it is the commit point. Until it is gone the app still shows this
 *    device, whose key, if step 1 ran, is now missing; that is the "device key cannot be used"
 *    screen, which offers this reset again. Steps 1 and 2 are idempotent (removing an entry that
 *    is not there, clearing an empty list), so the retry completes. On the web the record also
 *    holds the sealed seed and its wrapping key, so this step is what deletes the key there.
 *
 * Deleting the record first would instead show the first-start screen even when a later step
 * failed: the old seed left in the keystore (only best-effort cleanup after the next key is
 * made), or the old hosts beside the new key, with no screen pointing at either.
 */
export async function resetDevice(): Promise<void> {
  for (const cb of [...resetListeners]) cb();
  const d = await storeGet<StoredDevice>(KEY);
  if (isKnownRecord(d) && d.v === 2) {
    try {
      await secretDelete(seedSecretName(d.deviceId));
    } catch (cause) {
      throw new QrauthError('QRA_ERR_INTERNAL', `the old device key could not be removed from the phone keystore (${(cause as Error).message}); nothing was changed`, { cause });
    }
  }
  try {
    await clearHosts();
    await storeDelete(KEY);
    // No device key: the start screen's copy goes too (start.ts would mend it, after a moment of the Scan screen).
    writeStartHint(null);
  } catch (cause) {
    throw new QrauthError('QRA_ERR_INTERNAL', `the device key could not be replaced (${(cause as Error).message}); try again`, { cause });
  }
}
