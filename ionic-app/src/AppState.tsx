/**
 * App-wide state: the device (public part), the code just scanned, and the theme. The
 * scanned text (which holds the login's secret nonce) stays in memory only: never in the URL,
 * history or storage.
 */
import { createContext, type ReactNode, useCallback, useContext, useEffect, useMemo, useState } from 'react';
import type { DeviceInfo, ThemeSetting } from './models';
import { loadDevice } from './data/device-key';
import { loadSettings, saveSettings } from './data/store';
import { applyPalette, darkQuery, isDark } from './theme/palette';

interface AppState {
  /** undefined while loading; null before the first start (and after resetDevice) */
  device: DeviceInfo | null | undefined;
  setDevice(d: DeviceInfo | null): void;
  scanned: string | null;
  /** Counts scans: scanning the same code again (say, after unlocking the phone) is a new scan. */
  scanSeq: number;
  setScanned(text: string | null): void;
  theme: ThemeSetting;
  setTheme(t: ThemeSetting): void;
  /** the theme in effect (system resolved) */
  dark: boolean;
}

const Ctx = createContext<AppState | null>(null);

export function useAppState(): AppState {
  const s = useContext(Ctx);
  if (!s) throw new Error('useAppState outside AppStateProvider');
  return s;
}


export function AppStateProvider({ children }: { children: ReactNode }) {
  const [device, setDevice] = useState<DeviceInfo | null | undefined>(undefined);
  const [scanned, setScannedText] = useState<string | null>(null);
  const [scanSeq, setScanSeq] = useState(0);
  const setScanned = useCallback((text: string | null) => {
    setScannedText(text);
    setScanSeq((n) => n + 1);
  }, []);
  /** undefined until the setting is read: the start screen (start.ts) has applied it already. */
  const [storedTheme, setThemeState] = useState<ThemeSetting | undefined>(undefined);
  const theme = storedTheme ?? 'system';
  const [systemDark, setSystemDark] = useState<boolean>(() => darkQuery()?.matches ?? false);

  useEffect(() => {
    void loadDevice().then(setDevice, () => setDevice(null));
    void loadSettings().then((s) => setThemeState(s.theme));
    const q = darkQuery();
    const onChange = (e: MediaQueryListEvent) => setSystemDark(e.matches);
    q?.addEventListener('change', onChange);
    return () => q?.removeEventListener('change', onChange);
  }, []);

  const dark = isDark(theme, systemDark);
  // Not before the setting is read: applying the 'system' default first would flip the palette
  // of a person who chose light or dark, under the start screen's camera.
  useEffect(() => {
    if (storedTheme !== undefined) applyPalette(dark);
  }, [dark, storedTheme]);

  const setTheme = useCallback((t: ThemeSetting) => {
    setThemeState(t);
    void saveSettings({ theme: t });
  }, []);

  const value = useMemo<AppState>(
    () => ({ device, setDevice, scanned, scanSeq, setScanned, theme, setTheme, dark }),
    [device, scanned, scanSeq, setScanned, theme, setTheme, dark],
  );
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}
