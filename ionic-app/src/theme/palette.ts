/**
 * Light or dark: the setting (system, light, dark) resolved against the system's preference,
 * applied as Ionic's dark palette class and the browser's theme colour. AppState uses it, and
 * the start screen (start.ts) before AppState exists.
 */
import type { ThemeSetting } from '../models';

export const darkQuery = (): MediaQueryList | undefined => window.matchMedia?.('(prefers-color-scheme: dark)');

export function isDark(theme: ThemeSetting, systemDark: boolean): boolean {
  return theme === 'dark' || (theme === 'system' && systemDark);
}

export function applyPalette(dark: boolean): void {
  document.documentElement.classList.toggle('ion-palette-dark', dark);
  document.querySelector('meta[name="theme-color"]')?.setAttribute('content', dark ? '#121212' : '#ffffff');
}

/** Applies `theme` now and follows the system's changes; returns the way to stop. */
export function followTheme(theme: ThemeSetting): () => void {
  const q = darkQuery();
  applyPalette(isDark(theme, q?.matches ?? false));
  const onChange = (e: MediaQueryListEvent) => applyPalette(isDark(theme, e.matches));
  q?.addEventListener('change', onChange);
  return () => q?.removeEventListener('change', onChange);
}
