/**
 * RENDER (issue #14, docs/protocol.md §1): the person typed `a` or `t` at the prompt and the
 * agent draws the same session again. Driven on the real agent's socket by a TS client; the
 * real module and ssh clients do it end to end in test/clients.test.ts.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeCrypto as c } from '../protocol/src/crypto-node.js';
import { MsgType, QrStyle, Result, keyId, offlineCode, offlineKey, parseLoginPayload, toB64url, type ChallengeMsg, type FrameMsg } from '../protocol/src/index.js';
import { startTestAgent, type AgentFixture } from './support/fixtures.js';
import { MAX_RENDERS } from '../agent/src/pam-connection.js';
import { eventually } from './support/net.js';
import { PamClient } from './support/pam-client.js';
import { DECODERS, scanLikeACamera } from './support/qr-decode.js';
import { tempDir } from './support/system.js';

const passwd = tempDir('qra-rr-');
const passwdPath = join(passwd.path, 'passwd');
writeFileSync(passwdPath, 'alice:x:4242:4242::/nonexistent:/bin/sh\n');
test.after.always(() => passwd.remove());

const seed = new Uint8Array(32).fill(7);
const phonePub = c.ed25519FromSeed(seed).publicKey;

async function challenged(t: { teardown(fn: () => Promise<void> | void): void }): Promise<{ f: AgentFixture; client: PamClient; first: ChallengeMsg }> {
  const f = await startTestAgent({}, { passwdPath });
  t.teardown(() => f.close());
  f.setDevices('alice', [`ed25519 ${toB64url(phonePub)} 2026-11-26 Phone`]);
  const client = await PamClient.connect(f.socket);
  t.teardown(() => client.close());
  client.send({ type: MsgType.BEGIN, user: 'alice', service: 'sshd', rhost: '203.0.113.7' });
  const first = (await client.next()) as ChallengeMsg;
  if (first?.type !== MsgType.CHALLENGE) throw new Error('no CHALLENGE');
  return { f, client, first };
}

test('RENDER ascii draws the same session as an ASCII QR that decodes to the same payload', async (t) => {
  const { f, client, first } = await challenged(t);
  client.send({ type: MsgType.RENDER, qr: QrStyle.ASCII });
  const again = (await client.next()) as ChallengeMsg;
  t.like(again, { type: MsgType.CHALLENGE, payload: first.payload, mode: first.mode, prompt: first.prompt });
  t.regex(again.qrText, /##/);
  t.false(/[█▀▄]/.test(again.qrText), 'ASCII only');
  t.true(again.qrText.split('\n').every((l) => l.length <= 80));
  for (const theme of ['dark', 'light'] as const) {
    for (const decoder of DECODERS) {
      const r = scanLikeACamera(again.qrText, theme, decoder, first.payload);
      t.true(r.scale !== null || r.symbolFault, `${decoder} on ${theme} reads ${first.payload}`);
    }
  }
  t.true(again.expires <= first.expires);
  t.true(f.logs.some((l) => /event=rerender .*user=alice .*style=ascii/.test(l)));
  t.false(f.logs.some((l) => l.includes(parseLoginPayload(first.payload).sid) || l.includes(first.payload)), 'no payload in the log');
});

test('RENDER text gives the payload line with no picture; the offline code of the same session still logs in', async (t) => {
  const { f, client, first } = await challenged(t);
  client.send({ type: MsgType.RENDER, qr: QrStyle.TEXT });
  const again = (await client.next()) as ChallengeMsg;
  t.like(again, { type: MsgType.CHALLENGE, payload: first.payload });
  t.false(/[█▀▄#]/.test(again.qrText), 'no picture');
  t.true(again.qrText.includes(`\n${first.payload}\n`));
  // Same sid and nonce: the code the phone derives from the first QR opens this login.
  const p = parseLoginPayload(first.payload);
  const k = offlineKey(c, seed, f.agent.host.publicKey, p.hostId, keyId(c, phonePub));
  client.send({ type: MsgType.CODE, digits: offlineCode(c, k, p.hostId, p.sid, p.nonce) });
  t.like(await client.next(), { type: MsgType.VERDICT, result: Result.APPROVED });
});

test('a RENDER with a style out of range ends the login (fail closed), as does one before BEGIN', async (t) => {
  const { client } = await challenged(t);
  client.send({ type: MsgType.RENDER, qr: 9 } as FrameMsg);
  t.is(await client.next(), null, 'the agent closed the connection');
  const f2 = await startTestAgent({}, { passwdPath });
  t.teardown(() => f2.close());
  const early = await PamClient.connect(f2.socket);
  early.send({ type: MsgType.RENDER, qr: QrStyle.ASCII });
  t.is(await early.next(), null);
  t.true(f2.logs.some((l) => /event=pam_protocol_error .*first message was not BEGIN/.test(l)));
});

test('a client asking for redraws in a loop is cut off after MAX_RENDERS and its session ends', async (t) => {
  const { f, client, first } = await challenged(t);
  for (let i = 0; i < MAX_RENDERS; i++) {
    client.send({ type: MsgType.RENDER, qr: i % 2 ? QrStyle.ASCII : QrStyle.TEXT });
    t.like(await client.next(), { type: MsgType.CHALLENGE, payload: first.payload }, `redraw ${i + 1}`);
  }
  client.send({ type: MsgType.RENDER, qr: QrStyle.TEXT });
  t.is(await client.next(), null, 'one more closes the connection');
  t.true(f.logs.some((l) => /event=pam_protocol_error .*RENDER/.test(l)), f.logs.join('\n'));
  await eventually(() => f.agent.sessions.size === 0, 5000).catch(() => {});
  t.is(f.agent.sessions.size, 0, 'no session left pending');
});
