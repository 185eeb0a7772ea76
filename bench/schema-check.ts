/**
 * What checking a message against its schema costs (protocol/src/validate.ts), per message, for
 * the messages the relay and the agent check most: a phone's decision, a host's context answer,
 * a phone's enrollment. `make bench-schema` (BEFORE=<commit> to compare with another commit's
 * protocol/src, checked out in a worktree at /tmp/qra-schema-before; rounds interleaved).
 *
 *   npx tsx bench/schema-check.ts [--before <commit>] [--rounds 11] [--per-round 20000]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, summarize } from './lib.js';

const WORKTREE = '/tmp/qra-schema-before';
const { values: args } = parseArgs({ options: { before: { type: 'string' }, rounds: { type: 'string', default: '11' }, 'per-round': { type: 'string', default: '20000' } } });
const rounds = Number(args.rounds);
const perRound = Number(args['per-round']);
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 101 || !Number.isInteger(perRound) || perRound < 100 || perRound > 1_000_000) {
  throw new Error('--rounds 1..101 and --per-round 100..1000000');
}

type Protocol = typeof import('../protocol/src/index.js');

function checkoutBefore(commit: string): string {
  const sha = execFileSync('git', ['rev-parse', commit], { cwd: ROOT, encoding: 'utf8' }).trim();
  if (!existsSync(WORKTREE)) {
    execFileSync('git', ['worktree', 'add', '--detach', WORKTREE, sha], { cwd: ROOT, stdio: 'ignore' });
    symlinkSync(join(ROOT, 'node_modules'), join(WORKTREE, 'node_modules'));
  }
  const at = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: WORKTREE, encoding: 'utf8' }).trim();
  if (at !== sha) throw new Error(`${WORKTREE} is at ${at}, not ${sha}: remove it (git worktree remove --force ${WORKTREE}) and run again`);
  console.log(`before: protocol/src at ${sha.slice(0, 10)} (${WORKTREE})`);
  return join(WORKTREE, 'protocol', 'src', 'index.ts');
}

// Valid messages of realistic size; every field is checked, none is refused.
const id = (c: string) => c.repeat(22);
const messages = {
  decision: { name: 'decision', value: { hostId: id('A'), sid: id('B'), deviceId: id('C'), decision: 'approve', time: 1_780_000_000_000, sig: 'D'.repeat(86) } },
  contextAck: {
    name: 'context answer',
    value: { ok: true, context: { v: 1, hostId: id('A'), sid: id('B'), user: 'alice', hostname: 'web-01.example.net', rhost: '203.0.113.9', service: 'sshd', iat: 1_780_000_000, exp: 1_780_000_060, sig: 'E'.repeat(86) } },
  },
  enroll: { name: 'enroll', value: { hostId: id('A'), tokenId: id('T'), devicePub: 'P'.repeat(43), deviceName: 'Pixel 9', time: 1_780_000_000_000, sig: 'S'.repeat(86) } },
} as const;
type Which = keyof typeof messages;
const schemaOf = (p: Protocol, w: Which) => ({ decision: p.decisionMessage, contextAck: p.contextAck, enroll: p.enrollMessage })[w];

/** ns per check, averaged over one round. */
function round(p: Protocol, w: Which): number {
  const schema = schemaOf(p, w);
  const { value, name } = messages[w];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < perRound; i++) p.parse(schema as never, value, name);
  return Number(process.hrtime.bigint() - t0) / perRound;
}

const after: Protocol = await import('../protocol/src/index.js');
const before: Protocol | null = args.before ? await import(checkoutBefore(args.before)) : null;
for (const p of [after, before]) if (p) for (const w of Object.keys(messages) as Which[]) p.parse(schemaOf(p, w) as never, messages[w].value, 'warm-up');

console.log(`${rounds} rounds × ${perRound} checks per message kind; median ns per check${before ? ' (rounds interleaved: before, after)' : ''}`);
for (const w of Object.keys(messages) as Which[]) {
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < rounds; r++) {
    if (before) b.push(round(before, w));
    a.push(round(after, w));
  }
  const am = summarize(a).p50;
  if (!before) console.log(`${w.padEnd(11)} ${am.toFixed(0)} ns`);
  else {
    const bm = summarize(b).p50;
    console.log(`${w.padEnd(11)} before ${bm.toFixed(0)} ns, after ${am.toFixed(0)} ns, after/before ${(am / bm).toFixed(2)}`);
  }
}
