/**
 * The protocol steps the app performs, the same as the headless phone (test/support/phone.ts):
 * fetch and verify a login context, sign approve/deny, compute the offline code, enroll.
 * Nothing is sent for a host this phone has not enrolled with.
 */
import { webCrypto } from '../../../protocol/src/crypto-web.js';
import {
  type Check,
  type Ack,
  contextAck,
  type DecisionAck,
  decisionAck,
  type EnrollAck,
  type EnrollMessage,
  enrollFingerprint,
  enrollOutcomeOf,
  type EnrollPayload,
  fromB64url,
  keyId,
  leaseRevokeAck,
  leaseRevokeResult,
  type LoginPayload,
  offlineCode,
  offlineKey,
  parseEnrollPayload,
  parseLoginPayload,
  QrauthError,
  signDecision,
  signLeaseRevoke,
  type SignedContext,
  signEnrollment,
  toB64url,
  verifyEnrollAck,
  verifyLoginContext,
  webauthnChallenge,
} from '../../../protocol/src/index.js';
import type { TrustedHost } from '../models';
import { withDeviceSeed } from './device-key';
import { assertPasskey, createPasskey, platformPasskeyAvailable } from './passkey';
import { answerError } from './error-text';
import { ask, checkAck, connectRelay, RELAY_TIMEOUT_MS } from './relay-client';
import { findHost, saveHost } from './store';

export interface ScannedLogin {
  payload: LoginPayload;
  host: TrustedHost;
}

/** Parses a login QR and finds its host; QRA_ERR_UNKNOWN_HOST when this phone never enrolled with it. */
export async function resolveLogin(text: string): Promise<ScannedLogin> {
  const payload = parseLoginPayload(text);
  const host = await findHost(payload.hostId);
  if (!host) {
    throw new QrauthError('QRA_ERR_UNKNOWN_HOST', 'this QR belongs to a host this phone has not enrolled with; nothing was sent');
  }
  return { payload, host };
}

/** The 8-digit code for typing at the prompt; uses no network, so it works offline. */
export async function loginOfflineCode({ payload, host }: ScannedLogin): Promise<string> {
  return withDeviceSeed((seed, device) => {
    const k = offlineKey(webCrypto, seed, fromB64url(host.hostPub, 32), host.hostId, device.deviceId);
    try {
      return offlineCode(webCrypto, k, host.hostId, payload.sid, payload.nonce);
    } finally {
      k.fill(0);
    }
  });
}

/**
 * Asks the host, through its relay, who is logging in, and checks the host's signature with the
 * key from enrollment. Throws QRA_ERR_SIGNATURE for anything not signed by that host,
 * QRA_ERR_EXPIRED when the login is over, QRA_ERR_HOST_OFFLINE when the relay cannot be reached.
 */
export async function fetchLoginContext({ payload, host }: ScannedLogin, now: number = Date.now()): Promise<SignedContext> {
  const { ack, relayUrl } = await askHostRelays(
    host,
    (socket) => socket.timeout(RELAY_TIMEOUT_MS).emitWithAck('context', { hostId: host.hostId, sid: payload.sid }),
    contextAck,
    'context answer',
  );
  const ctx = verifyLoginContext(webCrypto, ack.context, { hostId: host.hostId, sid: payload.sid, hostPub: fromB64url(host.hostPub, 32), hostname: host.hostname }, now);
  relayOfLogin.set(payload.sid, relayUrl);
  return ctx;
}

/**
 * Sends one request to a host through its relays in the host's order: the next one when a relay
 * cannot be reached or does not have the host (QRA_ERR_HOST_OFFLINE). Returns the accepted answer
 * and the relay that gave it; any other refusal, or the last relay's, is thrown.
 */
async function askHostRelays<T>(
  host: TrustedHost,
  send: (socket: Awaited<ReturnType<typeof connectRelay>>) => Promise<unknown>,
  check: Check<Ack<T>>,
  what: string,
): Promise<{ ack: { ok: true } & T; relayUrl: string }> {
  const relays = [host.relayUrl, ...(host.fallbackRelayUrls ?? [])];
  for (const [i, relayUrl] of relays.entries()) {
    const last = i === relays.length - 1;
    let socket: Awaited<ReturnType<typeof connectRelay>>;
    try {
      socket = await connectRelay(relayUrl);
    } catch (e) {
      if (!last && e instanceof QrauthError && e.code === 'QRA_ERR_HOST_OFFLINE') continue;
      throw e;
    }
    const raw: unknown = await ask(() => send(socket));
    const ack = checkAck(check, raw, what);
    if (!ack.ok && ack.code === 'QRA_ERR_HOST_OFFLINE' && !last) continue;
    if (!ack.ok) throw answerError(ack.code);
    return { ack, relayUrl };
  }
  throw new QrauthError('QRA_ERR_HOST_OFFLINE', 'this host has no relay; enroll again');
}

/** The relay that reached the host for a login (by sid): its decision goes the same way. */
const relayOfLogin = new Map<string, string>();

/** Signs approve/deny over the nonce from the QR and the verified context, and sends it. */
/** `leaseSeconds`: "approve for this long from this key", one of the durations the signed context offers. */
/**
 * With a passkey from enrollment, an approval also carries its assertion over SHA-256 of the exact
 * approval bytes: the phone asks for the fingerprint, face or PIN first (PasskeyError when cancelled:
 * nothing is sent). A denial needs none: anybody holding the phone may refuse a login.
 */
export async function sendDecision({ payload, host }: ScannedLogin, ctx: SignedContext, decision: 'approve' | 'deny', leaseSeconds?: number): Promise<DecisionAck> {
  const { signed, deviceId } = await withDeviceSeed((seed, device) => ({
    signed: signDecision(webCrypto, seed, device.deviceId, payload, ctx, decision, Date.now(), leaseSeconds),
    deviceId: device.deviceId,
  }));
  let msg: typeof signed = signed;
  if (host.passkey && decision === 'approve') {
    const fields = { hostId: host.hostId, sid: payload.sid, nonce: payload.nonce, user: ctx.user, decision, time: signed.time, deviceId, lease: signed.lease };
    msg = { ...signed, assertion: await assertPasskey(host.passkey, webauthnChallenge(webCrypto, fields)) };
  }
  const socket = await connectRelay(relayOfLogin.get(payload.sid) ?? host.relayUrl);
  relayOfLogin.delete(payload.sid);
  const raw: unknown = await ask(() => socket.timeout(RELAY_TIMEOUT_MS).emitWithAck('decision', msg));
  return checkAck(decisionAck, raw, 'decision answer');
}

/**
 * Ends every lease this phone granted on a host ("approve for 1 h from this key"): the request is
 * signed with the device key and the host checks it, so the relay only routes it. Tries the host's
 * relays in order like a login. 'ended' with the count only when the host signed its answer for
 * this request; 'unconfirmed' when the answer is unsigned (a host from before signed answers, or a
 * relay answering for a request it dropped); QRA_ERR_SIGNATURE when a relay changed it.
 */
export async function endMyLeases(host: TrustedHost): Promise<{ state: 'ended'; revoked: number } | { state: 'unconfirmed' }> {
  const msg = await withDeviceSeed((seed, device) => signLeaseRevoke(webCrypto, seed, device.deviceId, host.hostId, '*'));
  const { ack } = await askHostRelays(host, (socket) => socket.timeout(RELAY_TIMEOUT_MS).emitWithAck('revokeLeases', msg), leaseRevokeAck, 'lease answer');
  return leaseRevokeResult(webCrypto, fromB64url(host.hostPub, 32), msg, ack);
}

export interface EnrollOffer {
  payload: EnrollPayload;
  hostId: string;
  /** What this screen shows; the terminal running `qrauth enroll` must show the same. */
  fingerprint: string;
  /** Already enrolled with this host (enrolling again updates its name and relay). */
  known: boolean;
  /**
   * Whether tapping Enroll makes a passkey first (this phone has a platform authenticator). Then
   * `fingerprint` is known only once the passkey exists: it covers the passkey too.
   */
  passkeyPlanned: boolean;
}

/** Parses an enrollment QR and computes the fingerprint; sends nothing. */
export async function prepareEnroll(text: string): Promise<EnrollOffer> {
  const payload = parseEnrollPayload(text);
  const hostId = keyId(webCrypto, payload.hostPub);
  const fingerprint = await withDeviceSeed((_seed, device) =>
    enrollFingerprint(webCrypto, payload.hostPub, fromB64url(device.publicKey, 32), payload.token),
  );
  return { payload, hostId, fingerprint, known: (await findHost(hostId)) !== undefined, passkeyPlanned: await platformPasskeyAvailable() };
}

/** How long the phone waits for the person to answer at the terminal, and how often it asks. */
export const ENROLL_ANSWER_WAIT_MS = 5 * 60_000;
export const ENROLL_POLL_MS = 1500;

export type EnrollAnswer = 'confirmed' | 'refused' | 'timed-out';

export interface EnrollSent {
  /** the host's verified answer (a refusal, or an acceptance it signed) */
  ack: EnrollAck;
  msg: EnrollMessage;
  /** What both screens show for this request (with its passkey, when one was made). */
  fingerprint: string;
  /** undefined: a host from before outcomes were reported (the host was saved at once, as then) */
  outcome: 'pending' | 'confirmed' | 'refused' | undefined;
}

async function askEnroll(offer: EnrollOffer, msg: EnrollMessage, fingerprint: string): Promise<EnrollSent> {
  const { payload } = offer;
  const socket = await connectRelay(payload.relayUrl);
  const raw: unknown = await ask(() => socket.timeout(RELAY_TIMEOUT_MS).emitWithAck('enroll', msg));
  const ack = verifyEnrollAck(webCrypto, raw, msg, payload.hostPub);
  const outcome = enrollOutcomeOf(webCrypto, ack, msg, payload.hostPub);
  // Trust the host only once its terminal confirmed (signed by the host); an older host that
  // reports no outcome keeps the old rule (trusted on its signed acceptance).
  if (ack.ok && (outcome === undefined || outcome === 'confirmed')) {
    const fallbacks = ack.fallbackRelayUrls ? { fallbackRelayUrls: ack.fallbackRelayUrls } : {};
    // The passkey is remembered with the host whose terminal accepted it: approvals there use it.
    await saveHost({ hostPub: toB64url(payload.hostPub), hostname: ack.hostname, relayUrl: ack.relayUrl, ...fallbacks, ...(msg.passkey ? { passkey: msg.passkey } : {}) });
  }
  return { ack, msg, fingerprint, outcome };
}

/**
 * Sends the signed enrollment. The host's acceptance is checked with the host key from the QR
 * (QRA_ERR_SIGNATURE when the relay made it up or changed it; nothing is saved). The terminal
 * then shows the fingerprint and asks; waitForEnrollAnswer learns what the person answered.
 */
export async function sendEnroll(offer: EnrollOffer, deviceName: string): Promise<EnrollSent> {
  const { payload } = offer;
  // First, while the tap still counts as the person's gesture: the platform prompt makes the passkey.
  const passkey = offer.passkeyPlanned ? await createPasskey(deviceName, payload.hostname) : undefined;
  const { msg, fingerprint } = await withDeviceSeed((seed, device) => signEnrollment(webCrypto, seed, { publicKey: device.publicKey, name: device.name, passkey }, payload));
  return askEnroll(offer, msg, fingerprint);
}

/**
 * Asks the host (the same signed message again) until the terminal answered, or gives up after
 * ENROLL_ANSWER_WAIT_MS. The host is saved only on a confirmation the host signed. A relay that
 * drops the questions makes this time out; it cannot make it confirm.
 */
export async function waitForEnrollAnswer(offer: EnrollOffer, msg: EnrollMessage, cancelled: () => boolean): Promise<EnrollAnswer> {
  const deadline = Date.now() + ENROLL_ANSWER_WAIT_MS;
  while (Date.now() < deadline && !cancelled()) {
    await new Promise((r) => setTimeout(r, ENROLL_POLL_MS));
    if (cancelled()) break;
    let sent: EnrollSent;
    try {
      sent = await askEnroll(offer, msg, '');
    } catch (e) {
      // A changed answer is an attack, not a network hiccup: stop and say so.
      if (e instanceof QrauthError && e.code === 'QRA_ERR_SIGNATURE') throw e;
      continue; // relay briefly away: ask again until the deadline
    }
    if (!sent.ack.ok) throw answerError(sent.ack.code);
    if (sent.outcome === 'confirmed' || sent.outcome === 'refused') return sent.outcome;
  }
  return 'timed-out';
}
