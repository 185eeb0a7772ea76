/**
 * qrauth-relay: routes messages between host agents (/host) and phones (/device). It holds no
 * secrets and no sessions; it cannot approve a login, only fail to deliver. It serves the web
 * app's code only when told it is trusted with it (serveAppTrustingRelay, a one-box demo).
 */
import { type Server as HttpServer, createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type ServerOptions, type Socket } from 'socket.io';
import {
  type Check,
  DEVICE_NAMESPACE,
  HOST_NAMESPACE,
  type HandshakeBinding,
  MAX_MESSAGE_BYTES,
  QrauthError,
  contextRequest,
  decisionMessage,
  enrollMessage,
  hostRoom,
  leaseRevokeMessage,
  parse,
  relayOriginOf,
} from '../../protocol/src/index.js';
import { AppOrigins, refuseBrowsers } from './app-origins.js';
import { HandshakeError, handshakeGate, handshakeMiddleware, refuseHandshake } from './auth.js';
import type { CrossNodeRouter, HostAnswers, LocalDelivery } from './cross-node.js';
import { createHttpHandler, createMetricsHandler } from './http.js';
import { type LogFn, kv, shortId, stdoutLog } from './log.js';
import { type ForwardedEvent, RelayMetrics, type RelayMetricsSnapshot } from './metrics.js';
import { NonceCache } from './nonce-cache.js';
import {
  DEFAULT_LIMITS,
  type LimiterFactory,
  RelayBudgets,
  type RelayLimits,
  addressKey,
  clientAddress,
  handshakeNonceShare,
  memoryLimiters,
} from './rate-limit.js';
import { type DeviceNamespace, DeviceRouter, type HostNamespace } from './routing.js';
import { type StaticHandler, createStaticHandler } from './static.js';

export { DEFAULT_LIMITS, type RelayLimits } from './rate-limit.js';

/** The schema of each request another node forwards: it came through Redis, so it is checked again here. */
const FORWARDED_CHECKS = {
  context: contextRequest,
  decision: decisionMessage,
  enroll: enrollMessage,
  revokeLeases: leaseRevokeMessage,
} satisfies Record<ForwardedEvent, Check<{ hostId: string }>>;
/**
 * A host room's emit for any of the four events: socket.io types emit() for one literal event name
 * at a time, and here the message is whatever that event's own check (FORWARDED_CHECKS) returned.
 */
interface HostRoomEmit {
  emit(event: ForwardedEvent, message: object, ack: (err: Error | null, responses: unknown[]) => void): void;
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
  /**
   * Web app origins (https://app.example.com) whose pages may connect; browsers from any other
   * origin are refused. The native app's origins are always allowed (app-origins.ts).
   * @default [] (no web app)
   */
  appOrigins?: readonly string[];
  /**
   * Serve the app's web build from this directory at `/` (index.html as fallback), and let pages
   * of the relay's own origin connect. This makes the relay trusted by every web-app user: the
   * code it serves holds their keys. For a one-box demo only; in production a separate static
   * web server serves the app (docs/app.md).
   */
  serveAppTrustingRelay?: string;
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
   * Where the budgets are counted: this process's memory, or shared by several relay nodes
   * (`redisLimiters(client)` of rate-limit.ts).
   * @default memoryLimiters
   */
  limiters?: LimiterFactory;
  /**
   * Take the client address from the last X-Forwarded-For entry, the one your reverse proxy
   * appended (only behind a proxy you run; entries before it are whatever the client sent).
   * @default false
   */
  trustProxy?: boolean;
  /**
   * Where operator log lines (key=value) go.
   * @default one line a write to stdout
   */
  log?: LogFn;
  /**
   * Serve /metrics on a listener of its own (e.g. an internal interface) instead of the public
   * port, which then answers 404 for /metrics. `port` 0 picks a free port (see `Relay.metricsUrl`).
   */
  metrics?: { host?: string; port: number };
  /** Socket.IO adapter for several relay nodes (e.g. `createAdapter(pub, sub)` of @socket.io/redis-adapter). */
  adapter?: ServerOptions['adapter'];
  /**
   * Several relay nodes with direct routing (cross-node.ts, made by `connectRedisAdapter`): this
   * node records its hosts in Redis and reaches other nodes' hosts through their own channels.
   * Use it instead of `adapter`.
   */
  crossNode?: CrossNodeRouter;
  /**
   * This relay's public URLs, as agents' `relayUrl` and enrollment codes name it: a handshake
   * signed for another relay's origin is refused, so a relay that received an agent's or a
   * phone's handshake cannot present it here (docs/protocol.md, "Handshake"). Unset: not checked.
   */
  publicUrls?: readonly string[];
  /**
   * Refuse handshakes that name no relay (v1, from agents and apps before v2); needs `publicUrls`.
   * @default false
   */
  boundHandshakesOnly?: boolean;
}

export interface Relay {
  /** http://host:port, with 127.0.0.1 / [::1] for a wildcard bind. */
  readonly url: string;
  readonly port: number;
  /** http://host:port of the metrics listener, when `metrics` was given. */
  readonly metricsUrl: string | undefined;
  readonly io: Server;
  /** Counters and gauges at the time of reading. */
  readonly metrics: RelayMetricsSnapshot;
  /** Disconnects everyone and stops listening. */
  close(): Promise<void>;
}

export async function startRelay(opts: RelayOptions = {}): Promise<Relay> {
  const bindHost = opts.host ?? '127.0.0.1';
  const limits: RelayLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const log = opts.log ?? stdoutLog;
  const ackTimeoutMs = opts.ackTimeoutMs ?? 5000;
  const serveStatic: StaticHandler | undefined = opts.serveAppTrustingRelay ? await createStaticHandler(opts.serveAppTrustingRelay) : undefined;
  const appOrigins = new AppOrigins(opts.appOrigins ?? [], serveStatic !== undefined);

  const peerAddress = (req: IncomingMessage): string => clientAddress(req.socket.remoteAddress ?? '') ?? 'unknown';
  const ipOfRequest = (req: IncomingMessage): string => {
    if (opts.trustProxy) {
      // Only the last entry is the proxy's; a client can send any list. Node joins repeated
      // header lines with ", ". No usable entry: count the client as the proxy itself (stricter).
      const fwd = req.headers['x-forwarded-for'];
      const last = (Array.isArray(fwd) ? fwd.join(',') : fwd)?.split(',').pop();
      return (last && clientAddress(last)) || peerAddress(req);
    }
    return peerAddress(req);
  };
  const ipOf = (socket: Socket): string => ipOfRequest(socket.request);

  if (opts.boundHandshakesOnly && !opts.publicUrls?.length) {
    throw new QrauthError('QRA_ERR_CONFIG', 'bound handshakes only needs the relay\'s public URL (--public-url) to check them against');
  }
  const binding: HandshakeBinding = { origins: new Set((opts.publicUrls ?? []).map(relayOriginOf)), boundOnly: opts.boundHandshakesOnly ?? false };
  if (binding.origins.size === 0) {
    // A handshake then proves the key, not which relay it was made for (docs/relay.md, "Public URL").
    log(kv({ event: 'warning', message: "no --public-url: handshakes are not checked against this relay, so another relay in a host's list could present them here" }));
  }

  const budgets = new RelayBudgets(limits, opts.limiters ?? memoryLimiters);
  const nonces = new NonceCache(limits.handshakeNonces, Date.now, handshakeNonceShare(limits));

  let hostNs: HostNamespace | undefined;
  let deviceNs: DeviceNamespace | undefined;
  const metrics = new RelayMetrics(() => ({ hosts: hostNs?.sockets.size ?? 0, devices: deviceNs?.sockets.size ?? 0 }));

  const httpServer = createServer(createHttpHandler(metrics, serveStatic, { serveMetrics: !opts.metrics, boundHandshakes: binding.origins.size > 0 }));
  const io = new Server(httpServer, {
    serveClient: false,
    maxHttpBufferSize: MAX_MESSAGE_BYTES,
    // Browser pages only from the app's allow-listed origins (app-origins.ts); the CORS answer
    // says the same for the polling transport.
    cors: { origin: (origin, cb) => cb(null, origin !== undefined && appOrigins.allows({ headers: { origin } } as IncomingMessage)) },
    allowRequest: (req, done) => {
      if (!appOrigins.allows(req)) {
        metrics.reject('origin_not_allowed');
        log(kv({ event: 'refused', reason: 'origin_not_allowed', origin: String(req.headers.origin).slice(0, 100), ip: ipOfRequest(req) }));
        return done("this web page's origin may not use this relay; the relay operator lists the app's origin with --app-origin", false);
      }
      // This also pays for the connection's one handshake (handshakeGate in auth.ts).
      budgets.connection(addressKey(ipOfRequest(req))).then(
        (ok) => {
          if (ok) return done(null, true);
          metrics.reject('connection_rate_limited');
          done('too many connections from this address; wait a minute', false);
        },
        (e: unknown) => {
          log(kv({ event: 'error', where: 'connection_limit', message: e instanceof Error ? e.message : 'unknown' }));
          done('the relay cannot check its limits; try again later', false);
        },
      );
    },
    ...(opts.adapter ? { adapter: opts.adapter } : {}),
  });

  // One handshake per connection, whatever the namespace (auth.ts); shared, so it counts them all.
  const gate = handshakeGate({ metrics, log, ipOf, chargeConnection: (address) => budgets.connection(address) });

  // Nothing is served on the default namespace.
  io.use(gate);
  io.use((socket, next) => {
    metrics.reject('default_namespace');
    refuseHandshake(socket, next, new HandshakeError('QRA_ERR_INVALID_INPUT', `connect to ${HOST_NAMESPACE} (agents) or ${DEVICE_NAMESPACE} (phones)`));
  });

  // Each namespace has its own event map; Server's generics describe only one, hence the casts.
  hostNs = io.of(HOST_NAMESPACE) as unknown as HostNamespace;
  deviceNs = io.of(DEVICE_NAMESPACE) as unknown as DeviceNamespace;
  const now = Date.now;
  hostNs.use(gate);
  hostNs.use((socket, next) => {
    refuseBrowsers(socket, (err) => {
      if (!err) return next();
      metrics.reject('origin_not_allowed');
      refuseHandshake(socket, next, err);
    });
  });
  hostNs.use(handshakeMiddleware({ role: 'host', nonces, metrics, log, allowHosts: opts.allowHosts, ipOf, now, binding }));
  deviceNs.use(gate);
  deviceNs.use(handshakeMiddleware({ role: 'device', nonces, metrics, log, ipOf, now, binding }));

  hostNs.on('connection', (socket) => {
    const { id, ip } = socket.data;
    void socket.join(hostRoom(id));
    log(kv({ event: 'connect', role: 'host', hostId: id, ip }));
    socket.onAny(() => metrics.reject('unknown_event')); // agents only answer acks
    opts.crossNode?.hostConnected(id);
    socket.on('disconnect', (reason) => {
      opts.crossNode?.hostDisconnected(id);
      log(kv({ event: 'disconnect', role: 'host', hostId: id, reason }));
    });
  });

  if (opts.crossNode) {
    // Requests other nodes forward here: validated again (they come through Redis), then to the
    // host's sockets on this node; the raw acks go back for the asking node to validate.
    const ns = hostNs;
    const deliver: LocalDelivery = (hostId, event, payload) =>
      new Promise<HostAnswers>((resolve) => {
        const check: Check<{ hostId: string; sid?: string }> = FORWARDED_CHECKS[event];
        const m = parse(check, payload, `crossNode.${event}`);
        if (m.hostId !== hostId) throw new Error(`${event}: hostId differs from the routed one`);
        // Of a context request the host gets the sid only, as from a phone on this node (routing.ts).
        const message = event === 'context' && 'sid' in m ? { sid: m.sid } : m;
        const room = ns.to(hostRoom(hostId)).timeout(ackTimeoutMs) as HostRoomEmit;
        room.emit(event, message, (err, responses) => resolve({ timedOut: err !== null, responses: Array.isArray(responses) ? responses : [] }));
      });
    await opts.crossNode.start(deliver);
  }

  const router = new DeviceRouter({ hostNs, metrics, log, ackTimeoutMs, budgets, ...(opts.crossNode ? { crossNode: opts.crossNode } : {}) });
  deviceNs.on('connection', (socket) => {
    const { id, ip } = socket.data;
    log(kv({ event: 'connect', role: 'device', deviceId: shortId(id), ip }));
    router.attach(socket);
  });

  await listen(httpServer, opts.port ?? 0, bindHost, log);
  const port = (httpServer.address() as AddressInfo).port;
  let metricsServer: HttpServer | undefined;
  let metricsUrl: string | undefined;
  if (opts.metrics) {
    const metricsHost = opts.metrics.host ?? '127.0.0.1';
    metricsServer = createServer(createMetricsHandler(metrics));
    try {
      await listen(metricsServer, opts.metrics.port, metricsHost, log);
    } catch (e) {
      await new Promise<void>((resolve) => io.close(() => resolve()));
      throw e;
    }
    metricsUrl = urlOf(metricsHost, (metricsServer.address() as AddressInfo).port);
  }
  let closing: Promise<void> | undefined;
  return {
    url: urlOf(bindHost, port),
    port,
    metricsUrl,
    io,
    get metrics() {
      return metrics.snapshot();
    },
    close() {
      closing ??= Promise.all([
        new Promise<void>((resolve) => {
          io.close(() => resolve());
          httpServer.closeAllConnections();
        }),
        new Promise<void>((resolve) => {
          if (!metricsServer) return resolve();
          metricsServer.close(() => resolve());
          metricsServer.closeAllConnections();
        }),
      ]).then(() => undefined);
      return closing;
    },
  };
}

function listen(server: HttpServer, port: number, host: string, log: LogFn): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      server.on('error', (e) => log(kv({ event: 'error', where: 'http', message: e.message })));
      resolve();
    });
  });
}

/** http://host:port, with 127.0.0.1 / [::1] for a wildcard bind. */
function urlOf(host: string, port: number): string {
  const urlHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  return `http://${urlHost}:${port}`;
}
