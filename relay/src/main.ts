#!/usr/bin/env node
/** The `qrauth-relay` command: parse options, start the relay, close it cleanly on SIGTERM/SIGINT. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { isQrauthError } from '../../protocol/src/index.js';
import { readAllowHosts } from './allow-hosts.js';
import { kv, stdoutLog } from './log.js';
import { startRelay } from './server.js';

function portNumber(value: string): number {
  const n = Number(value);
  if (!/^[0-9]{1,5}$/.test(value) || n > 65535) throw new InvalidArgumentError('expected a port number 0..65535');
  return n;
}

const program = new Command()
  .name('qrauth-relay')
  .description('Relay between qrauth host agents and phones; also serves the qrauth web app. Holds no secrets.')
  .addOption(new Option('-p, --port <n>', 'port to listen on (0 = any free port)').env('QRAUTH_RELAY_PORT').default(8080).argParser(portNumber))
  .addOption(new Option('-H, --host <addr>', 'address to listen on').env('QRAUTH_RELAY_HOST').default('127.0.0.1'))
  .option('--static <dir>', "serve the app's web build from this directory at /")
  .option('--allow-hosts <file>', 'only let these hostIds connect (one a line, # comments)')
  .option('--ack-timeout <ms>', 'how long to wait for a host to answer', (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 100 || n > 60_000) throw new InvalidArgumentError('expected milliseconds 100..60000');
    return n;
  })
  .option('--trust-proxy', 'take client addresses from X-Forwarded-For (behind your own reverse proxy only)')
  .showHelpAfterError();

interface CliOptions {
  port: number;
  host: string;
  static?: string;
  allowHosts?: string;
  ackTimeout?: number;
  trustProxy?: boolean;
}

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<CliOptions>();
  const allowHosts = o.allowHosts ? await readAllowHosts(o.allowHosts) : undefined;
  const relay = await startRelay({
    host: o.host,
    port: o.port,
    ...(o.static ? { staticDir: o.static } : {}),
    ...(allowHosts ? { allowHosts } : {}),
    ...(o.ackTimeout ? { ackTimeoutMs: o.ackTimeout } : {}),
    trustProxy: o.trustProxy === true,
  });
  console.log(`qrauth-relay listening on ${relay.url}`);
  if (allowHosts) stdoutLog(kv({ event: 'config', allowHosts: allowHosts.size }));

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    stdoutLog(kv({ event: 'shutdown', signal }));
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    relay.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e: unknown) => {
  if (isQrauthError(e)) console.error(`qrauth-relay: ${e.code}: ${e.message}`);
  else console.error(`qrauth-relay: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(isQrauthError(e, 'QRA_ERR_CONFIG') ? 2 : 1);
});
