/** Whether this is the native app (Capacitor) or the web app: its own module so the start screen needs nothing else of platform.ts. */
import { Capacitor } from '@capacitor/core';

export function isNativePlatform(): boolean {
  return Capacitor.isNativePlatform();
}
