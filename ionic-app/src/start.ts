/**
 * The app's entry. Opening the app sits on every login's critical path (open → camera → scan →
 * Approve), so when this phone has a device key and the app opens at its start page, the first
 * thing on screen is the Scan screen built from plain DOM (scan/scan-panel.ts), with the camera
 * opening at once when a host is enrolled and the camera allowed. React, Ionic and the other
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
import { showStartScreen } from './scan/start-screen';
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
  registerServiceWorker();
  if (isNativePlatform() || !START_PATHS.has(location.pathname)) return void (await loadApp());
  // One read for all the start screen needs; a store that cannot be opened is the app's to report.
  const [device, settings, hosts] = await storeGetMany([DEVICE_KEY, SETTINGS_KEY, HOSTS_KEY]).catch(() => [null, null, null]);
  if (device == null) return void (await loadApp());
  // Any record with a hostId counts here (the Scan page checks each host's key, which needs
  // SHA-256 and more code than the start bundle should carry): a damaged record can at most
  // open the camera by itself once.
  const someHost = Array.isArray(hosts) && hosts.some((h) => typeof (h as { hostId?: unknown } | null)?.hostId === 'string');
  showStartScreen(loadApp, parseSettings(settings).theme, someHost);
}

void start();
