/**
 * Operator logs: one line per event, key=value, to stderr (journald adds time and unit).
 * Never pass a nonce, code, token or private key here; callers log ids and outcomes only.
 */
export type LogFields = Record<string, string | number | boolean | undefined | null>;
export type Logger = (event: string, fields?: LogFields) => void;

// C0 and C1 controls, DEL, the bidi marks, embeddings, overrides and isolates (they reorder what a
// terminal or log viewer shows after them), and U+2028/2029 (some viewers start a line there): the
// same characters pam_qrauth's sanitize() replaces.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/** `s` with every control character (see UNPRINTABLE) as '?': for text from a file or a peer that a person reads. */
export function printable(s: string): string {
  return s.replace(UNPRINTABLE, '?');
}

function quote(v: string): string {
  // Values are bounded and stripped of control characters so a hostile user name cannot forge log lines.
  const s = printable(v.slice(0, 200));
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
