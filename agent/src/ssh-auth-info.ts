/**
 * sshd's SSH_AUTH_INFO_0, as pam_qrauth passes it in BEGIN: one line per authentication method
 * sshd has verified so far, "method[/submethod] [key-type base64-blob] [extra]" (OpenSSH
 * auth2.c, auth2_update_session_info), e.g.
 *
 *   publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI…
 *   keyboard-interactive/pam
 *
 * A lease binds to the public key of a `publickey` line. Anything off that shape yields no
 * key (and a reason for the log): a lease is then neither offered nor matched.
 */
import { createHash } from 'node:crypto';
import { MAX_AUTH_INFO } from '../../protocol/src/index.js';

export interface VerifiedKey {
  type: string;
  /** SHA256:<base64 without padding> of the key blob, as `ssh-keygen -lf` prints it. */
  fingerprint: string;
}

export type AuthInfo = { ok: true; keys: VerifiedKey[] } | { ok: false; problem: string };

/** More methods than any AuthenticationMethods list a person would write. */
const MAX_LINES = 16;
/** Plain key types only: a certificate's fingerprint is of its inner key, which we do not parse. */
const KEY_TYPE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)$/;
const METHOD = /^[a-z][a-z0-9-]*(\/[A-Za-z0-9_-]+)?$/;
const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

export function sshFingerprint(blob: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The type string that opens an SSH wire-format key blob (u32be length + bytes), or null. */
function blobType(blob: Buffer): string | null {
  if (blob.length < 4) return null;
  const n = blob.readUInt32BE(0);
  if (n === 0 || n > 64 || 4 + n > blob.length) return null;
  return blob.subarray(4, 4 + n).toString('latin1');
}

/**
 * The keys sshd verified with `publickey`, in order, without duplicates. `{ok: false}` for
 * input that is absent, too long or malformed; `{ok: true, keys: []}` when sshd verified no
 * key (keyboard-interactive or password only).
 */
export function parseAuthInfo(text: string | undefined): AuthInfo {
  if (text === undefined || text === '') return { ok: false, problem: 'no SSH_AUTH_INFO_0 from sshd' };
  if (Buffer.byteLength(text) > MAX_AUTH_INFO) return { ok: false, problem: 'SSH_AUTH_INFO_0 too long' };
  // sshd ends every line with a newline; the last one is not required.
  const lines = (text.endsWith('\n') ? text.slice(0, -1) : text).split('\n');
  if (lines.length > MAX_LINES) return { ok: false, problem: 'SSH_AUTH_INFO_0 has too many lines' };
  const keys: VerifiedKey[] = [];
  for (const line of lines) {
    const words = line.split(' ');
    const method = words[0] ?? '';
    if (!METHOD.test(method)) return { ok: false, problem: 'SSH_AUTH_INFO_0 has a malformed method' };
    if (method !== 'publickey') continue;
    const [type, b64] = [words[1] ?? '', words[2] ?? ''];
    if (!KEY_TYPE.test(type)) return { ok: false, problem: 'SSH_AUTH_INFO_0 has a key type leases do not support' };
    if (!B64.test(b64) || b64.length % 4 !== 0) return { ok: false, problem: 'SSH_AUTH_INFO_0 has a malformed key' };
    const blob = Buffer.from(b64, 'base64');
    // The type inside the blob is what sshd verified; the word before it must agree.
    if (blobType(blob) !== type) return { ok: false, problem: 'SSH_AUTH_INFO_0 key type and key disagree' };
    const fingerprint = sshFingerprint(blob);
    if (!keys.some((k) => k.fingerprint === fingerprint)) keys.push({ type, fingerprint });
  }
  return { ok: true, keys };
}
