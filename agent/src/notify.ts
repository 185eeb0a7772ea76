/**
 * systemd `Type=notify`: READY=1 once the PAM socket listens, STATUS= with the relay link state
 * and the pending logins, WATCHDOG=1 at half of WATCHDOG_USEC.
 *
 * Node cannot send Unix datagrams, so the notification is sent by systemd's own `systemd-notify`
 * CLI: READY and STATUS through the systemd-notify package (which runs that CLI), WATCHDOG=1 by
 * running the same CLI directly, since the package has no option for arbitrary assignments. The
 * sender is then a child process, hence `NotifyAccess=all` in qrauth-agent.service.
 *
 * Every notification is a process spawn, so none happens on the login path: a relay link change
 * is sent at once, the pending-login count is compared every `statusIntervalMs` and sent only
 * when the text changed, and the watchdog ticks on its own timer (which also proves the event
 * loop still runs).
 */
import { execFile } from 'node:child_process';
import systemdNotify from 'systemd-notify';
import type { Logger } from './log.js';

export interface Notification {
  ready?: true;
  status?: string;
  watchdog?: true;
}

export type NotificationSender = (n: Notification) => Promise<void>;

export interface SystemdNotifierOptions {
  log: Logger;
  /** The STATUS= text now; cheap, called on every check. */
  status: () => string;
  /** How often the status text is compared with the last one sent. @default 5000 */
  statusIntervalMs?: number;
  /** How a notification reaches systemd. @default the systemd-notify CLI */
  send?: NotificationSender;
  /** @default process.env */
  env?: NodeJS.ProcessEnv;
  /** @default process.pid */
  pid?: number;
}

/** Half of WATCHDOG_USEC in ms, or undefined when systemd asked for no watchdog (or for another pid's). */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isSafeInteger(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== String(pid)) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

/** The real sender: systemd's CLI, which finds NOTIFY_SOCKET in the environment it inherits. */
export const sendWithSystemdNotify: NotificationSender = async (n) => {
  if (n.watchdog) {
    await new Promise<void>((resolve, reject) => {
      execFile('systemd-notify', ['WATCHDOG=1'], { timeout: 10_000 }, (err, _out, stderr) =>
        err ? reject(new Error(stderr.trim() || err.message)) : resolve(),
      );
    });
    return;
  }
  try {
    await systemdNotify({ ...(n.ready ? { ready: true } : {}), ...(n.status !== undefined ? { status: n.status } : {}) });
  } catch (e) {
    // The package rejects with the CLI's stderr as a plain string.
    throw e instanceof Error ? e : new Error(String(e));
  }
};

export class SystemdNotifier {
  readonly watchdogMs: number | undefined;
  readonly #opts: SystemdNotifierOptions;
  readonly #send: NotificationSender;
  #lastStatus: string | null = null;
  #chain: Promise<void> = Promise.resolve();
  #timers: NodeJS.Timeout[] = [];
  #failures = 0;
  #closed = false;

  /** Null when not started by systemd with Type=notify (NOTIFY_SOCKET unset): the CLI would fail. */
  static fromEnv(opts: SystemdNotifierOptions): SystemdNotifier | null {
    const env = opts.env ?? process.env;
    return env.NOTIFY_SOCKET ? new SystemdNotifier(opts) : null;
  }

  constructor(opts: SystemdNotifierOptions) {
    this.#opts = opts;
    this.#send = opts.send ?? sendWithSystemdNotify;
    this.watchdogMs = watchdogIntervalMs(opts.env ?? process.env, opts.pid ?? process.pid);
  }

  /** READY=1 with the first STATUS=, then keeps STATUS= current and the watchdog fed. */
  ready(): Promise<void> {
    const status = this.#opts.status();
    this.#lastStatus = status;
    const sent = this.#enqueue({ ready: true, status });
    const every = this.#opts.statusIntervalMs ?? 5000;
    this.#timers.push(setInterval(() => this.refresh(), every));
    if (this.watchdogMs !== undefined) this.#timers.push(setInterval(() => void this.#enqueue({ watchdog: true }), this.watchdogMs));
    for (const t of this.#timers) t.unref();
    return sent;
  }

  /** Sends STATUS= if its text changed since the last one (call on a relay link change). */
  refresh(): void {
    if (this.#closed || this.#lastStatus === null) return;
    const status = this.#opts.status();
    if (status === this.#lastStatus) return;
    this.#lastStatus = status;
    void this.#enqueue({ status });
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
  }

  /** One CLI at a time, in order; a STATUS= overtaken by a newer text is skipped. Never rejects. */
  #enqueue(n: Notification): Promise<void> {
    this.#chain = this.#chain.then(async () => {
      if (this.#closed && !n.ready) return;
      if (!n.ready && n.status !== undefined && n.status !== this.#lastStatus) return;
      try {
        await this.#send(n);
      } catch (e) {
        // Log the first failure and then every 100th, not every watchdog tick.
        if (this.#failures++ % 100 === 0) {
          this.#opts.log('systemd_notify_failed', { what: n.watchdog ? 'watchdog' : n.ready ? 'ready' : 'status', cause: (e as Error).message, failures: this.#failures });
        }
      }
    });
    return this.#chain;
  }
}
