/**
 * pam_qrauth.so built with AddressSanitizer and UndefinedBehaviorSanitizer, loaded by the real
 * pamtester through libpam (libasan preloaded: pamtester itself is not instrumented). It runs
 * the approve, code and failure paths against the real agent, and then against a hostile agent
 * that sends replies at and past every limit, out of order, cut short or byte by byte. Any
 * sanitizer report fails the test; no reply but a proper APPROVED after a CHALLENGE logs in.
 * (valgrind covers leaks: pam.test.ts and `make -C pam_qrauth check`.)
 */
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FrameDecoder, MsgType, Result, encodeFrame, type FrameMsg } from '../protocol/src/index.js';
import { startPamFixture, type PamFixture } from './support/pam-fixture.js';
import { ALICE, CAROL, LOGIN_PAYLOAD_RE } from './support/stack.js';
import { ROOT, ensureUser, tempDir } from './support/system.js';
import { watchOutput } from './support/watch.js';

const tmp = tempDir('qra-asan-');
const ASAN_SO = join(tmp.path, 'pam_qrauth_asan.so');
const LIBASAN = execFileSync('gcc', ['-print-file-name=libasan.so']).toString().trim();
const SAN_ENV = {
  LD_PRELOAD: LIBASAN,
  // Leaks are valgrind's job here: pamtester and libpam keep a few allocations to exit.
  ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=97',
  UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1:exitcode=98',
};
const SANITIZER_REPORT = /ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer/;

let fx: PamFixture;

test.before(async () => {
  ensureUser(ALICE);
  ensureUser(CAROL);
  const src = ['cfg.c', 'frame.c', 'agent.c', 'pam_qrauth.c'].map((f) => join(ROOT, 'pam_qrauth', f));
  execFileSync('gcc', [
    '-g', '-O1', '-fno-omit-frame-pointer', '-fsanitize=address,undefined', '-fno-sanitize-recover=all',
    '-fPIC', '-shared', '-fvisibility=hidden', '-Wall', '-Wextra', '-o', ASAN_SO, ...src, '-lpam',
  ]);
  fx = await startPamFixture({ noControl: true });
});
test.after.always(async () => {
  await fx?.close();
  tmp.remove();
});

const service = (args: string) => fx.service(args, ASAN_SO);

function pamtester(svc: string, user: string, env: NodeJS.ProcessEnv = SAN_ENV) {
  const child = spawn('stdbuf', ['-o0', '-e0', 'pamtester', '-v', svc, user, 'authenticate'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, LANG: 'C.UTF-8', ...env },
  });
  child.stdin.on('error', () => {}); // typing after it exited (EPIPE) is fine
  return Object.assign(watchOutput(child, 'pamtester'), {
    type: (s: string) => {
      if (child.exitCode === null && !child.stdin.destroyed) child.stdin.write(s);
    },
    kill: () => child.exitCode === null && child.kill('SIGKILL'),
  });
}

test.serial('the sanitizer build is really in use (it refuses to load without the ASan runtime first)', async (t) => {
  const run = pamtester(service(`socket=${fx.online.socket}`), ALICE, { LD_PRELOAD: '' });
  await run.exited;
  t.regex(run.output, /ASan runtime does not come first|AddressSanitizer/);
});

test.serial('ASan+UBSan: approve, offline code, wrong codes, no phone, agent down: right results, no reports', async (t) => {
  let run = pamtester(service(`socket=${fx.online.socket} mode=info`), ALICE);
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  t.like(await fx.phone.decide(payload, 'approve'), { ok: true });
  t.is(await run.exited, 0, run.output);

  run = pamtester(service(`socket=${fx.offline.socket} mode=prompt`), ALICE);
  const [p2] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  run.type(`${fx.phone.offlineCode(p2)}\n`);
  t.is(await run.exited, 0, run.output);

  run = pamtester(service(`socket=${fx.offline.socket} mode=prompt`), ALICE);
  await run.waitFor(/press Enter/);
  run.type('00000000\n1234-5678\nnot digits\n22222222\n');
  t.is(await run.exited, 1, run.output);

  run = pamtester(service(`socket=${fx.online.socket}`), CAROL);
  t.is(await run.exited, 1, run.output);
  run = pamtester(service(`socket=${tmp.path}/nobody.sock`), ALICE);
  t.is(await run.exited, 1, run.output);
  t.notRegex(run.output, SANITIZER_REPORT);
});

// ---------------------------------------------------------------- a hostile agent

type Step = { send: Buffer | Uint8Array } | { awaitFrame: true } | { close: true } | { trickle: Buffer | Uint8Array };

let agentsMade = 0;

/** An agent that answers the module with a script, whatever the module sends. */
async function hostileAgent(script: Step[]): Promise<{ path: string; server: Server; received: FrameMsg[] }> {
  agentsMade += 1;
  const path = join(tmp.path, `hostile-${agentsMade}.sock`);
  const received: FrameMsg[] = [];
  const server = createServer((sock: Socket) => {
    const decoder = new FrameDecoder();
    const queue: FrameMsg[] = [];
    let wake: (() => void) | null = null;
    sock.on('data', (d) => {
      try {
        const msgs = decoder.push(d);
        received.push(...msgs);
        queue.push(...msgs);
        wake?.();
      } catch {
        sock.destroy();
      }
    });
    sock.on('error', () => {});
    void (async () => {
      for (const step of [{ awaitFrame: true } as Step, ...script]) {
        if ('awaitFrame' in step) {
          while (queue.length === 0) await new Promise<void>((r) => (wake = r));
          queue.shift();
        } else if ('send' in step) sock.write(step.send);
        else if ('trickle' in step) {
          for (const b of step.trickle) {
            sock.write(Buffer.from([b]));
            await sleep(1);
          }
        } else sock.end();
      }
    })().catch(() => sock.destroy());
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { path, server, received };
}

const challenge = (over: Partial<Extract<FrameMsg, { type: 0x81 }>> = {}) =>
  encodeFrame({ type: MsgType.CHALLENGE, qrText: 'QR', prompt: 'Press Enter: ', expires: 30, mode: 2, payload: 'QRA1:x', ...over } as FrameMsg);
const verdict = (result: number, extra: Record<string, unknown> = {}) => encodeFrame({ type: MsgType.VERDICT, result, ...extra } as FrameMsg);
function rawFrame(type: number, fields: Array<[number, Buffer]>): Buffer {
  const body = Buffer.concat([Buffer.from([type]), ...fields.map(([tag, v]) => Buffer.concat([Buffer.from([tag, v.length >> 8, v.length & 0xff]), v]))]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

test.serial('ASan+UBSan against a hostile agent: limits, order, truncation, byte-by-byte; only a real APPROVED logs in', async (t) => {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const cases: Array<[string, Step[], 0 | 1]> = [
    [
      'a challenge with every field at its maximum, then APPROVED',
      [{ send: challenge({ qrText: '█'.repeat(4096), prompt: 'p'.repeat(512), payload: 'q'.repeat(256) }) }, { awaitFrame: true }, { send: verdict(Result.APPROVED) }],
      0,
    ],
    ['the same, byte by byte', [{ trickle: challenge() }, { awaitFrame: true }, { trickle: verdict(Result.APPROVED) }], 0],
    ['APPROVED before any challenge', [{ send: verdict(Result.APPROVED) }], 1],
    ['APPROVED twice in one write after BEGIN', [{ send: Buffer.concat([verdict(Result.APPROVED), verdict(Result.APPROVED)]) }], 1],
    ['a frame length past QR_MAX_FRAME', [{ send: u32(16385) }, { close: true }], 1],
    ['a frame length of 0xffffffff', [{ send: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x82]) }, { close: true }], 1],
    ['a challenge cut short, then the close', [{ send: Buffer.from(challenge()).subarray(0, 20) }, { close: true }], 1],
    ['a challenge, then garbage', [{ send: challenge() }, { awaitFrame: true }, { send: Buffer.from('garbage garbage garbage') }, { close: true }], 1],
    ['a challenge with invalid UTF-8', [{ send: rawFrame(0x81, [[1, Buffer.from([0xc3, 0x28])], [2, Buffer.from('p')], [3, u32(30)], [4, Buffer.from([2])], [5, Buffer.from('x')]]) }], 1],
    ['a challenge with a NUL in the prompt', [{ send: rawFrame(0x81, [[1, Buffer.from('q')], [2, Buffer.from('a\0b')], [3, u32(30)], [4, Buffer.from([2])], [5, Buffer.from('x')]]) }], 1],
    ['a challenge with qr_text one byte past its maximum', [{ send: rawFrame(0x81, [[1, Buffer.alloc(12289, 0x41)], [2, Buffer.from('p')], [3, u32(30)], [4, Buffer.from([2])], [5, Buffer.from('x')]]) }], 1],
    ['a challenge with mode 9', [{ send: challenge({ mode: 9 }) }, { awaitFrame: true }, { send: verdict(Result.APPROVED) }], 1],
    ['APPROVED carrying a result u8 of 2 bytes', [{ send: challenge() }, { awaitFrame: true }, { send: rawFrame(0x82, [[1, Buffer.from([0, 0])]]) }], 1],
    ['CODE_WRONG after a WAIT', [{ send: challenge() }, { awaitFrame: true }, { send: verdict(Result.CODE_WRONG, { triesLeft: 255 }) }], 1],
    ['NO_DEVICE after a challenge', [{ send: challenge() }, { awaitFrame: true }, { send: verdict(Result.NO_DEVICE) }], 1],
    ['an unknown result', [{ send: challenge() }, { awaitFrame: true }, { send: verdict(200) }], 1],
    ['ERROR with 512 bytes of control characters', [{ send: challenge() }, { awaitFrame: true }, { send: verdict(Result.ERROR, { message: '\x1b[2J\r\x07\x08\x7f'.repeat(64) }) }], 1],
    ['a second challenge instead of a verdict', [{ send: challenge() }, { awaitFrame: true }, { send: challenge() }], 1],
    ['OFFLINE forever (the module gives up after its rounds)', [{ send: challenge() }, ...Array.from({ length: 12 }, () => [{ awaitFrame: true } as Step, { send: verdict(Result.OFFLINE) } as Step]).flat()], 1],
    ['the agent goes away while the module waits', [{ send: challenge() }, { awaitFrame: true }, { close: true }], 1],
  ];
  for (const [name, script, expected] of cases) {
    const agent = await hostileAgent(script);
    const run = pamtester(service(`socket=${agent.path} mode=info wait=1 timeout=20`), ALICE);
    // The offline prompt (if any) gets Enter, so the module keeps asking until its rounds run out.
    const typing = setInterval(() => run.type('\n'), 200);
    const code = await run.exited;
    clearInterval(typing);
    agent.server.close();
    t.notRegex(run.output, SANITIZER_REPORT, `${name}:\n${run.output.slice(-1500)}`);
    t.is(code, expected, `${name}: exit ${code}\n${run.output.slice(-600)}`);
    if (expected === 0) t.regex(run.output, /successfully authenticated/, name);
    else t.notRegex(run.output, /successfully authenticated/, name);
  }
});
