/**
 * Everything that touches the platform lives here, like ionic-react-conference-app's dataApi:
 * the camera scanner (Capacitor), the on-device store (IndexedDB) and, on native builds, the
 * platform keystore (Android Keystore / iOS Keychain, through a secure-storage plugin). Pages
 * and the rest of src/data/ call these functions only, so another scanner or store replaces
 * one file.
 */
import { Capacitor } from '@capacitor/core';
import { fromB64url, toB64url } from '../../../protocol/src/index.js';
import { cameraPermissionGranted, ScanError } from './camera';
import { isNativePlatform } from './native';

export { isNativePlatform };

/**
 * A native build whose WebView has no camera (scanWithPlugin): opens the platform's scanner (the
 * plugin's ML Kit / AVFoundation view) and resolves with the text of the first QR code seen, or
 * null when the person closed it. Everywhere else the app has its own scanner view
 * (scan/scanner-view.ts, data/camera.ts).
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

/**
 * Whether the scan button opens the scanner plugin's own view instead of the app's camera view.
 * Only in a native shell whose WebView cannot give the page a camera (no getUserMedia): the app's
 * view reads both polarities (data/camera.ts tries every frame normal and inverted, as a terminal
 * QR reader must: a light terminal shows the QR inverted), the plugin's do not reliably. On
 * Android @capacitor/barcode-scanner reads only dark on light (ionic-team/capacitor-barcode-scanner#60,
 * open; ML Kit's issue 303482848); on iOS it hands each frame to Vision as it is (OSBarcodeLib-iOS
 * 2.2.1) and whether Vision reads an inverted QR is not something we can check here. Both shells
 * give the page the camera: Android's BridgeWebChromeClient grants getUserMedia after asking for
 * the CAMERA permission; iOS's WKWebView has getUserMedia since iOS 14.3 (Capacitor 8 needs 15),
 * Capacitor's WebViewDelegationHandler grants media capture (iOS 15+) and its WebView plays media
 * inline; the system asks once with the app's NSCameraUsageDescription. docs/app.md, "Scanning
 * both polarities".
 */
export function scanWithPlugin(): boolean {
  return isNativePlatform() && typeof navigator.mediaDevices?.getUserMedia !== 'function';
}

/** The camera may be opened without asking the person (granted before, or native). */
export async function cameraAlreadyAllowed(): Promise<boolean> {
  return isNativePlatform() || cameraPermissionGranted();
}

// ---- on-device store: data/kv.ts (the start screen reads it without the rest of this file) ----
export { storeAdd, storeDelete, storeGet, storePut } from './kv';

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
