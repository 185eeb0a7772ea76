import { IonButton, IonContent, IonInput, IonPage, IonSpinner } from '@ionic/react';
import { useState } from 'react';
import { useAppState } from '../AppState';
import { useFocusHeading } from '../components/Page';
import { Warning } from '../components/Warning';
import { createDevice } from '../data/device-key';

/** First start: make the device key and name this phone. */
export default function Welcome() {
  const { setDevice } = useAppState();
  const [name, setName] = useState('My phone');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const heading = useFocusHeading<HTMLHeadingElement>();

  const create = async () => {
    setBusy(true);
    setError(null);
    try {
      setDevice(await createDevice(name));
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <IonPage data-testid="page-welcome">
      <IonContent className="ion-padding">
        <div className="page-body welcome">
          <img src="/icons/icon.svg" alt="" width="96" height="96" className="welcome-logo" />
          <h1 tabIndex={-1} ref={heading} data-testid="page-heading">
            Welcome to qrauth
          </h1>
          <p>
            This app approves logins (ssh, sudo) by scanning the QR code your terminal shows. First it makes a key that
            identifies this phone. The key stays on this phone and is never sent anywhere.
          </p>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              void create();
            }}
          >
            <IonInput
              label="Name of this phone"
              labelPlacement="stacked"
              fill="outline"
              value={name}
              maxlength={64}
              helperText="Shown on the hosts you enroll with, e.g. “Alice's Pixel”."
              onIonInput={(e) => setName(String(e.detail.value ?? ''))}
              data-testid="device-name-input"
            />
            {error ? <Warning kind="error" title="Cannot make the key">{error}</Warning> : null}
            <IonButton type="submit" expand="block" size="large" disabled={busy || name.trim() === ''} data-testid="create-device">
              {busy ? <IonSpinner name="dots" aria-label="Making the key" /> : 'Make the device key'}
            </IonButton>
          </form>
        </div>
      </IonContent>
    </IonPage>
  );
}
