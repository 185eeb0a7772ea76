import { isNativePlatform } from './data/platform';

/**
 * The service worker (built into dist/sw.js by vite.config.ts) caches the app shell so the
 * app opens without a network and the offline code still works. Native builds load the app
 * from the device already, so they do not need one.
 */
export function registerServiceWorker(): void {
  if (!import.meta.env.PROD || isNativePlatform() || !('serviceWorker' in navigator)) return;
  const register = () => {
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch((e: unknown) => {
      console.warn('qrauth: service worker not registered; the app will not open offline', e);
    });
  };
  // After the first paint's downloads; the page may already be loaded when this runs.
  if (document.readyState === 'complete') register();
  else window.addEventListener('load', register, { once: true });
}
