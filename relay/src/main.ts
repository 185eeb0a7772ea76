#!/usr/bin/env node
/** The `qrauth-relay` command: parse options, start the relay, close it cleanly on SIGTERM/SIGINT. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { QrauthError, isQrauthError, relayOriginOf } from '../../protocol/src/index.js';
import { readAllowHosts } from './allow-hosts.js';
import { parseAppOrigin } from './app-origins.js';
import { kv, stdoutLog } from './log.js';
import { CROSS_NODE_ROUTINGS, type CrossNodeRouting, connectRedisAdapter, type RedisAdapterHandle } from './redis.js';
import { redisLimiters } from './rate-limit.js';
import { DEFAULT_LIMITS, type RelayLimits, startRelay } from './server.js';

function portNumber(value: string): number {
  const n = Number(value);
  if (!/^[0-9]{1,5}$/.test(value) || n > 65535) throw new InvalidArgumentError('expected a port number 0..65535');
  return n;
}

/**
 * An option that may be given several times, and in its env variable as a comma-separated list:
 * each value through `parse`. `expected`: what a refusal says a value should be, and also what an
 * empty value (an env line uncommented without one) is refused with; without it an empty value
 * adds nothing.
 */
function listOf(parse: (v: string) => string, expected?: string) {
  return (value: string, previous: string[] = []): string[] => {
    const added = value.split(/[\s,]+/).filter(Boolean);
    if (added.length === 0 && expected) throw new InvalidArgumentError(`expected ${expected}, not an empty value`);
    try {
      return [...previous, ...added.map(parse)];
    } catch (e) {
      throw new InvalidArgumentError(expected ? `${(e as Error).message}: expected ${expected}` : (e as Error).message);
    }
  };
}
const appOrigins = listOf(parseAppOrigin);
/** --public-url values, as origins: empty would silently mean "unchecked", so it is refused. */
const publicUrls = listOf(relayOriginOf, "this relay's URL as agents and phones reach it (https://relay.example)");

function countIn(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^[0-9]+$/.test(value) || n < min || n > max) throw new InvalidArgumentError(`expected a whole number ${min}..${max}`);
    return n;
  };
}

const program = new Command()
  .name('qrauth-relay')
  .description('Relay between qrauth host agents and phones. Holds no secrets, serves no app code (the web app has its own origin).')
  .addOption(new Option('-p, --port <n>', 'port to listen on (0 = any free port)').env('QRAUTH_RELAY_PORT').default(8080).argParser(portNumber))
  .addOption(new Option('-H, --host <addr>', 'address to listen on').env('QRAUTH_RELAY_HOST').default('127.0.0.1'))
  .addOption(
    new Option('--app-origin <origin>', "a web app origin whose pages may connect (repeat for several; env: comma-separated)")
      .env('QRAUTH_RELAY_APP_ORIGINS')
      .argParser(appOrigins),
  )
  .addOption(
    new Option('--serve-app-trusting-relay <dir>', "serve the web app from this relay (one-box demo only: whoever runs the relay then holds web users' keys)").env(
      'QRAUTH_RELAY_SERVE_APP_TRUSTING_RELAY',
    ),
  )
  .addOption(
    new Option('--public-url <url>', "this relay's URL as agents and phones reach it (repeat for several; env: comma-separated): handshakes signed for any other relay are refused")
      .env('QRAUTH_RELAY_PUBLIC_URLS')
      .argParser(publicUrls),
  )
  .addOption(
    new Option('--bound-handshakes-only', 'refuse handshakes that name no relay (agents and apps from before they did); needs --public-url').env(
      'QRAUTH_RELAY_BOUND_HANDSHAKES_ONLY',
    ),
  )
  .addOption(new Option('--allow-hosts <file>', 'only let these hostIds connect (one a line, # comments)').env('QRAUTH_RELAY_ALLOW_HOSTS'))
  .addOption(new Option('--ack-timeout <ms>', 'how long to wait for a host to answer (100..60000)').env('QRAUTH_RELAY_ACK_TIMEOUT').argParser(countIn(100, 60_000)))
  .addOption(new Option('--trust-proxy', 'take client addresses from X-Forwarded-For (behind your own reverse proxy only)').env('QRAUTH_RELAY_TRUST_PROXY'))
  .addOption(
    new Option('--redis <url>', 'share rooms with other relay nodes through this Redis (redis://host:6379)').env('REDIS_URL'),
  )
  .addOption(
    new Option('--routing <how>', 'with --redis, how a phone reaches a host on another node: direct (to the node holding it) or broadcast (every node, the Socket.IO Redis adapter)')
      .env('QRAUTH_RELAY_ROUTING')
      .choices(CROSS_NODE_ROUTINGS)
      .default('direct'),
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
  .addOption(
    new Option('--host-requests-per-address <n>', 'of those, the most one client address (IPv4, or IPv6 /64) may take')
      .env('QRAUTH_RELAY_HOST_REQUESTS_PER_ADDRESS')
      .default(DEFAULT_LIMITS.hostEventsPerAddressPer10s)
      .argParser(countIn(1, 1_000_000)),
  )
  .addOption(new Option('--metrics-port <n>', 'serve /metrics on this port instead of the public one (0 = any free port)').env('QRAUTH_RELAY_METRICS_PORT').argParser(portNumber))
  .addOption(new Option('--metrics-host <addr>', 'address of the metrics listener (default 127.0.0.1; needs --metrics-port)').env('QRAUTH_RELAY_METRICS_HOST'))
  .showHelpAfterError();

interface CliOptions {
  port: number;
  host: string;
  appOrigin?: string[];
  serveAppTrustingRelay?: string;
  allowHosts?: string;
  publicUrl?: string[];
  boundHandshakesOnly?: boolean;
  ackTimeout?: number;
  trustProxy?: boolean;
  redis?: string;
  routing: CrossNodeRouting;
  connectionsPerIp: number;
  deviceRequests: number;
  hostRequests: number;
  hostRequestsPerAddress: number;
  metricsPort?: number;
  metricsHost?: string;
}

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<CliOptions>();
  const allowHosts = o.allowHosts ? await readAllowHosts(o.allowHosts) : undefined;
  if (o.metricsHost !== undefined && o.metricsPort === undefined) {
    throw new QrauthError('QRA_ERR_CONFIG', '--metrics-host/QRAUTH_RELAY_METRICS_HOST needs --metrics-port/QRAUTH_RELAY_METRICS_PORT too');
  }
  const limits: RelayLimits = {
    connectionsPerIpPerMinute: o.connectionsPerIp,
    deviceEventsPer10s: o.deviceRequests,
    hostEventsPer10s: o.hostRequests,
    hostEventsPerAddressPer10s: o.hostRequestsPerAddress,
  };
  const redis: RedisAdapterHandle | undefined = o.redis ? await connectRedisAdapter(o.redis, stdoutLog, undefined, o.routing) : undefined;
  const relay = await startRelay({
    limits,
    // With several nodes, budgets are shared through the same Redis: spreading a flood over nodes buys nothing.
    ...(redis ? { adapter: redis.adapter, crossNode: redis.crossNode, limiters: redisLimiters(redis.client) } : {}),
    ...(o.metricsPort !== undefined ? { metrics: { port: o.metricsPort, ...(o.metricsHost ? { host: o.metricsHost } : {}) } } : {}),
    host: o.host,
    port: o.port,
    ...(o.appOrigin ? { appOrigins: o.appOrigin } : {}),
    ...(o.serveAppTrustingRelay ? { serveAppTrustingRelay: o.serveAppTrustingRelay } : {}),
    ...(allowHosts ? { allowHosts } : {}),
    ...(o.publicUrl ? { publicUrls: o.publicUrl } : {}),
    boundHandshakesOnly: o.boundHandshakesOnly === true,
    ...(o.ackTimeout ? { ackTimeoutMs: o.ackTimeout } : {}),
    trustProxy: o.trustProxy === true,
  });
  console.log(`qrauth-relay listening on ${relay.url}`);
  if (relay.metricsUrl) console.log(`qrauth-relay metrics on ${relay.metricsUrl}/metrics`);
  if (o.serveAppTrustingRelay) {
    // Said at every start: whoever runs or breaks into this relay can take web users' keys.
    stdoutLog(kv({ event: 'warning', serveApp: o.serveAppTrustingRelay, message: "serving the web app from the relay: web-app users now trust this relay with their keys (one-box demo only)" }));
  }
  stdoutLog(kv({ event: 'config', appOrigins: o.appOrigin?.join(',') ?? 'none', publicUrls: o.publicUrl?.join(',') ?? 'none', boundHandshakesOnly: o.boundHandshakesOnly === true, allowHosts: allowHosts?.size, redis: redis ? 'on' : 'off', routing: redis ? o.routing : undefined, node: redis?.crossNode?.nodeId, ...limits }));

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
