/** The app's settings (theme), read without the rest of the store so the start screen can (start.ts). */
import type { Settings } from '../models';
import { storeGet } from './kv';

export const SETTINGS_KEY = 'settings';
const DEFAULT_SETTINGS: Settings = { theme: 'system' };

/** The stored record as settings (anything unknown or damaged → the defaults). */
export function parseSettings(raw: unknown): Settings {
  const theme = (raw as Partial<Settings> | null | undefined)?.theme;
  return { theme: theme === 'light' || theme === 'dark' || theme === 'system' ? theme : DEFAULT_SETTINGS.theme };
}

export async function loadSettings(): Promise<Settings> {
  return parseSettings(await storeGet(SETTINGS_KEY));
}
