/**
 * /etc/qrauth/agent.json: every field has a default; anything present is validated and an
 * invalid file stops the agent with a message that names the field.
 */
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import type { UserVerificationPolicy } from './webauthn.js';
import { type Check, MAX_FALLBACK_RELAYS, MAX_LEASE_SECONDS, QrauthError, arrayOf, bool, byInput, int, nullable, object, oneOf, optional, str, parse, relayUrlProblem } from '../../protocol/src/index.js';

export interface AgentConfig {
  /** Unix socket for pam_qrauth. @default "/run/qrauth.sock" */
  socket: string;
  /** Control socket for the `qrauth` CLI (any local user; peer credentials decide). @default "/run/qrauth/control.sock" */
  controlSocket: string;
  /** Host key and state. @default "/var/lib/qrauth" */
  stateDir: string;
  /**
   * Relay base URL; null runs offline (codes only). The file may give a list (failover without a
   * balancer, preferred first): then this is the first, and relayUrls holds them all. @default null
   */
  relayUrl: string | null;
  /**
   * Every relay URL in order of preference, filled in from relayUrl; empty when offline. Read
   * back (a printed config, main.ts's overrides) only while it starts with relayUrl. @default []
   */
  relayUrls: string[];
  /** Devices file pattern: `~` is the user's home, `%u` the user name. @default "~/.config/qrauth/devices" */
  authfile: string;
  /** Seconds a login QR stays valid (keep below sshd's LoginGraceTime, 120 s). @default 90 */
  expirySeconds: number;
  /** Seconds an enrollment QR stays valid. @default 300 */
  enrollSeconds: number;
  /** Host name shown on the phone. @default os.hostname() */
  hostname: string;
  /** sshd shows PAM info messages at once (OpenSSH ≥ 10.3): "auto" asks `sshd -V` once at start. @default "auto" */
  sshdInfoMessages: 'auto' | 'yes' | 'no';
  /** sshd binary for the version check. @default "/usr/sbin/sshd" */
  sshdPath: string;
  /** Concurrent PAM connections; more are refused. @default 4096 */
  maxConnections: number;
  /** Waiting logins one caller (PAM_RUSER: su's and sudo's caller) may hold, within maxConnections. */
  maxConnectionsPerCaller: number;
  /** Log lines at debug level. @default false */
  debug: boolean;
  /** Wrong offline codes within codeFailureWindowSeconds that lock a user's codes (phones still work). @default 10 */
  codeFailureLimit: number;
  /** @default 900 */
  codeFailureWindowSeconds: number;
  /** Wrong offline codes within 24 h that lock a user's codes; bounds brute force (docs/operations.md). @default 20 */
  codeFailureDailyLimit: number;
  /** First lock of a user's codes; doubles with each further lock. @default 900 */
  codeLockSeconds: number;
  /** Longest lock. @default 86400 */
  codeLockMaxSeconds: number;
  /** Offline code checks a second on this host, all users together. @default 20 */
  codeChecksPerSecond: number;
  /**
   * Passkey (WebAuthn) checks of approvals (agent/src/webauthn.ts): "off" does not use them,
   * "preferred" needs a valid assertion from devices enrolled with a passkey, "required" needs one
   * with user verification (fingerprint, face, PIN) from every device. @default "preferred"
   */
  userVerification: UserVerificationPolicy;
  /** Offline codes accepted at all; a code proves no fingerprint or PIN (docs/operations.md). @default true */
  offlineCodes: boolean;
  /**
   * Longest lease a phone may grant ("approve for 1 h from this key"); 0 turns leases off. Also
   * needs the module option `lease` on the PAM line and a key sshd verified (docs/install.md). @default 0
   */
  maxLeaseSeconds: number;
  /**
   * Look up the reverse name of a login's source address for the phone (shown only when the name
   * resolves back to the address; at most a second, while the QR is shown). @default true
   */
  reverseDns: boolean;
}

export const DEFAULT_CONFIG_PATH = '/etc/qrauth/agent.json';

export function defaultConfig(): AgentConfig {
  return {
    socket: '/run/qrauth.sock',
    controlSocket: '/run/qrauth/control.sock',
    stateDir: '/var/lib/qrauth',
    relayUrl: null,
    relayUrls: [],
    authfile: '~/.config/qrauth/devices',
    expirySeconds: 90,
    enrollSeconds: 300,
    hostname: osHostname(),
    sshdInfoMessages: 'auto',
    sshdPath: '/usr/sbin/sshd',
    maxConnections: 4096,
    maxConnectionsPerCaller: 64,
    debug: false,
    codeFailureLimit: 10,
    codeFailureWindowSeconds: 900,
    codeFailureDailyLimit: 20,
    codeLockSeconds: 900,
    codeLockMaxSeconds: 86400,
    codeChecksPerSecond: 20,
    userVerification: 'preferred',
    offlineCodes: true,
    maxLeaseSeconds: 0,
    reverseDns: true,
  };
}

const configUrl: Check<string> = str({ max: 300, pattern: /^[a-z][a-z0-9+.-]*:\/\/[^\s]+$/i });
const absPath = str({ max: 1024, min: 1, pattern: /^\// });
const configSchema = object({
  socket: optional(str({ max: 107, min: 2, pattern: /^\// })),
  controlSocket: optional(str({ max: 107, min: 2, pattern: /^\// })),
  stateDir: optional(absPath),
  relayUrl: optional(nullable(byInput<string | string[]>((v) => (Array.isArray(v) ? arrayOf(configUrl, 1 + MAX_FALLBACK_RELAYS) : configUrl)))),
  relayUrls: optional(arrayOf(str({ max: 300 }), 1 + MAX_FALLBACK_RELAYS)),
  authfile: optional(str({ max: 256, min: 2, pattern: /^(~\/|\/)/ })),
  expirySeconds: optional(int({ min: 5, max: 3600 })),
  enrollSeconds: optional(int({ min: 30, max: 3600 })),
  hostname: optional(str({ max: 253, min: 1 })),
  sshdInfoMessages: optional(oneOf(['auto', 'yes', 'no'] as const)),
  sshdPath: optional(absPath),
  maxConnections: optional(int({ min: 1, max: 65536 })),
  maxConnectionsPerCaller: optional(int({ min: 1, max: 65536 })),
  debug: optional(bool()),
  codeFailureLimit: optional(int({ min: 1, max: 100 })),
  codeFailureWindowSeconds: optional(int({ min: 60, max: 86400 })),
  codeFailureDailyLimit: optional(int({ min: 1, max: 100 })),
  codeLockSeconds: optional(int({ min: 60, max: 604800 })),
  codeLockMaxSeconds: optional(int({ min: 60, max: 604800 })),
  codeChecksPerSecond: optional(int({ min: 1, max: 1000 })),
  userVerification: optional(oneOf(['off', 'preferred', 'required'] as const)),
  offlineCodes: optional(bool()),
  maxLeaseSeconds: optional(int({ min: 0, max: MAX_LEASE_SECONDS })),
  reverseDns: optional(bool()),
});

/** Merge validated overrides onto the defaults. */
export function makeConfig(overrides: unknown): AgentConfig {
  const o = parse(configSchema, overrides, 'config');
  const cfg = { ...defaultConfig(), ...o } as AgentConfig;
  if (cfg.codeFailureDailyLimit < cfg.codeFailureLimit) {
    throw new QrauthError('QRA_ERR_CONFIG', 'config.codeFailureDailyLimit: must be at least codeFailureLimit');
  }
  if (cfg.codeLockMaxSeconds < cfg.codeLockSeconds) throw new QrauthError('QRA_ERR_CONFIG', 'config.codeLockMaxSeconds: must be at least codeLockSeconds');
  const given = o.relayUrl === undefined || o.relayUrl === null ? [] : Array.isArray(o.relayUrl) ? o.relayUrl : [o.relayUrl];
  // A config read back keeps its list; one whose relayUrl was changed (qrauth-agent --relay) does not.
  const listed = typeof o.relayUrl === 'string' && o.relayUrls?.[0] === o.relayUrl ? o.relayUrls : given;
  cfg.relayUrls = listed.map((text, i) => {
    const field = listed.length > 1 ? `config.relayUrl[${i}]` : 'config.relayUrl';
    let url: string;
    try {
      url = new URL(text).href.replace(/\/$/, '');
    } catch {
      throw new QrauthError('QRA_ERR_CONFIG', `${field}: not a valid URL`);
    }
    // Plain http off loopback would let anyone on the path read and rewrite what phones see.
    const problem = relayUrlProblem(url);
    if (problem) throw new QrauthError('QRA_ERR_CONFIG', `${field}: ${problem}`);
    return url;
  });
  if (new Set(cfg.relayUrls).size !== cfg.relayUrls.length) throw new QrauthError('QRA_ERR_CONFIG', 'config.relayUrl: a relay is listed twice; list each once, preferred first');
  cfg.relayUrl = cfg.relayUrls[0] ?? null;
  return cfg;
}

/** Read and validate a config file. A missing default file means all defaults. */
export function loadConfig(path: string, { mustExist = false } = {}): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !mustExist) return defaultConfig();
    throw new QrauthError('QRA_ERR_CONFIG', `cannot read ${path}: ${(e as Error).message}`);
  }
  if (text.length > 64 * 1024) throw new QrauthError('QRA_ERR_CONFIG', `${path} is larger than 64 KiB`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new QrauthError('QRA_ERR_CONFIG', `${path} is not valid JSON: ${(e as Error).message}`);
  }
  try {
    return makeConfig(json);
  } catch (e) {
    throw new QrauthError('QRA_ERR_CONFIG', `${path}: ${(e as Error).message}. See docs/operations.md for every field.`);
  }
}
