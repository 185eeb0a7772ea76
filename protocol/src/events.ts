/**
 * The Socket.IO protocol between agent (namespace /host), relay, and phone (namespace /device).
 * Typed event maps for server and clients, and the schema of every message, live here only.
 *
 * The relay keeps no session state: a phone's request for a login context or its signed
 * decision is forwarded to the room of the host (`host:<hostId>`) and the agent's ack comes back.
 */
import { ID_PATTERN, PUBKEY_PATTERN, SIG_PATTERN } from './ids.js';
import type { ErrorCode } from './errors.js';
import { HOSTNAME_MAX, MAX_FALLBACK_RELAYS, RELAY_URL_MAX } from './payloads.js';
import { type Check, arrayOf, bool, byInput, custom, int, literal, object, oneOf, optional, str } from './validate.js';
import { type PasskeyInfo, type WebAuthnAssertion, passkeyInfo, webauthnAssertion } from './webauthn.js';

export const HOST_NAMESPACE = '/host';
export const DEVICE_NAMESPACE = '/device';
export const hostRoom = (hostId: string) => `host:${hostId}`;

/** Largest Socket.IO message the relay accepts (maxHttpBufferSize). */
export const MAX_MESSAGE_BYTES = 8 * 1024;
/** How far a handshake's time may be from the relay's clock. */
export const AUTH_CLOCK_SKEW_MS = 120_000;

const id = str({ max: 22, min: 22, pattern: ID_PATTERN });
const pub = str({ max: 43, min: 43, pattern: PUBKEY_PATTERN });
const sig = str({ max: 86, min: 86, pattern: SIG_PATTERN });
const timeMs = int({ min: 0, max: 8_640_000_000_000 });

/**
 * A relay's origin as URL.origin writes it (`https://relay.example`, `http://127.0.0.1:8080`):
 * what a v2 handshake is signed for.
 */
export function isRelayOrigin(x: unknown): x is string {
  if (typeof x !== 'string' || x.length > RELAY_URL_MAX) return false;
  try {
    const u = new URL(x);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.origin === x;
  } catch {
    return false;
  }
}
const relayOrigin = custom(isRelayOrigin, 'expected a relay origin as URL.origin writes it (https://relay.example[:port])');

/**
 * Handshake `auth` for both namespaces: proves possession of the key whose id is derived from
 * `pub`. v2 also names the relay it is for (`relay`, signed): a relay that received it cannot
 * present it to another relay (docs/protocol.md, "Handshake"). v1, without it, is what clients
 * before it send; a relay may refuse it (--bound-handshakes-only).
 */
export type AuthHandshake =
  | { v: 1; pub: string; time: number; nonce: string; sig: string }
  | { v: 2; pub: string; time: number; nonce: string; relay: string; sig: string };
const authHandshakeV1 = object({ v: literal(1), pub, time: timeMs, nonce: id, sig });
const authHandshakeV2 = object({ v: literal(2), pub, time: timeMs, nonce: id, relay: relayOrigin, sig });
export const authHandshake: Check<AuthHandshake> = byInput(
  (x): Check<AuthHandshake> => (typeof x === 'object' && x !== null && (x as { v?: unknown }).v === 2 ? authHandshakeV2 : authHandshakeV1),
);

/** The login context as it travels: the signed fields plus the host's signature. */
export interface SignedContext {
  v: 1;
  hostId: string;
  sid: string;
  user: string;
  hostname: string;
  rhost: string;
  service: string;
  iat: number;
  exp: number;
  /** Lease offer (signed.ts LoginContext): the verified client key and the allowed durations. */
  keyFp?: string;
  leaseSeconds?: number[];
  /** The source address's forward-confirmed reverse name; first login of this user from it (signed.ts). */
  rhostName?: string;
  firstFromAddress?: boolean;
  sig: string;
}
/** SHA256:<43 base64 chars>, as ssh-keygen -lf prints a key's fingerprint. */
export const KEY_FP_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;
/**
 * A reverse name as the phone may show it: letters, digits, '-', '_' and dots, at most 253
 * characters (a DNS name), so no control character or look-alike script reaches the screen.
 */
export const RHOST_NAME_PATTERN = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/;
/** Longest lease any host may offer or grant (a week): a bound, not a recommendation. */
export const MAX_LEASE_SECONDS = 7 * 24 * 3600;
const keyFp = str({ max: 50, min: 50, pattern: KEY_FP_PATTERN });
const leaseSeconds = int({ min: 1, max: MAX_LEASE_SECONDS });
export const signedContext: Check<SignedContext> = object({
  v: literal(1),
  hostId: id,
  sid: id,
  user: str({ max: 256, min: 1 }),
  hostname: str({ max: HOSTNAME_MAX }),
  rhost: str({ max: 256 }),
  service: str({ max: 64, min: 1 }),
  iat: int({ min: 0, max: 2 ** 40 }),
  exp: int({ min: 0, max: 2 ** 40 }),
  keyFp: optional(keyFp),
  leaseSeconds: optional(arrayOf(leaseSeconds, 4)),
  rhostName: optional(str({ max: 253, min: 1, pattern: RHOST_NAME_PATTERN })),
  firstFromAddress: optional(bool()),
  sig,
});

export interface ContextRequest {
  hostId: string;
  sid: string;
}
export const contextRequest: Check<ContextRequest> = object({ hostId: id, sid: id });

export interface DecisionMessage {
  hostId: string;
  sid: string;
  deviceId: string;
  decision: 'approve' | 'deny';
  time: number;
  /** Approve for this long from the context's key (signed: decisionBytes with `lease`). */
  lease?: { seconds: number; keyFp: string };
  sig: string;
  /** The phone's passkey answer for this approval (docs/protocol.md §5); outside `sig`: its challenge binds it. */
  assertion?: WebAuthnAssertion;
}
export const decisionMessage: Check<DecisionMessage> = object({
  hostId: id,
  sid: id,
  deviceId: id,
  decision: oneOf(['approve', 'deny'] as const),
  time: timeMs,
  lease: optional(object({ seconds: leaseSeconds, keyFp })),
  sig,
  assertion: optional(webauthnAssertion),
});

/** A phone ends its own leases on a host: one (leaseId) or all ('*'); signed with leaseRevokeBytes. */
export interface LeaseRevokeMessage {
  hostId: string;
  deviceId: string;
  leaseId: string;
  time: number;
  sig: string;
}
export const leaseRevokeMessage: Check<LeaseRevokeMessage> = object({
  hostId: id,
  deviceId: id,
  leaseId: str({ max: 22, min: 1, pattern: /^(\*|[A-Za-z0-9_-]{22})$/ }),
  time: timeMs,
  sig,
});
/**
 * How many leases the request ended (0: none matched; a repeat of a request already served gets
 * the first answer again). `sig`: the host's signature over leaseRevokeAckBytes (signed.ts); hosts
 * from before it send none.
 */
export type LeaseRevokeAck = Ack<{ revoked: number; sig?: string }>;

export interface EnrollMessage {
  hostId: string;
  tokenId: string;
  devicePub: string;
  deviceName: string;
  time: number;
  /** The passkey made at enrollment (docs/protocol.md §5), signed with the rest (enrollBytes v2). */
  passkey?: PasskeyInfo;
  sig: string;
}
export const DEVICE_NAME_MAX = 64;
export const DEVICE_NAME_PATTERN = /^[\p{L}\p{N} ._'()+-]{1,64}$/u;
export const enrollMessage: Check<EnrollMessage> = object({
  hostId: id,
  tokenId: id,
  devicePub: pub,
  deviceName: str({ max: DEVICE_NAME_MAX, min: 1, pattern: DEVICE_NAME_PATTERN }),
  time: timeMs,
  passkey: optional(passkeyInfo),
  sig,
});

/** Every ack: success with a body, or a stable error code and a message for people. */
export type Ack<T> = ({ ok: true } & T) | { ok: false; code: ErrorCode; message: string };

export type ContextAck = Ack<{ context: SignedContext }>;
export type DecisionAck = Ack<{ result: 'approved' | 'denied' }>;
/**
 * Acceptance carries the host's signature over enrollAckBytes (signed.ts): the phone saves only what it signed.
 * `outcome` is the terminal's answer so far: the phone sends the same enroll message again to ask
 * (the host recognises it) until the answer is final; a final one carries `outcomeSig` over
 * enrollOutcomeBytes. Hosts from before this field send no outcome.
 */
export type EnrollAck = Ack<{ hostname: string; relayUrl: string; fallbackRelayUrls?: string[]; sig: string; outcome?: 'pending' | 'confirmed' | 'refused'; outcomeSig?: string }>;

const errAck = object({ ok: literal(false), code: str({ max: 64, pattern: /^QRA_ERR_[A-Z_]+$/ }), message: str({ max: 512 }) });
function ackOf<T extends object>(okShape: Check<T>): Check<Ack<T>> {
  return byInput((v) => (typeof v === 'object' && v !== null && (v as { ok?: unknown }).ok === false ? errAck : okShape) as Check<Ack<T>>);
}
export const contextAck: Check<ContextAck> = ackOf(object({ ok: literal(true), context: signedContext }));
export const decisionAck: Check<DecisionAck> = ackOf(object({ ok: literal(true), result: oneOf(['approved', 'denied'] as const) }));
export const leaseRevokeAck: Check<LeaseRevokeAck> = ackOf(object({ ok: literal(true), revoked: int({ min: 0, max: 10_000 }), sig: optional(sig) }));
/** A relay URL as a host signs it: printable ASCII; verifyEnrollAck holds it to relayUrlProblem after the signature. */
const relayUrlText = str({ max: RELAY_URL_MAX, pattern: /^https?:\/\/[!-~]+$/ });
export const enrollAck: Check<EnrollAck> = ackOf(
  object({
    ok: literal(true),
    hostname: str({ max: HOSTNAME_MAX }),
    relayUrl: relayUrlText,
    fallbackRelayUrls: optional(arrayOf(relayUrlText, MAX_FALLBACK_RELAYS)),
    sig,
    outcome: optional(oneOf(['pending', 'confirmed', 'refused'] as const)),
    outcomeSig: optional(sig),
  }),
);

/** relay → agent (namespace /host); the agent answers through the ack. */
export interface HostServerToClient {
  context(req: { sid: string }, ack: (a: ContextAck) => void): void;
  decision(msg: DecisionMessage, ack: (a: DecisionAck) => void): void;
  enroll(msg: EnrollMessage, ack: (a: EnrollAck) => void): void;
  revokeLeases(msg: LeaseRevokeMessage, ack: (a: LeaseRevokeAck) => void): void;
}
/** agent → relay: nothing; the agent only answers. */
export type HostClientToServer = Record<string, never>;

/** phone → relay (namespace /device), answered through the ack. */
export interface DeviceClientToServer {
  context(req: ContextRequest, ack: (a: ContextAck) => void): void;
  decision(msg: DecisionMessage, ack: (a: DecisionAck) => void): void;
  enroll(msg: EnrollMessage, ack: (a: EnrollAck) => void): void;
  /** End this phone's own leases on a host (signed: leaseRevokeBytes); the agent checks the rest. */
  revokeLeases(msg: LeaseRevokeMessage, ack: (a: LeaseRevokeAck) => void): void;
}
export type DeviceServerToClient = Record<string, never>;
