/**
 * Load generator of `make bench-scale`'s node-death run: whole logins at a fixed arrival rate
 * (open loop) as login-gen.ts does them (BEGIN, CHALLENGE, WAIT; the phone fetches and verifies
 * the context through the relay, signs, sends its decision; VERDICT), except that failures are
 * expected (the node holding the host is killed during the run), every fifth decision is a
 * deny, and each outcome is checked against what the phone signed:
 *   - ok:     the VERDICT is what the phone signed (approved / denied);
 *   - failed: no such verdict: the relay refused (host not connected) or timed out, or the agent
 *             answered OFFLINE (its relay link is down: the module then asks for the offline
 *             code), or nothing came within `graceMs`. Nobody is let in: fails closed;
 *   - wrong:  APPROVED although the phone signed a deny (or signed nothing).
 * argv[2] = JSON {socket, relayUrl, hostPub, seeds, users, rate, seconds, graceMs}. Waits for a
 * line on stdin, runs, prints "RESULT <json>": per login its start (CLOCK_MONOTONIC ms), outcome,
 * approve → verdict latency; and the failures counted by reason.
 */
import { createInterface } from 'node:readline';
import { MsgType, Result, fromB64url, type FrameMsg } from '../../protocol/src/index.js';
import { BenchPhone, type GeneratorShare, PamConn, beginMsg, nowMs } from '../lib.js';

const o = JSON.parse(process.argv[2]!) as GeneratorShare & { rate: number; seconds: number; graceMs: number };
const hostPub = fromB64url(o.hostPub, 32);
const phones = await Promise.all(o.seeds.map((s) => BenchPhone.connect(o.relayUrl, fromB64url(s, 32))));
process.stdout.write(`READY ${phones.length}\n`);
await new Promise<void>((resolve) => createInterface({ input: process.stdin }).once('line', () => resolve()));

type Outcome = 'ok' | 'failed' | 'wrong';
const records: Array<[number, Outcome, number]> = [];
const reasons = new Map<string, number>();
const RESULT_NAME = Object.fromEntries(Object.entries(Result).map(([k, v]) => [v, k]));
const noVerdict = Symbol('no verdict');
const within = <T>(p: Promise<T>, ms: number): Promise<T | typeof noVerdict> =>
  Promise.race([p, new Promise<typeof noVerdict>((r) => setTimeout(() => r(noVerdict), ms))]);

async function oneLogin(i: number): Promise<void> {
  const t0 = nowMs();
  const rec: [number, Outcome, number] = [t0, 'failed', -1];
  records.push(rec);
  const signed = i % 5 === 4 ? 'deny' : 'approve';
  let reason = '';
  let conn: PamConn | undefined;
  try {
    conn = await PamConn.open(o.socket);
    conn.send(beginMsg(o.users[i % o.users.length]!, i));
    const ch = (await conn.next()) as (FrameMsg & { payload?: string }) | null;
    if (!ch || ch.type !== MsgType.CHALLENGE) throw new Error(`no challenge`);
    conn.send({ type: MsgType.WAIT });
    const verdict = conn.next().then((v) => ({ v, at: nowMs() }));
    const phone = phones[i % phones.length]!;
    let msg: object | undefined;
    try {
      msg = await phone.prepare(ch.payload!, hostPub, signed);
    } catch (e) {
      reason = (e as Error).message.split(' ').slice(0, 3).join(' '); // "context refused: QRA_ERR_…
    }
    let tDecision = NaN;
    if (msg) {
      tDecision = nowMs();
      const ack = await phone.send(msg).catch((e: unknown) => ({ ok: false, code: (e as Error).message }));
      if (!ack.ok) reason = `decision refused: ${(ack.code ?? '').split(' ')[0]}`;
    }
    // Refused or not, wait a while for a verdict: a decision that got through anyway must show.
    const got = await within(verdict, msg && !reason ? o.graceMs : 500);
    if (got !== noVerdict && got.v?.type === MsgType.VERDICT) {
      const expected = signed === 'approve' ? Result.APPROVED : Result.DENIED;
      if (msg && got.v.result === expected) {
        rec[1] = 'ok';
        rec[2] = got.at - tDecision;
        reason = '';
      } else if (got.v.result === Result.APPROVED) {
        rec[1] = 'wrong';
        reason = msg ? 'approved a deny' : 'approved with no decision';
      } else {
        const name = `verdict ${RESULT_NAME[got.v.result as number] ?? String(got.v.result)}`;
        reason = reason ? `${reason}, then ${name}` : name;
      }
    } else {
      reason ||= 'no verdict in time';
    }
  } catch (e) {
    reason = `pam side: ${(e as Error).message}`;
  } finally {
    conn?.close();
  }
  if (rec[1] !== 'ok') reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
}

const tStart = nowMs();
const total = Math.round(o.rate * o.seconds);
const running: Promise<void>[] = [];
await new Promise<void>((resolve) => {
  let started = 0;
  const tick = setInterval(() => {
    const should = Math.min(total, Math.floor(((nowMs() - tStart) / 1000) * o.rate));
    while (started < should) running.push(oneLogin(started++));
    if (started >= total) {
      clearInterval(tick);
      resolve();
    }
  }, 1);
});
await Promise.all(running);
for (const p of phones) p.close();
process.stdout.write(
  `RESULT ${JSON.stringify({ records: records.map(([t, out, lat]) => [Math.round(t), out, Math.round(lat * 100) / 100]), reasons: Object.fromEntries(reasons) })}\n`,
);
process.exit(0);
