import { IonButton, IonIcon, IonTextarea, useIonRouter, useIonViewDidEnter, useIonViewWillLeave } from '@ionic/react';
import { camera } from 'ionicons/icons';
import { useState } from 'react';
import { payloadKind } from '../../../protocol/src/index.js';
import { useAppState } from '../AppState';
import { Page } from '../components/Page';
import { QrScanner } from '../components/QrScanner';
import { Warning } from '../components/Warning';
import { cameraAlreadyAllowed, isNativePlatform, scanQrCode } from '../data/platform';
import { listHosts } from '../data/store';

/** Opening the app goes straight to the camera once, when there is a host to log in to. */
let openedAtStart = false;

/** Scan a login or enrollment QR with the camera, or paste its text. */
export default function Scan() {
  const { setScanned } = useAppState();
  const router = useIonRouter();
  const [typed, setTyped] = useState('');
  const [error, setError] = useState<string | null>(null);
  /** native: the plugin's scanner is open; web: our scanner view is open */
  const [scanning, setScanning] = useState(false);

  const open = (text: string) => {
    const kind = payloadKind(text);
    if (!kind) {
      setError('This is not a qrauth code. Login codes start with QRA1:, enrollment codes with QRE1:.');
      return;
    }
    setError(null);
    setScanned(text.trim());
    setTyped('');
    router.push(kind === 'login' ? '/approve' : '/enroll', 'forward');
  };

  const scan = async () => {
    setError(null);
    setScanning(true);
    if (!isNativePlatform()) return; // QrScanner below does the rest
    try {
      const text = await scanQrCode('Point the camera at the QR code in your terminal');
      if (text !== null) open(text);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setScanning(false);
    }
  };

  useIonViewDidEnter(() => {
    if (openedAtStart) return;
    openedAtStart = true;
    void (async () => {
      if ((await listHosts()).length > 0 && (await cameraAlreadyAllowed())) void scan();
    })();
  });
  // The camera never stays on behind another page.
  useIonViewWillLeave(() => {
    if (!isNativePlatform()) setScanning(false);
  });

  return (
    <Page title="Scan" testId="page-scan">
      <p>Scan the QR code your terminal shows to approve a login, or the one from <code>qrauth enroll</code> to add a host.</p>
      <IonButton expand="block" size="large" className="scan-button" onClick={() => void scan()} disabled={scanning} data-testid="scan-camera">
        <IonIcon icon={camera} slot="start" aria-hidden="true" />
        {scanning ? 'Scanning…' : 'Scan QR code'}
      </IonButton>
      {scanning && !isNativePlatform() ? (
        <QrScanner
          onResult={(text) => {
            setScanning(false);
            open(text);
          }}
          onClose={(message) => {
            setScanning(false);
            if (message) setError(`the camera could not scan: ${message}`);
          }}
        />
      ) : null}
      {error ? <Warning kind="error" title="Cannot use this code">{error}</Warning> : null}
      <form
        className="paste-form"
        onSubmit={(e) => {
          e.preventDefault();
          open(typed);
        }}
      >
        <IonTextarea
          label="Or paste the code's text"
          labelPlacement="stacked"
          fill="outline"
          placeholder="QRA1:…"
          autoGrow
          rows={2}
          value={typed}
          autocapitalize="off"
          spellcheck={false}
          onIonInput={(e) => setTyped(String(e.detail.value ?? ''))}
          data-testid="payload-input"
        />
        <IonButton type="submit" expand="block" fill="outline" disabled={typed.trim() === ''} data-testid="payload-submit">
          Continue
        </IonButton>
      </form>
    </Page>
  );
}
