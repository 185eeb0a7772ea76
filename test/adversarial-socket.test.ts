/**
 * The agent's PAM socket under bad input: random bytes, frames cut at every byte, every length
 * at and one past its limit, peers that stall or trickle, hundreds of connections that never
 * speak. Whatever arrives, nothing is approved, the bad connection is closed, and real logins
 * keep working. (The basic cases are in agent.test.ts; these go further.)
 */
import test, { type ExecutionContext } from 'ava';
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import {
  FrameDecoder,
  MsgType,
  QR_MAX_FRAME,
  Result,
  encodeFrame,
  keyId,
  offlineCode,
  offlineKey,
  parseLoginPayload,
  toB64url,
  type FrameMsg,
} from '../protocol/src/index.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { eventually } from './support/net.js';
import { PamClient } from './support/pam-client.js';
import { tempDir } from './support/system.js';
import { prng } from './support/seeded.js';

const passwd = tempDir('qra-pw-');
const passwdPath = join(passwd.path, 'passwd');
writeFileSync(passwdPath, 'alice:x:4242:4242::/nonexistent:/bin/sh\n');
test.after.always(() => passwd.remove());

const seed = new Uint8Array(32).fill(2);
const phonePub = c.ed25519FromSeed(seed).publicKey;
const phoneId = keyId(c, phonePub);
const DEVICE_LINE = `ed25519 ${toB64url(phonePub)} 2026-11-26 Phone`;

async function agentFor(t: ExecutionContext, frameTimeoutMs: number): Promise<AgentFixture> {
  const f = await startTestAgent({}, { passwdPath, frameTimeoutMs });
  t.teardown(() => f.close());
  f.setDevices('alice', [DEVICE_LINE]);
  return f;
}

// ---------------------------------------------------------------- raw frames, limits not enforced

const field = (tag: number, value: Uint8Array): Buffer => {
  const h = Buffer.alloc(3);
  h[0] = tag;
  h.writeUInt16BE(value.length, 1);
  return Buffer.concat([h, value]);
};
const str = (tag: number, s: string | Buffer) => field(tag, typeof s === 'string' ? Buffer.from(s, 'utf8') : s);
const u8 = (tag: number, v: number) => field(tag, Buffer.from([v]));
const u32 = (tag: number, v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return field(tag, b);
};
function frame(type: number, ...fields: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from([type]), ...fields]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}
const BEGIN_FIELDS = { user: 1, rhost: 2, service: 3, tty: 4, mode: 5, qr: 6, timeout: 7, authfile: 8, uid: 9, home: 10 } as const;
const aliceBegin = (...extra: Buffer[]) => frame(MsgType.BEGIN, str(1, 'alice'), str(3, 'sshd'), ...extra);

interface Exchange {
  /** The agent closed the connection (rather than us giving up waiting). */
  closed: boolean;
  replies: FrameMsg[];
  /** The agent's reply bytes did not even parse as frames (never expected). */
  garbled: boolean;
}

/** Write `bytes` (optionally then half-close), collect what the agent answers until it closes or `waitMs` passes. */
function exchange(path: string, bytes: Buffer | Buffer[], opts: { end?: boolean; waitMs?: number; untilReply?: boolean } = {}): Promise<Exchange> {
  return new Promise((resolve) => {
    const decoder = new FrameDecoder();
    const replies: FrameMsg[] = [];
    let garbled = false;
    const s: Socket = connect(path, () => {
      for (const b of Array.isArray(bytes) ? bytes : [bytes]) s.write(b);
      if (opts.end) s.end();
    });
    s.on('data', (d) => {
      try {
        replies.push(...decoder.push(d));
      } catch {
        garbled = true;
      }
      if (opts.untilReply && replies.length > 0) {
        clearTimeout(timer);
        s.destroy();
        resolve({ closed: false, replies, garbled });
      }
    });
    s.on('error', () => {});
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ closed: false, replies, garbled });
    }, opts.waitMs ?? 3000);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, replies, garbled });
    });
  });
}

const approved = (e: Exchange) => e.replies.some((m) => m.type === MsgType.VERDICT && m.result === Result.APPROVED);

/** A real login end to end on the socket: BEGIN, CHALLENGE, the right offline code, APPROVED. */
async function realLogin(t: ExecutionContext, f: AgentFixture): Promise<void> {
  const client = await PamClient.connect(f.socket);
  try {
    client.send({ type: MsgType.BEGIN, user: 'alice', service: 'sshd', rhost: '203.0.113.9' } as FrameMsg);
    const ch = (await client.next()) as FrameMsg & { payload: string };
    t.is(ch?.type, MsgType.CHALLENGE, 'a real login still gets its challenge');
    const p = parseLoginPayload(ch.payload);
    const k = offlineKey(c, seed, f.agent.host.publicKey, p.hostId, phoneId);
    client.send({ type: MsgType.CODE, digits: offlineCode(c, k, p.hostId, p.sid, p.nonce) });
    t.like(await client.next(), { type: MsgType.VERDICT, result: Result.APPROVED }, 'and is approved with the right code');
  } finally {
    client.close();
  }
}

// ---------------------------------------------------------------- tests

test('random bytes, framed and unframed, never approve anything and the agent keeps serving', async (t) => {
  const f = await agentFor(t, 500);
  const rand = prng(0xc0ffee);
  const blobs: Buffer[] = [];
  for (let i = 0; i < 300; i++) {
    const body = rand(1 + (rand(2).readUInt16BE(0) % 600));
    if (i % 3 === 0) blobs.push(body); // raw noise: usually a length past the limit
    else {
      // A well-formed length around a random body, often with a real message type in front.
      const typed = i % 3 === 1 ? Buffer.concat([Buffer.from([[1, 2, 3, 0x81, 0x82][i % 5]!]), body]) : body;
      const len = Buffer.alloc(4);
      len.writeUInt32BE(typed.length);
      blobs.push(Buffer.concat([len, typed]));
    }
  }
  for (let i = 0; i < blobs.length; i += 50) {
    const results = await Promise.all(blobs.slice(i, i + 50).map((b) => exchange(f.socket, b, { end: true })));
    for (const r of results) {
      t.true(r.closed);
      t.false(approved(r));
      t.false(r.garbled);
    }
  }
  t.is(f.agent.sessions.size, 0, 'no session outlives its connection');
  t.true(f.logs.some((l) => /pam_protocol_error/.test(l)));
  await realLogin(t, f);
});

test('a BEGIN cut at every byte and then closed never starts a session or gets a reply', async (t) => {
  const f = await agentFor(t, 2000);
  const full = Buffer.from(encodeFrame({ type: MsgType.BEGIN, user: 'alice', service: 'sshd', rhost: '203.0.113.9', tty: 'ssh' } as FrameMsg));
  const cuts = Array.from({ length: full.length - 1 }, (_, k) => k + 1);
  const results = await Promise.all(cuts.map((k) => exchange(f.socket, full.subarray(0, k), { end: true })));
  results.forEach((r, k) => {
    t.true(r.closed, `cut at ${k + 1}`);
    t.deepEqual(r.replies, [], `cut at ${k + 1}`);
  });
  t.is(f.agent.sessions.size, 0);
  await realLogin(t, f);
});

test('a BEGIN split into single bytes across many writes still makes a login', async (t) => {
  const f = await agentFor(t, 2000);
  const full = Buffer.from(encodeFrame({ type: MsgType.BEGIN, user: 'alice', service: 'sshd' } as FrameMsg));
  const s = connect(f.socket);
  t.teardown(() => s.destroy());
  const decoder = new FrameDecoder();
  const reply = new Promise<FrameMsg>((resolve) => s.on('data', (d) => decoder.push(d).forEach(resolve)));
  for (const byte of full) {
    s.write(Buffer.from([byte]));
    await new Promise((r) => setImmediate(r));
  }
  t.is((await reply).type, MsgType.CHALLENGE);
});

test('every BEGIN and CODE string at its limit is accepted; one byte more closes the connection without a reply', async (t) => {
  const f = await agentFor(t, 2000);
  const limits: Array<[keyof typeof BEGIN_FIELDS, number, (n: number) => string]> = [
    ['user', 256, (n) => 'a'.repeat(n)],
    ['rhost', 256, (n) => 'r'.repeat(n)],
    ['service', 64, (n) => `sshd-${'s'.repeat(n - 5)}`],
    ['tty', 64, (n) => 't'.repeat(n)],
    ['authfile', 256, (n) => `/${'x'.repeat(n - 1)}`],
    ['home', 1024, (n) => `/${'h'.repeat(n - 1)}`],
  ];
  for (const [name, max, value] of limits) {
    const tag = BEGIN_FIELDS[name];
    const base = name === 'user' ? [str(3, 'sshd')] : name === 'service' ? [str(1, 'alice')] : [str(1, 'alice'), str(3, 'sshd')];
    const extra = name === 'home' ? [u32(9, 4242)] : [];
    const at = await exchange(f.socket, frame(MsgType.BEGIN, ...base, ...extra, str(tag, value(max))), { waitMs: 3000, untilReply: true });
    t.true(at.replies.length > 0 && !at.garbled, `${name} at ${max} bytes gets an answer`);
    t.false(approved(at));
    const past = await exchange(f.socket, frame(MsgType.BEGIN, ...base, ...extra, str(tag, value(max + 1))), { waitMs: 1500 });
    t.true(past.closed, `${name} at ${max + 1} bytes: closed`);
    t.deepEqual(past.replies, [], `${name} at ${max + 1} bytes: no reply`);
  }
  // A 4-byte UTF-8 character straddling the limit counts in bytes, not characters.
  const emoji = '😀'.repeat(64); // 256 bytes
  t.true((await exchange(f.socket, aliceBegin(str(2, emoji)), { waitMs: 3000, untilReply: true })).replies.length > 0);
  t.deepEqual((await exchange(f.socket, aliceBegin(str(2, `${emoji}x`)), { waitMs: 1500 })).replies, []);

  // CODE digits, sent after the challenge: 16 bytes is a (wrong) code, 17 a framing error.
  for (const [digits, expect] of [['1'.repeat(16), 'wrong code'], ['1'.repeat(17), 'closed']] as const) {
    const client = await PamClient.connect(f.socket);
    client.send({ type: MsgType.BEGIN, user: 'alice', service: 'sshd' } as FrameMsg);
    t.is((await client.next())?.type, MsgType.CHALLENGE);
    client.sock.write(frame(MsgType.CODE, str(1, digits)));
    const reply = await client.next();
    if (expect === 'wrong code') t.like(reply, { type: MsgType.VERDICT, result: Result.CODE_WRONG });
    else t.is(reply, null, 'no verdict for an oversized code, just the close');
    client.close();
  }
  await eventually(() => f.agent.sessions.size === 0, 5000).catch(() => {});
  t.is(f.agent.sessions.size, 0);
  await realLogin(t, f);
});

test('frame lengths: 0 and past QR_MAX_FRAME close at once; QR_MAX_FRAME itself is read to the end, then judged', async (t) => {
  // A long frame timeout: a close within the few seconds waited below can only be the header check.
  const f = await agentFor(t, 20_000);
  const header = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  for (const n of [0, QR_MAX_FRAME + 1, 0x10000, 0xffffffff]) {
    const r = await exchange(f.socket, header(n), { waitMs: 5000 });
    t.true(r.closed, `length ${n} is refused on the header`);
  }
  // At the limit the agent waits for the body (not refused on the header)...
  const atLimit = await exchange(f.socket, header(QR_MAX_FRAME), { waitMs: 600 });
  t.false(atLimit.closed, 'a header of exactly QR_MAX_FRAME is within the limit');
  // ...and a full body that is no valid message is refused once read.
  const body = Buffer.alloc(QR_MAX_FRAME, 0x41);
  body[0] = MsgType.BEGIN;
  const full = await exchange(f.socket, Buffer.concat([header(QR_MAX_FRAME), body]), { waitMs: 5000 });
  t.true(full.closed);
  t.deepEqual(full.replies, []);
});

test('malformed fields close the connection: widths, tags, types, repeats, NUL, bad UTF-8, missing fields', async (t) => {
  const f = await agentFor(t, 1500);
  const cases: Record<string, Buffer> = {
    // Far from any type or tag the protocol will grow into (RENDER took 0x04, BEGIN tags 11-13).
    'unknown type': frame(0x7f, str(1, 'alice')),
    'agent-to-module type': frame(MsgType.VERDICT, u8(1, Result.APPROVED)),
    'challenge sent to the agent': frame(MsgType.CHALLENGE, str(1, 'x'), str(2, 'y'), u32(3, 1), u8(4, 1), str(5, 'z')),
    'unknown tag': aliceBegin(str(0xfe, 'x')),
    'tag 0': aliceBegin(str(0, 'x')),
    'repeated tag': aliceBegin(str(1, 'bob')),
    'u8 of 0 bytes': aliceBegin(field(5, Buffer.alloc(0))),
    'u8 of 2 bytes': aliceBegin(field(5, Buffer.from([0, 1]))),
    'u32 of 3 bytes': aliceBegin(field(7, Buffer.from([0, 0, 30]))),
    'u32 of 5 bytes': aliceBegin(field(7, Buffer.from([0, 0, 0, 0, 30]))),
    'NUL in user': frame(MsgType.BEGIN, str(1, Buffer.from('ali\0ce')), str(3, 'sshd')),
    'overlong UTF-8': frame(MsgType.BEGIN, str(1, Buffer.from([0xc0, 0xaf])), str(3, 'sshd')),
    'UTF-16 surrogate in UTF-8': frame(MsgType.BEGIN, str(1, Buffer.from([0xed, 0xa0, 0x80])), str(3, 'sshd')),
    'truncated UTF-8': frame(MsgType.BEGIN, str(1, Buffer.from([0x61, 0xe2, 0x82])), str(3, 'sshd')),
    'missing service': frame(MsgType.BEGIN, str(1, 'alice')),
    'missing user': frame(MsgType.BEGIN, str(3, 'sshd')),
    'field header cut': Buffer.concat([frame(MsgType.BEGIN, str(1, 'alice'), str(3, 'sshd')).subarray(0, 4), Buffer.alloc(0)]),
    'field runs past the body': (() => {
      const fr = aliceBegin();
      fr.writeUInt16BE(200, 6); // user's length now runs past the end
      return fr;
    })(),
    'CODE before BEGIN': frame(MsgType.CODE, str(1, '12345678')),
    'WAIT with a 1-byte max_wait': Buffer.concat([aliceBegin(), frame(MsgType.WAIT, u8(1, 5))]),
    'second BEGIN after the challenge': Buffer.concat([aliceBegin(), aliceBegin()]),
  };
  for (const [name, bytes] of Object.entries(cases)) {
    const r = await exchange(f.socket, bytes, { waitMs: 1200, end: name === 'field header cut' });
    t.true(r.closed, name);
    t.false(approved(r), name);
    t.true(r.replies.every((m) => m.type === MsgType.CHALLENGE), `${name}: nothing but a challenge came back`);
  }
  await eventually(() => f.agent.sessions.size === 0, 5000).catch(() => {});
  t.is(f.agent.sessions.size, 0, 'every session ended with its connection');
  await realLogin(t, f);
});

test('pipelined BEGIN and CODE in one write are answered in order', async (t) => {
  const f = await agentFor(t, 1500);
  const r = await exchange(f.socket, Buffer.concat([aliceBegin(), frame(MsgType.CODE, str(1, '00000000')), frame(MsgType.CODE, str(1, '11111111'))]), {
    waitMs: 800,
  });
  t.deepEqual(
    r.replies.map((m) => (m.type === MsgType.VERDICT ? `verdict ${m.result}` : `type ${m.type}`)),
    [`type ${MsgType.CHALLENGE}`, `verdict ${Result.CODE_WRONG}`, `verdict ${Result.CODE_WRONG}`],
  );
});

test('a peer that stalls mid-frame, before or after its challenge, is cut off and its session cancelled', async (t) => {
  const f = await agentFor(t, 400);
  const begin = aliceBegin();
  const stalls = [begin.subarray(0, 2), begin.subarray(0, 4), begin.subarray(0, 9), Buffer.concat([begin, frame(MsgType.WAIT).subarray(0, 3)])];
  // Waited for much longer than the frame timeout: closed means cut off, not held.
  const results = await Promise.all(stalls.map((b) => exchange(f.socket, b, { waitMs: 5000 })));
  for (const r of results) t.true(r.closed);
  t.is(results[3]!.replies[0]?.type, MsgType.CHALLENGE);
  await eventually(() => f.agent.sessions.size === 0, 5000).catch(() => {});
  t.is(f.agent.sessions.size, 0, 'the session of the stalled peer is gone');
  t.true(f.logs.some((l) => /pam_protocol_error .*stalled mid-frame/.test(l)));
});

test('a peer trickling one byte at a time cannot hold a frame open past the frame timeout', async (t) => {
  const f = await agentFor(t, 600);
  const begin = aliceBegin(str(2, 'r'.repeat(200)));
  const s = connect(f.socket);
  s.on('error', () => {});
  const closed = new Promise<number>((resolve) => s.on('close', () => resolve(Date.now())));
  let sent = 0;
  const trickle = setInterval(() => {
    if (sent < begin.length - 1 && !s.destroyed) s.write(begin.subarray(sent, ++sent));
  }, 100);
  t.teardown(() => clearInterval(trickle));
  // The whole frame would take over 20 s at this pace; each byte came well within the timeout.
  const at = await Promise.race([closed, sleep(5000).then(() => 0)]);
  clearInterval(trickle);
  s.destroy();
  t.not(at, 0, 'the agent closed the trickling connection');
  t.true(sent < begin.length - 1, `closed after ${sent} of ${begin.length} bytes`);
});

test('500 connections that never speak do not stop real logins, and are all cut off', async (t) => {
  const f = await agentFor(t, 6000);
  const quiet: Socket[] = [];
  const closedAll = Promise.all(
    Array.from({ length: 500 }, () => {
      const s = connect(f.socket);
      s.on('error', () => {});
      quiet.push(s);
      return new Promise<void>((resolve) => s.on('close', () => resolve()));
    }),
  );
  t.teardown(() => quiet.forEach((s) => s.destroy()));
  await eventually(() => f.agent.pam.connectionCount >= 500, 5000);
  await realLogin(t, f);
  await realLogin(t, f);
  const done = await Promise.race([closedAll.then(() => true), sleep(12_000).then(() => false)]);
  t.true(done, 'the agent closed every silent connection after the frame timeout');
  await eventually(() => f.agent.pam.connectionCount === 0);
  t.true(f.logs.filter((l) => /pam_protocol_error .*no BEGIN in time/.test(l)).length >= 500);
  await realLogin(t, f);
});
