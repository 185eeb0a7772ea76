/**
 * Side by side in one process: the devices-file parser with the old line regex (kept here only, as
 * the baseline) against agent/src/devices-file.ts's tokenizer, alternating on the crafted worst case
 * for the regex: one 64 KiB line whose name part is a run of spaces, a letter, then a line break
 * character that `.` does not match, so `\s+(.+)$` tries every split of the run (quadratic).
 * A user can write such a line in their own devices file; the agent parsed it at every login.
 * Also the tokenizer on its own worst case (every line just under the length cap, failing at its end).
 * Prints one JSON line: medians, and that no parser found a device.
 *
 *   node bench/procs/devices-parse-compare.js [old runs, default 3] [new runs per old run, default 200]
 */
import { DEVICE_LINE_MAX_CHARS, DEVICES_FILE_MAX_BYTES, parseDevicesText } from '../../agent/src/devices-file.js';

const oldRuns = Number(process.argv[2] ?? 3);
const newRunsEach = Number(process.argv[3] ?? 200);

/** The parser before issue #10 item 2, cut to what costs time: the regex over every line. */
const LINE_RE = /^ed25519\s+([A-Za-z0-9_-]{43})\s+(\d{4}-\d{2}-\d{2})\s+(.+)$/;
function oldParse(text: string): number {
  let devices = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (LINE_RE.exec(line)) devices++;
  }
  return devices;
}

function worstCaseDevicesFile(): string {
  const head = `ed25519 ${'A'.repeat(43)} 2026-01-01`;
  const tail = 'x\r!\n';
  return `${head}${' '.repeat(DEVICES_FILE_MAX_BYTES - head.length - tail.length)}${tail}`;
}

/** The tokenizer's own worst case: as many lines as fit, each just under the length cap, failing at its end. */
function tokenizerWorstCase(): string {
  const head = `ed25519 ${'A'.repeat(43)} 2026-01-01`;
  const line = `${head}${' \t'.repeat((DEVICE_LINE_MAX_CHARS - head.length - 3) / 2)}x\r!`.slice(0, DEVICE_LINE_MAX_CHARS);
  return `${line}\n`.repeat(Math.floor(DEVICES_FILE_MAX_BYTES / (line.length + 1)));
}

const text = worstCaseDevicesFile();
const ownWorst = tokenizerWorstCase();
if (Buffer.byteLength(text) !== DEVICES_FILE_MAX_BYTES) throw new Error('the crafted file is not 64 KiB');
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const before: number[] = [];
const after: number[] = [];
let found = 0;
for (let i = 0; i < 50; i++) parseDevicesText(`${text}#${i}`); // warm up the JIT (a new text each time: no cache here anyway)
for (let r = 0; r < oldRuns; r++) {
  let t0 = process.hrtime.bigint();
  found += oldParse(text);
  before.push(ms(t0));
  for (let i = 0; i < newRunsEach; i++) {
    t0 = process.hrtime.bigint();
    found += parseDevicesText(text).devices.length;
    after.push(ms(t0));
  }
}
const own: number[] = [];
for (let i = 0; i < 200; i++) {
  const t0 = process.hrtime.bigint();
  found += parseDevicesText(ownWorst).devices.length;
  own.push(ms(t0));
}
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
process.stdout.write(`${JSON.stringify({ bytes: text.length, found, regex: { runs: before.length, p50: median(before) }, tokenizer: { runs: after.length, p50: median(after) }, tokenizerOwnWorst: { bytes: ownWorst.length, runs: own.length, p50: median(own) } })}\n`);
