import { IonButton, IonSpinner, useIonRouter } from '@ionic/react';
import { useEffect, useState } from 'react';
import { type EnrollAck } from '../../../protocol/src/index.js';
import { useAppState } from '../AppState';
import { Page } from '../components/Page';
import { ReplaceDeviceKey } from '../components/ReplaceDeviceKey';
import { Warning } from '../components/Warning';
import { DeviceKeyError } from '../data/device-key';
import { type EnrollOffer, prepareEnroll, sendEnroll } from '../data/qrauth';

type Step =
  | { state: 'loading' }
  | { state: 'invalid'; message: string; title: string; keyProblem: boolean }
  | { state: 'ready'; offer: EnrollOffer }
  | { state: 'sending'; offer: EnrollOffer }
  | { state: 'done'; offer: EnrollOffer; ack: EnrollAck }
  | { state: 'failed'; offer: EnrollOffer; message: string; offline: boolean }
  /** The device key cannot be used: nothing was signed or sent. */
  | { state: 'no-key'; offer: EnrollOffer; message: string; lost: boolean };

const KEY_PROBLEM = "This phone's device key cannot be used";

/** After scanning a QRE1 code: shows the host and the fingerprint to compare, then enrolls. */
export default function Enroll() {
  const { scanned, scanSeq, device } = useAppState();
  const router = useIonRouter();
  const [step, setStep] = useState<Step>({ state: 'loading' });

  useEffect(() => {
    if (!scanned) return;
    setStep({ state: 'loading' });
    prepareEnroll(scanned).then(
      (offer) => setStep({ state: 'ready', offer }),
      // The fingerprint is the first use of the device key: a key that cannot be used shows here.
      (e: Error) => {
        // Offer a new key only when this one is lost for good (not when a locked phone refused a read).
        const keyProblem = e instanceof DeviceKeyError && e.lost;
        setStep({ state: 'invalid', message: e.message, title: e instanceof DeviceKeyError ? KEY_PROBLEM : 'Not a valid enrollment code', keyProblem });
      },
    );
  }, [scanned, scanSeq]);

  const send = async (offer: EnrollOffer) => {
    setStep({ state: 'sending', offer });
    try {
      setStep({ state: 'done', offer, ack: await sendEnroll(offer) });
    } catch (e) {
      const err = e as Error & { code?: string };
      if (e instanceof DeviceKeyError) setStep({ state: 'no-key', offer, message: err.message, lost: e.lost });
      else setStep({ state: 'failed', offer, message: err.message, offline: err.code === 'QRA_ERR_HOST_OFFLINE' });
    }
  };

  if (!scanned) {
    return (
      <Page title="Enroll" back="/scan" testId="page-enroll">
        <p>Scan the QR code that <code>qrauth enroll</code> shows on the host.</p>
        <IonButton expand="block" onClick={() => router.push('/scan', 'back')}>Scan a QR code</IonButton>
      </Page>
    );
  }

  const offer = step.state === 'loading' || step.state === 'invalid' ? undefined : step.offer;
  return (
    <Page title="Enroll with a host" back="/scan" testId="page-enroll">
      {step.state === 'loading' ? <IonSpinner aria-label="Reading the code" /> : null}
      {step.state === 'invalid' ? <Warning kind="error" title={step.title}>{step.message}</Warning> : null}
      {step.state === 'invalid' && step.keyProblem ? <ReplaceDeviceKey label="Make a new device key" /> : null}
      {offer ? (
        <>
          <dl className="context-facts">
            <dt>Host</dt>
            <dd data-testid="enroll-hostname">{offer.payload.hostname}</dd>
            <dt>Relay</dt>
            <dd data-testid="enroll-relay">{offer.payload.relayUrl}</dd>
            <dt>This phone</dt>
            <dd>{device?.name}</dd>
          </dl>
          <section className="fingerprint-box" aria-labelledby="fp-title">
            <h2 id="fp-title">Check that your terminal shows the same</h2>
            <p className="fingerprint" data-testid="enroll-fingerprint" aria-label={`Fingerprint ${offer.fingerprint.split('').join(' ')}`}>
              {offer.fingerprint}
            </p>
            <p className="hint">If it differs, do not confirm on the terminal: someone may be swapping keys.</p>
          </section>
          {offer.known && step.state === 'ready' ? (
            <Warning kind="info" title="Already enrolled">This phone already knows {offer.payload.hostname}; enrolling again updates it.</Warning>
          ) : null}
          {step.state === 'ready' || step.state === 'sending' ? (
            <IonButton expand="block" size="large" disabled={step.state === 'sending'} onClick={() => void send(offer)} data-testid="enroll-send">
              {step.state === 'sending' ? <IonSpinner name="dots" aria-label="Enrolling" /> : `Enroll with ${offer.payload.hostname}`}
            </IonButton>
          ) : null}
          {step.state === 'done' && step.ack.ok ? (
            <div className="result result-approved" role="status" data-testid="enroll-result">
              Sent to {step.offer.payload.hostname}. Confirm on the terminal if it shows {step.offer.fingerprint}. This phone now
              trusts {step.offer.payload.hostname}.
            </div>
          ) : null}
          {step.state === 'done' && !step.ack.ok ? (
            <Warning kind="error" title="The host refused the enrollment">{step.ack.message}</Warning>
          ) : null}
          {step.state === 'no-key' ? (
            <>
              <Warning kind="error" title={KEY_PROBLEM}>{step.message}. Nothing was sent.</Warning>
              {step.lost ? <ReplaceDeviceKey label="Make a new device key" /> : null}
            </>
          ) : null}
          {step.state === 'failed' ? (
            <Warning kind={step.offline ? 'offline' : 'error'} title={step.offline ? 'Cannot reach the relay' : 'Enrollment failed'}>
              {step.message}
              <div>
                <IonButton size="small" fill="outline" onClick={() => void send(step.offer)}>Try again</IonButton>
              </div>
            </Warning>
          ) : null}
          {step.state === 'done' && step.ack.ok ? (
            <IonButton expand="block" fill="outline" onClick={() => router.push('/hosts', 'root')} data-testid="enroll-to-hosts">
              See enrolled hosts
            </IonButton>
          ) : null}
        </>
      ) : null}
    </Page>
  );
}
