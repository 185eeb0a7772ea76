/**
 * Load generator of benchmark 5: approvals at a fixed rate (open loop) through the relay to the
 * agent, each timed from the phone sending its signed decision to the VERDICT at the PAM side.
 *
 * Setup (not timed): open `sessions` logins (BEGIN, CHALLENGE, WAIT: the PAM side now blocks on
 * the verdict, as the module does), and for each let a phone fetch the context through the
 * relay, verify the host's signature and sign its approval (a phone's own work, done before its
 * user taps). Prints "READY <n>", waits for a line on stdin, then sends the approvals at `rate`.
 * argv[2] = JSON {socket, relayUrl, hostPub, seeds, users, sessions, rate}. Prints
 * "RESULT <json>" with the latencies (ms) and the span from first decision to last verdict.
 */
import { createInterface } from 'node:readline';
import { MsgType, Result, fromB64url, type FrameMsg } from '../../protocol/src/index.js';
import { BenchPhone, type GeneratorShare, PamConn, beginMsg, nowMs } from '../lib.js';

const o = JSON.parse(process.argv[2]!) as GeneratorShare & {
  sessions: number;
  rate: number;
};
const hostPub = fromB64url(o.hostPub, 32);
const phones = await Promise.all(o.seeds.map((s) => BenchPhone.connect(o.relayUrl, fromB64url(s, 32))));

interface Pending {
  conn: PamConn;
  phone: BenchPhone;
  decision: object;
  /** The VERDICT and when it reached the PAM side. */
  verdict: Promise<{ v: FrameMsg | null; at: number }>;
}
const pending: Pending[] = [];
let next = 0;
async function setupWorker(): Promise<void> {
  while (next < o.sessions) {
    const i = next++;
    const conn = await PamConn.open(o.socket);
    conn.send(beginMsg(o.users[i % o.users.length]!, i));
    const ch = (await conn.next()) as (FrameMsg & { payload?: string }) | null;
    if (!ch || ch.type !== MsgType.CHALLENGE) throw new Error(`no challenge: ${JSON.stringify(ch)}`);
    conn.send({ type: MsgType.WAIT });
    const phone = phones[i % phones.length]!;
    pending.push({ conn, phone, decision: await phone.prepare(ch.payload!, hostPub), verdict: conn.next().then((v) => ({ v, at: nowMs() })) });
  }
}
await Promise.all(Array.from({ length: 16 }, setupWorker));
process.stdout.write(`READY ${pending.length}\n`);
await new Promise<void>((resolve) => createInterface({ input: process.stdin }).once('line', () => resolve()));

const lat: number[] = [];
let approved = 0;
let errors = 0;
let wrong = 0;
let lastError = '';
let lastVerdict = 0;
const tStart = nowMs();
const done: Promise<void>[] = [];
await new Promise<void>((resolve) => {
  let sent = 0;
  const tick = setInterval(() => {
    const should = Math.min(pending.length, Math.floor(((nowMs() - tStart) / 1000) * o.rate));
    while (sent < should) {
      const p = pending[sent++]!;
      const t0 = nowMs();
      done.push(
        Promise.all([p.phone.send(p.decision), p.verdict])
          .then(([ack, { v, at: t1 }]) => {
            if (!ack.ok) throw new Error(`decision refused: ${ack.code}`);
            if (!v || v.type !== MsgType.VERDICT || v.result !== Result.APPROVED) {
              wrong++;
              throw new Error(`verdict ${JSON.stringify(v)}`);
            }
            approved++;
            lat.push(t1 - t0);
            lastVerdict = Math.max(lastVerdict, t1);
          })
          .catch((e: unknown) => {
            errors++;
            lastError = (e as Error).message;
          })
          .finally(() => p.conn.close()),
      );
    }
    if (sent >= pending.length) {
      clearInterval(tick);
      resolve();
    }
  }, 1);
});
await Promise.all(done);
for (const p of phones) p.close();
const span = (lastVerdict - tStart) / 1000;
process.stdout.write(`RESULT ${JSON.stringify({ sessions: pending.length, approved, errors, wrong, lastError, span, lat })}\n`);
process.exit(0);
