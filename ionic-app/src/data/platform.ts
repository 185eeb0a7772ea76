/**
 * Everything that touches the platform lives here, like ionic-react-conference-app's dataApi:
 * the camera scanner (Capacitor) and the on-device store (IndexedDB). Pages and the rest of
 * src/data/ call these functions only, so a native secure-storage plugin or another scanner
 * replaces one file.
 */
import { Capacitor } from '@capacitor/core';

export function isNativePlatform(): boolean {
  return Capacitor.isNativePlatform();
}

export class ScanError extends Error {
  override readonly name = 'ScanError';
}

/**
 * Opens the camera and resolves with the text of the first QR code seen, or null when the
 * person closed the scanner. Rejects with ScanError when there is no usable camera.
 */
export async function scanQrCode(instructions: string): Promise<string | null> {
  if (!isNativePlatform()) await checkWebCamera();
  // Loaded on first use: the plugin pulls in html5-qrcode (a third of the app's code) on the web.
  const { CapacitorBarcodeScanner, CapacitorBarcodeScannerCameraDirection, CapacitorBarcodeScannerTypeHint } = await import('@capacitor/barcode-scanner');
  const pending = CapacitorBarcodeScanner.scanBarcode({
    hint: CapacitorBarcodeScannerTypeHint.QR_CODE,
    scanInstructions: instructions,
    scanButton: false,
    cameraDirection: CapacitorBarcodeScannerCameraDirection.BACK,
    web: { showCameraSelection: false, scannerFPS: 10 },
  });
  if (!isNativePlatform()) labelWebScannerDialog();
  try {
    const { ScanResult } = await pending;
    return ScanResult;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/cancel/i.test(msg)) return null;
    throw new ScanError(`the camera could not scan: ${msg}`);
  }
}

/**
 * The web scanner does not report a camera that fails to start (its promise would never
 * settle), so ask for the camera once ourselves and turn a refusal into a message.
 */
async function checkWebCamera(): Promise<void> {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new ScanError('this browser gives no camera access here (it needs https); paste the code instead');
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
    for (const t of stream.getTracks()) t.stop();
  } catch (e) {
    const name = e instanceof Error ? e.name : '';
    throw new ScanError(
      name === 'NotAllowedError'
        ? 'camera access was refused; allow the camera for this site, or paste the code instead'
        : 'no camera could be opened; paste the code instead',
    );
  }
}

/** The web scanner's close control is a bare span; give it a name and keyboard access. */
function labelWebScannerDialog(): void {
  const close = document.getElementById('cap-os-barcode-scanner-close-button');
  if (!close || close.getAttribute('role') === 'button') return;
  close.setAttribute('role', 'button');
  close.setAttribute('aria-label', 'Close the camera');
  close.tabIndex = 0;
  close.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' || ev.key === ' ') close.click();
  });
  document.getElementById('cap-os-barcode-scanner-container-dialog')?.setAttribute('aria-label', 'Camera scanner');
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
        tx.onerror = () => reject(new Error(`on-device store: ${tx.error?.message ?? 'transaction failed'}`));
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
