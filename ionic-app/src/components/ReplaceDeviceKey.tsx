import { IonButton, IonSpinner, useIonAlert } from '@ionic/react';
import { useState } from 'react';
import { useAppState } from '../AppState';
import { resetDevice } from '../data/device-key';
import { Warning } from './Warning';

/**
 * "Make a new device key": after a confirmation that says what it costs, deletes this phone's key
 * and its enrolled hosts (resetDevice; History stays) and goes to the first-start screen, which
 * names the phone and makes the new key. For a key that cannot be used (e.g. gone from the
 * keystore after a backup restore), or a person who wants a new one. Nothing is sent anywhere.
 */
export function ReplaceDeviceKey({ label, fill = 'solid' }: { label: string; fill?: 'solid' | 'outline' }) {
  const { setDevice, setScanned } = useAppState();
  const [presentAlert] = useIonAlert();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const replace = async () => {
    setBusy(true);
    setError(null);
    try {
      await resetDevice();
    } catch (e) {
      setError((e as Error).message);
      setBusy(false);
      return;
    }
    // The code just scanned was for the old key's hosts; after the new key is made, start at Scan
    // (the router reads the address when it mounts again).
    setScanned(null);
    window.history.replaceState(null, '', '/scan');
    setDevice(null); // → the first-start screen
  };

  const confirm = () =>
    void presentAlert({
      header: 'Make a new device key?',
      message:
        "This phone's current key is deleted and stops working for good. Every host must enroll this phone again: run qrauth enroll there. " +
        'The list of enrolled hosts on this phone is cleared; History is kept. Nothing is sent anywhere.',
      htmlAttributes: { 'data-testid': 'replace-key-alert' },
      buttons: [
        { text: 'Cancel', role: 'cancel', htmlAttributes: { 'data-testid': 'replace-key-cancel' } },
        {
          text: 'Delete the key and make a new one',
          role: 'destructive',
          cssClass: 'alert-button-danger',
          handler: () => void replace(),
          htmlAttributes: { 'data-testid': 'replace-key-confirm' },
        },
      ],
    });

  return (
    <>
      <IonButton color="danger" fill={fill} disabled={busy} onClick={confirm} data-testid="replace-key">
        {busy ? <IonSpinner name="dots" aria-label="Deleting the key" /> : label}
      </IonButton>
      {error ? <Warning kind="error" title="The key was not replaced">{error}</Warning> : null}
    </>
  );
}
