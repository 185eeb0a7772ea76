import { useIonRouter, useIonViewDidEnter, useIonViewWillLeave } from '@ionic/react';
import { useEffect, useRef } from 'react';
import { useAppState } from '../AppState';
import { Page } from '../components/Page';
import { cameraAlreadyAllowed, scanQrCode, scanWithPlugin } from '../data/platform';
import { listHosts } from '../data/store';
import { scanPanel } from '../scan/scan-panel';
import { endStartScreen, revealApp } from '../scan/start-screen';

/**
 * Scan a login or enrollment QR with the camera, or paste its text. The body is the one scan
 * panel (scan/scan-panel.ts) that the start screen showed before the app had loaded: this page
 * takes it over as it is, the camera still live if the person had opened it.
 */
export default function Scan() {
  const { setScanned } = useAppState();
  const router = useIonRouter();
  const slot = useRef<HTMLDivElement>(null);
  const open = useRef<(text: string, kind: 'login' | 'enroll') => void>(() => {});
  open.current = (text, kind) => {
    setScanned(text);
    router.push(kind === 'login' ? '/approve' : '/enroll', 'forward');
  };

  useEffect(() => {
    const panel = scanPanel();
    // Visible first: focus cannot return to a field inside the still hidden app.
    revealApp();
    if (slot.current) panel.moveTo(slot.current);
    endStartScreen();
    // The app's own camera view (both polarities) wherever the WebView has a camera; the plugin's
    // scanner only in a native shell whose WebView has none.
    panel.setNativeScan(scanWithPlugin() ? scanQrCode : null);
    panel.setHandler((text, kind) => open.current(text, kind));
    return () => panel.setHandler(null);
  }, []);
  useIonViewDidEnter(() => scanPanel().openAtStartOnce(async () => (await listHosts()).length > 0 && (await cameraAlreadyAllowed())));
  // The camera never stays on behind another page.
  useIonViewWillLeave(() => scanPanel().closeScanner());

  return (
    <Page title="Scan" testId="page-scan" keepFocus={() => scanPanel().scannerOpen() || scanPanel().hasFocus()}>
      <div ref={slot} />
    </Page>
  );
}
