/**
 * What the start screen needs before the store has been read, kept where it can be read at once:
 * this phone had a device key at its last start, its theme, and whether a host is enrolled.
 * IndexedDB takes a while to open on a slow phone (about 100 ms at Lighthouse's CPU ×4); with
 * this copy in localStorage, read synchronously, start.ts shows the start screen and starts the
 * camera while the store opens, then checks the copy against the store and corrects both.
 *
 * Nothing in it is secret or trusted, and it is rewritten from the store at every start: a wrong
 * copy can show the start screen in another theme, open the camera view (only where the site may
 * already use the camera) or leave it closed, each until the store answers a moment later and
 * start.ts corrects it; a damaged one is ignored. The store decides everything else (which pages
 * there are, which hosts, any key).
 */
import type { ThemeSetting } from '../models';

const KEY = 'qrauth.start';
/** A record far longer than any this file writes is someone else's: ignored. */
const MAX_LENGTH = 200;

export interface StartHint {
  theme: ThemeSetting;
  someHost: boolean;
}

/** The copy, or null when there is none, it cannot be read, or it is not one this file wrote. */
export function readStartHint(): StartHint | null {
  try {
    const raw = localStorage.getItem(KEY);
    if (raw === null || raw.length > MAX_LENGTH) return null;
    const v = JSON.parse(raw) as Partial<StartHint> | null;
    if (typeof v !== 'object' || v === null) return null;
    if (v.theme !== 'system' && v.theme !== 'light' && v.theme !== 'dark') return null;
    if (typeof v.someHost !== 'boolean') return null;
    return { theme: v.theme, someHost: v.someHost };
  } catch {
    return null;
  }
}

/**
 * Changes part of the copy, as the store changes (store.ts, at once and in the order of the
 * changes); without a copy nothing is written: start.ts writes the whole of it at the next start.
 */
export function updateStartHint(change: Partial<StartHint>): void {
  const hint = readStartHint();
  if (hint) writeStartHint({ ...hint, ...change });
}

/** Keeps the copy (null: forget it, as when there is no device key). Storage that refuses is no error: the start is slower, that is all. */
export function writeStartHint(hint: StartHint | null): void {
  try {
    if (hint === null) localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, JSON.stringify({ theme: hint.theme, someHost: hint.someHost }));
  } catch {
    /* private mode or storage full */
  }
}
