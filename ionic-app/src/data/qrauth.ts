/**
 * The protocol steps the app performs, the same as the headless phone (test/support/phone.ts):
 * fetch and verify a login context, sign approve/deny, compute the offline code, enroll.
 * Nothing is sent for a host this phone has not enrolled with.
 */
import { webCrypto } from '../../../protocol/src/crypto-web.js';
import {
  contextAck,
  type DecisionAck,
  decisionAck,
  type EnrollAck,
  enrollAck,
  enrollFingerprint,
  type EnrollPayload,
  fromB64url,
  keyId,
  type LoginPayload,
  offlineCode,
  offlineKey,
  parseEnrollPayload,
  parseLoginPayload,
  QrauthError,
  signDecision,
  type SignedContext,
  signEnrollment,
  toB64url,
  verifyLoginContext,
} from '../../../protocol/src/index.js';
import type { TrustedHost } from '../models';
import { withDeviceSeed } from './device-key';
import { asErrorCode, ask, checkAck, connectRelay, RELAY_TIMEOUT_MS } from './relay-client';
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
  const socket = await connectRelay(host.relayUrl);
  const raw: unknown = await ask(() => socket.timeout(RELAY_TIMEOUT_MS).emitWithAck('context', { hostId: host.hostId, sid: payload.sid }));
  const ack = checkAck(contextAck, raw, 'context answer');
  if (!ack.ok) throw new QrauthError(asErrorCode(ack.code), ack.message);
  return verifyLoginContext(webCrypto, ack.context, { hostId: host.hostId, sid: payload.sid, hostPub: fromB64url(host.hostPub, 32), hostname: host.hostname }, now);
}

/** Signs approve/deny over the nonce from the QR and the verified context, and sends it. */
export async function sendDecision({ payload, host }: ScannedLogin, ctx: SignedContext, decision: 'approve' | 'deny'): Promise<DecisionAck> {
  const msg = await withDeviceSeed((seed, device) => signDecision(webCrypto, seed, device.deviceId, payload, ctx, decision));
  const socket = await connectRelay(host.relayUrl);
  const raw: unknown = await ask(() => socket.timeout(RELAY_TIMEOUT_MS).emitWithAck('decision', msg));
  return checkAck(decisionAck, raw, 'decision answer');
}

export interface EnrollOffer {
  payload: EnrollPayload;
  hostId: string;
  /** What this screen shows; the terminal running `qrauth enroll` must show the same. */
  fingerprint: string;
  /** Already enrolled with this host (enrolling again updates its name and relay). */
  known: boolean;
}

/** Parses an enrollment QR and computes the fingerprint; sends nothing. */
export async function prepareEnroll(text: string): Promise<EnrollOffer> {
  const payload = parseEnrollPayload(text);
  const hostId = keyId(webCrypto, payload.hostPub);
  const fingerprint = await withDeviceSeed((_seed, device) =>
    enrollFingerprint(webCrypto, payload.hostPub, fromB64url(device.publicKey, 32), payload.token),
  );
  return { payload, hostId, fingerprint, known: (await findHost(hostId)) !== undefined };
}

/** Sends the signed enrollment; trusts the host only when it accepts. */
export async function sendEnroll(offer: EnrollOffer): Promise<EnrollAck> {
  const { payload } = offer;
  const { msg } = await withDeviceSeed((seed, device) => signEnrollment(webCrypto, seed, { publicKey: device.publicKey, name: device.name }, payload));
  const socket = await connectRelay(payload.relayUrl);
  const raw: unknown = await ask(() => socket.timeout(RELAY_TIMEOUT_MS).emitWithAck('enroll', msg));
  const ack = checkAck(enrollAck, raw, 'enroll answer');
  if (ack.ok) await saveHost({ hostPub: toB64url(payload.hostPub), hostname: payload.hostname, relayUrl: payload.relayUrl });
  return ack;
}
