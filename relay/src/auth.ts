/**
 * Handshake middleware for /host and /device: the peer proves its key; the relay derives the
 * id from that key, so a host can only ever join the room of its own hostId.
 *
 * A handshake is the costly part of a connection (a signature check, a place in the nonce
 * cache), and Socket.IO runs the middleware for every CONNECT packet a client sends, as many as
 * it likes on one connection. So a connection gets one handshake (handshakeGate), and a refused
 * handshake closes the whole connection (refuseHandshake): each try costs a new connection,
 * which the per-address connection budget counts.
 */
import type { Socket } from 'socket.io';
import { type AuthRole, type HandshakeBinding, QrauthError, type SeenNonce, verifyAuthHandshake } from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import type { LogFn } from './log.js';
import { kv } from './log.js';
import type { RelayMetrics } from './metrics.js';
import type { NonceCache } from './nonce-cache.js';
import { addressKey } from './rate-limit.js';

/** What the relay knows about an authenticated connection. */
export interface PeerData {
  /** hostId or deviceId, derived from the handshake key. */
  id: string;
  ip: string;
}

/** An Error carrying the stable code to the client in `connect_error` (`err.data.code`). */
export class HandshakeError extends Error {
  readonly data: { code: string };
  constructor(code: string, message: string) {
    super(message);
    this.data = { code };
  }
}

export type HandshakeMiddleware = (socket: Socket, next: (err?: Error) => void) => void;

/**
 * Namespace handshakes one Engine.IO connection may carry. socket.io-client sends one: it
 * connects each namespace once, and after a refusal or a lost connection it opens a new one.
 */
export const HANDSHAKES_PER_CONNECTION = 1;

/**
 * Refuses a handshake: the client gets `err` as connect_error, then the connection closes, so
 * that it cannot try again on the same connection. Socket.IO writes the refusal on the next
 * tick; by the time the immediate runs it is queued, and close() sends what is queued first.
 */
export function refuseHandshake(socket: Socket, next: (err?: Error) => void, err: Error): void {
  next(err);
  setImmediate(() => socket.conn.close());
}

export interface HandshakeGateOptions {
  metrics: RelayMetrics;
  log: LogFn;
  ipOf: (socket: Socket) => string;
  /** Charges one connection to an address (RelayBudgets.connection); false when over its budget. */
  chargeConnection: (address: string) => Promise<boolean>;
}

/**
 * The first middleware of every namespace: one handshake per connection. The connection's own
 * budget charge (allowRequest) pays for the first; a second costs the address one more, is
 * refused, and closes the connection at once, so Engine.IO drops whatever else it sent.
 */
export function handshakeGate(opts: HandshakeGateOptions): HandshakeMiddleware {
  const handshakes = new WeakMap<Socket['conn'], number>();
  return (socket, next) => {
    const conn = socket.conn;
    // Decoded before the connection closed (sent together with the handshake that closed it):
    // there is nobody left to answer, and nothing is checked.
    if (conn.readyState !== 'open') return next(new HandshakeError('QRA_ERR_INVALID_INPUT', 'the connection is closed'));
    const n = (handshakes.get(conn) ?? 0) + 1;
    handshakes.set(conn, n);
    if (n <= HANDSHAKES_PER_CONNECTION) return next();
    const ip = opts.ipOf(socket);
    opts.metrics.reject('invalid_input');
    opts.log(kv({ event: 'handshake', namespace: socket.nsp.name, result: 'refused', reason: 'second_handshake', ip }));
    opts.chargeConnection(addressKey(ip)).catch((e: unknown) => {
      opts.log(kv({ event: 'error', where: 'connection_limit', message: e instanceof Error ? e.message : 'unknown' }));
    });
    conn.close();
    next(new HandshakeError('QRA_ERR_INVALID_INPUT', 'one handshake per connection; open a new connection to try again'));
  };
}

export interface HandshakeOptions {
  role: AuthRole;
  nonces: NonceCache;
  metrics: RelayMetrics;
  log: LogFn;
  allowHosts?: ReadonlySet<string> | undefined;
  ipOf: (socket: Socket) => string;
  now: () => number;
  /** The relay's own origins a handshake must name (protocol/src/auth.ts). */
  binding?: HandshakeBinding;
}

export function handshakeMiddleware(opts: HandshakeOptions): HandshakeMiddleware {
  const admitted = (id: string): boolean => opts.role !== 'host' || !opts.allowHosts || opts.allowHosts.has(id);
  return (socket, next) => {
    const ip = opts.ipOf(socket);
    // A key the allow-list refuses takes no place in the nonce cache: throwaway keys cost
    // nothing to make, and would otherwise fill it. Each address may hold only its share.
    const seen: SeenNonce = (nonce, until, id) => admitted(id) && opts.nonces.seen(nonce, until, addressKey(ip));
    try {
      const { id } = verifyAuthHandshake(nodeCrypto, opts.role, socket.handshake.auth, opts.now(), seen, opts.binding);
      if (!admitted(id)) {
        opts.metrics.reject('not_allowed');
        opts.log(kv({ event: 'handshake', role: opts.role, result: 'refused', reason: 'not_allowed', hostId: id, ip }));
        refuseHandshake(socket, next, new HandshakeError('QRA_ERR_UNAUTHENTICATED', "this host is not on the relay's allow-list; ask the relay operator to add its hostId"));
        return;
      }
      const data: PeerData = { id, ip };
      socket.data = data;
      next();
    } catch (e) {
      const code = e instanceof QrauthError ? e.code : 'QRA_ERR_UNAUTHENTICATED';
      const message = e instanceof QrauthError ? e.message : 'handshake could not be checked';
      opts.metrics.reject(code === 'QRA_ERR_RATE_LIMITED' ? 'connection_rate_limited' : 'unauthenticated');
      opts.log(kv({ event: 'handshake', role: opts.role, result: 'refused', code, reason: message, ip }));
      refuseHandshake(socket, next, new HandshakeError(code === 'QRA_ERR_RATE_LIMITED' ? code : 'QRA_ERR_UNAUTHENTICATED', message));
    }
  };
}
