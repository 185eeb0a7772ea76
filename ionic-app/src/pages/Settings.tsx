import { IonButton, IonInput, IonItem, IonLabel, IonList, IonSegment, IonSegmentButton } from '@ionic/react';
import { useState } from 'react';
import type { ThemeSetting } from '../models';
import { useAppState } from '../AppState';
import { Page } from '../components/Page';
import { ReplaceDeviceKey } from '../components/ReplaceDeviceKey';
import { Warning } from '../components/Warning';
import { renameDevice } from '../data/device-key';
import type { VectorCheck } from '../data/self-test';

/** Runs the protocol's test vectors through this browser's crypto (loaded on demand). */
async function runSelfTest(): Promise<VectorCheck[]> {
  const [{ runProtocolVectors }, { webCrypto }, vectors] = await Promise.all([
    import('../data/self-test'),
    import('../../../protocol/src/crypto-web.js'),
    import('../../../protocol/vectors.json'),
  ]);
  return runProtocolVectors(webCrypto, vectors.default as Parameters<typeof runProtocolVectors>[1]);
}

/** Device name and id, the theme, replacing the device key. */
export default function Settings() {
  const { device, setDevice, theme, setTheme } = useAppState();
  const [name, setName] = useState(device?.name ?? '');
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const [selfTest, setSelfTest] = useState<VectorCheck[] | 'running' | null>(null);

  const save = async () => {
    try {
      setDevice(await renameDevice(name));
      setMessage({ ok: true, text: 'Saved. Hosts you enroll with from now on see the new name.' });
    } catch (e) {
      setMessage({ ok: false, text: (e as Error).message });
    }
  };

  return (
    <Page title="Settings" testId="page-settings">
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void save();
        }}
      >
        <IonInput
          label="Device name"
          labelPlacement="stacked"
          fill="outline"
          value={name}
          maxlength={64}
          onIonInput={(e) => setName(String(e.detail.value ?? ''))}
          data-testid="settings-name"
        />
        <IonButton type="submit" fill="outline" disabled={name.trim() === '' || name.trim() === device?.name}>
          Save name
        </IonButton>
      </form>
      {message ? (
        message.ok ? <p role="status">{message.text}</p> : <Warning kind="error" title="Not saved">{message.text}</Warning>
      ) : null}

      <IonList aria-label="This device">
        <IonItem>
          <IonLabel>
            <h2>Device id</h2>
            <p className="mono" data-testid="device-id">{device?.deviceId}</p>
          </IonLabel>
        </IonItem>
        <IonItem>
          <IonLabel>
            <h2>Public key</h2>
            <p className="mono" data-testid="device-public-key">{device?.publicKey}</p>
          </IonLabel>
        </IonItem>
      </IonList>

      <h2 id="theme-label" className="section-title">Theme</h2>
      <IonSegment
        aria-labelledby="theme-label"
        value={theme}
        onIonChange={(e) => setTheme(String(e.detail.value) as ThemeSetting)}
        data-testid="theme"
      >
        <IonSegmentButton value="system" aria-label="Theme: follow the system">
          <IonLabel>System</IonLabel>
        </IonSegmentButton>
        <IonSegmentButton value="light" aria-label="Theme: light">
          <IonLabel>Light</IonLabel>
        </IonSegmentButton>
        <IonSegmentButton value="dark" aria-label="Theme: dark">
          <IonLabel>Dark</IonLabel>
        </IonSegmentButton>
      </IonSegment>
      <p className="hint">The device key never leaves this phone. The hosts hold only its public key.</p>

      <h2 className="section-title">Diagnostics</h2>
      <IonButton
        fill="outline"
        disabled={selfTest === 'running'}
        onClick={() => {
          setSelfTest('running');
          runSelfTest().then(setSelfTest, (e: Error) => setSelfTest([{ name: 'self-test', got: `threw ${e.message}`, want: 'no error' }]));
        }}
        data-testid="self-test"
      >
        Check this phone's cryptography
      </IonButton>
      {Array.isArray(selfTest) ? <SelfTestResult checks={selfTest} /> : null}

      <h2 className="section-title">Replace the device key</h2>
      <p className="hint">
        If this phone's key cannot be used (for example after restoring the app's data from a backup), or you want a new
        one: the current key is deleted, the hosts list is cleared, and every host must enroll this phone again.
      </p>
      <ReplaceDeviceKey label="Replace this phone's key…" fill="outline" />
    </Page>
  );
}

function SelfTestResult({ checks }: { checks: VectorCheck[] }) {
  const failed = checks.filter((c) => c.got !== c.want);
  return failed.length === 0 ? (
    <p role="status" data-testid="self-test-result" data-passed={checks.length} data-failed={0}>
      All {checks.length} protocol checks passed.
    </p>
  ) : (
    <Warning kind="error" title={`${failed.length} of ${checks.length} protocol checks failed`}>
      <ul data-testid="self-test-result" data-passed={checks.length - failed.length} data-failed={failed.length}>
        {failed.map((c) => (
          <li key={c.name}>
            {c.name}: got {c.got}, expected {c.want}
          </li>
        ))}
      </ul>
    </Warning>
  );
}
