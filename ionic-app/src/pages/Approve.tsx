import { IonButton, IonIcon, IonSpinner, useIonRouter } from '@ionic/react';
import { checkmarkCircle, closeCircle } from 'ionicons/icons';
import { useCallback, useEffect, useRef, useState } from 'react';
import { type DecisionAck, type SignedContext, isQrauthError } from '../../../protocol/src/index.js';
import { useAppState } from '../AppState';
import { Countdown, useSecondsLeft } from '../components/Countdown';
import { OfflineCode } from '../components/OfflineCode';
import { Page } from '../components/Page';
import { ReplaceDeviceKey } from '../components/ReplaceDeviceKey';
import { Warning } from '../components/Warning';
import { DeviceKeyError } from '../data/device-key';
import { type ScannedLogin, fetchLoginContext, loginOfflineCode, resolveLogin, sendDecision } from '../data/qrauth';
import { addHistory } from '../data/store';

type Lookup =
  | { state: 'loading' }
  | { state: 'unknown-host' }
  | { state: 'invalid'; message: string }
  /** The device key cannot be used (e.g. gone from the keystore): nothing can be signed or sent. */
  | { state: 'no-key'; message: string; lost: boolean }
  | { state: 'found'; login: ScannedLogin };

type ContextState =
  | { state: 'loading' }
  | { state: 'ok'; ctx: SignedContext }
  | { state: 'offline'; message: string }
  | { state: 'expired'; message: string }
  | { state: 'signature'; message: string }
  | { state: 'error'; message: string };

type Sent =
  | { state: 'idle' }
  | { state: 'sending'; decision: 'approve' | 'deny' }
  | { state: 'done'; decision: 'approve' | 'deny'; ack: DecisionAck }
  | { state: 'unsent'; message: string }
  | { state: 'no-key'; message: string; lost: boolean };

function contextError(e: unknown): ContextState {
  const message = e instanceof Error ? e.message : String(e);
  if (isQrauthError(e, 'QRA_ERR_HOST_OFFLINE')) return { state: 'offline', message };
  if (isQrauthError(e, 'QRA_ERR_EXPIRED') || isQrauthError(e, 'QRA_ERR_UNKNOWN_SESSION')) return { state: 'expired', message };
  if (isQrauthError(e, 'QRA_ERR_SIGNATURE')) return { state: 'signature', message };
  return { state: 'error', message };
}

/**
 * Who is logging in where, from where; Approve / Deny; the offline code, always visible except
 * when the login details fail their signature check (then it could complete a login whose
 * details nobody could verify).
 */
export default function Approve() {
  const { scanned, scanSeq } = useAppState();
  const router = useIonRouter();
  const [lookup, setLookup] = useState<Lookup>({ state: 'loading' });
  const [code, setCode] = useState<string | null>(null);
  const [context, setContext] = useState<ContextState>({ state: 'loading' });
  const [sent, setSent] = useState<Sent>({ state: 'idle' });
  const generation = useRef(0);

  const loadContext = useCallback(async (login: ScannedLogin, gen: number) => {
    setContext({ state: 'loading' });
    try {
      const ctx = await fetchLoginContext(login);
      if (gen === generation.current) setContext({ state: 'ok', ctx });
    } catch (e) {
      if (gen !== generation.current) return;
      // The key went unusable since the code was computed (the relay handshake needs it too):
      // the key's problem, not the relay's or the host's; nothing was sent.
      if (e instanceof DeviceKeyError) setLookup({ state: 'no-key', message: e.message, lost: e.lost });
      else setContext(contextError(e));
    }
  }, []);

  useEffect(() => {
    const gen = ++generation.current;
    setLookup({ state: 'loading' });
    setCode(null);
    setSent({ state: 'idle' });
    setContext({ state: 'loading' });
    if (!scanned) return;
    void (async () => {
      let login: ScannedLogin;
      try {
        login = await resolveLogin(scanned);
      } catch (e) {
        if (gen !== generation.current) return;
        // Unknown host: say so and send nothing, not even a context request.
        setLookup(isQrauthError(e, 'QRA_ERR_UNKNOWN_HOST') ? { state: 'unknown-host' } : { state: 'invalid', message: (e as Error).message });
        return;
      }
      if (gen !== generation.current) return;
      // The code first: it needs no network, so it shows even when nothing else will. It is also
      // the first use of the device key: a key that cannot be used stops everything here, before
      // anything is sent (the relay handshake would need the key too).
      let offlineCode: string | null = null;
      try {
        offlineCode = await loginOfflineCode(login);
      } catch (e) {
        if (e instanceof DeviceKeyError) {
          if (gen === generation.current) setLookup({ state: 'no-key', message: e.message, lost: e.lost });
          return;
        }
      }
      if (gen !== generation.current) return;
      setLookup({ state: 'found', login });
      setCode(offlineCode);
      await loadContext(login, gen);
    })();
  }, [scanned, scanSeq, loadContext]);

  const ctx = context.state === 'ok' ? context.ctx : undefined;
  const secondsLeft = useSecondsLeft(ctx?.exp);
  const expired = secondsLeft === 0;

  const decide = async (decision: 'approve' | 'deny') => {
    if (lookup.state !== 'found' || !ctx) return;
    const gen = generation.current;
    setSent({ state: 'sending', decision });
    const base = { time: Date.now(), hostId: ctx.hostId, hostname: ctx.hostname, user: ctx.user, rhost: ctx.rhost, service: ctx.service, decision };
    try {
      const ack = await sendDecision(lookup.login, ctx, decision);
      if (gen !== generation.current) return;
      setSent({ state: 'done', decision, ack });
      await addHistory({ ...base, outcome: ack.ok ? ack.result : 'rejected', ...(ack.ok ? {} : { detail: ack.message }) });
    } catch (e) {
      const message = (e as Error).message;
      if (gen !== generation.current) return;
      if (e instanceof DeviceKeyError) {
        setSent({ state: 'no-key', message, lost: e.lost }); // nothing was signed, so nothing was sent
        return;
      }
      setSent({ state: 'unsent', message });
      await addHistory({ ...base, outcome: 'unsent', detail: message });
    }
  };

  if (!scanned) {
    return (
      <Page title="Approve login" back="/scan" testId="page-approve">
        <p>Nothing scanned yet.</p>
        <IonButton expand="block" onClick={() => router.push('/scan', 'back')}>
          Scan a QR code
        </IonButton>
      </Page>
    );
  }

  const offline = context.state === 'offline' || sent.state === 'unsent';
  // A context not signed by the enrolled host key means someone is tampering with this login:
  // the code would let the person finish a login whose details could not be verified.
  const codeHidden = context.state === 'signature';
  return (
    <Page title="Approve login" back="/scan" testId="page-approve">
      {lookup.state === 'loading' ? <IonSpinner aria-label="Reading the code" /> : null}
      {lookup.state === 'unknown-host' ? (
        <Warning kind="unknown-host" title="Unknown host">
          This QR belongs to a host this phone has not enrolled with. Nothing was sent. If this is your host, run{' '}
          <code>qrauth enroll</code> on it and scan that code first.
        </Warning>
      ) : null}
      {lookup.state === 'invalid' ? <Warning kind="error" title="Not a valid login code">{lookup.message}</Warning> : null}
      {lookup.state === 'no-key' ? (
        <>
          <Warning kind="error" title="This phone's device key cannot be used">
            {lookup.message}. Nothing was sent.
          </Warning>
          {lookup.lost ? <ReplaceDeviceKey label="Make a new device key" /> : null}
        </>
      ) : null}

      {lookup.state === 'found' ? (
        <>
          {offline ? (
            <Warning kind="offline" title="Cannot reach the relay">
              {context.state === 'offline' ? context.message : sent.state === 'unsent' ? sent.message : ''}. Type the code below at
              your terminal's prompt instead; it works without a network.
              <div>
                <IonButton size="small" fill="outline" onClick={() => void loadContext(lookup.login, generation.current)} data-testid="retry">
                  Try again
                </IonButton>
              </div>
            </Warning>
          ) : null}
          {offline && !codeHidden ? <OfflineCode code={code} prominent /> : null}

          {context.state === 'loading' ? (
            <p className="loading" role="status">
              <IonSpinner name="dots" aria-hidden="true" /> Asking {lookup.login.host.hostname} who is logging in…
            </p>
          ) : null}
          {context.state === 'expired' ? (
            <Warning kind="expired" title="This login has expired">{context.message}</Warning>
          ) : null}
          {context.state === 'signature' ? (
            <Warning kind="signature" title="Signature check failed: do not approve">
              {context.message}. Someone between this phone and the host may be tampering with the login.
              <p data-testid="offline-code-hidden">The offline code is hidden because this login could not be verified.</p>
            </Warning>
          ) : null}
          {context.state === 'error' ? <Warning kind="error" title="The host refused">{context.message}</Warning> : null}

          {ctx ? (
            <section className="login-context" aria-labelledby="login-question" data-testid="login-context">
              <h2 id="login-question" className="login-question">
                Log in as <strong data-testid="ctx-user">{ctx.user}</strong> to <strong data-testid="ctx-host">{ctx.hostname}</strong>?
              </h2>
              <dl className="context-facts">
                <dt>From</dt>
                <dd data-testid="ctx-rhost">{ctx.rhost || 'unknown address'}</dd>
                <dt>Service</dt>
                <dd data-testid="ctx-service">{ctx.service}</dd>
                <dt>Time left</dt>
                <dd>{secondsLeft !== undefined ? <Countdown secondsLeft={secondsLeft} /> : null}</dd>
              </dl>
              {expired && sent.state !== 'done' ? <Warning kind="expired" title="This login has expired">Start the login again.</Warning> : null}

              {sent.state === 'done' ? (
                sent.ack.ok ? (
                  <div className={`result result-${sent.ack.result}`} role="status" data-testid="decision-result">
                    <IonIcon icon={sent.ack.result === 'approved' ? checkmarkCircle : closeCircle} aria-hidden="true" />
                    {sent.ack.result === 'approved' ? 'Approved. Press Enter in your terminal if it is waiting.' : 'Denied. The login was refused.'}
                  </div>
                ) : (
                  <Warning kind={sent.ack.code === 'QRA_ERR_EXPIRED' ? 'expired' : 'error'} title="The host did not accept this">
                    {sent.ack.message}
                  </Warning>
                )
              ) : sent.state === 'no-key' ? (
                <>
                  <Warning kind="error" title="This phone's device key cannot be used">
                    {sent.message}. Nothing was sent.
                  </Warning>
                  {sent.lost ? <ReplaceDeviceKey label="Make a new device key" /> : null}
                </>
              ) : (
                <div className="decision-buttons">
                  <IonButton
                    color="success"
                    size="large"
                    expand="block"
                    disabled={sent.state === 'sending' || expired}
                    onClick={() => void decide('approve')}
                    aria-label={`Approve login as ${ctx.user} to ${ctx.hostname}`}
                    data-testid="approve"
                  >
                    {sent.state === 'sending' && sent.decision === 'approve' ? <IonSpinner name="dots" aria-hidden="true" /> : 'Approve'}
                  </IonButton>
                  <IonButton
                    color="danger"
                    size="large"
                    expand="block"
                    disabled={sent.state === 'sending' || expired}
                    onClick={() => void decide('deny')}
                    aria-label={`Deny login as ${ctx.user} to ${ctx.hostname}`}
                    data-testid="deny"
                  >
                    {sent.state === 'sending' && sent.decision === 'deny' ? <IonSpinner name="dots" aria-hidden="true" /> : 'Deny'}
                  </IonButton>
                </div>
              )}
            </section>
          ) : null}

          {!offline && !codeHidden ? <OfflineCode code={code} prominent={false} /> : null}
        </>
      ) : null}
    </Page>
  );
}
