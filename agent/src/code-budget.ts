/**
 * The budget of wrong offline codes a user may type, across sessions and agent restarts
 * (issue #10 item 3). Three tries a session alone let a script open session after session:
 * an 8-digit code then fell in days. Here:
 *
 * - a code is checked only if the user's codes are not locked and the host-wide rate of code
 *   checks (a token bucket, `codeChecksPerSecond`) allows it; a refused code is never compared, so
 *   it tells a guesser nothing and is not counted;
 * - `codeFailureLimit` wrong codes within `codeFailureWindowSeconds`, or `codeFailureDailyLimit`
 *   within 24 h, lock the user's codes for `codeLockSeconds`, doubling with each further lock up to
 *   `codeLockMaxSeconds` (a daily-limit lock also lasts until the oldest of those failures is a day
 *   old, so no 24 h ever holds more than `codeFailureDailyLimit` checked wrong codes: that is the
 *   bound docs/operations.md computes);
 * - a correct code resets the doubling (not the failure history, so the bound still holds);
 *   7 days without a wrong code forget the user; `qrauth unlock-codes` clears a user (root).
 *
 * Phone approvals never pass through here: an attacker can lock a victim's offline codes, never
 * their phone.
 *
 * State: <stateDir>/code-budget.json, 0600, written atomically (temp file, fsync, rename) before the
 * wrong code's answer goes out, bounded (MAX_USERS entries of at most `codeFailureDailyLimit`
 * times), validated on load. A file that is there but unreadable, unsafe (symlink, not ours,
 * group/world-writable) or invalid turns every user's codes OFF (fail closed) until root runs
 * `qrauth unlock-codes --all`; phones keep working and the agent keeps running. A missing file is a
 * fresh start.
 */
import { join } from 'node:path';
import { type Parsed, arrayOf, int, literal, object, parse, str } from '../../protocol/src/index.js';
import type { Logger } from './log.js';
import { StateFileDamaged, readStateJson, writeStateFileAtomic } from './state-file.js';

export interface CodeBudgetSettings {
  /** Wrong codes within the window that lock a user's codes. */
  failureLimit: number;
  failureWindowSeconds: number;
  /** Wrong codes within 24 h that lock a user's codes. */
  dailyLimit: number;
  /** The first lock; each further lock doubles it, up to lockMaxSeconds. */
  lockSeconds: number;
  lockMaxSeconds: number;
  /** Code checks a second on this host, all users together. */
  checksPerSecond: number;
}

export type Admission = { ok: true } | { ok: false; reason: 'locked' | 'busy' | 'damaged'; retryAfterSeconds: number; message: string };

export interface CodeLock {
  user: string;
  until: string;
  retryAfterSeconds: number;
}

interface UserEntry {
  /** Times (ms) of this user's wrong codes in the last 24 h, oldest first; at most dailyLimit. */
  fails: number[];
  /** Locks since the last correct code: the next lock lasts lockSeconds * 2^level. */
  level: number;
  lockedUntil: number;
}

export const CODE_BUDGET_FILE = 'code-budget.json';
export const MAX_USERS = 4096;
const DAY_MS = 24 * 3600_000;
const FORGET_MS = 7 * DAY_MS;
const MAX_FILE_BYTES = 8 << 20;
const MAX_LEVEL = 40;

const stateSchema = object({
  v: literal(1),
  users: arrayOf(
    object({
      user: str({ max: 256, min: 1 }),
      fails: arrayOf(int({ min: 0, max: 2 ** 50 }), 1000),
      level: int({ min: 0, max: MAX_LEVEL }),
      lockedUntil: int({ min: 0, max: 2 ** 50 }),
    }),
    MAX_USERS,
  ),
});

function humanDuration(seconds: number): string {
  if (seconds < 90) return `${Math.max(1, seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

export class CodeBudget {
  private readonly entries = new Map<string, UserEntry>();
  readonly path: string;
  /** Why the state file could not be trusted; codes are off for everyone while set. */
  damaged: string | null = null;
  private tokens: number;
  private tokensAt: number;

  constructor(
    stateDir: string,
    private readonly settings: CodeBudgetSettings,
    private readonly log: Logger,
    now = Date.now(),
  ) {
    this.path = join(stateDir, CODE_BUDGET_FILE);
    this.tokens = settings.checksPerSecond;
    this.tokensAt = now;
    this.load(now);
  }

  /** May a code for `user` be checked now? Takes one host-wide token when it may. */
  admit(user: string, now = Date.now()): Admission {
    if (this.damaged) {
      return {
        ok: false,
        reason: 'damaged',
        retryAfterSeconds: 0,
        message: 'Offline codes are turned off on this host until an admin checks its qrauth state (qrauth unlock-codes --all); approve on the phone instead.',
      };
    }
    const e = this.entries.get(user);
    if (e && now < e.lockedUntil) return this.lockedAnswer(user, e, now);
    if (!e && this.entries.size >= MAX_USERS && !this.prune(now)) {
      return { ok: false, reason: 'busy', retryAfterSeconds: 60, message: 'Too many users have typed wrong codes on this host; approve on the phone instead, or ask an admin.' };
    }
    this.tokens = Math.min(this.settings.checksPerSecond, this.tokens + ((now - this.tokensAt) / 1000) * this.settings.checksPerSecond);
    this.tokensAt = now;
    if (this.tokens < 1) {
      return { ok: false, reason: 'busy', retryAfterSeconds: 1, message: 'Too many codes are being checked on this host right now; wait a few seconds and try again, or approve on the phone.' };
    }
    this.tokens -= 1;
    return { ok: true };
  }

  /** A wrong code was checked for `user`. Returns the lock it caused, or { ok: true }. Saved before returning. */
  recordFailure(user: string, now = Date.now()): Admission {
    const s = this.settings;
    const e = this.entries.get(user) ?? { fails: [], level: 0, lockedUntil: 0 };
    e.fails = e.fails.filter((t) => t > now - DAY_MS);
    e.fails.push(now);
    if (e.fails.length > s.dailyLimit) e.fails.splice(0, e.fails.length - s.dailyLimit);
    this.entries.delete(user); // re-insert: Map order is least recently failed first (for prune)
    this.entries.set(user, e);
    const burst = e.fails.filter((t) => t > now - s.failureWindowSeconds * 1000).length;
    let answer: Admission = { ok: true };
    if (burst >= s.failureLimit || e.fails.length >= s.dailyLimit) {
      const lockMs = Math.min(s.lockSeconds * 1000 * 2 ** e.level, s.lockMaxSeconds * 1000);
      let until = now + lockMs;
      // No 24 h may hold more than dailyLimit checked wrong codes, whatever the lock lengths.
      if (e.fails.length >= s.dailyLimit) until = Math.max(until, e.fails[e.fails.length - s.dailyLimit]! + DAY_MS);
      e.lockedUntil = until;
      e.level = Math.min(MAX_LEVEL, e.level + 1);
      this.log('codes_locked', { user, seconds: Math.ceil((until - now) / 1000), level: e.level, cause: burst >= s.failureLimit ? 'window' : 'daily' });
      answer = this.lockedAnswer(user, e, now);
    }
    this.save();
    return answer;
  }

  /** A correct code: the doubling starts over (the failure history stays, for the daily bound). */
  recordSuccess(user: string): void {
    const e = this.entries.get(user);
    if (!e || e.level === 0) return;
    e.level = 0;
    this.save();
  }

  /** Users whose codes are locked now. */
  locked(now = Date.now()): CodeLock[] {
    const out: CodeLock[] = [];
    for (const [user, e] of this.entries) {
      if (now < e.lockedUntil) out.push({ user, until: new Date(e.lockedUntil).toISOString(), retryAfterSeconds: Math.ceil((e.lockedUntil - now) / 1000) });
    }
    return out;
  }

  /** root: forget a user's failures and lock. Returns whether there was anything. */
  unlock(user: string): boolean {
    const had = this.entries.delete(user);
    if (had) this.save();
    return had;
  }

  /** root: forget everyone, and trust a damaged state file again by overwriting it. */
  unlockAll(): void {
    this.entries.clear();
    this.damaged = null;
    this.save();
  }

  private lockedAnswer(user: string, e: UserEntry, now: number): Admission {
    const retry = Math.ceil((e.lockedUntil - now) / 1000);
    return {
      ok: false,
      reason: 'locked',
      retryAfterSeconds: retry,
      message: `Offline codes for ${user} are locked after too many wrong codes; approve on the phone instead, or try a code again in ${humanDuration(retry)} (an admin can lift it: qrauth unlock-codes --user ${user}).`,
    };
  }

  /** Drop users with nothing to remember; true when room was made. */
  private prune(now: number): boolean {
    for (const [user, e] of this.entries) {
      const last = e.fails[e.fails.length - 1] ?? 0;
      if (now >= e.lockedUntil && (last <= now - FORGET_MS || (e.level === 0 && last <= now - DAY_MS))) this.entries.delete(user);
    }
    return this.entries.size < MAX_USERS;
  }

  private load(now: number): void {
    let state: Parsed<typeof stateSchema> | null;
    try {
      state = readStateJson(this.path, { maxBytes: MAX_FILE_BYTES }, (json) => parse(stateSchema, json, 'code-budget'));
    } catch (e) {
      return this.markDamaged(e instanceof StateFileDamaged ? e.reason : (e as Error).message);
    }
    if (!state) return;
    for (const u of state.users) {
      this.entries.set(u.user, { fails: u.fails.filter((t) => t > now - DAY_MS).slice(-this.settings.dailyLimit), level: u.level, lockedUntil: u.lockedUntil });
    }
    this.prune(now);
  }

  private markDamaged(why: string): void {
    this.damaged = why;
    this.log('code_budget_damaged', { file: this.path, cause: why, effect: 'offline codes refused for every user until: qrauth unlock-codes --all' });
  }

  /** Atomic (state-file.ts): a crash leaves the old state or the new, never half. */
  private save(): void {
    const users = [...this.entries].map(([user, e]) => ({ user, fails: e.fails, level: e.level, lockedUntil: e.lockedUntil }));
    const text = JSON.stringify({ v: 1, users });
    try {
      writeStateFileAtomic(this.path, text);
    } catch (e) {
      // The lock still holds in memory; only a restart before the next save would forget it.
      this.log('code_budget_save_failed', { file: this.path, cause: (e as Error).message });
    }
  }
}
