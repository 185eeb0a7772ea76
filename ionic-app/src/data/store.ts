/**
 * What the app remembers besides the device key: enrolled hosts, this phone's decisions, and
 * settings. Validated when read back, like anything from outside.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { fromB64url, keyId, parse, passkeyInfo } from '../../../protocol/src/index.js';
import type { HistoryEntry, Settings, TrustedHost } from '../models';
import { storeGet, storePut } from './platform';
import { HOSTS_KEY } from './kv';
import { SETTINGS_KEY } from './settings';
import { updateStartHint } from './start-hint';

/** keyId needs SHA-256 only: not crypto-web's Ed25519/X25519, which stay off the app's start path. */
const hashOnly = { sha256: (data: Uint8Array) => sha256(data) };

const HOSTS = HOSTS_KEY;
const HISTORY = 'history';
/** Older entries fall off; the history is for the person, not an audit log (the host logs). */
export const HISTORY_MAX = 200;

const listeners = new Set<() => void>();
/** Called after any change to hosts, history or settings, so open pages can reload. */
export function onStoreChange(cb: () => void): () => void {
  listeners.add(cb);
  return () => listeners.delete(cb);
}
function changed(): void {
  for (const cb of [...listeners]) cb();
}

function isTrustedHost(h: unknown): h is TrustedHost {
  if (typeof h !== 'object' || h === null) return false;
  const r = h as Record<string, unknown>;
  if (typeof r.hostId !== 'string' || typeof r.hostPub !== 'string' || typeof r.hostname !== 'string') return false;
  if (typeof r.relayUrl !== 'string' || !/^https?:\/\/\S+$/.test(r.relayUrl) || typeof r.enrolledAt !== 'number') return false;
  const fallbacks = r.fallbackRelayUrls;
  if (fallbacks !== undefined && !(Array.isArray(fallbacks) && fallbacks.length <= 7 && fallbacks.every((u) => typeof u === 'string' && /^https?:\/\/\S+$/.test(u)))) return false;
  try {
    if (r.passkey !== undefined) parse(passkeyInfo, r.passkey, 'host.passkey');
  } catch {
    return false;
  }
  try {
    return keyId(hashOnly, fromB64url(r.hostPub, 32)) === r.hostId;
  } catch {
    return false;
  }
}

/** Every host change goes through here: the store, the start screen's copy (start-hint.ts), the open pages. */
async function putHosts(hosts: TrustedHost[]): Promise<void> {
  await storePut(HOSTS, hosts);
  updateStartHint({ someHost: hosts.length > 0 });
  changed();
}

export async function listHosts(): Promise<TrustedHost[]> {
  const raw = (await storeGet<unknown[]>(HOSTS)) ?? [];
  return Array.isArray(raw) ? raw.filter(isTrustedHost) : [];
}

export async function findHost(hostId: string): Promise<TrustedHost | undefined> {
  return (await listHosts()).find((h) => h.hostId === hostId);
}

/** Adds the host, or updates its name and relay when it is enrolled again. */
export async function saveHost(host: Omit<TrustedHost, 'hostId' | 'enrolledAt'>): Promise<TrustedHost> {
  const hostId = keyId(hashOnly, fromB64url(host.hostPub, 32));
  const fallbacks = host.fallbackRelayUrls?.length ? { fallbackRelayUrls: host.fallbackRelayUrls.map((u) => u.replace(/\/$/, '')) } : {};
  const passkey = host.passkey ? { passkey: host.passkey } : {};
  const entry: TrustedHost = { hostId, hostPub: host.hostPub, hostname: host.hostname, relayUrl: host.relayUrl.replace(/\/$/, ''), ...fallbacks, ...passkey, enrolledAt: Date.now() };
  const hosts = (await listHosts()).filter((h) => h.hostId !== hostId);
  await putHosts([...hosts, entry]);
  return entry;
}

export async function removeHost(hostId: string): Promise<void> {
  await putHosts((await listHosts()).filter((h) => h.hostId !== hostId));
}

/** Forgets every host (when the device key they trust is replaced: device-key.ts resetDevice). */
export async function clearHosts(): Promise<void> {
  await putHosts([]);
}

export async function listHistory(): Promise<HistoryEntry[]> {
  const raw = (await storeGet<HistoryEntry[]>(HISTORY)) ?? [];
  return Array.isArray(raw) ? raw : [];
}

export async function addHistory(entry: HistoryEntry): Promise<void> {
  const all = [entry, ...(await listHistory())].slice(0, HISTORY_MAX);
  await storePut(HISTORY, all);
  changed();
}

export async function clearHistory(): Promise<void> {
  await storePut(HISTORY, []);
  changed();
}

export { loadSettings } from './settings';

export async function saveSettings(s: Settings): Promise<void> {
  await storePut(SETTINGS_KEY, s);
  updateStartHint({ theme: s.theme });
  changed();
}
