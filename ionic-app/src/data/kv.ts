/**
 * The on-device store: one IndexedDB object store of keys → structured-clone values. IndexedDB
 * keeps CryptoKey objects as they are, non-extractable ones included, which is what the device
 * key's wrapping key needs (see device-key.ts). Its own module, with no imports, so the start
 * screen (start.ts) can read it before the rest of the app has loaded.
 */

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

/** One transaction of one or several requests; resolves with the result(s) in the same shape. */
function run<T>(mode: IDBTransactionMode, op: (s: IDBObjectStore) => IDBRequest | IDBRequest[]): Promise<T> {
  return openDb().then(
    (db) =>
      new Promise<T>((resolve, reject) => {
        const tx = db.transaction(STORE, mode);
        const req = op(tx.objectStore(STORE));
        const reqs = Array.isArray(req) ? req : [req];
        tx.oncomplete = () => resolve((Array.isArray(req) ? req.map((r) => r.result as unknown) : req.result) as T);
        // The failing request's error (e.g. ConstraintError from add()) reaches the transaction's
        // onerror before tx.error is set, so read it from the request.
        const failed = () => reqs.find((r) => r.readyState === 'done' && r.error)?.error;
        tx.onerror = () => reject(new Error(`on-device store: ${failed()?.message ?? tx.error?.message ?? 'transaction failed'}`));
        tx.onabort = () => reject(new Error(`on-device store: ${tx.error?.message ?? 'transaction aborted'}`));
      }),
  );
}

export function storeGet<T>(key: string): Promise<T | undefined> {
  return run<T | undefined>('readonly', (s) => s.get(key));
}

/** Several keys in one transaction (the start screen's one read: device, settings, hosts). */
export function storeGetMany(keys: readonly string[]): Promise<unknown[]> {
  return run<unknown[]>('readonly', (s) => keys.map((k) => s.get(k)));
}

/** The store's keys that the start screen reads before the rest of the app (device-key.ts, store.ts use them too). */
export const DEVICE_KEY = 'device';
export const HOSTS_KEY = 'hosts';

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

