/**
 * What the QR codes say. Both are short ASCII so they fit a small QR and can be typed.
 *
 *   login:  QRA1:<hostId>:<sid>:<nonce>                         (each 22 chars base64url of 16 bytes)
 *   enroll: QRE1:<hostPub>:<token>:<hostname b64url>:<relayUrl>  (relayUrl last: it contains ':')
 */
import { fromB64url, fromUtf8, toB64url, utf8 } from './encoding.js';
import { QrauthError } from './errors.js';
import { relayUrlProblem } from './relay-url.js';

export const LOGIN_PREFIX = 'QRA1';
export const ENROLL_PREFIX = 'QRE1';
export const MAX_PAYLOAD = 512;
const LOGIN_RE = /^QRA1:([A-Za-z0-9_-]{22}):([A-Za-z0-9_-]{22}):([A-Za-z0-9_-]{22})$/;
const ENROLL_RE = /^QRE1:([A-Za-z0-9_-]{43}):([A-Za-z0-9_-]{22}):([A-Za-z0-9_-]{0,340}):(https?:\/\/[!-~]{1,300})$/;
export const HOSTNAME_MAX = 253;
/** Longest relay URL a phone stores (the enrollment QR allows 300 characters after the scheme). */
export const RELAY_URL_MAX = 310;
/** Relays a host may list after its preferred one (agent config relayUrl, the signed enrollment answer). */
export const MAX_FALLBACK_RELAYS = 7;

export interface LoginPayload {
  hostId: string;
  sid: string;
  nonce: Uint8Array;
}

export function formatLoginPayload(p: LoginPayload): string {
  return `${LOGIN_PREFIX}:${p.hostId}:${p.sid}:${toB64url(p.nonce)}`;
}

export function parseLoginPayload(text: string): LoginPayload {
  const m = typeof text === 'string' && text.length <= MAX_PAYLOAD ? LOGIN_RE.exec(text.trim()) : null;
  if (!m) throw new QrauthError('QRA_ERR_PAYLOAD', 'this is not a qrauth login code (expected QRA1:host:session:nonce)');
  fromB64url(m[1]!, 16);
  fromB64url(m[2]!, 16);
  return { hostId: m[1]!, sid: m[2]!, nonce: fromB64url(m[3]!, 16) };
}

export interface EnrollPayload {
  hostPub: Uint8Array;
  token: Uint8Array;
  hostname: string;
  relayUrl: string;
}

/** Throws QRA_ERR_PAYLOAD for a relay URL no enrollment code may carry (plain http off loopback). */
function checkEnrollRelay(relayUrl: string): void {
  const problem = relayUrlProblem(relayUrl);
  if (problem) throw new QrauthError('QRA_ERR_PAYLOAD', `the enrollment code names a relay this phone will not use: ${problem}`);
}

export function formatEnrollPayload(p: EnrollPayload): string {
  checkEnrollRelay(p.relayUrl);
  return `${ENROLL_PREFIX}:${toB64url(p.hostPub)}:${toB64url(p.token)}:${toB64url(utf8(p.hostname))}:${p.relayUrl}`;
}

export function parseEnrollPayload(text: string): EnrollPayload {
  const m = typeof text === 'string' && text.length <= MAX_PAYLOAD ? ENROLL_RE.exec(text.trim()) : null;
  if (!m) throw new QrauthError('QRA_ERR_PAYLOAD', 'this is not a qrauth enrollment code (expected QRE1:…)');
  let hostname: string;
  try {
    hostname = fromUtf8(fromB64url(m[3]!));
  } catch {
    throw new QrauthError('QRA_ERR_PAYLOAD', 'the enrollment code has an invalid host name');
  }
  // eslint-disable-next-line no-control-regex
  if (hostname.length > HOSTNAME_MAX || /[\u0000-\u001f\u007f]/.test(hostname)) {
    throw new QrauthError('QRA_ERR_PAYLOAD', 'the enrollment code has an invalid host name');
  }
  return { hostPub: fromB64url(m[1]!, 32), token: fromB64url(m[2]!, 16), hostname, relayUrl: normaliseRelayUrl(m[4]!) };
}

/** A relay URL as phones store it (one spelling per URL, no trailing slash); QRA_ERR_PAYLOAD if it is not a URL. */
export function normaliseRelayUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new QrauthError('QRA_ERR_PAYLOAD', 'the enrollment code has an invalid relay URL');
  }
  checkEnrollRelay(url.href);
  return url.href.replace(/\/$/, '');
}

/** Which kind of QR this is, without throwing: the app routes a scan with it. */
export function payloadKind(text: string): 'login' | 'enroll' | null {
  if (typeof text !== 'string') return null;
  const t = text.trim();
  if (t.startsWith(`${LOGIN_PREFIX}:`)) return 'login';
  if (t.startsWith(`${ENROLL_PREFIX}:`)) return 'enroll';
  return null;
}
