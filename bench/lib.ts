/**
 * Benchmark plumbing: statistics, child processes (relay, agent, load generators run as their
 * own processes), /proc readings (RSS, CPU, file descriptors), and a minimal phone and PAM
 * client. Every number a benchmark prints comes through here.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { connect, type Socket as NetSocket } from 'node:net';
import { join, resolve } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import {
  DEVICE_NAMESPACE,
  FrameDecoder,
  MsgType,
  contextAck,
  contextBytes,
  decisionAck,
  decisionBytes,
  encodeFrame,
  fromB64url,
  keyId,
  makeAuthHandshake,
  parse,
  parseLoginPayload,
  toB64url,
  type FrameMsg,
} from '../protocol/src/index.js';
import { nodeCrypto } from '../protocol/src/crypto-node.js';
import { testSeed } from '../test/support/seeded.js';

export const ROOT = resolve(import.meta.dirname, '..');
/** Compiled JS of a TS file under the repo (make bench builds first; processes run without tsx). */
export const dist = (rel: string): string => join(ROOT, 'dist', rel.replace(/\.ts$/, '.js'));

// ---------------------------------------------------------------- made-up inputs

/**
 * The seed every made-up input of a bench run comes from (keys, payloads, timing jitter), as in
 * the tests: QRAUTH_TEST_SEED when set, else `fallback`. Printed on stderr at once, so a run can be
 * repeated with the same inputs (stdout stays what the bench reports, or what a parent parses).
 */
export function benchSeed(fallback: number, name: string): number {
  const seed = testSeed(fallback);
  process.stderr.write(`${name}: seed ${seed} (QRAUTH_TEST_SEED=${seed} repeats this run's inputs)\n`);
  return seed;
}

/** A generator's seed: `arg` (its parent's seed, printed by the parent) when given, else benchSeed. */
export function seedArg(arg: string | undefined, fallback: number, name: string): number {
  if (arg === undefined) return benchSeed(fallback, name);
  if (!/^\d{1,10}$/.test(arg)) throw new Error(`${name}: the seed argument is an unsigned integer, not ${JSON.stringify(arg)}`);
  return Number(arg) >>> 0;
}

/**
 * 32 bytes named `label` under `seed` (SHA-256 of both): a key for each of thousands of made-up
 * hosts, spread over generator processes that do not coordinate, all distinct.
 */
export const seededKey = (seed: number, label: string): Uint8Array => nodeCrypto.sha256(new TextEncoder().encode(`${seed}:${label}`));

/**
 * A host generator's key for host i: seededKey(seed, `host <gen> <i>`), from the run's seed and this
 * generator's name as its parent passed them. Without both every generator would make the same keys.
 */
export function generatorHostKey(o: { seed?: unknown; gen?: unknown }): (i: number) => Uint8Array {
  const { seed, gen } = o;
  if (typeof seed !== 'number' || !Number.isInteger(seed) || typeof gen !== 'string') throw new Error("argv[2] needs seed (the run's, an integer) and gen (this generator's name)");
  return (i) => seededKey(seed, `host ${gen} ${i}`);
}

/** A number in [0, 1) from seeded bytes (test/support/seeded.ts prng). */
export const unitFrom = (bytes: (n: number) => Buffer): number => bytes(4).readUInt32BE(0) / 2 ** 32;

// ---------------------------------------------------------------- statistics

export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

export function summarize(values: number[]): Summary {
  const s = [...values].sort((a, b) => a - b);
  const q = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]! : NaN);
  return {
    n: s.length,
    p50: q(0.5),
    p90: q(0.9),
    p99: q(0.99),
    mean: s.reduce((a, b) => a + b, 0) / (s.length || 1),
    min: s[0] ?? NaN,
    max: s[s.length - 1] ?? NaN,
  };
}

/** Milliseconds on CLOCK_MONOTONIC (comparable across processes on Linux). */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function fmt(ms: number, digits = 2): string {
  if (!Number.isFinite(ms)) return 'n/a';
  return ms >= 100 ? ms.toFixed(0) : ms.toFixed(digits);
}

// ---------------------------------------------------------------- /proc

export function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** User + system CPU time of a process in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

export function fdHardLimit(pid: number = process.pid): number {
  const m = /Max open files\s+\d+\s+(\d+|unlimited)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
}

// ---------------------------------------------------------------- processes

export interface Proc {
  child: ChildProcess;
  pid: number;
  readonly stdout: string;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const running = new Set<Proc>();
/** Kill every process this run started (on exit or failure). */
export function stopAll(): void {
  for (const p of running) if (p.child.exitCode === null) p.child.kill('SIGKILL');
}

/**
 * Spawn with the open-files soft limit raised to the hard limit (a relay holding 20,000 hosts
 * needs as many descriptors). stderr goes to `logFile` when given (agents log a line a login).
 */
export function startProc(argv: string[], opts: { logFile?: string; env?: NodeJS.ProcessEnv; stdin?: 'pipe' | 'ignore' } = {}): Proc {
  const quoted = argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const err = opts.logFile ? openSync(opts.logFile, 'a') : 'inherit';
  const child = spawn('bash', ['-c', `ulimit -n "$(ulimit -Hn)"; exec ${quoted}`], {
    stdio: [opts.stdin ?? 'ignore', 'pipe', err],
    env: { ...process.env, ...opts.env },
  });
  let stdout = '';
  const listeners = new Set<() => void>();
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    stdout += d;
    for (const l of [...listeners]) l();
  });
  const exited = new Promise<number | null>((r) =>
    child.on('exit', (code) => {
      running.delete(proc);
      for (const l of [...listeners]) l();
      r(code);
    }),
  );
  const proc: Proc = {
    child,
    pid: child.pid!,
    get stdout() {
      return stdout;
    },
    waitFor(re, timeoutMs = 30_000) {
      return new Promise((resolvePromise, reject) => {
        const check = () => {
          const m = stdout.match(re);
          if (m) {
            done();
            resolvePromise(m);
          } else if (child.exitCode !== null) {
            done();
            reject(new Error(`${argv.join(' ')} exited (${child.exitCode}) before ${re}; stdout:\n${stdout.slice(-2000)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${re} from ${argv.join(' ')}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
  running.add(proc);
  return proc;
}

export const nodeProc = (script: string, args: string[], opts: Parameters<typeof startProc>[1] = {}): Proc =>
  startProc([process.execPath, dist(script), ...args], opts);

/** Resolves once `file` contains a line matching `re`. */
export async function waitForLog(file: string, re: RegExp, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (existsSync(file) && re.test(readFileSync(file, 'utf8'))) return;
    await sleep(25);
  }
  throw new Error(`no ${re} in ${file} within ${timeoutMs} ms:\n${existsSync(file) ? readFileSync(file, 'utf8').slice(-2000) : '(no file)'}`);
}

// ---------------------------------------------------------------- PAM side (TS)

/** One login's connection to the agent socket: send frames, await the next reply. */
export class PamConn {
  private decoder = new FrameDecoder();
  private queue: FrameMsg[] = [];
  private waiter: ((m: FrameMsg | null) => void) | null = null;
  private closed = false;

  private constructor(readonly sock: NetSocket) {
    sock.on('data', (d) => {
      for (const m of this.decoder.push(d)) {
        const w = this.waiter;
        this.waiter = null;
        if (w) w(m);
        else this.queue.push(m);
      }
    });
    sock.on('close', () => {
      this.closed = true;
      this.waiter?.(null);
      this.waiter = null;
    });
    sock.on('error', () => {});
  }

  /**
   * Node connects without blocking: a full listen backlog is EAGAIN here, where the module's
   * blocking connect(2) would wait. Wait likewise (retry) rather than count it as a failure.
   */
  static async open(path: string, deadlineMs = 10_000): Promise<PamConn> {
    const end = Date.now() + deadlineMs;
    for (;;) {
      try {
        return await new Promise((res, rej) => {
          const s = connect(path, () => res(new PamConn(s)));
          s.once('error', rej);
        });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > end) throw e;
        PamConn.backlogRetries++;
        await sleep(1);
      }
    }
  }

  /** How often a connect found the agent's listen backlog full. */
  static backlogRetries = 0;

  send(m: FrameMsg): void {
    this.sock.write(encodeFrame(m));
  }

  next(): Promise<FrameMsg | null> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    if (this.closed) return Promise.resolve(null);
    return new Promise((r) => (this.waiter = r));
  }

  close(): void {
    this.sock.destroy();
  }
}

/**
 * What run.ts hands every load generator (bench/procs/*-gen.ts), as JSON in argv[2]: the agent's
 * socket, the relay, the host key the phones trust, this generator's share of the phones.
 */
export interface GeneratorShare {
  socket: string;
  relayUrl: string;
  hostPub: string;
  seeds: string[];
  users: string[];
}

export function beginMsg(user: string, i = 0): FrameMsg {
  return { type: MsgType.BEGIN, user, service: 'sshd', rhost: `198.51.100.${(i % 250) + 1}`, tty: 'ssh', uid: 0, home: '/root' } as FrameMsg;
}

// ---------------------------------------------------------------- phone

/**
 * What the app does for one login, minus the person: fetch the context through the relay,
 * verify the host's signature with the key from enrollment, sign the decision, send it.
 */
export class BenchPhone {
  readonly deviceId: string;
  readonly publicKey: string;
  private constructor(
    readonly socket: Socket,
    private readonly seed: Uint8Array,
  ) {
    const pub = nodeCrypto.ed25519FromSeed(seed).publicKey;
    this.publicKey = toB64url(pub);
    this.deviceId = keyId(nodeCrypto, pub);
  }

  static devicesLine(seed: Uint8Array, name = 'Bench phone'): string {
    return `ed25519 ${toB64url(nodeCrypto.ed25519FromSeed(seed).publicKey)} 2026-01-01 ${name}`;
  }

  static connect(relayUrl: string, seed: Uint8Array): Promise<BenchPhone> {
    const socket = io(`${relayUrl}${DEVICE_NAMESPACE}`, {
      auth: (cb) => cb(makeAuthHandshake(nodeCrypto, 'device', seed, Date.now(), relayUrl) as unknown as Record<string, unknown>),
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
    });
    return new Promise((res, rej) => {
      socket.once('connect', () => res(new BenchPhone(socket, seed)));
      socket.once('connect_error', (e) => rej(e));
    });
  }

  /** Fetches and verifies the context; returns the decision ready to send. */
  async prepare(payload: string, hostPub: Uint8Array, decision: 'approve' | 'deny' = 'approve') {
    const { hostId, sid, nonce } = parseLoginPayload(payload);
    const ack = parse(contextAck, await this.socket.timeout(10_000).emitWithAck('context', { hostId, sid }), 'context ack');
    if (!ack.ok) throw new Error(`context refused: ${ack.code} ${ack.message}`);
    const ctx = ack.context;
    if (ctx.hostId !== hostId || ctx.sid !== sid || !nodeCrypto.ed25519Verify(hostPub, contextBytes(ctx), fromB64url(ctx.sig, 64))) {
      throw new Error('context does not verify');
    }
    const time = Date.now();
    const sig = nodeCrypto.ed25519Sign(this.seed, decisionBytes({ hostId, sid, nonce, user: ctx.user, decision, time, deviceId: this.deviceId }));
    return { hostId, sid, deviceId: this.deviceId, decision, time, sig: toB64url(sig) };
  }

  async send(msg: object): Promise<{ ok: boolean; result?: string; code?: string }> {
    return parse(decisionAck, await this.socket.timeout(10_000).emitWithAck('decision', msg), 'decision ack');
  }

  close(): void {
    this.socket.disconnect();
  }
}
