/**
 * Writes protocol/vectors.json: fixed keys and inputs, and what every protocol function
 * makes of them. Run once when the protocol changes (npx tsx protocol/make-vectors.ts);
 * the tests then hold both the Node and the browser crypto to these bytes.
 */
import { writeFileSync } from 'node:fs';
import { nodeCrypto as c } from './src/crypto-node.js';
import {
  authBytes, contextBytes, decisionBytes, enrollAckBytes, enrollBytes, enrollFingerprint, formatEnrollPayload, formatLoginPayload,
  keyId, leaseRevokeBytes, offlineCode, offlineKey, toB64url, tokenIdOf, webauthnChallenge,
} from './src/index.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const hostSeed = new Uint8Array(32).fill(1);
const deviceSeed = new Uint8Array(32).fill(2);
const host = c.ed25519FromSeed(hostSeed);
const device = c.ed25519FromSeed(deviceSeed);
const hostId = keyId(c, host.publicKey);
const deviceId = keyId(c, device.publicKey);
const sid = toB64url(new Uint8Array(16).fill(3));
const nonce = new Uint8Array(16).fill(4);
const token = new Uint8Array(16).fill(5);
const context = { hostId, sid, user: 'alice', hostname: 'web-01', rhost: '203.0.113.7', service: 'sshd', iat: 1780000000, exp: 1780000090 };
const decision = { hostId, sid, nonce, user: 'alice', decision: 'approve' as const, time: 1780000010000, deviceId };
// A lease offer (v2 context) and an approval that takes it (approve-v2); a phone ending its leases.
const keyFp = 'SHA256:' + Buffer.from(new Uint8Array(32).fill(6)).toString('base64').replace(/=+$/, '');
const contextLease = { ...context, keyFp, leaseSeconds: [900, 3600, 28800] };
const decisionLease = { ...decision, lease: { seconds: 3600, keyFp } };
// What the host knows of the source (context v3): a forward-confirmed name, a first login from it.
const contextSource = { ...context, rhostName: 'gw-7.example.net', firstFromAddress: true };
const leaseRevoke = { hostId, deviceId, leaseId: '*', time: 1780000030000 };
const tokenId = tokenIdOf(c, token);
const enroll = { hostId, tokenId, token, devicePub: toB64url(device.publicKey), deviceName: "Alice's Pixel", time: 1780000020000 };
// A phone that enrolls with a passkey (enroll-v2, fingerprint v3). The COSE key is a fixed ES256 map
// (the bytes need not be a point here: only the encodings are pinned).
const passkey = {
  credentialId: toB64url(new Uint8Array(32).fill(7)),
  publicKey: toB64url(Uint8Array.from([0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20, ...new Uint8Array(32).fill(8), 0x22, 0x58, 0x20, ...new Uint8Array(32).fill(9)])),
  origin: 'https://app.example.net',
  rpId: 'app.example.net',
};
const enrollPasskey = { ...enroll, passkey };
const enrollAck = { hostId, tokenId, devicePub: toB64url(device.publicKey), hostname: 'web-01', relayUrl: 'https://relay.example.net' };
const enrollAckRelays = { ...enrollAck, fallbackRelayUrls: ['https://relay-b.example.net', 'https://relay-c.example.net'] };
const k = offlineKey(c, hostSeed, device.publicKey, hostId, deviceId);
const kPhone = offlineKey(c, deviceSeed, host.publicKey, hostId, deviceId);
if (hex(k) !== hex(kPhone)) throw new Error('offline keys differ between the two sides');

const vectors = {
  hostSeed: hex(hostSeed), deviceSeed: hex(deviceSeed),
  hostPub: hex(host.publicKey), devicePub: hex(device.publicKey), hostId, deviceId,
  sid, nonce: hex(nonce), token: hex(token),
  context, contextBytes: hex(contextBytes(context)), contextSig: toB64url(c.ed25519Sign(hostSeed, contextBytes(context))),
  decision: { ...decision, nonce: hex(nonce) }, decisionBytes: hex(decisionBytes(decision)),
  decisionSig: toB64url(c.ed25519Sign(deviceSeed, decisionBytes(decision))),
  contextLease, contextLeaseBytes: hex(contextBytes(contextLease)), contextLeaseSig: toB64url(c.ed25519Sign(hostSeed, contextBytes(contextLease))),
  contextSource, contextSourceBytes: hex(contextBytes(contextSource)), contextSourceSig: toB64url(c.ed25519Sign(hostSeed, contextBytes(contextSource))),
  decisionLease: { ...decisionLease, nonce: hex(nonce) }, decisionLeaseBytes: hex(decisionBytes(decisionLease)),
  decisionLeaseSig: toB64url(c.ed25519Sign(deviceSeed, decisionBytes(decisionLease))),
  leaseRevoke, leaseRevokeBytes: hex(leaseRevokeBytes(leaseRevoke)), leaseRevokeSig: toB64url(c.ed25519Sign(deviceSeed, leaseRevokeBytes(leaseRevoke))),
  authBytes: hex(authBytes('device', deviceId, 1780000000000, sid)),
  authBytesV2: hex(authBytes('device', deviceId, 1780000000000, sid, 'https://relay.example.net')),
  enroll: { ...enroll, token: hex(token) }, enrollBytes: hex(enrollBytes(enroll)), tokenId,
  enrollPasskey: { ...enrollPasskey, token: hex(token) }, enrollPasskeyBytes: hex(enrollBytes(enrollPasskey)),
  enrollPasskeySig: toB64url(c.ed25519Sign(deviceSeed, enrollBytes(enrollPasskey))),
  fingerprintPasskey: enrollFingerprint(c, host.publicKey, device.publicKey, token, passkey),
  webauthnChallenge: hex(webauthnChallenge(c, decision)),
  enrollAck, enrollAckBytes: hex(enrollAckBytes(enrollAck)), enrollAckSig: toB64url(c.ed25519Sign(hostSeed, enrollAckBytes(enrollAck))),
  enrollAckRelays, enrollAckRelaysBytes: hex(enrollAckBytes(enrollAckRelays)),
  enrollAckRelaysSig: toB64url(c.ed25519Sign(hostSeed, enrollAckBytes(enrollAckRelays))),
  offlineKey: hex(k), offlineCode: offlineCode(c, k, hostId, sid, nonce),
  fingerprint: enrollFingerprint(c, host.publicKey, device.publicKey, token),
  loginPayload: formatLoginPayload({ hostId, sid, nonce }),
  enrollPayload: formatEnrollPayload({ hostPub: host.publicKey, token, hostname: 'web-01', relayUrl: 'https://relay.example.net' }),
};
writeFileSync(new URL('./vectors.json', import.meta.url), `${JSON.stringify(vectors, null, 2)}\n`);
console.log('wrote protocol/vectors.json');
