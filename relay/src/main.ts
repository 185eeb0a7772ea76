#!/usr/bin/env node
/** The `qrauth-relay` command: parse options, start the relay, close it cleanly on SIGTERM/SIGINT. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { isQrauthError } from '../../protocol/src/index.js';
import { readAllowHosts } from './allow-hosts.js';
import { kv, stdoutLog } from './log.js';
import { connectRedisAdapter, type RedisAdapterHandle } from './redis.js';
import { DEFAULT_LIMITS, type RelayLimits, startRelay } from './server.js';

function portNumber(value: string): number {
  const n = Number(value);
  if (!/^[0-9]{1,5}$/.test(value) || n > 65535) throw new InvalidArgumentError('expected a port number 0..65535');
  return n;
}

function countIn(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^[0-9]+$/.test(value) || n < min || n > max) throw new InvalidArgumentError(`expected a whole number ${min}..${max}`);
    return n;
  };
}

const program = new Command()
  .name('qrauth-relay')
  .description('Relay between qrauth host agents and phones; also serves the qrauth web app. Holds no secrets.')
  .addOption(new Option('-p, --port <n>', 'port to listen on (0 = any free port)').env('QRAUTH_RELAY_PORT').default(8080).argParser(portNumber))
  .addOption(new Option('-H, --host <addr>', 'address to listen on').env('QRAUTH_RELAY_HOST').default('127.0.0.1'))
  .addOption(new Option('--static <dir>', "serve the app's web build from this directory at /").env('QRAUTH_RELAY_STATIC'))
  .addOption(new Option('--allow-hosts <file>', 'only let these hostIds connect (one a line, # comments)').env('QRAUTH_RELAY_ALLOW_HOSTS'))
  .addOption(new Option('--ack-timeout <ms>', 'how long to wait for a host to answer (100..60000)').env('QRAUTH_RELAY_ACK_TIMEOUT').argParser(countIn(100, 60_000)))
  .addOption(new Option('--trust-proxy', 'take client addresses from X-Forwarded-For (behind your own reverse proxy only)').env('QRAUTH_RELAY_TRUST_PROXY'))
  .addOption(
    new Option('--redis <url>', 'share rooms with other relay nodes through this Redis (redis://host:6379)').env('REDIS_URL'),
  )
  .addOption(
    new Option('--connections-per-ip <n>', 'new connections one IP may open per minute')
      .env('QRAUTH_RELAY_CONNECTIONS_PER_IP')
      .default(DEFAULT_LIMITS.connectionsPerIpPerMinute)
      .argParser(countIn(1, 1_000_000)),
  )
  .addOption(
    new Option('--device-requests <n>', 'requests one phone may send per 10 s')
      .env('QRAUTH_RELAY_DEVICE_REQUESTS')
      .default(DEFAULT_LIMITS.deviceEventsPer10s)
      .argParser(countIn(1, 1_000_000)),
  )
  .addOption(
    new Option('--host-requests <n>', 'requests forwarded to one host per 10 s, from all phones together')
      .env('QRAUTH_RELAY_HOST_REQUESTS')
      .default(DEFAULT_LIMITS.hostEventsPer10s)
      .argParser(countIn(1, 1_000_000)),
  )
  .showHelpAfterError();

interface CliOptions {
  port: number;
  host: string;
  static?: string;
  allowHosts?: string;
  ackTimeout?: number;
  trustProxy?: boolean;
  redis?: string;
  connectionsPerIp: number;
  deviceRequests: number;
  hostRequests: number;
}

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<CliOptions>();
  const allowHosts = o.allowHosts ? await readAllowHosts(o.allowHosts) : undefined;
  const limits: RelayLimits = { connectionsPerIpPerMinute: o.connectionsPerIp, deviceEventsPer10s: o.deviceRequests, hostEventsPer10s: o.hostRequests };
  const redis: RedisAdapterHandle | undefined = o.redis ? await connectRedisAdapter(o.redis, stdoutLog) : undefined;
  const relay = await startRelay({
    limits,
    ...(redis ? { adapter: redis.adapter } : {}),
    host: o.host,
    port: o.port,
    ...(o.static ? { staticDir: o.static } : {}),
    ...(allowHosts ? { allowHosts } : {}),
    ...(o.ackTimeout ? { ackTimeoutMs: o.ackTimeout } : {}),
    trustProxy: o.trustProxy === true,
  });
  console.log(`qrauth-relay listening on ${relay.url}`);
  stdoutLog(kv({ event: 'config', allowHosts: allowHosts?.size, redis: redis ? 'on' : 'off', ...limits }));

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    stdoutLog(kv({ event: 'shutdown', signal }));
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    relay
      .close()
      .then(() => redis?.close())
      .then(
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
