/** Operator logs: one `key=value` line per event, values quoted only when they need it. */

export type LogFn = (line: string) => void;
export type LogFields = Record<string, string | number | boolean | undefined>;

export function kv(fields: LogFields): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const s = String(v);
    parts.push(/^[A-Za-z0-9_.:/@+-]+$/.test(s) ? `${k}=${s}` : `${k}=${JSON.stringify(s)}`);
  }
  return parts.join(' ');
}

export const stdoutLog: LogFn = (line) => {
  process.stdout.write(`${line}\n`);
};

/** First characters of a public id: enough to correlate lines, short enough to read. */
export const shortId = (id: string): string => id.slice(0, 8);
