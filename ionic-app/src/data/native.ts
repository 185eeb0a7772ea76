/**
 * Whether this is the native app (Capacitor) or the web app: its own module so the start screen
 * needs nothing else of platform.ts, and without @capacitor/core, whose evaluation was most of
 * the start bundle's (it installs the Capacitor global and its plugins' proxies): a native shell
 * injects its bridge before any page script runs, and the bridge sets `window.Capacitor` with
 * `isNativePlatform = () => true` (@capacitor/android's native-bridge.js, what
 * test/app-native.test.ts loads). On the web there is no such object until @capacitor/core
 * itself defines one, which answers false there.
 */
type CapacitorGlobal = { Capacitor?: { isNativePlatform?: () => unknown } };

export function isNativePlatform(): boolean {
  const cap = (globalThis as CapacitorGlobal).Capacitor;
  return typeof cap?.isNativePlatform === 'function' && cap.isNativePlatform() === true;
}
