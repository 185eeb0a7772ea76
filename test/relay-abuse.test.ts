/**
 * The real qrauth-relay, as its own process with its default limits, under abuse that
 * relay.test.ts does not cover: raw Socket.IO and Engine.IO packets no client library would
 * send, HTTP and WebSocket garbage, oversized handshakes, floods of unauthenticated clients
 * from many addresses, and a phone flooding approvals that reconnects to shake off its limit.
 * Everything is refused or rate limited, and the relay process stays up and keeps routing.
 * The handshake tests at the end run relays in this process with small limits (an allow-list,
 * a small nonce cache), so that what would take 200 000 handshakes takes a few dozen.
 */
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import { DEVICE_NAMESPACE, HOST_NAMESPACE, decisionBytes, keyId, makeAuthHandshake, toB64url } from '../protocol/src/index.js';
import { type RelayOptions, startRelay } from '../relay/src/server.js';
import { FakeHost, eventually } from './support/net.js';
import { prng, testSeed } from './support/seeded.js';

/** Keys and ids come from this seed (QRAUTH_TEST_SEED replays it); the handshake nonces stay random, as the real ones are. */
const SEED = testSeed(0x0ab5_5eed);
const seededBytes = prng(SEED);
test.afterEach.always((t) => {
  if (!t.passed) t.log(`seed ${SEED}`);
});

let relay: ChildProcess;
let url = '';
let exitCode: number | null | undefined;
/** Source addresses: the relay allows 120 new connections per address a minute, so spread the load. */
let nextAddr = 10;
const freshAddr = () => `127.0.9.${nextAddr++}`;

test.before(async () => {
  relay = spawn(process.execPath, ['--import=tsx', 'relay/src/main.ts', '--port', '0', '--ack-timeout', '1000'], {
    cwd: resolve(import.meta.dirname, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  relay.on('exit', (code) => (exitCode = code));
  url = await new Promise<string>((res, rej) => {
    let out = '';
    relay.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) res(m[1]!);
    });
    relay.once('exit', (code) => rej(new Error(`relay exited ${code}: ${out}`)));
  });
  relay.stdout!.resume();
  relay.stderr!.resume();
});
test.after.always(() => {
  if (relay?.exitCode === null) relay.kill('SIGKILL');
});

async function health(): Promise<{ status: string; hosts: number; devices: number }> {
  const r = await fetch(`${url}/healthz`);
  return (await r.json()) as { status: string; hosts: number; devices: number };
}
async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name.replace(/[{}"=]/g, (ch) => `\\${ch}`)} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/**
 * How a Socket.IO connection attempt ended without connecting: `refused`, the relay answered the
 * handshake with a refusal (connect_error carrying its QRA_ERR_ code); `closed`, the transport
 * ended with no answer (the relay closed it, or refused the HTTP upgrade itself); `no answer`,
 * nothing within 6 s.
 */
type Refusal = { ok: false; how: 'refused'; message: string; code: string } | { ok: false; how: 'closed' | 'no answer'; message: string };

/** A Socket.IO client from a given source address; resolves connected or with how it was not. */
function sio(ns: string, auth: object | undefined, localAddress = freshAddr(), base = url): Promise<{ ok: true; socket: Socket } | Refusal> {
  const socket = io(`${base}${ns}`, {
    ...(auth ? { auth } : {}),
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    timeout: 5000,
    localAddress,
  } as Parameters<typeof io>[1]);
  return new Promise((res) => {
    const end = (r: Refusal) => {
      clearTimeout(timer);
      socket.disconnect();
      res(r);
    };
    const timer = setTimeout(() => end({ ok: false, how: 'no answer', message: 'no answer' }), 6000);
    socket.once('connect', () => {
      clearTimeout(timer);
      res({ ok: true, socket });
    });
    socket.once('connect_error', (e: Error & { data?: { code?: unknown } }) => {
      const code = e.data?.code;
      // The relay's refusals carry a code (HandshakeError); an Error without one is the client's own
      // (the upgrade refused, its 5 s timeout): the connection ended with no answer from the relay.
      end(typeof code === 'string' ? { ok: false, how: 'refused', message: e.message, code } : { ok: false, how: 'closed', message: e.message });
    });
    // Not on a timer: socket.io-client handles a refusal by closing the connection itself ('forced
    // close') and emits connect_error in the same call, just after. Any other reason is the relay
    // ending the transport before any answer (a handshake over the size limit gets no connect_error).
    socket.io.once('close', (reason) => {
      if (reason !== 'forced close') end({ ok: false, how: 'closed', message: `closed: ${reason}` });
    });
  });
}

/**
 * A WebSocket to /socket.io/ that sends the given frames as they are (Engine.IO packets: "40/device,{…}"
 * is a message carrying a Socket.IO CONNECT); resolves with the frames received when the relay
 * closes it, or after `ms`. (engine.io-client would add its own framing, and asks /engine.io/.)
 */
function rawPackets(packets: Array<string | Uint8Array>, ms = 500, localAddress = freshAddr(), base = url): Promise<{ received: string[]; closed: boolean }> {
  return new Promise((res) => {
    const received: string[] = [];
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, { localAddress });
    const timer = setTimeout(() => {
      ws.terminate();
      res({ received, closed: false });
    }, ms);
    ws.on('open', () => {
      for (const p of packets) ws.send(p);
    });
    ws.on('message', (d: Buffer, isBinary: boolean) => received.push(isBinary ? `<${d.length} bytes>` : d.toString()));
    ws.on('close', () => {
      clearTimeout(timer);
      res({ received, closed: true });
    });
    ws.on('error', () => {});
  });
}

/** Bytes straight onto TCP; resolves with what came back when the relay closes or after `ms`. */
function rawTcp(bytes: Buffer | string, ms = 1500): Promise<string> {
  const { port } = new URL(url);
  return new Promise((res) => {
    let got = '';
    const s = tcpConnect({ port: Number(port), host: '127.0.0.1', localAddress: freshAddr() }, () => s.write(bytes));
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', () => {});
    const timer = setTimeout(() => {
      s.destroy();
      res(got);
    }, ms);
    s.on('close', () => {
      clearTimeout(timer);
      res(got);
    });
  });
}

/** A host and a phone doing one real context + approval through the relay. */
async function realApproval(t: { like: (a: unknown, b: object, m?: string) => void; true: (v: boolean, m?: string) => void }): Promise<void> {
  const host = await FakeHost.connect(url);
  const seed = seededBytes(32);
  const r = await sio(DEVICE_NAMESPACE, makeAuthHandshake(c, 'device', seed));
  if (!r.ok) throw new Error(r.message);
  try {
    host.enrollDevice(toB64url(c.ed25519FromSeed(seed).publicKey));
    const login = host.newLogin();
    const ctx = await r.socket.timeout(3000).emitWithAck('context', { hostId: host.hostId, sid: login.sid });
    t.like(ctx, { ok: true, context: { sid: login.sid } }, 'a real phone still gets its context');
    const deviceId = [...host.devices.keys()][0]!;
    const time = Date.now();
    const sig = toB64url(c.ed25519Sign(seed, decisionBytes({ hostId: host.hostId, sid: login.sid, nonce: login.nonce, user: login.user, decision: 'approve', time, deviceId })));
    t.like(await r.socket.timeout(3000).emitWithAck('decision', { hostId: host.hostId, sid: login.sid, deviceId, decision: 'approve', time, sig }), { ok: true, result: 'approved' }, 'and its approval goes through');
  } finally {
    r.socket.disconnect();
    host.close();
  }
}

test.serial('raw Socket.IO packets no client library would send are refused and the relay keeps routing', async (t) => {
  const auth = () => JSON.stringify(makeAuthHandshake(c, 'device', seededBytes(32)));
  const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
  const batches: Array<Array<string | Uint8Array>> = [
    ['4x'],
    ['40/device,'],
    ['40/device,{"v":1}'],
    ['40/device,not json'],
    ['40/host,{}'],
    ['40/nope,{}'],
    [`40/device,${deep}`],
    [`40/device,${auth()}`, '42/device,["context"'],
    [`40/device,${auth()}`, '42/device,[]'],
    [`40/device,${auth()}`, '42/device,[1,2,3]'],
    [`40/device,${auth()}`, '42/device,["__proto__",{"hostId":"x"}]'],
    [`40/device,${auth()}`, '42/device,17["constructor",{}]'],
    [`40/device,${auth()}`, `42/device,${deep}`],
    [`40/device,${auth()}`, '452-/device,1["context",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'],
    [`40/device,${auth()}`, '451-/device,3["decision",{"_placeholder":true,"num":7}]', new Uint8Array([1, 2, 3])],
    [`40/device,${auth()}`, '43/device,99[{"ok":true,"result":"approved"}]'], // an ack nobody asked for
    [`40/device,${auth()}`, '42/host,["context",{"sid":"x"}]'], // a namespace it never joined
    [`40/device,${auth()}`, `42/device,1["context",${JSON.stringify({ hostId: 'A'.repeat(22), sid: 'B'.repeat(22), pad: 'x'.repeat(20_000) })}]`],
    ['2probe', '5', '6', '9'],
    [new Uint8Array(10_000).fill(0xff)],
  ];
  const before = await metric('qrauth_relay_rejects_total{reason="invalid_input"}');
  const results = await Promise.all(batches.map((b) => rawPackets(b, 1000)));
  results.forEach((r, i) => t.false(r.received.some((m) => /"ok":true/.test(m)), JSON.stringify(batches[i]).slice(0, 80)));
  t.is(exitCode, undefined, 'the relay process is still running');
  t.true((await metric('qrauth_relay_rejects_total{reason="invalid_input"}')) >= before);
  t.like(await health(), { status: 'ok' });
  await realApproval(t);
});

test.serial('HTTP and WebSocket garbage on the port gets an error or a close, never a crash', async (t) => {
  const key = toB64url(seededBytes(16));
  const cases = [
    '\x00\xff\x13\x37 not http at all\r\n\r\n',
    'GET /socket.io/?EIO=3&transport=websocket HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET /socket.io/?EIO=4&transport=flashsocket HTTP/1.1\r\nHost: x\r\n\r\n',
    'POST /socket.io/?EIO=4&transport=polling&sid=nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
    'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n',
    // A valid upgrade followed by frames that break the WebSocket rules: unmasked, a reserved opcode, a huge length.
    `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x05hello`,
    `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}==\r\nSec-WebSocket-Version: 13\r\n\r\n\x83\x80\x00\x00\x00\x00`,
    `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}==\r\nSec-WebSocket-Version: 13\r\n\r\n\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00`,
    `GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    `GET /healthz HTTP/1.1\r\nHost: x\r\n${'X-Junk: y\r\n'.repeat(2000)}\r\n`,
  ];
  const replies = await Promise.all(cases.map((bytes) => rawTcp(bytes)));
  replies.forEach((reply, i) => t.false(/"ok":true/.test(reply), cases[i]!.slice(0, 60)));
  // Slow clients that open a connection and say nothing do not block anyone.
  const { port } = new URL(url);
  const idle = Array.from({ length: 200 }, () => tcpConnect({ port: Number(port), host: '127.0.0.1', localAddress: '127.0.8.1' }).on('error', () => {}));
  t.teardown(() => idle.forEach((s) => s.destroy()));
  await sleep(200);
  t.is(exitCode, undefined);
  t.like(await health(), { status: 'ok' });
  await realApproval(t);
});

test.serial('unauthenticated and oversized handshakes are refused, floods of them are rate limited per address', async (t) => {
  const good = makeAuthHandshake(c, 'device', seededBytes(32));
  for (const auth of [undefined, {}, { ...good, sig: good.sig.replace(/^./, good.sig[0] === 'A' ? 'B' : 'A') }]) {
    for (const ns of [DEVICE_NAMESPACE, HOST_NAMESPACE]) t.like(await sio(ns, auth), { ok: false, how: 'refused', code: 'QRA_ERR_UNAUTHENTICATED' }, `${ns} ${JSON.stringify(auth)?.slice(0, 40)}`);
  }
  // Over the size limit the relay does not read the handshake at all: it closes the transport.
  for (const ns of [DEVICE_NAMESPACE, HOST_NAMESPACE]) t.like(await sio(ns, { ...good, pad: 'x'.repeat(100_000) }), { ok: false, how: 'closed', message: 'closed: transport close' }, `${ns} oversized`);
  // 200 bad handshakes from one address: the first 120 (and what refills, 2 a second) are
  // checked and refused; the rest are cut off before the relay even looks at them.
  const limitedBefore = await metric('qrauth_relay_rejects_total{reason="connection_rate_limited"}');
  const started = Date.now();
  const flood = await Promise.all(Array.from({ length: 200 }, () => sio(DEVICE_NAMESPACE, { v: 1 }, '127.0.7.1')));
  const refill = Math.ceil(((Date.now() - started) / 1000) * 2) + 1;
  const refusedAfterChecking = flood.filter((r) => !r.ok && r.how === 'refused' && r.code === 'QRA_ERR_UNAUTHENTICATED').length;
  // Cut off: the relay refuses the WebSocket upgrade itself, so the client sees only a transport error.
  const cutOff = flood.filter((r) => !r.ok && r.how === 'closed' && r.message === 'websocket error').length;
  t.is(refusedAfterChecking + cutOff, 200, 'each one either checked and refused, or cut off: none connected, none left unanswered');
  const limited = (await metric('qrauth_relay_rejects_total{reason="connection_rate_limited"}')) - limitedBefore;
  t.is(cutOff, limited, 'the ones cut off are the ones the relay counted as rate limited');
  t.true(limited >= 80 - refill, `${limited} cut off by the per-address limit`);
  // Other addresses are not affected.
  const other = await sio(DEVICE_NAMESPACE, makeAuthHandshake(c, 'device', seededBytes(32)), '127.0.7.2');
  t.true(other.ok, 'another address connects');
  if (other.ok) other.socket.disconnect();
  t.is(exitCode, undefined);
});

test.serial('a phone flooding approvals is limited, reconnecting does not reset it, and other phones still get through', async (t) => {
  const host = await FakeHost.connect(url);
  t.teardown(() => host.close());
  const seed = seededBytes(32);
  const flood = async () => {
    const r = await sio(DEVICE_NAMESPACE, makeAuthHandshake(c, 'device', seed));
    if (!r.ok) throw new Error(r.message);
    const deviceId = host.devices.size ? [...host.devices.keys()][0]! : (host.enrollDevice(toB64url(c.ed25519FromSeed(seed).publicKey)), [...host.devices.keys()][0]!);
    const acks = (await Promise.all(
      Array.from({ length: 60 }, () => {
        const login = host.newLogin();
        const time = Date.now();
        const sig = toB64url(c.ed25519Sign(seed, decisionBytes({ hostId: host.hostId, sid: login.sid, nonce: login.nonce, user: login.user, decision: 'approve', time, deviceId })));
        return r.socket.timeout(5000).emitWithAck('decision', { hostId: host.hostId, sid: login.sid, deviceId, decision: 'approve', time, sig });
      }),
    )) as Array<{ ok: boolean; code?: string }>;
    r.socket.disconnect();
    return acks;
  };
  const started = Date.now();
  const first = await flood();
  const refill = Math.ceil(((Date.now() - started) / 1000) * 3) + 1; // 30 per 10 s refill 3 a second
  const firstOk = first.filter((a) => a.ok).length;
  t.true(firstOk >= 30 && firstOk <= 30 + refill, `${firstOk} of 60 went through (the default: 30 requests a phone per 10 s)`);
  t.true(first.filter((a) => !a.ok).every((a) => a.code === 'QRA_ERR_RATE_LIMITED'));
  const again = await flood(); // same key, new connection, new address
  t.true(again.filter((a) => a.ok).length <= 10, `reconnecting bought ${again.filter((a) => a.ok).length} more`);
  t.is(host.received.decision.length, firstOk + again.filter((a) => a.ok).length, 'the host saw only what the limit let through');
  await realApproval(t);
  t.is(exitCode, undefined);
});

test.serial('many phones flooding one host are capped by the per-host limit and the relay stays up', async (t) => {
  const host = await FakeHost.connect(url);
  t.teardown(() => host.close());
  const phones = await Promise.all(Array.from({ length: 12 }, () => sio(DEVICE_NAMESPACE, makeAuthHandshake(c, 'device', seededBytes(32)))));
  t.teardown(() => phones.forEach((p) => p.ok && p.socket.disconnect()));
  const sid = host.newLogin().sid;
  const started = Date.now();
  const acks = (await Promise.all(
    phones.flatMap((p) => (p.ok ? Array.from({ length: 30 }, () => p.socket.timeout(5000).emitWithAck('context', { hostId: host.hostId, sid })) : [])),
  )) as Array<{ ok: boolean; code?: string }>;
  t.is(acks.length, 360);
  const through = acks.filter((a) => a.ok).length;
  // The bucket holds 300 and refills 30 a second while the burst is being handled.
  const refill = Math.ceil(((Date.now() - started) / 1000) * 30) + 1;
  t.true(through <= 300 + refill, `${through} reached the host (limit 300 per 10 s, ${refill} refilled)`);
  t.is(acks.filter((a) => a.code === 'QRA_ERR_RATE_LIMITED').length, 360 - through);
  t.is(host.received.context.length, through);
  await eventually(() => exitCode === undefined);
  t.like(await health(), { status: 'ok' });
});

// ---------------------------------------------------------------- handshakes: budget and nonce cache

/** A relay in this process with the given options; its log lines are kept for the test to read. */
async function relayWith(t: { teardown: (fn: () => Promise<void>) => void }, opts: RelayOptions): Promise<{ url: string; lines: string[] }> {
  const lines: string[] = [];
  const relay = await startRelay({ ...opts, log: (line) => lines.push(line) });
  t.teardown(() => relay.close());
  return { url: relay.url, lines };
}

/** An Engine.IO message carrying a Socket.IO CONNECT for /host, signed by a fresh key no allow-list holds. */
const strangerConnect = () => `40${HOST_NAMESPACE},${JSON.stringify(makeAuthHandshake(c, 'host', seededBytes(32)))}`;

/** The relay's handshake decisions (one log line each) about connections from `address`. */
const handshakesFrom = (lines: string[], address: string) => lines.filter((l) => l.startsWith('event=handshake') && l.includes(` ip=${address}`));

/** How many more connections `address` may open now: opens /device connections until one is refused (at most `max`). */
async function connectionsLeft(base: string, address: string, max: number): Promise<number> {
  for (let n = 0; n < max; n++) {
    const r = await sio(DEVICE_NAMESPACE, makeAuthHandshake(c, 'device', seededBytes(32)), address, base);
    if (!r.ok) return n;
    r.socket.disconnect();
  }
  return max;
}

/**
 * Engine.IO over HTTP long-polling: opens a session from `localAddress`, POSTs all `packets` in one
 * body (so the relay decodes them in one go; at most 8 KiB), then polls; resolves whether the
 * relay took the body and whether it closed the session.
 */
async function pollingBatch(base: string, packets: string[], localAddress: string): Promise<{ posted: boolean; closed: boolean }> {
  const { hostname, port } = new URL(base);
  const call = (method: string, query: string, body?: string) =>
    new Promise<{ status: number; text: string }>((res, rej) => {
      const req = httpRequest({ host: hostname, port, localAddress, method, path: `/socket.io/?EIO=4&transport=polling${query}`, headers: { 'content-type': 'text/plain;charset=UTF-8' } }, (r) => {
        let text = '';
        r.setEncoding('utf8');
        r.on('data', (d: string) => (text += d));
        r.on('end', () => res({ status: r.statusCode ?? 0, text }));
      });
      req.on('error', rej);
      req.setTimeout(3000, () => req.destroy(new Error('no answer')));
      req.end(body);
    });
  const open = await call('GET', '');
  const sid = (JSON.parse(open.text.slice(1)) as { sid: string }).sid;
  const posted = (await call('POST', `&sid=${sid}`, packets.join('\x1e'))).text === 'ok';
  // A closed session answers a poll with the close packet ("1") or, once gone, 400.
  for (let i = 0; i < 3; i++) {
    const poll = await call('GET', `&sid=${sid}`).catch(() => ({ status: 0, text: '' }));
    if (poll.status === 400 || poll.text.split('\x1e').includes('1')) return { posted, closed: true };
  }
  return { posted, closed: false };
}

test.serial('many handshakes on one connection (the review PoC): closed after the first refusal, and each handshake looked at costs its address a connection', async (t) => {
  const { url: base, lines } = await relayWith(t, { allowHosts: new Set([keyId(c, c.ed25519FromSeed(seededBytes(32)).publicKey)]), limits: { connectionsPerIpPerMinute: 10 } });

  // One refused handshake: the client gets the refusal, then the relay closes the connection.
  const one = await rawPackets([strangerConnect()], 3000, '127.0.10.8', base);
  t.true(one.closed, 'the relay closed the connection after one refusal');
  t.true(
    one.received.some((m) => m.startsWith(`44${HOST_NAMESPACE},`) && m.includes('QRA_ERR_UNAUTHENTICATED')),
    'and the refusal reached the client first',
  );

  // One WebSocket, 50 signed handshakes from throwaway host keys the allow-list refuses.
  const wsAddr = '127.0.10.1';
  const ws = await rawPackets(Array.from({ length: 50 }, strangerConnect), 3000, wsAddr, base);
  const checked = handshakesFrom(lines, wsAddr).length;
  t.true(checked >= 1 && checked <= 2, `the relay looked at ${checked} of the 50 handshakes`);
  t.true(ws.closed, 'the relay closed the WebSocket');
  t.true(ws.received.filter((m) => m.startsWith(`44${HOST_NAMESPACE}`)).length <= 1, 'at most the first refusal is answered');
  // The WebSocket paid for its first handshake; each further one the relay looked at cost one more.
  t.is(await connectionsLeft(base, wsAddr, 12), 10 - checked, 'the address budget counted each handshake');

  // The same over HTTP long-polling, 20 in one POST: the relay decodes them together, so it
  // certainly sees the second handshake before the close, and charges it.
  const pollAddr = '127.0.10.2';
  t.like(await pollingBatch(base, Array.from({ length: 20 }, strangerConnect), pollAddr), { posted: true, closed: true }, 'the relay closed the polling session');
  t.is(handshakesFrom(lines, pollAddr).length, 2, 'the first handshake, and the second that closes the connection');
  t.is(await connectionsLeft(base, pollAddr, 12), 8, 'both cost the address');
});

test.serial('handshakes the allow-list refuses leave no nonce behind: a small cache stays free for the real host and phone', async (t) => {
  const hostSeed = seededBytes(32);
  const hostId = keyId(c, c.ed25519FromSeed(hostSeed).publicKey);
  const { url: base } = await relayWith(t, { allowHosts: new Set([hostId]), limits: { handshakeNonces: 5, connectionsPerIpPerMinute: 1000 } });
  const stranger = makeAuthHandshake(c, 'host', seededBytes(32));
  const first = await sio(HOST_NAMESPACE, stranger, '127.0.10.3', base);
  t.like(first, { ok: false, how: 'refused', code: 'QRA_ERR_UNAUTHENTICATED' });
  t.regex(first.ok ? '' : first.message, /allow-list/);
  // Sent again, the same handshake is refused for the same reason: had its nonce been kept, it would be "already used".
  const again = await sio(HOST_NAMESPACE, stranger, '127.0.10.3', base);
  t.like(again, { ok: false, how: 'refused', code: 'QRA_ERR_UNAUTHENTICATED' });
  t.regex(again.ok ? '' : again.message, /allow-list/, 'the refused handshake took no place in the nonce cache');
  // Four times the cache's size in refused handshakes, each signed by a fresh key.
  const refused = await Promise.all(Array.from({ length: 20 }, () => sio(HOST_NAMESPACE, makeAuthHandshake(c, 'host', seededBytes(32)), '127.0.10.3', base)));
  t.true(refused.every((r) => !r.ok && r.how === 'refused' && /allow-list/.test(r.message)));
  const host = await FakeHost.connect(base, { seed: hostSeed });
  t.teardown(() => host.close());
  const phone = await sio(DEVICE_NAMESPACE, makeAuthHandshake(c, 'device', seededBytes(32)), '127.0.10.4', base);
  t.true(phone.ok, `a phone still connects${phone.ok ? '' : `: ${phone.message}`}`);
  if (phone.ok) phone.socket.disconnect();
});

test.serial('one address cannot fill the nonce cache for everyone: past its share it is refused, other addresses still connect', async (t) => {
  const { url: base, lines } = await relayWith(t, { limits: { handshakeNonces: 12, handshakeNoncesPerAddress: 4, connectionsPerIpPerMinute: 1000 } });
  const flooder = '127.0.10.5';
  const flood: Array<Awaited<ReturnType<typeof sio>>> = [];
  for (let i = 0; i < 12; i++) flood.push(await sio(DEVICE_NAMESPACE, makeAuthHandshake(c, 'device', seededBytes(32)), flooder, base));
  t.teardown(() => flood.forEach((r) => r.ok && r.socket.disconnect()));
  t.is(flood.filter((r) => r.ok).length, 4, 'the address got its share of the cache and no more');
  t.true(flood.filter((r) => !r.ok).every((r) => !r.ok && r.how === 'refused' && r.code === 'QRA_ERR_RATE_LIMITED' && /this address/.test(r.message)));
  t.true(handshakesFrom(lines, flooder).some((l) => /result=refused/.test(l) && /address/.test(l)), 'the refusal is logged with the address');
  for (const addr of ['127.0.10.6', '127.0.10.7']) {
    const phone = await sio(DEVICE_NAMESPACE, makeAuthHandshake(c, 'device', seededBytes(32)), addr, base);
    t.true(phone.ok, `a phone from ${addr} still connects${phone.ok ? '' : `: ${phone.message}`}`);
    if (phone.ok) phone.socket.disconnect();
  }
  // And a host: connected (FakeHost.connect throws on a refusal), admitted by the relay, and reachable through it.
  const host = await FakeHost.connect(base);
  t.teardown(() => host.close());
  t.true(host.socket.connected, 'a host still connects');
  t.true(lines.some((l) => l.startsWith('event=connect role=host') && l.includes(`hostId=${host.hostId}`)), 'the relay admitted it');
  const phone = await sio(DEVICE_NAMESPACE, makeAuthHandshake(c, 'device', seededBytes(32)), '127.0.10.8', base);
  if (!phone.ok) return t.fail(`the phone that asks the host could not connect: ${phone.message}`);
  t.teardown(() => phone.socket.disconnect());
  const sid = host.newLogin().sid;
  t.like(await phone.socket.timeout(5000).emitWithAck('context', { hostId: host.hostId, sid }), { ok: true, context: { hostId: host.hostId, sid } }, 'the relay routes a request to it');
  t.deepEqual(host.received.context, [{ sid }]);
});
