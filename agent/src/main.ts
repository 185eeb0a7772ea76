#!/usr/bin/env node
/**
 * qrauth-agent: the long-lived daemon pam_qrauth talks to. Under systemd it takes the socket
 * from qrauth-agent.socket (LISTEN_FDS); started by hand it creates the socket itself.
 */
import { Command, InvalidArgumentError } from 'commander';
import { isQrauthError } from '../../protocol/src/index.js';
import { startAgent, VERSION } from './agent.js';
import { DEFAULT_CONFIG_PATH, loadConfig, makeConfig } from './config.js';
import { stderrLogger } from './log.js';
import { SystemdNotifier } from './notify.js';

/** systemd socket activation: the first passed fd is 3 when LISTEN_PID is us. */
export function inheritedFd(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number | undefined {
  if (env.LISTEN_PID !== String(pid)) return undefined;
  const n = Number(env.LISTEN_FDS);
  return Number.isInteger(n) && n >= 1 ? 3 : undefined;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive whole number');
  return n;
}

const program = new Command()
  .name('qrauth-agent')
  .description('The qrauth daemon: serves pam_qrauth on a Unix socket and keeps one link to the relay.')
  .version(VERSION)
  .option('-c, --config <file>', 'config file (JSON)', DEFAULT_CONFIG_PATH)
  .option('--socket <path>', 'PAM socket path (overrides the config)')
  .option('--state-dir <dir>', 'state directory holding the host key (overrides the config)')
  .option('--relay <url>', 'relay URL (overrides the config); "none" for offline codes only')
  .option('--expiry <seconds>', 'seconds a login QR stays valid (overrides the config)', positiveInt)
  .option('--check-config', 'validate the config, print it, and exit')
  .addHelpText('after', '\nThe config fields and their defaults: docs/operations.md. Logs go to stderr as key=value lines.');

program.action(async (o: { config: string; socket?: string; stateDir?: string; relay?: string; expiry?: number; checkConfig?: boolean }) => {
  const log = stderrLogger();
  // Last resort, not containment: each PAM connection and relay message is contained where it is
  // handled (pam-connection.ts, relay-link.ts). A throw that still gets here is a bug in a state
  // nobody planned for, so the agent does not carry on in it: one log line, the stack, exit 70
  // (EX_SOFTWARE); systemd restarts it and socket activation keeps new logins queued meanwhile.
  const fatal = (e: unknown) => {
    log('fatal', { cause: e instanceof Error ? `${e.name}: ${e.message}` : 'non-error thrown' });
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(70);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  try {
    const explicit = program.getOptionValueSource('config') === 'cli';
    let cfg = loadConfig(o.config, { mustExist: explicit });
    const overrides: Record<string, unknown> = { ...cfg };
    if (o.socket) overrides.socket = o.socket;
    if (o.stateDir) overrides.stateDir = o.stateDir;
    if (o.relay) overrides.relayUrl = o.relay === 'none' ? null : o.relay;
    if (o.expiry) overrides.expirySeconds = o.expiry;
    cfg = makeConfig(overrides);
    if (o.checkConfig) {
      process.stdout.write(`${JSON.stringify(cfg, null, 2)}\n`);
      return;
    }
    const agent = await startAgent(cfg, { listenFd: inheritedFd(), log });
    // Under systemd (Type=notify): READY once listening, STATUS on change, WATCHDOG pings.
    const notifier = SystemdNotifier.fromEnv({ log, status: () => agent.statusLine() });
    if (notifier) {
      agent.relay?.on('change', () => notifier.refresh());
      void notifier.ready();
    }
    const stop = (sig: string) => {
      log('stopping', { signal: sig });
      notifier?.close();
      agent.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  } catch (e) {
    process.stderr.write(`qrauth-agent: ${isQrauthError(e) ? `${e.message} [${e.code}]` : (e as Error).message}\n`);
    process.exit(isQrauthError(e, 'QRA_ERR_CONFIG') ? 78 : 1); // 78 = EX_CONFIG
  }
});

await program.parseAsync();
