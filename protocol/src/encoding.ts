import { QrauthError } from './errors.js';

const B64URL = /^[A-Za-z0-9_-]*$/;
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

export function utf8(s: string): Uint8Array {
  return enc.encode(s);
}

export function fromUtf8(b: Uint8Array): string {
  return dec.decode(b);
}

export function toB64url(bytes: Uint8Array): string {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Strict base64url (no padding). `expectedBytes` rejects anything of another length. */
export function fromB64url(s: string, expectedBytes?: number): Uint8Array {
  if (typeof s !== 'string' || !B64URL.test(s) || s.length % 4 === 1) {
    throw new QrauthError('QRA_ERR_INVALID_INPUT', 'expected unpadded base64url text');
  }
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  if (expectedBytes !== undefined && out.length !== expectedBytes) {
    throw new QrauthError('QRA_ERR_INVALID_INPUT', `expected ${expectedBytes} bytes of base64url, got ${out.length}`);
  }
  // Reject non-canonical encodings (stray low bits) so one value has exactly one text form.
  if (toB64url(out) !== s) throw new QrauthError('QRA_ERR_INVALID_INPUT', 'non-canonical base64url');
  return out;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Constant-time equality for secrets of public length. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
