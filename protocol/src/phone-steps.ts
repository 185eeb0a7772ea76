/**
 * The phone's protocol steps, written once for the app (noble) and the headless phone
 * (sodium): check a login context against the host key from enrollment, and build the signed
 * decision and enrollment messages. Transport (Socket.IO) stays with each caller.
 */
import { enrollFingerprint, tokenIdOf } from './codes.js';
import type { QrCrypto } from './crypto.js';
import { fromB64url, toB64url } from './encoding.js';
import { QrauthError } from './errors.js';
import type { DecisionMessage, EnrollMessage, SignedContext } from './events.js';
import { keyId } from './ids.js';
import type { EnrollPayload, LoginPayload } from './payloads.js';
import { contextBytes, decisionBytes, enrollBytes, type Decision } from './signed.js';

/**
 * Accept a context only if it is the one asked for, signed by the host key the phone got at
 * enrollment, and not expired. Throws QRA_ERR_SIGNATURE or QRA_ERR_EXPIRED.
 */
export function verifyLoginContext(
  crypto: QrCrypto,
  ctx: SignedContext,
  expected: { hostId: string; sid: string; hostPub: Uint8Array; hostname: string },
  now: number = Date.now(),
): SignedContext {
  if (ctx.hostId !== expected.hostId || ctx.sid !== expected.sid) {
    throw new QrauthError('QRA_ERR_SIGNATURE', 'the relay returned the details of another login; do not approve');
  }
  const forged = new QrauthError('QRA_ERR_SIGNATURE', `these login details are not signed by ${expected.hostname}; do not trust them`);
  let sig: Uint8Array;
  try {
    sig = fromB64url(ctx.sig, 64);
  } catch {
    throw forged;
  }
  if (!crypto.ed25519Verify(expected.hostPub, contextBytes(ctx), sig)) throw forged;
  if (ctx.exp * 1000 <= now) throw new QrauthError('QRA_ERR_EXPIRED', 'this login has expired; start the login again');
  return ctx;
}

/** The signed approve/deny for a scanned login, over the QR's nonce and the verified context's user. */
export function signDecision(
  crypto: QrCrypto,
  seed: Uint8Array,
  deviceId: string,
  login: LoginPayload,
  ctx: SignedContext,
  decision: Decision,
  time: number = Date.now(),
): DecisionMessage {
  const { hostId, sid, nonce } = login;
  const sig = crypto.ed25519Sign(seed, decisionBytes({ hostId, sid, nonce, user: ctx.user, decision, time, deviceId }));
  return { hostId, sid, deviceId, decision, time, sig: toB64url(sig) };
}

/** The signed enrollment request (bound to the token, which is not in it) and the fingerprint to show. */
export function signEnrollment(
  crypto: QrCrypto,
  seed: Uint8Array,
  device: { publicKey: string; name: string },
  offer: EnrollPayload,
  time: number = Date.now(),
): { msg: EnrollMessage; hostId: string; fingerprint: string } {
  const hostId = keyId(crypto, offer.hostPub);
  const tokenId = tokenIdOf(crypto, offer.token);
  const sig = crypto.ed25519Sign(seed, enrollBytes({ hostId, tokenId, token: offer.token, devicePub: device.publicKey, deviceName: device.name, time }));
  const fingerprint = enrollFingerprint(crypto, offer.hostPub, fromB64url(device.publicKey, 32), offer.token);
  return { msg: { hostId, tokenId, devicePub: device.publicKey, deviceName: device.name, time, sig: toB64url(sig) }, hostId, fingerprint };
}
