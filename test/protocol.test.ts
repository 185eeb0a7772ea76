import test from 'ava';
import { readFileSync } from 'node:fs';
import { ed25519Signer, nodeCrypto as c } from '../protocol/src/crypto-node.js';
import {
  ERROR_CODES, FrameDecoder, MsgType, QR_MAX_FRAME, QrauthError, Result, authBytes, contextBytes, decisionBytes,
  decodeBody, encodeFrame, enrollAckBytes, enrollBytes, enrollFingerprint, formatEnrollPayload, formatLoginPayload, fromB64url, keyId,
  leaseRevokeBytes, signDecision, leaseRevokeMessage, signedContext,
  normaliseCode, offlineCode, verifyEnrollAck, offlineKey, parseEnrollPayload, parseLoginPayload, toB64url, tokenIdOf, decisionMessage, parse, webauthnChallenge, enrollMessage,
  arrayOf, object, optional, str, type Check, makeAuthHandshake, verifyAuthHandshake,
} from '../protocol/src/index.js';

const v = JSON.parse(readFileSync(new URL('../protocol/vectors.json', import.meta.url), 'utf8'));
const bytes = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('lease vectors: context v2, approve v2 and lease revoke have labels of their own and reproduce in Node', (t) => {
  const host = c.ed25519FromSeed(bytes(v.hostSeed));
  const device = c.ed25519FromSeed(bytes(v.deviceSeed));
  const label = (h: string) => Buffer.from(h, 'hex').toString('latin1').split('\0')[0];
  t.is(hex(contextBytes(v.contextLease)), v.contextLeaseBytes);
  t.is(label(v.contextLeaseBytes), 'qrauth-context-v2');
  t.true(c.ed25519Verify(host.publicKey, contextBytes(v.contextLease), fromB64url(v.contextLeaseSig, 64)));
  t.false(c.ed25519Verify(host.publicKey, contextBytes(v.context), fromB64url(v.contextLeaseSig, 64)), 'the offer cannot be cut off');
  t.false(c.ed25519Verify(host.publicKey, contextBytes({ ...v.contextLease, leaseSeconds: [900, 3600, 604800] }), fromB64url(v.contextLeaseSig, 64)));
  // The context as it travels validates (keyFp pattern, up to 4 durations).
  t.notThrows(() => parse(signedContext, { v: 1, ...v.contextLease, sig: v.contextLeaseSig }, 'ctx'));
  const decision = { ...v.decisionLease, nonce: bytes(v.decisionLease.nonce) };
  t.is(hex(decisionBytes(decision)), v.decisionLeaseBytes);
  t.is(label(v.decisionLeaseBytes), 'qrauth-approve-v2');
  t.is(toB64url(c.ed25519Sign(bytes(v.deviceSeed), decisionBytes(decision))), v.decisionLeaseSig);
  t.false(c.ed25519Verify(device.publicKey, decisionBytes({ ...decision, lease: undefined }), fromB64url(v.decisionLeaseSig, 64)), 'not a v1 approval');
  // signDecision makes exactly these bytes for an offered duration, and refuses any other.
  const login = { hostId: v.hostId, sid: v.sid, nonce: bytes(v.nonce) };
  const ctx = { v: 1 as const, ...v.contextLease, sig: v.contextLeaseSig };
  t.is(signDecision(c, bytes(v.deviceSeed), v.deviceId, login, ctx, 'approve', v.decisionLease.time, 3600).sig, v.decisionLeaseSig);
  t.throws(() => signDecision(c, bytes(v.deviceSeed), v.deviceId, login, ctx, 'approve', v.decisionLease.time, 7200), { instanceOf: QrauthError });
  t.throws(() => signDecision(c, bytes(v.deviceSeed), v.deviceId, login, ctx, 'deny', v.decisionLease.time, 3600), { instanceOf: QrauthError });
  t.is(hex(leaseRevokeBytes(v.leaseRevoke)), v.leaseRevokeBytes);
  t.is(label(v.leaseRevokeBytes), 'qrauth-lease-revoke-v1');
  t.is(toB64url(c.ed25519Sign(bytes(v.deviceSeed), leaseRevokeBytes(v.leaseRevoke))), v.leaseRevokeSig);
  t.notThrows(() => parse(leaseRevokeMessage, { ...v.leaseRevoke, sig: v.leaseRevokeSig }, 'revoke'));
  t.throws(() => parse(leaseRevokeMessage, { ...v.leaseRevoke, leaseId: '**', sig: v.leaseRevokeSig }, 'revoke'));
});

test('source vectors: context v3 carries the reverse name and first login under a label of its own; v1 and v2 bytes unchanged', (t) => {
  const host = c.ed25519FromSeed(bytes(v.hostSeed));
  const label = (h: string) => Buffer.from(h, 'hex').toString('latin1').split('\0')[0];
  t.is(hex(contextBytes(v.contextSource)), v.contextSourceBytes);
  t.is(label(v.contextSourceBytes), 'qrauth-context-v3');
  t.is(toB64url(c.ed25519Sign(bytes(v.hostSeed), contextBytes(v.contextSource))), v.contextSourceSig);
  const sig = fromB64url(v.contextSourceSig, 64);
  t.true(c.ed25519Verify(host.publicKey, contextBytes(v.contextSource), sig));
  // Neither fact can be changed or cut off without the host's key.
  t.false(c.ed25519Verify(host.publicKey, contextBytes({ ...v.contextSource, firstFromAddress: false }), sig), 'first login flipped');
  t.false(c.ed25519Verify(host.publicKey, contextBytes({ ...v.contextSource, firstFromAddress: undefined }), sig), 'first login dropped');
  t.false(c.ed25519Verify(host.publicKey, contextBytes({ ...v.contextSource, rhostName: 'trusted.example.net' }), sig), 'name changed');
  t.false(c.ed25519Verify(host.publicKey, contextBytes(v.context), sig), 'cut back to v1');
  // A context without them keeps its old label and bytes.
  t.is(label(hex(contextBytes({ ...v.context, rhostName: undefined, firstFromAddress: undefined }))), 'qrauth-context-v1');
  t.is(hex(contextBytes(v.context)), v.contextBytes);
  t.is(hex(contextBytes(v.contextLease)), v.contextLeaseBytes);
  t.notThrows(() => parse(signedContext, { v: 1, ...v.contextSource, sig: v.contextSourceSig }, 'ctx'));
  // The name reaches the screen: nothing but a DNS name's characters passes the schema.
  for (const rhostName of ['evil\u202eten.example', 'a b', 'x\n', '', 'a'.repeat(254), '-lead.example']) {
    t.throws(() => parse(signedContext, { v: 1, ...v.contextSource, rhostName, sig: v.contextSourceSig }, 'ctx'), undefined, JSON.stringify(rhostName));
  }
});

test('Node crypto reproduces every checked-in protocol vector', (t) => {
  const host = c.ed25519FromSeed(bytes(v.hostSeed));
  const device = c.ed25519FromSeed(bytes(v.deviceSeed));
  t.is(hex(host.publicKey), v.hostPub);
  t.is(hex(device.publicKey), v.devicePub);
  t.is(keyId(c, host.publicKey), v.hostId);
  t.is(keyId(c, device.publicKey), v.deviceId);
  t.is(hex(contextBytes(v.context)), v.contextBytes);
  t.is(toB64url(c.ed25519Sign(bytes(v.hostSeed), contextBytes(v.context))), v.contextSig);
  t.true(c.ed25519Verify(host.publicKey, contextBytes(v.context), fromB64url(v.contextSig, 64)));
  const decision = { ...v.decision, nonce: bytes(v.decision.nonce) };
  t.is(hex(decisionBytes(decision)), v.decisionBytes);
  t.is(toB64url(c.ed25519Sign(bytes(v.deviceSeed), decisionBytes(decision))), v.decisionSig);
  t.is(hex(authBytes('device', v.deviceId, 1780000000000, v.sid)), v.authBytes);
  t.is(hex(authBytes('device', v.deviceId, 1780000000000, v.sid, 'https://relay.example.net')), v.authBytesV2);
  t.is(hex(enrollBytes({ ...v.enroll, token: bytes(v.enroll.token) })), v.enrollBytes);
  t.is(tokenIdOf(c, bytes(v.token)), v.tokenId);
  t.is(hex(enrollAckBytes(v.enrollAck)), v.enrollAckBytes);
  t.is(toB64url(c.ed25519Sign(bytes(v.hostSeed), enrollAckBytes(v.enrollAck))), v.enrollAckSig);
  const kHost = offlineKey(c, bytes(v.hostSeed), device.publicKey, v.hostId, v.deviceId);
  const kPhone = offlineKey(c, bytes(v.deviceSeed), host.publicKey, v.hostId, v.deviceId);
  t.is(hex(kHost), v.offlineKey);
  t.is(hex(kPhone), v.offlineKey);
  t.is(offlineCode(c, kHost, v.hostId, v.sid, bytes(v.nonce)), v.offlineCode);
  t.is(enrollFingerprint(c, host.publicKey, device.publicKey, bytes(v.token)), v.fingerprint);
  const enrollPasskey = { ...v.enrollPasskey, token: bytes(v.enrollPasskey.token) };
  t.is(hex(enrollBytes(enrollPasskey)), v.enrollPasskeyBytes);
  t.is(toB64url(c.ed25519Sign(bytes(v.deviceSeed), enrollBytes(enrollPasskey))), v.enrollPasskeySig);
  t.is(enrollFingerprint(c, host.publicKey, device.publicKey, bytes(v.token), v.enrollPasskey.passkey), v.fingerprintPasskey);
  t.is(hex(webauthnChallenge(c, decision)), v.webauthnChallenge);
  t.is(formatLoginPayload({ hostId: v.hostId, sid: v.sid, nonce: bytes(v.nonce) }), v.loginPayload);
  t.is(formatEnrollPayload({ hostPub: host.publicKey, token: bytes(v.token), hostname: 'web-01', relayUrl: 'https://relay.example.net' }), v.enrollPayload);
});

test('a signature over one purpose never verifies as another (domain separation)', (t) => {
  const seed = bytes(v.deviceSeed);
  const pub = c.ed25519FromSeed(seed).publicKey;
  const sig = c.ed25519Sign(seed, authBytes('device', v.deviceId, 1, v.sid));
  t.false(c.ed25519Verify(pub, authBytes('host', v.deviceId, 1, v.sid), sig));
  t.false(c.ed25519Verify(pub, decisionBytes({ ...v.decision, nonce: bytes(v.decision.nonce), decision: 'deny' }), c.ed25519Sign(seed, decisionBytes({ ...v.decision, nonce: bytes(v.decision.nonce) }))));
});

test('the login payload round-trips and malformed payloads are refused with QRA_ERR_PAYLOAD', (t) => {
  const p = parseLoginPayload(v.loginPayload);
  t.is(p.hostId, v.hostId);
  t.is(hex(p.nonce), v.nonce);
  for (const bad of ['', 'QRA1:', `${v.loginPayload}x`, v.loginPayload.replace('QRA1', 'QRA2'), `QRA1:${'!'.repeat(22)}:${v.sid}:${v.sid}`, 'x'.repeat(10000)]) {
    const e = t.throws(() => parseLoginPayload(bad), { instanceOf: QrauthError });
    t.is(e?.code, 'QRA_ERR_PAYLOAD');
  }
  // Non-canonical base64url (stray low bits in the last character) is not accepted as the same value.
  t.throws(() => parseLoginPayload(v.loginPayload.replace(/.$/, 'B')));
});

test('the enrollment payload round-trips and rejects bad URLs and host names', (t) => {
  const p = parseEnrollPayload(v.enrollPayload);
  t.is(p.hostname, 'web-01');
  t.is(p.relayUrl, 'https://relay.example.net');
  t.is(hex(p.token), v.token);
  t.throws(() => parseEnrollPayload(v.enrollPayload.replace('https://', 'ftp://')), { instanceOf: QrauthError });
  t.throws(() => parseEnrollPayload(v.enrollPayload.replace(/:[A-Za-z0-9_-]+:https/, ':AAA:https')), { instanceOf: QrauthError });
});

test('typed codes are normalised and non-digits are refused', (t) => {
  t.is(normaliseCode(' 1234-5678 '), '12345678');
  t.is(normaliseCode('1234 abcd'), null);
  t.is(normaliseCode(''), null);
  t.is(normaliseCode('1'.repeat(17)), null);
});

const begin = { type: MsgType.BEGIN, user: 'alice', rhost: '203.0.113.7', service: 'sshd', tty: 'ssh', mode: 0, qr: 0, timeout: 90 } as const;

test('frames decode the same whether they arrive whole or split at every byte', (t) => {
  const frames = [encodeFrame(begin), encodeFrame({ type: MsgType.WAIT, maxWait: 5000 }), encodeFrame({ type: MsgType.CODE, digits: '12345678' })];
  const all = Buffer.concat(frames);
  const whole = new FrameDecoder().push(all);
  t.is(whole.length, 3);
  t.deepEqual(whole[0], begin);
  for (let cut = 1; cut < all.length; cut++) {
    const d = new FrameDecoder();
    const got = [...d.push(all.subarray(0, cut)), ...d.push(all.subarray(cut))];
    t.deepEqual(got, whole, `split at ${cut}`);
  }
  const d = new FrameDecoder();
  const one: unknown[] = [];
  for (const b of all) one.push(...d.push(Uint8Array.of(b)));
  t.deepEqual(one, whole);
});

function frame(body: number[]): Uint8Array {
  const b = Uint8Array.from(body);
  const out = new Uint8Array(4 + b.length);
  new DataView(out.buffer).setUint32(0, b.length);
  out.set(b, 4);
  return out;
}

test('malformed frames are refused with QRA_ERR_FRAME', (t) => {
  const cases: Record<string, Uint8Array> = {
    'zero length': frame([]),
    'unknown type': frame([0x55]),
    'unknown tag': frame([0x02, 9, 0, 0]),
    'repeated tag': frame([0x03, 1, 0, 1, 0x31, 1, 0, 1, 0x32]),
    'missing required field': frame([0x03]),
    'field past end': frame([0x03, 1, 0, 9, 0x31]),
    'truncated field header': frame([0x03, 1, 0]),
    'NUL in string': frame([0x03, 1, 0, 2, 0x31, 0x00]),
    'bad u32 width': frame([0x02, 1, 0, 2, 0, 0]),
    'invalid UTF-8': frame([0x03, 1, 0, 1, 0xff]),
    'string over its limit': frame([0x03, 1, 0, 17, ...Array(17).fill(0x31)]),
  };
  for (const [name, f] of Object.entries(cases)) {
    const e = t.throws(() => new FrameDecoder().push(f), { instanceOf: QrauthError }, name);
    t.is(e?.code, 'QRA_ERR_FRAME', name);
  }
  const over = new Uint8Array(4);
  new DataView(over.buffer).setUint32(0, QR_MAX_FRAME + 1);
  t.throws(() => new FrameDecoder().push(over), { message: /outside/ });
  // At the limit: a CODE of exactly 16 digits is fine.
  t.deepEqual(decodeBody(Uint8Array.from([0x03, 1, 0, 16, ...Array(16).fill(0x31)])), { type: 0x03, digits: '1'.repeat(16) });
  t.deepEqual(decodeBody(encodeFrame({ type: MsgType.VERDICT, result: Result.APPROVED }).subarray(4)), { type: MsgType.VERDICT, result: 0 });
});

test('schemas reject unexpected fields, wrong types and oversized values', (t) => {
  const good = { hostId: v.hostId, sid: v.sid, deviceId: v.deviceId, decision: 'approve', time: 1, sig: v.decisionSig };
  t.deepEqual(parse(decisionMessage, good, 'decision'), good);
  for (const bad of [
    { ...good, extra: 1 },
    { ...good, decision: 'maybe' },
    { ...good, sid: 'short' },
    { ...good, time: 1.5 },
    { ...good, sig: 'x'.repeat(10_000) },
    null,
    [good],
  ]) {
    t.throws(() => parse(decisionMessage, bad, 'decision'), { instanceOf: QrauthError });
  }
});

test('the schema rules: each refusal names its field and what is wrong; arrays are counted before their items; an array is not an object', (t) => {
  const good = { hostId: v.hostId, sid: v.sid, deviceId: v.deviceId, decision: 'approve', time: 1, sig: v.decisionSig };
  const refusal = (check: Check<unknown>, value: unknown) => t.throws(() => parse(check, value, 'm'), { instanceOf: QrauthError })?.message;
  t.is(refusal(decisionMessage, { ...good, sid: 'short' }), 'm.sid: shorter than 22 characters');
  t.is(refusal(decisionMessage, { ...good, sid: 'A'.repeat(21) + '!' }), 'm.sid: has an invalid format');
  t.is(refusal(decisionMessage, { ...good, time: 1.5 }), 'm.time: expected an integer');
  t.is(refusal(decisionMessage, { ...good, time: -1 }), 'm.time: out of range 0..8640000000000');
  t.is(refusal(decisionMessage, { ...good, decision: 'maybe' }), 'm.decision: expected one of approve, deny');
  const { sig: _sig, ...unsigned } = good;
  t.is(refusal(decisionMessage, unsigned), 'm.sig: is missing');
  // An unknown field is named (cut to 40 characters), also one that is a name on Object.prototype.
  t.is(refusal(decisionMessage, { ...good, ['x'.repeat(100)]: 1 }), `m: unexpected field "${'x'.repeat(40)}"`);
  for (const json of ['"constructor":1', '"__proto__":{}', '"toString":"x"']) {
    t.regex(refusal(decisionMessage, JSON.parse(`{${JSON.stringify(good).slice(1, -1)},${json}}`)) ?? '', /^m: unexpected field "(constructor|__proto__|toString)"$/);
  }
  // Every string refuses control characters; nested paths name the element.
  const list = object({ names: arrayOf(str({ max: 4 }), 2), tag: optional(str({ max: 8 })) });
  t.is(refusal(list, { names: ['ok', 'a\x1b'] }), 'm.names[1]: contains control characters');
  // The count is checked before any item: three bad items are "more than 2", not "[0]: longer than".
  t.is(refusal(list, { names: ['toolong', 'toolong', 'toolong'] }), 'm.names: more than 2 items');
  // Counted without walking the items: a sparse array of 2**27 would take seconds, or end the process.
  const huge: string[] = [];
  huge.length = 2 ** 27;
  t.is(refusal(list, { names: huge }), 'm.names: more than 2 items');
  // An object whose fields are all optional does not take an array (or null) for itself.
  const allOptional = object({ tag: optional(str({ max: 8 })) });
  t.deepEqual(parse(allOptional, {}, 'm'), {});
  t.is(refusal(allOptional, []), 'm: expected an object');
  t.is(refusal(allOptional, null), 'm: expected an object');
  // A value that is not JSON and throws when read is refused as input, not thrown on as a TypeError.
  const trap = { names: ['a'], get extra(): string {
    throw new TypeError('read me');
  } };
  t.is(refusal(list, trap), 'm: could not be read');
  // What passes is a copy with exactly the named fields.
  const out = parse(list, { names: ['a'] }, 'm');
  t.deepEqual(out, { names: ['a'] });
  t.false(Object.hasOwn(out, 'tag'));
});

test('every error code is unique, prefixed and documented in docs/errors.md', (t) => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const codes = Object.keys(ERROR_CODES);
  t.is(new Set(codes).size, codes.length);
  for (const code of codes) {
    t.regex(code, /^QRA_ERR_[A-Z_]+$/);
    t.true(doc.includes(`\`${code}\``), `${code} is documented`);
  }
});

test('the kept-key signer gives the same signatures as signing from the seed, and checks the seed', (t) => {
  const sign = ed25519Signer(bytes(v.hostSeed));
  t.is(toB64url(sign(contextBytes(v.context))), v.contextSig);
  for (let i = 0; i < 20; i++) {
    const seed = c.randomBytes(32);
    const msg = c.randomBytes(i * 7);
    const sig = ed25519Signer(seed)(msg);
    t.deepEqual(sig, c.ed25519Sign(seed, msg));
    t.true(c.ed25519Verify(c.ed25519FromSeed(seed).publicKey, msg, sig));
  }
  t.throws(() => ed25519Signer(new Uint8Array(31)), { message: /32 bytes/ });
});

test('the enrollment fingerprint carries at least 64 bits, so grinding device keys for a match is out of reach', (t) => {
  // Crockford base32 (docs/enrollment.md): 5 bits a character; dashes only group for reading.
  const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  const seed = 20261126;
  const input = (i: number, what: string) => c.sha256(new TextEncoder().encode(`${seed}:${i}:${what}`));
  const seen = new Set<string>();
  let symbols = -1;
  for (let i = 0; i < 64; i++) {
    const fp = enrollFingerprint(c, c.ed25519FromSeed(input(i, 'host')).publicKey, c.ed25519FromSeed(input(i, 'device')).publicKey, input(i, 'token').subarray(0, 16));
    const chars = fp.replace(/-/g, '');
    t.true([...chars].every((ch) => CROCKFORD.includes(ch)), `seed ${seed}: ${fp} uses only Crockford base32`);
    if (symbols === -1) symbols = chars.length;
    t.is(chars.length, symbols, `seed ${seed}: every fingerprint has the same length`);
    seen.add(fp);
  }
  t.is(seen.size, 64, `seed ${seed}: different keys give different fingerprints`);
  const bits = symbols * Math.log2(CROCKFORD.length);
  t.true(bits >= 64, `the fingerprint has ${bits} bits; at least 64 are needed`);
});

test("the phone accepts the host's enrollment answer only as the host signed it, for this enrollment and this phone", (t) => {
  const hostPub = bytes(v.hostPub);
  const sent = { hostId: v.hostId, tokenId: v.tokenId, devicePub: v.enrollAck.devicePub };
  const genuine = { ok: true, hostname: v.enrollAck.hostname, relayUrl: v.enrollAck.relayUrl, sig: v.enrollAckSig };
  t.like(verifyEnrollAck(c, genuine, sent, hostPub), { ok: true, hostname: 'web-01', relayUrl: 'https://relay.example.net' });
  // A refusal is passed on (nothing to save); a malformed one is invalid input.
  t.like(verifyEnrollAck(c, { ok: false, code: 'QRA_ERR_ENROLL', message: 'no' }, sent, hostPub), { ok: false, code: 'QRA_ERR_ENROLL' });
  t.is(t.throws(() => verifyEnrollAck(c, { ok: false, code: 'nope' }, sent, hostPub), { instanceOf: QrauthError })?.code, 'QRA_ERR_INVALID_INPUT');
  const otherKey = toB64url(c.ed25519FromSeed(new Uint8Array(32).fill(7)).publicKey);
  const forgedSig = toB64url(c.ed25519Sign(new Uint8Array(32).fill(7), enrollAckBytes({ ...v.enrollAck, relayUrl: 'https://relay.attacker.example' })));
  const changed: Array<[string, unknown, typeof sent]> = [
    ['host name changed', { ...genuine, hostname: 'bank' }, sent],
    ['relay URL changed', { ...genuine, relayUrl: 'https://relay.attacker.example' }, sent],
    ['signed by another key', { ...genuine, relayUrl: 'https://relay.attacker.example', sig: forgedSig }, sent],
    ['no signature (an acceptance made up by the relay)', { ok: true, hostname: 'web-01' }, sent],
    ['signature not base64url', { ...genuine, sig: '!'.repeat(86) }, sent],
    ['replayed to another phone', genuine, { ...sent, devicePub: otherKey }],
    ['replayed to another enrollment', genuine, { ...sent, tokenId: toB64url(new Uint8Array(16).fill(1)) }],
    ['not an object', 'ok', sent],
    ['an extra field', { ...genuine, trusted: true }, sent],
  ];
  for (const [why, ack, to] of changed) {
    const e = t.throws(() => verifyEnrollAck(c, ack, to, hostPub), { instanceOf: QrauthError }, why);
    t.is(e?.code, 'QRA_ERR_SIGNATURE', why);
    t.regex(e?.message ?? '', /^the relay changed the host's answer; nothing was saved/, why);
  }
  // The domain label keeps this signature from standing for any other signed message.
  t.false(c.ed25519Verify(hostPub, contextBytes({ ...v.context }), fromB64url(v.enrollAckSig, 64)));
});

test("the host's further relays reach the phone only as the host signed them (enrollment answer v2)", (t) => {
  const hostPub = bytes(v.hostPub);
  const a = v.enrollAckRelays as { hostname: string; relayUrl: string; fallbackRelayUrls: string[] };
  t.is(hex(enrollAckBytes(v.enrollAckRelays)), v.enrollAckRelaysBytes);
  t.regex(Buffer.from(v.enrollAckRelaysBytes, 'hex').toString('latin1'), /^qrauth-enroll-ack-v2\0/, 'a label of its own');
  const sent = { hostId: v.hostId, tokenId: v.tokenId, devicePub: v.enrollAck.devicePub };
  const genuine = { ok: true, hostname: a.hostname, relayUrl: a.relayUrl, fallbackRelayUrls: a.fallbackRelayUrls, sig: v.enrollAckRelaysSig };
  t.like(verifyEnrollAck(c, genuine, sent, hostPub), { ok: true, relayUrl: 'https://relay.example.net', fallbackRelayUrls: ['https://relay-b.example.net', 'https://relay-c.example.net'] });
  const changed: Array<[string, unknown]> = [
    ['a relay added', { ...genuine, fallbackRelayUrls: [...a.fallbackRelayUrls, 'https://relay.attacker.example'] }],
    ['a relay swapped', { ...genuine, fallbackRelayUrls: ['https://relay.attacker.example', a.fallbackRelayUrls[1]] }],
    ['the order changed', { ...genuine, fallbackRelayUrls: [...a.fallbackRelayUrls].reverse() }],
    ['the list dropped (cut back to v1)', { ok: true, hostname: a.hostname, relayUrl: a.relayUrl, sig: v.enrollAckRelaysSig }],
    ['a list added to a v1 answer', { ok: true, hostname: v.enrollAck.hostname, relayUrl: v.enrollAck.relayUrl, fallbackRelayUrls: ['https://relay.attacker.example'], sig: v.enrollAckSig }],
    ['too many relays', { ...genuine, fallbackRelayUrls: Array.from({ length: 8 }, (_, i) => `https://r${i}.example.net`) }],
  ];
  for (const [why, ack] of changed) {
    const e = t.throws(() => verifyEnrollAck(c, ack, sent, hostPub), { instanceOf: QrauthError }, why);
    t.is(e?.code, 'QRA_ERR_SIGNATURE', why);
  }
});

test('an enrollment passkey is bound: the fingerprint changes when it is stripped or any field of it swapped, and the enroll schema checks it', (t) => {
  const host = c.ed25519FromSeed(bytes(v.hostSeed)).publicKey;
  const device = c.ed25519FromSeed(bytes(v.deviceSeed)).publicKey;
  const p = v.enrollPasskey.passkey as { credentialId: string; publicKey: string; origin: string; rpId: string };
  const fp = (passkey?: typeof p) => enrollFingerprint(c, host, device, bytes(v.token), passkey);
  t.is(fp(p), v.fingerprintPasskey);
  t.not(fp(), fp(p), 'stripped');
  t.not(fp({ ...p, credentialId: toB64url(new Uint8Array(32).fill(1)) }), fp(p), 'another credential');
  t.not(fp({ ...p, origin: 'https://evil.example.net', rpId: 'evil.example.net' }), fp(p), 'another origin');
  const msg = { hostId: v.hostId, tokenId: v.tokenId, devicePub: toB64url(device), deviceName: 'x', time: 1780000020000, sig: v.enrollPasskeySig };
  t.notThrows(() => parse(enrollMessage, { ...msg, passkey: p }, 'enroll'));
  t.notThrows(() => parse(enrollMessage, msg, 'enroll'));
  t.throws(() => parse(enrollMessage, { ...msg, passkey: { ...p, origin: 'http://app.example.net' } }, 'enroll'), { message: /origin: not https/ });
  t.throws(() => parse(enrollMessage, { ...msg, passkey: { ...p, rpId: 'example.org' } }, 'enroll'), { message: /rpId/ });
  t.throws(() => parse(enrollMessage, { ...msg, passkey: { ...p, extra: 1 } }, 'enroll'), { message: /unexpected field/ });
});

test('handshake v2 names its relay inside the signature; a relay checks it against its own origins', (t) => {
  const seed = bytes(v.hostSeed);
  const now = 1_800_000_000_000;
  const h = makeAuthHandshake(c, 'host', seed, now, 'https://relay-a.example/qrauth/');
  t.like(h, { v: 2, relay: 'https://relay-a.example', time: now });
  const a = new Set(['https://relay-a.example']);
  const b = new Set(['https://relay-b.example']);
  t.notThrows(() => verifyAuthHandshake(c, 'host', h, now, undefined, { origins: a, boundOnly: true }));
  // Presented to another relay: refused, with both names.
  t.throws(() => verifyAuthHandshake(c, 'host', h, now, undefined, { origins: b, boundOnly: false }), { message: /signed for another relay \(https:\/\/relay-a\.example\), not this one;/ });
  // Bound-only with no names of its own takes no v2 at all.
  t.throws(() => verifyAuthHandshake(c, 'host', h, now, undefined, { origins: new Set(), boundOnly: true }), { message: /signed for another relay/ });
  // The name cannot be changed, dropped (as v1) or the signature reused under the other role.
  t.throws(() => verifyAuthHandshake(c, 'host', { ...h, relay: 'https://relay-b.example' }, now, undefined, { origins: b, boundOnly: false }), { message: /signature does not verify/ });
  const { relay: _dropped, ...rest } = h as typeof h & { relay: string };
  t.throws(() => verifyAuthHandshake(c, 'host', { ...rest, v: 1 }, now), { message: /signature does not verify/ });
  t.throws(() => verifyAuthHandshake(c, 'device', h, now), { message: /signature does not verify/ });
  // The bytes: their own label, the origin last.
  const label = (b: Uint8Array) => Buffer.from(b).toString('latin1').split('\0')[0];
  t.is(label(authBytes('host', keyId(c, c.ed25519FromSeed(seed).publicKey), now, h.nonce, 'https://relay-a.example')), 'qrauth-host-auth-v2');
  t.is(label(authBytes('device', 'x', now, h.nonce)), 'qrauth-device-auth-v1');
  // Only an origin as URL.origin writes it; a v1 handshake where only bound ones are taken.
  for (const relay of ['https://relay-a.example/', 'https://RELAY-a.example', 'https://relay-a.example:443', 'ftp://relay-a.example', 'https://user@relay-a.example', `https://${'a'.repeat(310)}.example`, 42]) {
    t.throws(() => verifyAuthHandshake(c, 'host', { ...h, relay }, now), { message: /malformed handshake/ }, String(relay).slice(0, 40));
  }
  t.throws(() => verifyAuthHandshake(c, 'host', makeAuthHandshake(c, 'host', seed, now), now, undefined, { origins: a, boundOnly: true }), { message: /only handshakes signed for it/ });
  t.notThrows(() => verifyAuthHandshake(c, 'host', makeAuthHandshake(c, 'host', seed, now), now, undefined, { origins: a, boundOnly: false }));
  t.throws(() => makeAuthHandshake(c, 'host', seed, now, 'relay-a.example'), { instanceOf: QrauthError });
});
