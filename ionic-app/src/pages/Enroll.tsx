import { IonButton, IonSpinner, useIonRouter } from '@ionic/react';
import { Fragment, useEffect, useRef, useState } from 'react';
import { type EnrollAck } from '../../../protocol/src/index.js';
import { useAppState } from '../AppState';
import { Page } from '../components/Page';
import { ReplaceDeviceKey } from '../components/ReplaceDeviceKey';
import { Warning } from '../components/Warning';
import { DeviceKeyError } from '../data/device-key';
import { answerText } from '../data/error-text';
import { PasskeyError } from '../data/passkey';
import { type EnrollAnswer, type EnrollOffer, ENROLL_ANSWER_WAIT_MS, prepareEnroll, sendEnroll, waitForEnrollAnswer } from '../data/qrauth';

type Step =
  | { state: 'loading' }
  | { state: 'invalid'; message: string; title: string; keyProblem: boolean }
  /** `passkeyCancelled`: the person cancelled making the passkey; nothing was sent, Enroll asks again. */
  | { state: 'ready'; offer: EnrollOffer; passkeyCancelled?: boolean }
  | { state: 'sending'; offer: EnrollOffer }
  /** The host accepted the request; its terminal now shows the fingerprint and asks the person. */
  | { state: 'waiting'; offer: EnrollOffer; hostname: string }
  /** The terminal's answer (signed by the host), or no answer in time; `legacy`: a host that reports none. */
  | { state: 'answered'; offer: EnrollOffer; hostname: string; answer: EnrollAnswer | 'legacy' }
  | { state: 'refused'; offer: EnrollOffer; ack: Extract<EnrollAck, { ok: false }> }
  | { state: 'failed'; offer: EnrollOffer; message: string; offline: boolean }
  /** The relay made up or changed the host's acceptance or the terminal's answer: nothing was saved. */
  | { state: 'changed'; offer: EnrollOffer; message: string }
  /** The device key cannot be used: nothing was signed or sent. */
  | { state: 'no-key'; offer: EnrollOffer; message: string; lost: boolean };

const KEY_PROBLEM = "This phone's device key cannot be used";

/**
 * After scanning a QRE1 code, in the order the person follows: the phone says "tap Enroll, then
 * type y on the terminal only if it shows <fingerprint>"; the tap sends the request, and the
 * terminal shows the fingerprint as it arrives; the phone then waits for the terminal's answer
 * (signed by the host) and says what it was. The host is trusted only on a confirmation.
 */
export default function Enroll() {
  const { scanned, scanSeq, device } = useAppState();
  const router = useIonRouter();
  const [step, setStep] = useState<Step>({ state: 'loading' });
  /** Which scan the screen shows: answers for an earlier one are not shown. */
  const generation = useRef(0);

  useEffect(() => {
    const gen = ++generation.current;
    if (!scanned) return;
    setStep({ state: 'loading' });
    prepareEnroll(scanned).then(
      (offer) => gen === generation.current && setStep({ state: 'ready', offer }),
      // The fingerprint is the first use of the device key: a key that cannot be used shows here.
      (e: Error) => {
        if (gen !== generation.current) return;
        // Offer a new key only when this one is lost for good (not when a locked phone refused a read).
        const keyProblem = e instanceof DeviceKeyError && e.lost;
        setStep({ state: 'invalid', message: e.message, title: e instanceof DeviceKeyError ? KEY_PROBLEM : 'Not a valid enrollment code', keyProblem });
      },
    );
  }, [scanned, scanSeq]);

  const send = async (offer: EnrollOffer) => {
    const gen = generation.current;
    const current = () => gen === generation.current;
    setStep({ state: 'sending', offer });
    try {
      const sent = await sendEnroll(offer, device?.name ?? 'phone');
      if (!current()) return;
      // The fingerprint covers the passkey made just now: this is the one the terminal shows.
      offer = { ...offer, fingerprint: sent.fingerprint };
      if (!sent.ack.ok) {
        setStep({ state: 'refused', offer, ack: sent.ack });
        return;
      }
      const hostname = sent.ack.hostname;
      if (sent.outcome === undefined) {
        setStep({ state: 'answered', offer, hostname, answer: 'legacy' });
        return;
      }
      let answer: EnrollAnswer;
      if (sent.outcome === 'pending') {
        setStep({ state: 'waiting', offer, hostname });
        // Keeps asking even if the person leaves this screen: a confirmation still saves the host.
        answer = await waitForEnrollAnswer(offer, sent.msg, () => false);
      } else {
        answer = sent.outcome;
      }
      if (current()) setStep({ state: 'answered', offer, hostname, answer });
    } catch (e) {
      if (!current()) return;
      const err = e as Error & { code?: string };
      if (e instanceof PasskeyError && e.problem === 'cancelled') setStep({ state: 'ready', offer, passkeyCancelled: true });
      // No passkey after all (the phone refused to make one): enroll as a phone without one, and say what that means.
      else if (e instanceof PasskeyError) setStep({ state: 'ready', offer: { ...offer, passkeyPlanned: false } });
      else if (e instanceof DeviceKeyError) setStep({ state: 'no-key', offer, message: err.message, lost: e.lost });
      else if (err.code === 'QRA_ERR_SIGNATURE') setStep({ state: 'changed', offer, message: err.message });
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
  // With a passkey to make, the fingerprint exists only after the tap (it covers the passkey).
  const fingerprintKnown = offer !== undefined && !(offer.passkeyPlanned && (step.state === 'ready' || step.state === 'sending'));
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
          {(step.state === 'ready' || step.state === 'sending') && offer.passkeyPlanned ? (
            <section className="fingerprint-box" aria-labelledby="fp-title" data-testid="enroll-instructions">
              <h2 id="fp-title">Tap Enroll: this phone asks for your fingerprint, face or PIN</h2>
              <p data-testid="enroll-passkey-step">
                It makes a passkey for approving logins on {offer.payload.hostname}, so that each approval there proves it was you. Then both
                screens show a fingerprint to compare.
              </p>
            </section>
          ) : null}
          {step.state === 'ready' && step.passkeyCancelled ? (
            <Warning kind="info" title="Passkey not made">
              <span data-testid="enroll-passkey-cancelled">The fingerprint, face or PIN check was cancelled. Nothing was sent. Tap Enroll to try again.</span>
            </Warning>
          ) : null}
          {step.state === 'ready' && !offer.passkeyPlanned ? (
            <Warning kind="info" title="No passkey on this phone">
              <span data-testid="enroll-no-passkey">
                This phone (or browser) cannot make a passkey here, so it enrolls without one. Its approvals work where the host does not
                require your fingerprint, face or PIN; a host or command that requires it (for example sudo with uv=required) will refuse them.
              </span>
            </Warning>
          ) : null}
          {fingerprintKnown && (step.state === 'ready' || step.state === 'sending' || step.state === 'waiting') ? (
            <section className="fingerprint-box" aria-labelledby="fp-title" data-testid="enroll-instructions">
              <h2 id="fp-title">
                {step.state === 'waiting' ? 'Now answer on the terminal' : `Tap Enroll, then type y on the terminal only if it shows`}
              </h2>
              {step.state === 'waiting' ? (
                <p data-testid="enroll-step">
                  The terminal shows a fingerprint now. Type <kbd>y</kbd> there only if it is this one; otherwise type <kbd>n</kbd>:
                </p>
              ) : null}
              <p className="fingerprint" data-testid="enroll-fingerprint">
                {offer.fingerprint.split('-').map((group, i) => (
                  // A line may break only between groups (two of four on a narrow phone), never inside one.
                  <Fragment key={i}>
                    {i > 0 ? (
                      <>
                        -<wbr />
                      </>
                    ) : null}
                    {group}
                  </Fragment>
                ))}
              </p>
              <p className="hint">If the terminal shows another fingerprint, type n there: someone may be swapping keys.</p>
            </section>
          ) : null}
          {offer.known && step.state === 'ready' ? (
            <Warning kind="info" title="Already enrolled">This phone already knows {offer.payload.hostname}; enrolling again updates it.</Warning>
          ) : null}
          {step.state === 'ready' || step.state === 'sending' ? (
            <IonButton expand="block" size="large" disabled={step.state === 'sending'} onClick={() => void send(offer)} data-testid="enroll-send">
              {step.state === 'sending' ? <IonSpinner name="dots" aria-label="Enrolling" /> : `Enroll with ${offer.payload.hostname}`}
            </IonButton>
          ) : null}
          {step.state === 'waiting' ? (
            <p className="loading" role="status" data-testid="enroll-waiting">
              <IonSpinner name="dots" aria-hidden="true" /> Waiting for the answer on {step.hostname}'s terminal…
            </p>
          ) : null}
          {step.state === 'answered' && (step.answer === 'confirmed' || step.answer === 'legacy') ? (
            <div className="result result-approved" role="status" data-testid="enroll-result" data-outcome={step.answer}>
              {step.answer === 'confirmed'
                ? `Enrolled: ${step.hostname}'s terminal confirmed. This phone now approves logins there.`
                : `Sent to ${step.hostname}. Type y on its terminal only if it shows ${step.offer.fingerprint}. This phone now trusts ${step.hostname}.`}
            </div>
          ) : null}
          {step.state === 'answered' && step.answer === 'refused' ? (
            <Warning kind="error" title="Not enrolled: the terminal said no">
              <span data-testid="enroll-result" data-outcome="refused">
                The person at {step.hostname}'s terminal did not confirm (or the devices file could not be written). Nothing was saved on
                this phone. Run <code>qrauth enroll</code> again to retry.
              </span>
            </Warning>
          ) : null}
          {step.state === 'answered' && step.answer === 'timed-out' ? (
            <Warning kind="expired" title="No answer from the terminal">
              <span data-testid="enroll-result" data-outcome="timed-out">
                {step.hostname}'s terminal did not answer within {Math.round(ENROLL_ANSWER_WAIT_MS / 60_000)} minutes. Nothing was saved on this
                phone. If the terminal still asks, type n there and run <code>qrauth enroll</code> again.
              </span>
            </Warning>
          ) : null}
          {step.state === 'refused' ? (
            <Warning kind="error" title="The host refused the enrollment">{answerText(step.ack.code)}</Warning>
          ) : null}
          {step.state === 'changed' ? (
            <Warning kind="signature" title="Not enrolled: the answer did not come from the host">
              {step.message}
            </Warning>
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
          {step.state === 'answered' && (step.answer === 'confirmed' || step.answer === 'legacy') ? (
            <IonButton expand="block" fill="outline" onClick={() => router.push('/hosts', 'root')} data-testid="enroll-to-hosts">
              See enrolled hosts
            </IonButton>
          ) : null}
        </>
      ) : null}
    </Page>
  );
}
