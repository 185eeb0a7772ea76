/**
 * Everything that touches the platform lives here, like ionic-react-conference-app's dataApi:
 * the camera scanner (Capacitor), the on-device store (IndexedDB) and, on native builds, the
 * platform keystore (Android Keystore / iOS Keychain, through a secure-storage plugin). Pages
 * and the rest of src/data/ call these functions only, so another scanner or store replaces
 * one file.
 */
import { Capacitor } from '@capacitor/core';
import { fromB64url, toB64url } from '../../../protocol/src/index.js';

export function isNativePlatform(): boolean {
  return Capacitor.isNativePlatform();
}

export class ScanError extends Error {
  override readonly name = 'ScanError';
}

/**
 * Native builds: opens the platform's scanner (the plugin's ML Kit / AVFoundation view) and
 * resolves with the text of the first QR code seen, or null when the person closed it. The web
 * build has its own scanner view (components/QrScanner.tsx, data/camera.ts).
 */
export async function scanQrCode(instructions: string): Promise<string | null> {
  const { CapacitorBarcodeScanner, CapacitorBarcodeScannerCameraDirection, CapacitorBarcodeScannerTypeHint } = await import('@capacitor/barcode-scanner');
  try {
    const { ScanResult } = await CapacitorBarcodeScanner.scanBarcode({
      hint: CapacitorBarcodeScannerTypeHint.QR_CODE,
      scanInstructions: instructions,
      scanButton: false,
      cameraDirection: CapacitorBarcodeScannerCameraDirection.BACK,
    });
    return ScanResult;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/cancel/i.test(msg)) return null;
    throw new ScanError(`the camera could not scan: ${msg}`);
  }
}

/** The camera may be opened without asking the person (granted before, or native). */
export async function cameraAlreadyAllowed(): Promise<boolean> {
  if (isNativePlatform()) return true;
  try {
    const status = await navigator.permissions?.query({ name: 'camera' as PermissionName });
    return status?.state === 'granted';
  } catch {
    return false; // a browser that cannot tell: wait for the person's tap
  }
}

// ---- on-device store: one IndexedDB object store of keys → structured-clone values ----
// IndexedDB keeps CryptoKey objects as they are, non-extractable ones included, which is what
// the device key's wrapping key needs (see device-key.ts).

const DB_NAME = 'qrauth';
const STORE = 'kv';
let dbPromise: Promise<IDBDatabase> | null = null;

function openDb(): Promise<IDBDatabase> {
  dbPromise ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => {
      dbPromise = null;
      reject(new Error(`cannot open the on-device store: ${req.error?.message ?? 'unknown error'}`));
    };
  });
  return dbPromise;
}

function run<T>(mode: IDBTransactionMode, op: (s: IDBObjectStore) => IDBRequest): Promise<T> {
  return openDb().then(
    (db) =>
      new Promise<T>((resolve, reject) => {
        const tx = db.transaction(STORE, mode);
        const req = op(tx.objectStore(STORE));
        tx.oncomplete = () => resolve(req.result as T);
        // The failing request's error (e.g. ConstraintError from add()) reaches the transaction's
        // onerror before tx.error is set, so read it from the request.
        tx.onerror = () => reject(new Error(`on-device store: ${req.error?.message ?? tx.error?.message ?? 'transaction failed'}`));
        tx.onabort = () => reject(new Error(`on-device store: ${tx.error?.message ?? 'transaction aborted'}`));
      }),
  );
}

export function storeGet<T>(key: string): Promise<T | undefined> {
  return run<T | undefined>('readonly', (s) => s.get(key));
}

export async function storePut(key: string, value: unknown): Promise<void> {
  await run('readwrite', (s) => s.put(value, key));
}

/** Writes only when nothing is stored under `key` yet; resolves false when something was. */
export async function storeAdd(key: string, value: unknown): Promise<boolean> {
  try {
    await run('readwrite', (s) => s.add(value, key));
    return true;
  } catch (e) {
    if (e instanceof Error && /constraint|exists/i.test(e.message)) return false;
    throw e;
  }
}

export async function storeDelete(key: string): Promise<void> {
  await run('readwrite', (s) => s.delete(key));
}

// ---- native secrets: the platform keystore, through @aparajita/capacitor-secure-storage ----
// Native builds only. The plugin's web fallback writes plain text to localStorage, so it is never
// loaded: every function below first checks that the native shell really has the plugin.

/** Our entries' names in the keystore start with this (the plugin's key prefix). */
const SECRET_PREFIX = 'qrauth_';

export class SecureStorageError extends Error {
  override readonly name = 'SecureStorageError';
}

/**
 * True on a native build whose shell carries the secure-storage plugin. Capacitor.isPluginAvailable()
 * cannot tell: it is also true for a plugin that merely has a JS shim for this platform. The native
 * shell lists the plugins it really has in Capacitor.PluginHeaders, the list @capacitor/core itself
 * consults before routing a call to native code.
 */
export function hasNativeSecureStorage(): boolean {
  if (!isNativePlatform()) return false;
  const headers = (Capacitor as unknown as { PluginHeaders?: ReadonlyArray<{ name?: unknown }> }).PluginHeaders;
  return Array.isArray(headers) && headers.some((h) => h?.name === 'SecureStorage');
}

type SecureStorageModule = typeof import('@aparajita/capacitor-secure-storage');
let secureStorage: Promise<SecureStorageModule> | null = null;

function nativeSecureStorage(): Promise<SecureStorageModule> {
  if (!hasNativeSecureStorage()) {
    return Promise.reject(new SecureStorageError('this build of the app has no access to the phone keystore (the secure storage plugin is missing)'));
  }
  if (!secureStorage) {
    const loading = import('@aparajita/capacitor-secure-storage').then(async (m) => {
      await m.SecureStorage.setKeyPrefix(SECRET_PREFIX);
      return m;
    });
    secureStorage = loading;
    loading.catch(() => {
      if (secureStorage === loading) secureStorage = null; // let the next call try again
    });
  }
  return secureStorage;
}

async function keystoreCall<T>(what: string, op: (m: SecureStorageModule) => Promise<T>): Promise<T> {
  const m = await nativeSecureStorage();
  try {
    return await op(m);
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new SecureStorageError(`the phone keystore could not ${what} (${detail})`, { cause });
  }
}

/**
 * Stores `bytes` (as base64url text) in the keystore under `key`, replacing what was there. iOS:
 * readable only while the phone is unlocked, and only on this phone (never in iCloud Keychain,
 * never restored onto another phone from a backup); the app only needs it in the foreground.
 * Android: encrypted under an AES key of its own in the Android Keystore, which never leaves it.
 */
export async function secretPut(key: string, bytes: Uint8Array): Promise<void> {
  await keystoreCall('store a secret', (m) =>
    // convertDate false: the text is stored as is; sync false: not in iCloud Keychain.
    m.SecureStorage.set(key, toB64url(bytes), false, false, m.KeychainAccess.whenUnlockedThisDeviceOnly),
  );
}

/**
 * The bytes stored under `key`, or null when there is no such entry (never stored, deleted, or
 * not restorable: a restored backup brings back neither Keychain items of this class nor
 * Android Keystore keys). The caller wipes the bytes after use; the plugin's text copy cannot
 * be wiped (JS strings are immutable), it only lives until garbage collection.
 */
export async function secretGet(key: string): Promise<Uint8Array | null> {
  const data = await keystoreCall('read a secret', (m) => m.SecureStorage.get(key, false, false));
  if (data === null) return null;
  if (typeof data !== 'string') throw new SecureStorageError('the phone keystore holds something unexpected under this name');
  try {
    return fromB64url(data);
  } catch (cause) {
    throw new SecureStorageError('the phone keystore holds something unexpected under this name', { cause });
  }
}

/** Removes the entry; resolves false when there was none. */
export async function secretDelete(key: string): Promise<boolean> {
  return keystoreCall('remove a secret', (m) => m.SecureStorage.remove(key, false));
}

/** The names (without our prefix) of the keystore entries of this app. */
export async function secretKeys(): Promise<string[]> {
  return keystoreCall('list its entries', (m) => m.SecureStorage.keys(false));
}
