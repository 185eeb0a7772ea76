import type { CapacitorConfig } from '@capacitor/cli';

/**
 * Native shells (Android/iOS) wrap the same web build (`dist/`, from `npm run build -w ionic-app`).
 * See README.md for `npx cap add android && npx cap sync`.
 */
const config: CapacitorConfig = {
  appId: 'dev.qrauth.app',
  appName: 'qrauth',
  webDir: 'dist',
  android: {
    // The app talks to relays over https only in production; http is for a relay on the LAN in tests.
    allowMixedContent: false,
  },
};

export default config;
