/**
 * The real qrauth-relay, as its own process with its default limits, under abuse that
 * relay.test.ts does not cover: raw Socket.IO and Engine.IO packets no client library would
 * send, HTTP and WebSocket garbage, oversized handshakes, floods of unauthenticated clients
 * from many addresses, and a phone flooding approvals that reconnects to shake off its limit.
 * Everything is refused or rate limited, and the relay process stays up and keeps routing.
 */
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import { connect as tcpConnect } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Socket as EngineSocket, type SocketOptions as EngineOptions } from 'engine.io-client';
import { io, type Socket } from 'socket.io-client';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import { DEVICE_NAMESPACE, HOST_NAMESPACE, decisionBytes, makeAuthHandshake, toB64url } from '../protocol/src/index.js';
import { FakeHost, eventually } from './support/net.js';

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

/** A Socket.IO client from a given source address; resolves connected or with the refusal. */
function sio(ns: string, auth: object | undefined, localAddress = freshAddr()): Promise<{ ok: true; socket: Socket } | { ok: false; message: string }> {
  const socket = io(`${url}${ns}`, {
    ...(auth ? { auth } : {}),
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    timeout: 5000,
    localAddress,
  } as Parameters<typeof io>[1]);
  return new Promise((res) => {
    const fail = (message: string) => {
      clearTimeout(timer);
      socket.disconnect();
      res({ ok: false, message });
    };
    // A handshake over the size limit gets no connect_error: the relay just closes the transport.
    const timer = setTimeout(() => fail('no answer'), 6000);
    socket.once('connect', () => {
      clearTimeout(timer);
      res({ ok: true, socket });
    });
    socket.once('connect_error', (e) => fail(e.message));
    socket.io.once('close', (reason) => fail(`closed: ${reason}`));
  });
}

/** An Engine.IO connection that sends the given raw Socket.IO packets; resolves when it closes or after `ms`. */
function rawPackets(packets: Array<string | Uint8Array>, ms = 500): Promise<{ received: string[]; closed: boolean }> {
  return new Promise((res) => {
    const received: string[] = [];
    const s = new EngineSocket(url, { transports: ['websocket'], localAddress: freshAddr() } as Partial<EngineOptions>);
    const timer = setTimeout(() => {
      s.close();
      res({ received, closed: false });
    }, ms);
    s.on('open', () => {
      for (const p of packets) s.send(p as string);
    });
    s.on('message', (d) => received.push(String(d)));
    s.on('close', () => {
      clearTimeout(timer);
      res({ received, closed: true });
    });
    s.on('error', () => {});
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
  const seed = c.randomBytes(32);
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
  const auth = () => JSON.stringify(makeAuthHandshake(c, 'device', c.randomBytes(32)));
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
  const key = toB64url(c.randomBytes(16));
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
  const good = makeAuthHandshake(c, 'device', c.randomBytes(32));
  for (const auth of [undefined, {}, { ...good, sig: good.sig.replace(/^./, good.sig[0] === 'A' ? 'B' : 'A') }, { ...good, pad: 'x'.repeat(100_000) }]) {
    for (const ns of [DEVICE_NAMESPACE, HOST_NAMESPACE]) t.false((await sio(ns, auth)).ok, `${ns} ${JSON.stringify(auth)?.slice(0, 40)}`);
  }
  // 200 bad handshakes from one address: the first 120 (and what refills, 2 a second) are
  // checked and refused; the rest are cut off before the relay even looks at them.
  const limitedBefore = await metric('qrauth_relay_rejects_total{reason="connection_rate_limited"}');
  const started = Date.now();
  const flood = await Promise.all(Array.from({ length: 200 }, () => sio(DEVICE_NAMESPACE, { v: 1 }, '127.0.7.1')));
  const refill = Math.ceil(((Date.now() - started) / 1000) * 2) + 1;
  t.true(flood.every((r) => !r.ok));
  const limited = (await metric('qrauth_relay_rejects_total{reason="connection_rate_limited"}')) - limitedBefore;
  t.true(limited >= 80 - refill, `${limited} cut off by the per-address limit`);
  // Other addresses are not affected.
  const other = await sio(DEVICE_NAMESPACE, makeAuthHandshake(c, 'device', c.randomBytes(32)), '127.0.7.2');
  t.true(other.ok, 'another address connects');
  if (other.ok) other.socket.disconnect();
  t.is(exitCode, undefined);
});

test.serial('a phone flooding approvals is limited, reconnecting does not reset it, and other phones still get through', async (t) => {
  const host = await FakeHost.connect(url);
  t.teardown(() => host.close());
  const seed = c.randomBytes(32);
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
  const phones = await Promise.all(Array.from({ length: 12 }, () => sio(DEVICE_NAMESPACE, makeAuthHandshake(c, 'device', c.randomBytes(32)))));
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
