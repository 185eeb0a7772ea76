/**
 * Runs every protocol vector (protocol/vectors.json) through a QrCrypto: keys, ids, signed
 * bytes, signatures (and the check of the host's enrollment answer), offline key and code,
 * fingerprint, payloads. The app's Settings page runs it on this phone's browser ("check this
 * phone's cryptography"); test/protocol-web.test.ts runs it in Node and in Chromium. Each check reports what it got and what the vector says.
 */
import type { QrCrypto } from '../../../protocol/src/crypto.js';
import {
  authBytes,
  contextBytes,
  decisionBytes,
  enrollAckBytes,
  enrollBytes,
  enrollFingerprint,
  formatEnrollPayload,
  formatLoginPayload,
  fromB64url,
  keyId,
  leaseRevokeBytes,
  offlineCode,
  offlineKey,
  parseEnrollPayload,
  parseLoginPayload,
  signDecision,
  toB64url,
  tokenIdOf,
  verifyEnrollAck,
  webauthnChallenge,
} from '../../../protocol/src/index.js';

export interface VectorCheck {
  name: string;
  got: string;
  want: string;
}

/** The shape of protocol/vectors.json. */
export interface ProtocolVectors {
  hostSeed: string;
  deviceSeed: string;
  hostPub: string;
  devicePub: string;
  hostId: string;
  deviceId: string;
  sid: string;
  nonce: string;
  token: string;
  context: { hostId: string; sid: string; user: string; hostname: string; rhost: string; service: string; iat: number; exp: number };
  contextBytes: string;
  contextSig: string;
  decision: { hostId: string; sid: string; nonce: string; user: string; decision: 'approve' | 'deny'; time: number; deviceId: string };
  decisionBytes: string;
  decisionSig: string;
  /** A lease offer (context v2), an approval taking it (approve v2), a phone ending its leases. */
  contextLease: ProtocolVectors['context'] & { keyFp: string; leaseSeconds: number[] };
  contextLeaseBytes: string;
  contextLeaseSig: string;
  /** The source's forward-confirmed name and "first login from this address" (context v3). */
  contextSource: ProtocolVectors['context'] & { rhostName: string; firstFromAddress: boolean };
  contextSourceBytes: string;
  contextSourceSig: string;
  decisionLease: ProtocolVectors['decision'] & { lease: { seconds: number; keyFp: string } };
  decisionLeaseBytes: string;
  decisionLeaseSig: string;
  leaseRevoke: { hostId: string; deviceId: string; leaseId: string; time: number };
  leaseRevokeBytes: string;
  leaseRevokeSig: string;
  authBytes: string;
  /** The handshake v2 bytes: the relay's origin signed in, under labels of their own. */
  authBytesV2: string;
  enroll: { hostId: string; tokenId: string; token: string; devicePub: string; deviceName: string; time: number };
  enrollBytes: string;
  tokenId: string;
  /** An enrollment with a passkey (enroll-v2) and its fingerprint (v3); the challenge an approval's passkey signs. */
  enrollPasskey: ProtocolVectors['enroll'] & { passkey: { credentialId: string; publicKey: string; origin: string; rpId: string } };
  enrollPasskeyBytes: string;
  enrollPasskeySig: string;
  fingerprintPasskey: string;
  webauthnChallenge: string;
  enrollAck: { hostId: string; tokenId: string; devicePub: string; hostname: string; relayUrl: string };
  enrollAckBytes: string;
  enrollAckSig: string;
  enrollAckRelays: { hostId: string; tokenId: string; devicePub: string; hostname: string; relayUrl: string; fallbackRelayUrls: string[] };
  enrollAckRelaysBytes: string;
  enrollAckRelaysSig: string;
  offlineKey: string;
  offlineCode: string;
  fingerprint: string;
  loginPayload: string;
  enrollPayload: string;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
function bytes(h: string): Uint8Array {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function runProtocolVectors(c: QrCrypto, v: ProtocolVectors): VectorCheck[] {
  const checks: VectorCheck[] = [];
  const check = (name: string, got: string | boolean, want: string | boolean) => checks.push({ name, got: String(got), want: String(want) });
  const safely = (name: string, f: () => string | boolean, want: string | boolean) => {
    try {
      check(name, f(), want);
    } catch (e) {
      check(name, `threw ${(e as Error).message}`, want);
    }
  };

  const hostSeed = bytes(v.hostSeed);
  const deviceSeed = bytes(v.deviceSeed);
  const hostPub = c.ed25519FromSeed(hostSeed).publicKey;
  const devicePub = c.ed25519FromSeed(deviceSeed).publicKey;
  check('hostPub', hex(hostPub), v.hostPub);
  check('devicePub', hex(devicePub), v.devicePub);
  check('hostId', keyId(c, hostPub), v.hostId);
  check('deviceId', keyId(c, devicePub), v.deviceId);

  check('contextBytes', hex(contextBytes(v.context)), v.contextBytes);
  check('contextSig', toB64url(c.ed25519Sign(hostSeed, contextBytes(v.context))), v.contextSig);
  check('contextSig verifies', c.ed25519Verify(hostPub, contextBytes(v.context), fromB64url(v.contextSig, 64)), true);
  check('contextSig does not verify for another user', c.ed25519Verify(hostPub, contextBytes({ ...v.context, user: 'mallory' }), fromB64url(v.contextSig, 64)), false);

  const decision = { ...v.decision, nonce: bytes(v.decision.nonce) };
  check('decisionBytes', hex(decisionBytes(decision)), v.decisionBytes);
  check('decisionSig', toB64url(c.ed25519Sign(deviceSeed, decisionBytes(decision))), v.decisionSig);
  check('decisionSig verifies', c.ed25519Verify(devicePub, decisionBytes(decision), fromB64url(v.decisionSig, 64)), true);
  check('authBytes', hex(authBytes('device', v.deviceId, 1780000000000, v.sid)), v.authBytes);
  check('authBytesV2', hex(authBytes('device', v.deviceId, 1780000000000, v.sid, 'https://relay.example.net')), v.authBytesV2);

  // Leases: the offer is signed under its own label, so it cannot be cut back to a v1 context.
  check('contextLeaseBytes', hex(contextBytes(v.contextLease)), v.contextLeaseBytes);
  check('contextLeaseSig', toB64url(c.ed25519Sign(hostSeed, contextBytes(v.contextLease))), v.contextLeaseSig);
  check('contextLeaseSig does not verify with the offer dropped', c.ed25519Verify(hostPub, contextBytes(v.context), fromB64url(v.contextLeaseSig, 64)), false);
  check('contextSourceBytes', hex(contextBytes(v.contextSource)), v.contextSourceBytes);
  check('contextSourceSig', toB64url(c.ed25519Sign(hostSeed, contextBytes(v.contextSource))), v.contextSourceSig);
  check(
    'contextSourceSig does not verify with "first login" turned off',
    c.ed25519Verify(hostPub, contextBytes({ ...v.contextSource, firstFromAddress: false }), fromB64url(v.contextSourceSig, 64)),
    false,
  );
  const decisionLease = { ...v.decisionLease, nonce: bytes(v.decisionLease.nonce) };
  check('decisionLeaseBytes', hex(decisionBytes(decisionLease)), v.decisionLeaseBytes);
  check('decisionLeaseSig', toB64url(c.ed25519Sign(deviceSeed, decisionBytes(decisionLease))), v.decisionLeaseSig);
  check(
    'decisionLeaseSig does not verify for a longer lease',
    c.ed25519Verify(devicePub, decisionBytes({ ...decisionLease, lease: { ...decisionLease.lease, seconds: 28800 } }), fromB64url(v.decisionLeaseSig, 64)),
    false,
  );
  // What the Approve page signs: only a duration the signed context offered.
  safely(
    'signDecision refuses a lease the context did not offer',
    () => {
      const login = { hostId: v.hostId, sid: v.sid, nonce: bytes(v.nonce) };
      const ctx = { v: 1 as const, ...v.contextLease, sig: v.contextLeaseSig };
      try {
        signDecision(c, deviceSeed, v.deviceId, login, ctx, 'approve', v.decision.time, 7200);
        return 'signed';
      } catch (e) {
        return (e as { code?: string }).code ?? 'threw';
      }
    },
    'QRA_ERR_LEASE',
  );
  check('leaseRevokeBytes', hex(leaseRevokeBytes(v.leaseRevoke)), v.leaseRevokeBytes);
  check('leaseRevokeSig', toB64url(c.ed25519Sign(deviceSeed, leaseRevokeBytes(v.leaseRevoke))), v.leaseRevokeSig);

  check('enrollBytes', hex(enrollBytes({ ...v.enroll, token: bytes(v.enroll.token) })), v.enrollBytes);
  // With a passkey: its own label, so a relay cannot strip the passkey and keep a valid signature.
  const enrollPasskey = { ...v.enrollPasskey, token: bytes(v.enrollPasskey.token) };
  check('enrollPasskeyBytes', hex(enrollBytes(enrollPasskey)), v.enrollPasskeyBytes);
  check('enrollPasskeySig', toB64url(c.ed25519Sign(deviceSeed, enrollBytes(enrollPasskey))), v.enrollPasskeySig);
  check('enrollPasskeySig does not verify with the passkey stripped', c.ed25519Verify(devicePub, enrollBytes({ ...enrollPasskey, passkey: undefined }), fromB64url(v.enrollPasskeySig, 64)), false);
  check('webauthnChallenge', hex(webauthnChallenge(c, decision)), v.webauthnChallenge);
  check('tokenId', tokenIdOf(c, bytes(v.token)), v.tokenId);
  check('enrollAckBytes', hex(enrollAckBytes(v.enrollAck)), v.enrollAckBytes);
  check('enrollAckSig', toB64url(c.ed25519Sign(hostSeed, enrollAckBytes(v.enrollAck))), v.enrollAckSig);
  // The phone's check of the host's acceptance: the genuine one passes, a changed relay URL does not.
  const { hostname, relayUrl } = v.enrollAck;
  safely('enrollAck verifies', () => verifyEnrollAck(c, { ok: true, hostname, relayUrl, sig: v.enrollAckSig }, v.enrollAck, hostPub).ok, true);
  safely(
    'enrollAck with a changed relay URL is refused',
    () => {
      try {
        verifyEnrollAck(c, { ok: true, hostname, relayUrl: 'https://relay.attacker.example', sig: v.enrollAckSig }, v.enrollAck, hostPub);
        return 'accepted';
      } catch (e) {
        return (e as { code?: string }).code ?? 'threw';
      }
    },
    'QRA_ERR_SIGNATURE',
  );
  // With the host's further relays (v2): the list is signed, so a relay cannot add itself to it.
  check('enrollAckRelaysBytes', hex(enrollAckBytes(v.enrollAckRelays)), v.enrollAckRelaysBytes);
  check('enrollAckRelaysSig', toB64url(c.ed25519Sign(hostSeed, enrollAckBytes(v.enrollAckRelays))), v.enrollAckRelaysSig);
  safely(
    'enrollAck with a relay added to the list is refused',
    () => {
      const { fallbackRelayUrls } = v.enrollAckRelays;
      const added = { ok: true, hostname, relayUrl, fallbackRelayUrls: [...fallbackRelayUrls, 'https://relay.attacker.example'], sig: v.enrollAckRelaysSig };
      try {
        verifyEnrollAck(c, added, v.enrollAckRelays, hostPub);
        return 'accepted';
      } catch (e) {
        return (e as { code?: string }).code ?? 'threw';
      }
    },
    'QRA_ERR_SIGNATURE',
  );

  safely('offlineKey (host side)', () => hex(offlineKey(c, hostSeed, devicePub, v.hostId, v.deviceId)), v.offlineKey);
  safely('offlineKey (phone side)', () => hex(offlineKey(c, deviceSeed, hostPub, v.hostId, v.deviceId)), v.offlineKey);
  safely('offlineCode', () => offlineCode(c, offlineKey(c, deviceSeed, hostPub, v.hostId, v.deviceId), v.hostId, v.sid, bytes(v.nonce)), v.offlineCode);
  check('fingerprint', enrollFingerprint(c, hostPub, devicePub, bytes(v.token)), v.fingerprint);
  check('fingerprintPasskey', enrollFingerprint(c, hostPub, devicePub, bytes(v.token), v.enrollPasskey.passkey), v.fingerprintPasskey);

  check('loginPayload', formatLoginPayload({ hostId: v.hostId, sid: v.sid, nonce: bytes(v.nonce) }), v.loginPayload);
  safely('loginPayload parses', () => hex(parseLoginPayload(v.loginPayload).nonce), v.nonce);
  check(
    'enrollPayload',
    formatEnrollPayload({ hostPub, token: bytes(v.token), hostname: 'web-01', relayUrl: 'https://relay.example.net' }),
    v.enrollPayload,
  );
  safely('enrollPayload parses', () => hex(parseEnrollPayload(v.enrollPayload).hostPub), v.hostPub);
  return checks;
}
