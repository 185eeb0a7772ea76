/**
 * qrauth-relay: routes messages between host agents (/host) and phones (/device) and serves
 * the app. It holds no secrets and no sessions; it cannot approve a login, only fail to deliver.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type ServerOptions, type Socket } from 'socket.io';
import { DEVICE_NAMESPACE, HOST_NAMESPACE, MAX_MESSAGE_BYTES, hostRoom } from '../../protocol/src/index.js';
import { HandshakeError, handshakeMiddleware } from './auth.js';
import { createHttpHandler } from './http.js';
import { type LogFn, kv, shortId, stdoutLog } from './log.js';
import { RelayMetrics, type RelayMetricsSnapshot } from './metrics.js';
import { NonceCache } from './nonce-cache.js';
import { TokenBucketLimiter } from './rate-limit.js';
import { type DeviceNamespace, DeviceRouter, type HostNamespace } from './routing.js';
import { type StaticHandler, createStaticHandler } from './static.js';

export interface RelayLimits {
  /**
   * New Socket.IO connections one IP may open per minute (both namespaces share one connection).
   * @default 120
   */
  connectionsPerIpPerMinute: number;
  /**
   * Requests (context, decision, enroll) one phone may send per 10 s.
   * @default 30
   */
  deviceEventsPer10s: number;
  /**
   * Requests the relay forwards to one host per 10 s, from all phones together.
   * @default 300
   */
  hostEventsPer10s: number;
}

export interface RelayOptions {
  /**
   * Address to listen on.
   * @default '127.0.0.1'
   */
  host?: string;
  /**
   * Port to listen on; 0 picks a free port (see `Relay.port`).
   * @default 0
   */
  port?: number;
  /** Directory of the app's web build, served at `/` with index.html as fallback. Not served when unset. */
  staticDir?: string;
  /** Only these hostIds may connect on /host. Any host may connect when unset. */
  allowHosts?: ReadonlySet<string>;
  /**
   * How long the relay waits for a host's ack before telling the phone the host did not answer.
   * @default 5000
   */
  ackTimeoutMs?: number;
  /** Rate limits; each unset field keeps its default. */
  limits?: Partial<RelayLimits>;
  /**
   * Take the client IP from the first X-Forwarded-For entry (only behind a reverse proxy you run).
   * @default false
   */
  trustProxy?: boolean;
  /**
   * Where operator log lines (key=value) go.
   * @default one line a write to stdout
   */
  log?: LogFn;
  /** Socket.IO adapter for several relay nodes (e.g. `createAdapter(pub, sub)` of @socket.io/redis-adapter). */
  adapter?: ServerOptions['adapter'];
}

export interface Relay {
  /** http://host:port, with 127.0.0.1 / [::1] for a wildcard bind. */
  readonly url: string;
  readonly port: number;
  readonly io: Server;
  /** Counters and gauges at the time of reading. */
  readonly metrics: RelayMetricsSnapshot;
  /** Disconnects everyone and stops listening. */
  close(): Promise<void>;
}

export const DEFAULT_LIMITS: RelayLimits = { connectionsPerIpPerMinute: 120, deviceEventsPer10s: 30, hostEventsPer10s: 300 };

export async function startRelay(opts: RelayOptions = {}): Promise<Relay> {
  const bindHost = opts.host ?? '127.0.0.1';
  const limits: RelayLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const log = opts.log ?? stdoutLog;
  const ackTimeoutMs = opts.ackTimeoutMs ?? 5000;
  const serveStatic: StaticHandler | undefined = opts.staticDir ? await createStaticHandler(opts.staticDir) : undefined;

  const ipOfRequest = (req: IncomingMessage): string => {
    if (opts.trustProxy) {
      const fwd = req.headers['x-forwarded-for'];
      const first = (Array.isArray(fwd) ? fwd[0] : fwd)?.split(',')[0]?.trim();
      if (first) return first;
    }
    return req.socket.remoteAddress ?? 'unknown';
  };
  const ipOf = (socket: Socket): string => ipOfRequest(socket.request);

  const connectionLimiter = new TokenBucketLimiter({ capacity: limits.connectionsPerIpPerMinute, windowMs: 60_000 });
  const deviceLimiter = new TokenBucketLimiter({ capacity: limits.deviceEventsPer10s, windowMs: 10_000 });
  const hostLimiter = new TokenBucketLimiter({ capacity: limits.hostEventsPer10s, windowMs: 10_000 });
  const nonces = new NonceCache();

  let hostNs: HostNamespace | undefined;
  let deviceNs: DeviceNamespace | undefined;
  const metrics = new RelayMetrics(() => ({ hosts: hostNs?.sockets.size ?? 0, devices: deviceNs?.sockets.size ?? 0 }));

  const httpServer = createServer(createHttpHandler(metrics, serveStatic));
  const io = new Server(httpServer, {
    serveClient: false,
    maxHttpBufferSize: MAX_MESSAGE_BYTES,
    // The app is served from this origin; other origins only matter to browsers, and a browser
    // page elsewhere still has to hold a device key to do anything.
    cors: { origin: true },
    allowRequest: (req, done) => {
      if (connectionLimiter.take(ipOfRequest(req))) return done(null, true);
      metrics.reject('connection_rate_limited');
      done('too many connections from this address; wait a minute', false);
    },
    ...(opts.adapter ? { adapter: opts.adapter } : {}),
  });

  // Nothing is served on the default namespace.
  io.use((_socket, next) => {
    metrics.reject('default_namespace');
    next(new HandshakeError('QRA_ERR_INVALID_INPUT', `connect to ${HOST_NAMESPACE} (agents) or ${DEVICE_NAMESPACE} (phones)`));
  });

  // Each namespace has its own event map; Server's generics describe only one, hence the casts.
  hostNs = io.of(HOST_NAMESPACE) as unknown as HostNamespace;
  deviceNs = io.of(DEVICE_NAMESPACE) as unknown as DeviceNamespace;
  const now = Date.now;
  hostNs.use(handshakeMiddleware({ role: 'host', nonces, metrics, log, allowHosts: opts.allowHosts, ipOf, now }));
  deviceNs.use(handshakeMiddleware({ role: 'device', nonces, metrics, log, ipOf, now }));

  hostNs.on('connection', (socket) => {
    const { id, ip } = socket.data;
    void socket.join(hostRoom(id));
    log(kv({ event: 'connect', role: 'host', hostId: id, ip }));
    socket.onAny(() => metrics.reject('unknown_event')); // agents only answer acks
    socket.on('disconnect', (reason) => log(kv({ event: 'disconnect', role: 'host', hostId: id, reason })));
  });

  const router = new DeviceRouter({ hostNs, metrics, log, ackTimeoutMs, deviceLimiter, hostLimiter });
  deviceNs.on('connection', (socket) => {
    const { id, ip } = socket.data;
    log(kv({ event: 'connect', role: 'device', deviceId: shortId(id), ip }));
    router.attach(socket);
  });

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(opts.port ?? 0, bindHost, () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  httpServer.on('error', (e) => log(kv({ event: 'error', where: 'http', message: e.message })));

  const port = (httpServer.address() as AddressInfo).port;
  const urlHost = bindHost === '0.0.0.0' ? '127.0.0.1' : bindHost === '::' ? '[::1]' : bindHost.includes(':') ? `[${bindHost}]` : bindHost;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    io,
    get metrics() {
      return metrics.snapshot();
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        io.close(() => resolve());
        httpServer.closeAllConnections();
      });
      return closing;
    },
  };
}
