/**
 * More of the hostile relay (hostile-relay.test.ts has forge, replay, swap, reorder, delay,
 * flood): a relay serving two hosts that carries an approval from one to the other, hands a
 * phone the context of another host, feeds the agent junk enrollments, drops the agent mid-login,
 * never answers at all, or sends huge messages. Each can only deny or delay a login.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server as NetServer, type Socket as NetSocket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { constants as zlib, deflateRawSync } from 'node:zlib';
import type { Socket } from 'socket.io';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import {
  MsgType,
  Result,
  decisionBytes,
  enrollBytes,
  keyId,
  offlineCode,
  offlineKey,
  parseLoginPayload,
  toB64url,
  type FrameMsg,
  type SignedContext,
} from '../protocol/src/index.js';
import { RELAY_MESSAGE_MAX_BYTES } from '../agent/src/relay-link.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { startHostileRelay, type HostileRelay } from './support/hostile-relay.js';
import { eventually } from './support/net.js';
import { PamClient } from './support/pam-client.js';
import { HeadlessPhone } from './support/phone.js';
import { tempDir } from './support/system.js';

const tmp = tempDir('qra-adv-');
const passwdPath = join(tmp.path, 'passwd');
writeFileSync(passwdPath, 'alice:x:4242:4242::/nonexistent:/bin/sh\n');

function device(fill: number) {
  const seed = new Uint8Array(32).fill(fill);
  const { publicKey } = c.ed25519FromSeed(seed);
  return { seed, publicKey, deviceId: keyId(c, publicKey), line: `ed25519 ${toB64url(publicKey)} 2026-11-26 Phone ${fill}` };
}
const phoneKey = device(4);
const otherKey = device(5);

/** What the relay answers a phone's context request with (set per test). */
let onPhoneContext: (req: { hostId: string; sid: string }) => Promise<unknown> = async () => ({ ok: false, code: 'QRA_ERR_HOST_OFFLINE', message: 'x' });

let relay: HostileRelay;
let hostA: AgentFixture;
let hostB: AgentFixture;
let phone: HeadlessPhone;
test.before(async () => {
  relay = await startHostileRelay({
    onDevice: (s: Socket) => {
      s.on('context', (req: { hostId: string; sid: string }, ack: (a: unknown) => void) => void onPhoneContext(req).then(ack));
      s.on('decision', (msg: { hostId: string }, ack: (a: unknown) => void) => void relay.askHost(msg.hostId, 'decision', msg).then(ack));
    },
  });
  hostA = await startTestAgent({ relayUrl: relay.url, expirySeconds: 20, hostname: 'host-a' }, { passwdPath, noControl: true });
  hostB = await startTestAgent({ relayUrl: relay.url, expirySeconds: 20, hostname: 'host-b' }, { passwdPath, noControl: true });
  await relay.agentOf(hostA.agent.host.hostId);
  await relay.agentOf(hostB.agent.host.hostId);
  phone = await HeadlessPhone.create(join(tmp.path, 'phone'), 'Alice phone', { timeoutMs: 3000 });
  for (const h of [hostA, hostB]) {
    h.setDevices('alice', [phoneKey.line, phone.devicesLine()]);
    await phone.trustHost({ hostPub: toB64url(h.agent.host.publicKey), hostname: h.agent.config.hostname, relayUrl: relay.url });
  }
});
test.after.always(async () => {
  await phone?.close();
  await hostA?.close();
  await hostB?.close();
  await relay?.close();
  tmp.remove();
});

async function login(f: AgentFixture) {
  const client = await PamClient.connect(f.socket);
  client.send({ type: MsgType.BEGIN, user: 'alice', service: 'sshd', rhost: '198.51.100.1' } as FrameMsg);
  const ch = (await client.next()) as { type: number; payload: string };
  if (ch?.type !== MsgType.CHALLENGE) throw new Error(`no challenge: ${JSON.stringify(ch)}`);
  return { client, ...parseLoginPayload(ch.payload), payload: ch.payload };
}

function signed(d: ReturnType<typeof device>, s: { hostId: string; sid: string; nonce: Uint8Array }, decision: 'approve' | 'deny' = 'approve') {
  const time = Date.now();
  const sig = c.ed25519Sign(d.seed, decisionBytes({ hostId: s.hostId, sid: s.sid, nonce: s.nonce, user: 'alice', decision, time, deviceId: d.deviceId }));
  return { hostId: s.hostId, sid: s.sid, deviceId: d.deviceId, decision, time, sig: toB64url(sig) };
}

/** The login is still open and undecided (checked on the agent: the module side is blocked in WAIT). */
const stillPending = (f: AgentFixture, sid: string) => f.agent.sessions.get(sid)?.pending === true;

const isOk = (a: unknown) => typeof a === 'object' && a !== null && (a as { ok?: unknown }).ok === true;

test.serial("an approval for host A's login, carried to host B in every form, opens nothing on B", async (t) => {
  const a = await login(hostA);
  const b = await login(hostB);
  const forA = signed(phoneKey, a);
  const B = hostB.agent.host.hostId;
  const attempts = [
    forA, // unchanged: A's hostId and sid
    { ...forA, hostId: B }, // readdressed to B
    { ...forA, hostId: B, sid: b.sid }, // readdressed and pointed at B's waiting login
    { ...forA, sid: b.sid }, // B's sid under A's hostId
  ];
  b.client.send({ type: MsgType.WAIT });
  for (const msg of attempts) t.false(isOk(await relay.askHost(B, 'decision', msg)), JSON.stringify(msg).slice(0, 80));
  t.true(stillPending(hostB, b.sid), "B's login is still waiting");
  // The approval itself was genuine: delivered to A, it opens A's login (once).
  a.client.send({ type: MsgType.WAIT });
  t.like(await relay.askHost(hostA.agent.host.hostId, 'decision', forA), { ok: true, result: 'approved' });
  t.like(await a.client.next(), { result: Result.APPROVED });
  // And after that, replaying it at B still does nothing.
  for (const msg of attempts) t.false(isOk(await relay.askHost(B, 'decision', msg)));
  await sleep(100);
  t.true(stillPending(hostB, b.sid));
  t.is(b.client.sock.readableLength, 0, 'no verdict was sent to B');
  t.true(hostB.logs.filter((l) => /decision_rejected/.test(l)).length >= attempts.length * 2, 'B logs each reject');
  b.client.close();
});

test.serial("a relay asking host A for the context of host B's login learns nothing", async (t) => {
  const b = await login(hostB);
  t.like(await relay.askHost(hostA.agent.host.hostId, 'context', { sid: b.sid }), { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION' });
  const own = (await relay.askHost(hostB.agent.host.hostId, 'context', { sid: b.sid })) as { ok: boolean; context: SignedContext };
  t.true(own.ok, 'B itself answers for its own login');
  b.client.close();
});

test.serial("a phone shown host A's context for host B's QR refuses it, and so signs nothing", async (t) => {
  const a = await login(hostA);
  const b = await login(hostB);
  const ctxA = ((await relay.askHost(hostA.agent.host.hostId, 'context', { sid: a.sid })) as { context: SignedContext }).context;
  const forms: SignedContext[] = [
    ctxA, // A's genuine context as it is
    { ...ctxA, hostId: b.hostId, sid: b.sid }, // relabelled for B's login: A's signature no longer matches
    { ...ctxA, hostId: b.hostId, sid: b.sid, hostname: 'host-b', sig: toB64url(c.ed25519Sign(otherKey.seed, new Uint8Array([1]))) },
  ];
  const decisionsBefore = hostB.logs.length;
  b.client.send({ type: MsgType.WAIT });
  for (const ctx of forms) {
    onPhoneContext = async () => ({ ok: true, context: ctx });
    const err = await t.throwsAsync(phone.decide(b.payload, 'approve'));
    t.regex(err?.message ?? '', /another login|not signed by host-b/);
  }
  t.is(hostB.logs.length, decisionsBefore, 'no decision reached host B');
  t.true(stillPending(hostB, b.sid));
  // With the real context passed through, the same phone approves.
  onPhoneContext = (req) => relay.askHost(req.hostId, 'context', { sid: req.sid });
  const ack = await phone.decide(b.payload, 'approve');
  t.like(ack, { ok: true, result: 'approved' }, JSON.stringify(ack));
  t.like(await b.client.next(), { result: Result.APPROVED });
  a.client.close();
});

test.serial('junk and forged enrollment requests are refused and nothing reaches the devices file', async (t) => {
  const devicesFile = join(hostA.dir, 'devices', 'alice');
  const before = readFileSync(devicesFile, 'utf8');
  const e = hostA.agent.enrollments.start('alice');
  t.teardown(() => e.end('cancelled'));
  const requests: unknown[] = [];
  e.on('request', (r) => requests.push(r));
  const A = hostA.agent.host.hostId;
  const newPhone = device(9);
  const enroll = (d: ReturnType<typeof device>, over: Record<string, unknown> = {}, token = e.token) => {
    const base = { hostId: A, tokenId: e.tokenId, devicePub: toB64url(d.publicKey), deviceName: 'New phone', time: Date.now() };
    const m = { ...base, ...over } as typeof base;
    const sig = c.ed25519Sign(d.seed, enrollBytes({ ...m, token }));
    return { ...m, sig: toB64url(sig) };
  };
  const junk: unknown[] = [
    null, 'enroll', 42, [], {}, { hostId: A },
    { ...enroll(newPhone), extra: 1 },
    { ...enroll(newPhone), deviceName: 'x'.repeat(65) },
    { ...enroll(newPhone), deviceName: 'bad\nname' },
    { ...enroll(newPhone), devicePub: 'A'.repeat(43) }, // key swapped by the relay
    { ...enroll(newPhone), devicePub: toB64url(otherKey.publicKey) }, // another real key swapped in
    enroll(newPhone, {}, c.randomBytes(16)), // a phone that never saw the token
    enroll(newPhone, { tokenId: toB64url(c.randomBytes(16)) }), // unknown enrollment
    enroll(newPhone, { hostId: hostB.agent.host.hostId }), // meant for another host
    { ...enroll(newPhone), sig: toB64url(new Uint8Array(64)) },
    { ...enroll(newPhone), time: -5 },
    { ...enroll(newPhone), sig: Buffer.alloc(64) }, // binary instead of text
  ];
  for (const j of junk) t.false(isOk(await relay.askHost(A, 'enroll', j)), JSON.stringify(j)?.slice(0, 80));
  t.deepEqual(requests, [], 'the waiting enrollment saw no request');
  t.false(e.used, 'a forged request does not burn the enrollment');
  // The genuine request is passed to the CLI for the fingerprint check (and only that one)...
  t.like(await relay.askHost(A, 'enroll', enroll(newPhone)), { ok: true, hostname: 'host-a' });
  t.is(requests.length, 1);
  // ...and the same request again, or a second phone, is refused: the token is single-use.
  t.false(isOk(await relay.askHost(A, 'enroll', enroll(newPhone))));
  t.false(isOk(await relay.askHost(A, 'enroll', enroll(otherKey))));
  t.is(readFileSync(devicesFile, 'utf8'), before, 'the agent writes no device without the person confirming in the CLI');
});

test.serial('the relay drops the agent mid-login: the waiting module hears OFFLINE, the agent reconnects, the login completes', async (t) => {
  for (const how of ['disconnect', 'transport'] as const) {
    const s = await login(hostA);
    s.client.send({ type: MsgType.WAIT });
    const connectionsBefore = relay.hostConnections;
    relay.kick(how);
    t.like(await s.client.next(3000), { type: MsgType.VERDICT, result: Result.OFFLINE }, `${how}: OFFLINE at once`);
    await eventually(() => relay.hostConnections >= connectionsBefore + 2 && hostA.agent.relay!.up && hostB.agent.relay!.up, 8000);
    t.true(hostA.logs.some((l) => /relay_link state=down/.test(l)));
    // The module asks again (Enter pressed); now the approval arrives over the new link.
    s.client.send({ type: MsgType.WAIT });
    t.like(await relay.askHost(hostA.agent.host.hostId, 'decision', signed(phoneKey, s)), { ok: true, result: 'approved' });
    t.like(await s.client.next(), { result: Result.APPROVED }, `${how}: approved after the reconnect`);
  }
});

test.serial('a relay that drops the agent and then sends a made-up approval: the login expires, never a wrong success', async (t) => {
  const f = await startTestAgent({ relayUrl: relay.url, expirySeconds: 5 }, { passwdPath, noControl: true });
  t.teardown(() => f.close());
  f.setDevices('alice', [phoneKey.line]);
  const id = f.agent.host.hostId;
  await relay.agentOf(id);
  const s = await login(f);
  const stolen = signed(otherKey, s); // a decision the relay made up while the link was down
  s.client.send({ type: MsgType.WAIT });
  const sock = await relay.agentOf(id);
  sock.disconnect(true);
  t.like(await s.client.next(3000), { result: Result.OFFLINE });
  const back = await relay.agentOf(id);
  await eventually(() => f.agent.relay!.up, 5000);
  t.like(await back.timeout(3000).emitWithAck('decision', stolen), { ok: false });
  s.client.send({ type: MsgType.WAIT });
  t.like(await s.client.next(8000), { result: Result.EXPIRED }, 'nobody approved: it expires');
  t.false(f.logs.some((l) => /result=approved/.test(l)));
});

test.serial('a relay that accepts the connection and then never speaks: WAIT answers OFFLINE and the code works', async (t) => {
  const held: NetSocket[] = [];
  const blackHole: NetServer = createServer((sock) => held.push(sock));
  await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    held.forEach((s) => s.destroy());
    blackHole.close();
  });
  const port = (blackHole.address() as { port: number }).port;
  const f = await startTestAgent({ relayUrl: `http://127.0.0.1:${port}` }, { passwdPath, noControl: true });
  t.teardown(() => f.close());
  f.setDevices('alice', [phoneKey.line]);
  await eventually(() => held.length > 0, 5000);
  const s = await login(f);
  s.client.send({ type: MsgType.WAIT });
  t.like(await s.client.next(2000), { result: Result.OFFLINE });
  const k = offlineKey(c, phoneKey.seed, f.agent.host.publicKey, s.hostId, phoneKey.deviceId);
  s.client.send({ type: MsgType.CODE, digits: offlineCode(c, k, s.hostId, s.sid, s.nonce) });
  t.like(await s.client.next(), { result: Result.APPROVED });
});

test.serial('huge and binary messages from the relay, up to the link limit, are refused and the agent keeps serving', async (t) => {
  const s = await login(hostA);
  const A = hostA.agent.host.hostId;
  // As large as the link takes; over it the link closes (the deflate-bomb test below).
  const big = 'x'.repeat(RELAY_MESSAGE_MAX_BYTES - 1024);
  for (const [event, payload] of [
    ['context', { sid: big }],
    ['decision', { ...signed(phoneKey, s), sig: big }],
    ['enroll', { hostId: big }],
    ['decision', { ...signed(phoneKey, s), sid: Buffer.from(s.sid) }],
    ['context', Buffer.alloc(1024)],
  ] as const) {
    t.false(isOk(await relay.askHost(A, event, payload, 10_000)), `${event} ${typeof payload}`);
  }
  t.true(hostA.agent.relay!.up, 'the link survived');
  s.client.send({ type: MsgType.WAIT });
  t.like(await relay.askHost(A, 'decision', signed(phoneKey, s)), { ok: true, result: 'approved' });
  t.like(await s.client.next(), { result: Result.APPROVED });
});

/** One WebSocket frame as a server sends it (unmasked, FIN); `rsv1` marks it permessage-deflate compressed. */
function wsFrame(payload: Buffer, opts: { rsv1?: boolean; opcode?: number } = {}): Buffer {
  const first = 0x80 | (opts.rsv1 ? 0x40 : 0) | (opts.opcode ?? 1);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([first, n]) : Buffer.alloc(n < 65536 ? 4 : 10);
  if (n >= 126) {
    head[0] = first;
    head[1] = n < 65536 ? 126 : 127;
    if (n < 65536) head.writeUInt16BE(n, 2);
    else head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

/** Splits the client's byte stream into frames (masked, as a client must send them). */
function wsFrameReader(onFrame: (opcode: number, payload: Buffer) => void): (chunk: Buffer) => void {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1]! & 0x7f;
      let off = 2;
      if (len === 126) [len, off] = buf.length < 4 ? [-1, 0] : [buf.readUInt16BE(2), 4];
      else if (len === 127) [len, off] = buf.length < 10 ? [-1, 0] : [Number(buf.readBigUInt64BE(2)), 10];
      const maskLen = buf[1]! & 0x80 ? 4 : 0;
      if (len < 0 || buf.length < off + maskLen + len) return;
      const payload = Buffer.from(buf.subarray(off + maskLen, off + maskLen + len));
      for (let i = 0; maskLen && i < len; i++) payload[i]! ^= buf[off + (i & 3)]!;
      onFrame(buf[0]! & 0x0f, payload);
      buf = buf.subarray(off + maskLen + len);
    }
  };
}

interface FrameLink {
  /** The agent's Sec-WebSocket-Extensions offer on this connection. */
  extensions: string | undefined;
  /** The close code the agent sent, 'no close frame' if the TCP connection just ended, 'still open' if neither within `ms`. */
  closed(ms: number): Promise<number | 'no close frame' | 'still open'>;
  send(frame: Buffer): void;
  /** The agent's Socket.IO ack for /host request `id` (its first argument), or 'no answer' within `ms`. */
  answer(id: number, ms: number): Promise<unknown>;
}

/**
 * A relay written at the WebSocket frame level (after the security review's rawrelay.mjs), so it
 * can send what a Socket.IO server never would: frames far over any limit, compressed or not.
 * It accepts permessage-deflate when the agent offers it, as a hostile relay would, and completes
 * the engine.io and /host handshakes so the agent counts the link as up.
 */
async function startFrameRelay() {
  const links: FrameLink[] = [];
  let plainHttpRequests = 0;
  const sockets = new Set<Duplex>();
  const http = createHttpServer((req, res) => {
    // The polling transport would arrive here (the agent's /healthz question is not that).
    if (req.url?.startsWith('/socket.io/')) plainHttpRequests++;
    res.writeHead(400).end();
  });
  http.on('upgrade', (req, sock: Duplex) => {
    sockets.add(sock);
    sock.on('error', () => {});
    const extensions = req.headers['sec-websocket-extensions'];
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    sock.write(
      ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${accept}`]
        .concat(extensions?.includes('permessage-deflate') ? ['Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover'] : [])
        .concat(['', ''])
        .join('\r\n'),
    );
    sock.write(wsFrame(Buffer.from('0{"sid":"AAAAAAAAAAAAAAAAAAAA","upgrades":[],"pingInterval":600000,"pingTimeout":600000,"maxPayload":1000000}')));
    let closeCode: number | 'no close frame' | undefined;
    const ended = new Promise<void>((r) => sock.once('close', () => r()));
    const answers = new Map<number, unknown>();
    const answered = new EventEmitter();
    sock.on(
      'data',
      wsFrameReader((opcode, payload) => {
        const text = payload.toString();
        if (opcode === 1 && text.startsWith('40/host,')) sock.write(wsFrame(Buffer.from('40/host,{"sid":"BBBBBBBBBBBBBBBBBBBB"}')));
        const ack = opcode === 1 ? /^43\/host,(\d+)(\[.*)$/s.exec(text) : null;
        if (ack) {
          answers.set(Number(ack[1]), (JSON.parse(ack[2]!) as unknown[])[0]);
          answered.emit('ack');
        }
        if (opcode === 8) {
          closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
          sock.end(wsFrame(payload.subarray(0, 2), { opcode: 8 }));
        }
      }),
    );
    void ended.then(() => (closeCode ??= 'no close frame'));
    links.push({
      extensions,
      async closed(ms) {
        await Promise.race([ended, sleep(ms)]);
        return closeCode ?? 'still open';
      },
      send: (frame) => void sock.write(frame),
      async answer(id, ms) {
        const gaveUp = Promise.race([sleep(ms), ended]).then(() => 'gave up' as const);
        while (!answers.has(id)) if ((await Promise.race([once(answered, 'ack'), gaveUp])) === 'gave up') break;
        return answers.has(id) ? answers.get(id) : 'no answer';
      },
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(http.address() as { port: number }).port}`,
    links,
    get plainHttpRequests() {
      return plainHttpRequests;
    },
    close() {
      for (const s of sockets) s.destroy();
      http.close();
    },
  };
}

test.serial('a relay that sends a 16 MiB deflate bomb or a frame one byte over the limit: the agent negotiates no compression, closes the link at that frame, reconnects, and the code still works', async (t) => {
  // Security review: a 90 KB compressed frame inflated to a 90 MiB event (RSS +400 MB per message,
  // the event loop blocked ~0.8 s) because the link took ws's defaults: 100 MiB and permessage-deflate.
  const relay = await startFrameRelay();
  t.teardown(() => relay.close());
  const f = await startTestAgent({ relayUrl: relay.url }, { passwdPath, noControl: true });
  t.teardown(() => f.close());
  f.setDevices('alice', [phoneKey.line]);
  /** A context request of exactly `bytes` bytes: without an ack id the agent ignores it; with one it answers. */
  const event = (bytes: number, ackId?: number) => {
    const [head, tail] = [`42/host,${ackId ?? ''}["context",{"sid":"`, '"}]'];
    return Buffer.from(`${head}${'x'.repeat(bytes - head.length - tail.length)}${tail}`);
  };
  const deflated = deflateRawSync(event(16 * 1024 * 1024), { finishFlush: zlib.Z_SYNC_FLUSH, level: 9 });
  const bomb = wsFrame(deflated.subarray(0, deflated.length - 4), { rsv1: true }); // RFC 7692: without the 00 00 ff ff tail
  t.true(bomb.length < 64 * 1024, `the bomb is ${bomb.length} bytes on the wire`);

  await eventually(() => relay.links.length === 1 && f.agent.relay!.up, 8000);
  const [first] = relay.links;
  t.is(first!.extensions, undefined, 'the agent offers no permessage-deflate');
  first!.send(bomb);
  t.is(await first!.closed(3000), 1002, 'a compressed frame was never negotiated: protocol error, nothing inflated');

  await eventually(() => relay.links.length === 2 && f.agent.relay!.up, 8000);
  const second = relay.links[1]!;
  // Exactly the limit: read whole and answered (its sid is no id: refused), and the same link then
  // carries a real request for a login on this host and brings back the agent's signed context.
  t.is(event(RELAY_MESSAGE_MAX_BYTES, 1).length, RELAY_MESSAGE_MAX_BYTES);
  second.send(wsFrame(event(RELAY_MESSAGE_MAX_BYTES, 1)));
  t.like(await second.answer(1, 5000), { ok: false, code: 'QRA_ERR_INVALID_INPUT' }, 'a message of exactly the limit is read and answered');
  const pending = await login(f);
  second.send(wsFrame(Buffer.from(`42/host,2${JSON.stringify(['context', { sid: pending.sid }])}`)));
  t.like(await second.answer(2, 5000), { ok: true, context: { hostId: f.agent.host.hostId, sid: pending.sid, user: 'alice' } }, 'the link still carries a round trip');
  pending.client.close();
  second.send(wsFrame(event(RELAY_MESSAGE_MAX_BYTES + 1)));
  t.is(await second.closed(3000), 1009, 'one byte over: "message too big", refused at the frame header');

  await eventually(() => relay.links.length === 3 && f.agent.relay!.up, 8000);
  t.is(relay.plainHttpRequests, 0, 'no HTTP long-polling, only the WebSocket');
  const downs = f.logs.filter((l) => /relay_link state=down/.test(l));
  t.is(downs.length, 2, downs.join('\n'));
  t.regex(downs[0]!, /cause=.*RSV1.* code=WS_ERR_UNEXPECTED_RSV_1/);
  t.regex(downs[1]!, new RegExp(`cause=.*code=WS_ERR_UNSUPPORTED_MESSAGE_LENGTH limit=${RELAY_MESSAGE_MAX_BYTES}`));
  t.false(f.logs.some((l) => l.includes('xxxxxxxx')), 'no payload in the log');
  const s = await login(f);
  const k = offlineKey(c, phoneKey.seed, f.agent.host.publicKey, s.hostId, phoneKey.deviceId);
  s.client.send({ type: MsgType.CODE, digits: offlineCode(c, k, s.hostId, s.sid, s.nonce) });
  t.like(await s.client.next(), { result: Result.APPROVED });
});

test.serial('decisions for logins whose module already went away are refused', async (t) => {
  const s = await login(hostA);
  const msg = signed(phoneKey, s);
  s.client.close();
  await eventually(() => hostA.agent.sessions.get(s.sid) === undefined);
  t.like(await relay.askHost(hostA.agent.host.hostId, 'decision', msg), { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION' });
  await sleep(10);
});
