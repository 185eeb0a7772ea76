/**
 * Load generator of benchmarks 2 and 5: whole logins at a fixed arrival rate (open loop), each
 * as the module and the phone do it. PAM side: connect to the agent socket, BEGIN, CHALLENGE,
 * WAIT. Phone side: context through the relay, verify the host's signature, sign, decision.
 * Then the VERDICT at the PAM side. argv[2] = JSON {socket, relayUrl, hostPub, seeds, users,
 * rate, seconds, maxInFlight}. Prints "RESULT <json>" with per-login latencies (ms):
 * `login` connect → VERDICT, `approve` decision sent → VERDICT at the PAM side, `challenge`
 * connect → CHALLENGE, `context` CHALLENGE → decision signed (the phone's round trip for the context).
 */
import { MsgType, Result, fromB64url, type FrameMsg } from '../../protocol/src/index.js';
import { BenchPhone, type GeneratorShare, PamConn, beginMsg, nowMs } from '../lib.js';

const o = JSON.parse(process.argv[2]!) as GeneratorShare & {
  rate: number;
  seconds: number;
  maxInFlight: number;
};
const hostPub = fromB64url(o.hostPub, 32);
const phones = await Promise.all(o.seeds.map((s) => BenchPhone.connect(o.relayUrl, fromB64url(s, 32))));

const login: number[] = [];
const approve: number[] = [];
const challenge: number[] = [];
const context: number[] = [];
let started = 0;
let inFlight = 0;
let errors = 0;
let shed = 0;
let wrong = 0;
let lastError = '';

async function oneLogin(i: number): Promise<void> {
  const t0 = nowMs();
  const conn = await PamConn.open(o.socket);
  try {
    conn.send(beginMsg(o.users[i % o.users.length]!, i));
    const ch = (await conn.next()) as (FrameMsg & { payload?: string }) | null;
    if (!ch || ch.type !== MsgType.CHALLENGE) throw new Error(`no challenge: ${JSON.stringify(ch)}`);
    const tChallenge = nowMs();
    conn.send({ type: MsgType.WAIT });
    const verdict = conn.next();
    const phone = phones[i % phones.length]!;
    const msg = await phone.prepare(ch.payload!, hostPub);
    const tDecision = nowMs();
    challenge.push(tChallenge - t0);
    context.push(tDecision - tChallenge);
    const [ack, v] = await Promise.all([phone.send(msg), verdict]);
    const t1 = nowMs();
    if (!ack.ok) throw new Error(`decision refused: ${ack.code}`);
    if (!v || v.type !== MsgType.VERDICT || v.result !== Result.APPROVED) {
      wrong++;
      throw new Error(`verdict ${JSON.stringify(v)}`);
    }
    login.push(t1 - t0);
    approve.push(t1 - tDecision);
  } finally {
    conn.close();
  }
}

const tStart = nowMs();
const tEnd = tStart + o.seconds * 1000;
await new Promise<void>((resolve) => {
  const tick = setInterval(() => {
    const now = nowMs();
    const due = Math.min(now, tEnd);
    const should = Math.floor(((due - tStart) / 1000) * o.rate);
    while (started < should) {
      const i = started++;
      if (inFlight >= o.maxInFlight) {
        shed++; // the system is not keeping up: count it, do not queue without bound
        continue;
      }
      inFlight++;
      oneLogin(i)
        .catch((e: unknown) => {
          errors++;
          lastError = (e as Error).message;
        })
        .finally(() => {
          inFlight--;
          if (nowMs() >= tEnd && inFlight === 0) {
            clearInterval(tick);
            resolve();
          }
        });
    }
    if (now >= tEnd && inFlight === 0) {
      clearInterval(tick);
      resolve();
    }
  }, 2);
});
const elapsed = (nowMs() - tStart) / 1000;
for (const p of phones) p.close();
process.stdout.write(`RESULT ${JSON.stringify({ started, completed: login.length, errors, wrong, shed, lastError, elapsed, backlogRetries: PamConn.backlogRetries, login, approve, challenge, context })}\n`);
process.exit(0);
