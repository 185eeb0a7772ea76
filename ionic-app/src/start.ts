/**
 * The app's entry. Opening the app sits on every login's critical path (open → camera → scan →
 * Approve), so when this phone has a device key and the app opens at its start page, the first
 * thing on screen is the Scan screen built from plain DOM (scan/scan-panel.ts), with the camera
 * opening at once when a host is enrolled and the camera allowed; both start before IndexedDB
 * has opened, from the copy of those facts in localStorage (data/start-hint.ts). React, Ionic and the other
 * pages (main.tsx) load behind it: once the camera picture is live, when a code has been
 * scanned or pasted, when the person turns to the paste field, or a second after the start
 * screen when the camera was not opened. The Scan page then takes the same panel over, the
 * camera still live. Everything else (first start, another page, native builds, which load the
 * app from the device) starts the whole app directly.
 *
 * docs/app.md ("Opening fast") and docs/BENCHMARKS.md (`make bench-app`) have the figures.
 */
import { DEVICE_KEY, HOSTS_KEY, storeGetMany } from './data/kv';
import { SETTINGS_KEY, parseSettings } from './data/settings';
import { isNativePlatform } from './data/native';
import { coolCamera, warmCamera } from './data/camera';
import { readStartHint, writeStartHint } from './data/start-hint';
import { correctStartScreen, endStartScreen, showStartScreen } from './scan/start-screen';
import { registerServiceWorker } from './sw-register';

const START_PATHS = new Set(['/', '/scan', '/index.html']);

let appLoading: Promise<unknown> | null = null;

/** Loads (once) and starts the whole app; a failed load may be tried again. */
function loadApp(): Promise<unknown> {
  appLoading ??= import('./main').catch((e: unknown) => {
    appLoading = null;
    throw e;
  });
  return appLoading;
}

async function start(): Promise<void> {
  performance.mark('qrauth:script');
  registerServiceWorker();
  if (isNativePlatform() || !START_PATHS.has(location.pathname)) return void (await loadApp());
  // The store's copy kept for this moment (data/start-hint.ts): with it the start screen and the
  // camera need not wait for IndexedDB to open. The store read below decides and corrects it.
  const hint = readStartHint();
  if (hint?.someHost) warmCamera();
  // One read for all the start screen needs; a store that cannot be opened is the app's to report.
  const stored = storeGetMany([DEVICE_KEY, SETTINGS_KEY, HOSTS_KEY])
    .catch(() => [null, null, null])
    .then(([device, settings, hosts]) => {
      performance.mark('qrauth:store-read');
      // Any record with a hostId counts here (the Scan page checks each host's key, which needs
      // SHA-256 and more code than the start bundle should carry): a damaged record can at most
      // open the camera by itself once.
      const someHost = Array.isArray(hosts) && hosts.some((h) => typeof (h as { hostId?: unknown } | null)?.hostId === 'string');
      return { device: device != null, theme: parseSettings(settings).theme, someHost };
    });
  if (hint) showStartScreen(loadApp, hint.theme, hint.someHost);
  const s = await stored;
  writeStartHint(s.device ? { theme: s.theme, someHost: s.someHost } : null);
  if (!s.device) {
    // First start (or the store was cleared): the Welcome page, in the whole app.
    coolCamera();
    if (hint) {
      correctStartScreen(s.theme, false);
      endStartScreen();
    }
    return void (await loadApp());
  }
  if (!hint) showStartScreen(loadApp, s.theme, s.someHost);
  else correctStartScreen(s.theme, s.someHost);
}

void start();
