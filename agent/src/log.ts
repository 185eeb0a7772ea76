/**
 * Operator logs: one line per event, key=value, to stderr (journald adds time and unit).
 * Never pass a nonce, code, token or private key here; callers log ids and outcomes only.
 */
export type LogFields = Record<string, string | number | boolean | undefined | null>;
export type Logger = (event: string, fields?: LogFields) => void;

function quote(v: string): string {
  // Values are bounded and stripped of control characters so a hostile user name cannot forge log lines.
  // eslint-disable-next-line no-control-regex
  const s = v.slice(0, 200).replace(/[\u0000-\u001f\u007f]/g, '?');
  return /^[A-Za-z0-9_.:@/+-]+$/.test(s) ? s : JSON.stringify(s);
}

export function formatLog(event: string, fields: LogFields = {}): string {
  const parts = [`event=${event}`];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || v === null) continue;
    parts.push(`${k}=${quote(String(v))}`);
  }
  return parts.join(' ');
}

export function stderrLogger(prefix = 'qrauth-agent'): Logger {
  return (event, fields) => {
    process.stderr.write(`${prefix}: ${formatLog(event, fields)}\n`);
  };
}

export const silentLogger: Logger = () => {};
