/**
 * Handshake middleware for /host and /device: the peer proves its key; the relay derives the
 * id from that key, so a host can only ever join the room of its own hostId.
 */
import type { Socket } from 'socket.io';
import { type AuthRole, QrauthError, verifyAuthHandshake } from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import type { LogFn } from './log.js';
import { kv } from './log.js';
import type { RelayMetrics } from './metrics.js';
import type { NonceCache } from './nonce-cache.js';

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

export interface HandshakeOptions {
  role: AuthRole;
  nonces: NonceCache;
  metrics: RelayMetrics;
  log: LogFn;
  allowHosts?: ReadonlySet<string> | undefined;
  ipOf: (socket: Socket) => string;
  now: () => number;
}

export function handshakeMiddleware(opts: HandshakeOptions) {
  return (socket: Socket, next: (err?: Error) => void): void => {
    const ip = opts.ipOf(socket);
    try {
      const { id } = verifyAuthHandshake(nodeCrypto, opts.role, socket.handshake.auth, opts.now(), opts.nonces.seen);
      if (opts.role === 'host' && opts.allowHosts && !opts.allowHosts.has(id)) {
        opts.metrics.reject('not_allowed');
        opts.log(kv({ event: 'handshake', role: opts.role, result: 'refused', reason: 'not_allowed', hostId: id, ip }));
        next(new HandshakeError('QRA_ERR_UNAUTHENTICATED', "this host is not on the relay's allow-list; ask the relay operator to add its hostId"));
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
      next(new HandshakeError(code === 'QRA_ERR_RATE_LIMITED' ? code : 'QRA_ERR_UNAUTHENTICATED', message));
    }
  };
}
