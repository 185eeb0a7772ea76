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
import { answerText } from '../data/error-text';
import { PasskeyError } from '../data/passkey';
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
  | { state: 'unsent'; decision: 'approve' | 'deny'; message: string }
  | { state: 'no-key'; decision: 'approve' | 'deny'; message: string; lost: boolean }
  /**
   * The passkey check did not pass and the login is still open: cancelled on the phone (nothing
   * sent), or the host refused the assertion (no fingerprint/face/PIN). Approve can be tapped again.
   */
  | { state: 'passkey'; title: string; message: string };

/** Local wall-clock time of a unix-seconds instant, to the second. */
function clock(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** A lease duration as a person says it: 15 min, 1 h, 8 h. */
function leaseLabel(seconds: number): string {
  return seconds >= 3600 && seconds % 3600 === 0 ? `${seconds / 3600} h` : `${Math.max(1, Math.round(seconds / 60))} min`;
}

/** What a PAM service name means to a person, for the common ones. */
function serviceHint(service: string): string | null {
  if (service === 'sshd') return 'remote login over SSH';
  if (service === 'sudo') return 'run a command as another user';
  if (service === 'su') return 'switch user';
  if (service === 'login') return 'console login';
  return null;
}

function contextError(e: unknown): ContextState {
  const message = e instanceof Error ? e.message : String(e);
  if (isQrauthError(e, 'QRA_ERR_HOST_OFFLINE')) return { state: 'offline', message };
  if (isQrauthError(e, 'QRA_ERR_EXPIRED') || isQrauthError(e, 'QRA_ERR_UNKNOWN_SESSION')) return { state: 'expired', message };
  if (isQrauthError(e, 'QRA_ERR_SIGNATURE')) return { state: 'signature', message };
  return { state: 'error', message };
}

/**
 * Who is logging in where, from where, and when; Approve / Deny. The offline code is an approval
 * on its own (a phisher who showed someone his QR only has to ask for "the number on your
 * screen"), so it is not in the page unless it is needed: when the relay cannot be reached
 * (after the person confirms they started this login at their own terminal, since nothing says
 * who is logging in), or after an explicit "Can't connect? Show the code", then with the host,
 * user and source it logs in and a plain warning. Never after Deny, expiry or any decision the
 * host accepted; never beside details that fail their signature check. Every showing goes into
 * History (the host's log records its use).
 */
export default function Approve() {
  const { scanned, scanSeq } = useAppState();
  const router = useIonRouter();
  const [lookup, setLookup] = useState<Lookup>({ state: 'loading' });
  const [code, setCode] = useState<string | null>(null);
  const [context, setContext] = useState<ContextState>({ state: 'loading' });
  const [sent, setSent] = useState<Sent>({ state: 'idle' });
  /** The lease asked for with the last approval ("for 1 h from this key"), if any. */
  const [leaseAsked, setLeaseAsked] = useState<number | undefined>(undefined);
  /** The person said they are at their own terminal and started this login (unverified details only). */
  const [ownLoginConfirmed, setOwnLoginConfirmed] = useState(false);
  /** The person asked for the code beside verified details ("Can't connect? Show the code"). */
  const [codeAsked, setCodeAsked] = useState(false);
  /** A showing of the code is recorded in History once per scan. */
  const codeRecorded = useRef(false);
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
    setOwnLoginConfirmed(false);
    setCodeAsked(false);
    codeRecorded.current = false;
    setSent({ state: 'idle' });
    setLeaseAsked(undefined);
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
      // The code first: it needs no network, so it is ready even when nothing else will be. It is
      // also the first use of the device key: a key that cannot be used stops everything here, before
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

  const decide = async (decision: 'approve' | 'deny', leaseSeconds?: number) => {
    if (lookup.state !== 'found' || !ctx) return;
    const gen = generation.current;
    setLeaseAsked(leaseSeconds);
    setSent({ state: 'sending', decision });
    const base = { time: Date.now(), hostId: ctx.hostId, hostname: ctx.hostname, user: ctx.user, rhost: ctx.rhost, service: ctx.service, decision };
    try {
      const ack = await sendDecision(lookup.login, ctx, decision, leaseSeconds);
      if (gen !== generation.current) return;
      if (!ack.ok && (ack.code === 'QRA_ERR_USER_VERIFICATION' || ack.code === 'QRA_ERR_PASSKEY')) {
        // The host keeps the login open after these: say why, and let the person try again.
        setSent({ state: 'passkey', title: 'Your fingerprint, face or PIN is needed', message: answerText(ack.code) });
        return;
      }
      setSent({ state: 'done', decision, ack });
      await addHistory({ ...base, outcome: ack.ok ? ack.result : 'rejected', ...(ack.ok ? {} : { detail: answerText(ack.code) }) });
    } catch (e) {
      const message = (e as Error).message;
      if (gen !== generation.current) return;
      if (e instanceof PasskeyError) {
        // The passkey signed nothing, so nothing was sent: Approve stays available.
        const title = e.problem === 'cancelled' ? 'Not approved: the check was not passed' : "This phone's passkey cannot be used";
        const why =
          e.problem === 'cancelled'
            ? `Your fingerprint, face or PIN check was cancelled, not passed or timed out; nothing was sent. Tap Approve to try again.`
            : `${e.message}. Nothing was sent. Enroll this phone with the host again (qrauth enroll).`;
        setSent({ state: 'passkey', title, message: why });
        return;
      }
      if (e instanceof DeviceKeyError) {
        setSent({ state: 'no-key', decision, message, lost: e.lost }); // nothing was signed, so nothing was sent
        return;
      }
      setSent({ state: 'unsent', decision, message });
      await addHistory({ ...base, outcome: 'unsent', detail: message });
    }
  };

  const relayDown = context.state === 'offline' || sent.state === 'unsent';
  // Nothing verified says who is logging in: the code only after the person's own confirmation.
  const unverified = context.state === 'offline' || context.state === 'error';
  // Over: the host accepted a decision, the person denied, or the login expired. A code then
  // could only finish a login the person did not want (or one that no longer exists).
  // Every state that carries a decision carries the person's intent: a Deny, sent or not, is over.
  const over = expired || context.state === 'expired' || sent.state === 'done' || ('decision' in sent && sent.decision === 'deny');
  // A context not signed by the enrolled host key means someone is tampering with this login.
  const codeShown =
    !over &&
    context.state !== 'signature' &&
    ((unverified && ownLoginConfirmed) || (context.state === 'ok' && (codeAsked || sent.state === 'unsent')));
  const shownFor = lookup.state === 'found' ? lookup.login : undefined;
  useEffect(() => {
    if (!codeShown || !code || !shownFor || codeRecorded.current) return;
    codeRecorded.current = true;
    void addHistory({
      time: Date.now(),
      hostId: shownFor.host.hostId,
      hostname: ctx?.hostname ?? shownFor.host.hostname,
      user: ctx?.user ?? '',
      rhost: ctx?.rhost ?? '',
      service: ctx?.service ?? '',
      decision: 'code',
      outcome: 'code-shown',
      detail: ctx ? undefined : 'login details could not be checked',
    });
  }, [codeShown, code, shownFor, ctx]);
  // After every hook: a hook after an early return breaks React's hook order when `scanned` changes.
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
          {relayDown && !over ? (
            <Warning kind="offline" title="Cannot reach the relay">
              {context.state === 'offline'
                ? `${context.message}.`
                : sent.state === 'unsent'
                  ? `${sent.message}. ${sent.decision === 'approve' ? "Type the code below at your terminal's prompt instead; it works without a network." : 'The login was not refused by this phone; it ends when it expires.'}`
                  : ''}
              <div>
                <IonButton size="small" fill="outline" onClick={() => void loadContext(lookup.login, generation.current)} data-testid="retry">
                  Try again
                </IonButton>
              </div>
            </Warning>
          ) : null}
          {unverified && !ownLoginConfirmed ? (
            <Warning kind="unverified" title="This login could not be checked">
              This phone could not get {lookup.login.host.hostname}'s signed details of this login, so it cannot tell you who is
              logging in, or from where. Use the offline code only if you are at your own terminal and you started this login
              yourself just now. Never read it out or type it anywhere else.
              <div>
                <IonButton size="small" onClick={() => setOwnLoginConfirmed(true)} data-testid="confirm-own-login">
                  I started this login at my own terminal: show the code
                </IonButton>
              </div>
            </Warning>
          ) : null}
          {codeShown ? <OfflineCode code={code} hostname={ctx?.hostname ?? lookup.login.host.hostname} user={ctx?.user} rhost={ctx?.rhost} /> : null}

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
          {context.state === 'error' ? <Warning kind="error" title="This login could not be checked">{context.message}</Warning> : null}

          {ctx ? (
            <section className="login-context" aria-labelledby="login-question" data-testid="login-context">
              <h2 id="login-question" className="login-question">
                Log in as <strong data-testid="ctx-user">{ctx.user}</strong> to <strong data-testid="ctx-host">{ctx.hostname}</strong>?
              </h2>
              <dl className="context-facts">
                <dt>From</dt>
                <dd data-testid="ctx-rhost">{ctx.rhost || 'unknown address'}</dd>
                {/* Signed by the host, which shows a name only when it resolves back to the address. */}
                {ctx.rhostName ? (
                  <>
                    <dt>Name</dt>
                    <dd data-testid="ctx-rhost-name">{ctx.rhostName}</dd>
                  </>
                ) : null}
                {ctx.firstFromAddress !== undefined ? (
                  <>
                    <dt>Seen</dt>
                    <dd data-testid="ctx-first-login" className={ctx.firstFromAddress ? 'first-login' : undefined}>
                      {ctx.firstFromAddress ? `First login as ${ctx.user} from this address` : `${ctx.user} has logged in from this address before`}
                    </dd>
                  </>
                ) : null}
                <dt>With</dt>
                <dd>
                  <span data-testid="ctx-service">{ctx.service}</span>
                  {serviceHint(ctx.service) ? <span className="hint"> ({serviceHint(ctx.service)})</span> : null}
                </dd>
                {ctx.keyFp ? (
                  <>
                    <dt>Key</dt>
                    <dd data-testid="ctx-key">
                      with key <code>{ctx.keyFp}</code>
                    </dd>
                  </>
                ) : null}
                <dt>Started</dt>
                <dd data-testid="ctx-time">
                  <time dateTime={new Date(ctx.iat * 1000).toISOString()}>{clock(ctx.iat)}</time>
                </dd>
                <dt>Expires</dt>
                <dd>
                  <time dateTime={new Date(ctx.exp * 1000).toISOString()}>{clock(ctx.exp)}</time>{' '}
                  {secondsLeft !== undefined ? <Countdown secondsLeft={secondsLeft} /> : null}
                </dd>
              </dl>
              {expired && sent.state !== 'done' ? <Warning kind="expired" title="This login has expired">Start the login again.</Warning> : null}

              {sent.state === 'done' ? (
                sent.ack.ok ? (
                  sent.ack.result === 'approved' ? (
                    <div className="result result-approved" role="status" data-testid="decision-result">
                      <IonIcon icon={checkmarkCircle} aria-hidden="true" />
                      {leaseAsked
                        ? `Approved, and for ${leaseLabel(leaseAsked)} from this key on ${ctx.hostname}. Press Enter in your terminal if it is waiting.`
                        : 'Approved. Press Enter in your terminal if it is waiting.'}
                    </div>
                  ) : (
                    <section className="after-deny" aria-labelledby="after-deny-title" data-testid="after-deny">
                      <div className="result result-denied" role="status" data-testid="decision-result">
                        <IonIcon icon={closeCircle} aria-hidden="true" />
                        <span id="after-deny-title">Denied. The login was refused.</span>
                      </div>
                      <p>
                        {ctx.hostname} refused the login as {ctx.user} from {ctx.rhost || 'an unknown address'} at {clock(ctx.iat)}. Nothing
                        else can finish it: there is no code to type.
                      </p>
                      <h3>Not you?</h3>
                      <ul>
                        <li>If you did not start this login, someone knows or is guessing {ctx.user}'s password, or showed you their QR code to get your approval.</li>
                        <li>Never approve or read out a code for a login you did not start.</li>
                        <li>Tell the administrator of {ctx.hostname}, with the address above and the time; change the password if it may be known.</li>
                      </ul>
                      <IonButton expand="block" fill="outline" onClick={() => router.push('/scan', 'back')} data-testid="after-deny-done">
                        Done
                      </IonButton>
                    </section>
                  )
                ) : (
                  <Warning
                    kind={sent.ack.code === 'QRA_ERR_EXPIRED' ? 'expired' : 'error'}
                    title={sent.ack.code === 'QRA_ERR_NO_PASSKEY' ? `${ctx.hostname} requires a passkey for this` : 'The host did not accept this'}
                  >
                    {answerText(sent.ack.code)}
                    {sent.ack.code === 'QRA_ERR_NO_PASSKEY' ? (
                      <span data-testid="needs-passkey">
                        {' '}
                        This phone was enrolled with {ctx.hostname} without a passkey. Run <code>qrauth enroll</code> there and scan its code
                        again: this phone then makes a passkey (it asks for your fingerprint, face or PIN) and its approvals count.
                      </span>
                    ) : null}
                  </Warning>
                )
              ) : sent.state === 'no-key' ? (
                <>
                  <Warning kind="error" title="This phone's device key cannot be used">
                    {sent.message}. Nothing was sent.
                  </Warning>
                  {sent.lost ? <ReplaceDeviceKey label="Make a new device key" /> : null}
                </>
              ) : sent.state === 'unsent' ? null : (
                <>
                  {sent.state === 'passkey' ? (
                    <Warning kind="error" title={sent.title}>
                      <span data-testid="passkey-problem">{sent.message}</span>
                    </Warning>
                  ) : null}
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
                      {sent.state === 'sending' && sent.decision === 'approve' && !leaseAsked ? <IonSpinner name="dots" aria-hidden="true" /> : 'Approve'}
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
                  {ctx.keyFp && ctx.leaseSeconds && ctx.leaseSeconds.length > 0 ? (
                    // Only the durations the host signed into this context: the host checks the same.
                    <div className="lease-buttons" role="group" aria-label="Approve for a while from this key on this host" data-testid="lease-buttons">
                      <span>Approve for</span>
                      {ctx.leaseSeconds.map((s) => (
                        <IonButton
                          key={s}
                          color="success"
                          fill="outline"
                          size="small"
                          disabled={sent.state === 'sending' || expired}
                          onClick={() => void decide('approve', s)}
                          aria-label={`Approve for ${leaseLabel(s)} from this key on ${ctx.hostname}`}
                          data-testid={`approve-lease-${s}`}
                        >
                          {sent.state === 'sending' && leaseAsked === s ? <IonSpinner name="dots" aria-hidden="true" /> : leaseLabel(s)}
                        </IonButton>
                      ))}
                      <span>from this key on this host</span>
                    </div>
                  ) : null}
                  {!codeShown && !expired ? (
                    <IonButton fill="clear" expand="block" onClick={() => setCodeAsked(true)} data-testid="show-code">
                      Can&apos;t connect? Show the code
                    </IonButton>
                  ) : null}
                </>
              )}
            </section>
          ) : null}
        </>
      ) : null}
    </Page>
  );
}
