/**
 * Several relay nodes behind one load balancer, sharing one Redis. How a phone on node B reaches
 * a host on node A depends on `routing`:
 * - `direct` (default, cross-node.ts): each node keeps a routing map of its connected hosts in
 *   Redis (hostId → node) and forwards a request to the one node holding the host, over that
 *   node's own channel: two Redis commands a request, whatever the number of nodes.
 * - `broadcast`, `broadcast-specific`: the Socket.IO Redis adapter carries room broadcasts and
 *   their acks between nodes: every request goes to every node and waits for all of them
 *   (`broadcast-specific` sends the answers only to the asking node). Kept for comparison
 *   (bench/scale.ts --routing-compare) and as a way back.
 * Redis holds only pub/sub traffic, the routing map and rate-limit counters that expire within
 * a minute, so restarting it loses nothing that matters: the clients reconnect and resubscribe
 * and the nodes write their hosts again; meanwhile cross-node requests fail like an offline host
 * and each node counts budgets in its memory.
 */
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import type { ServerOptions } from 'socket.io';
import { QrauthError } from '../../protocol/src/index.js';
import { CrossNodeRouter } from './cross-node.js';
import { type LogFn, kv } from './log.js';
import type { RedisEval } from './rate-limit.js';

export const CROSS_NODE_ROUTINGS = ['direct', 'broadcast', 'broadcast-specific'] as const;
export type CrossNodeRouting = (typeof CROSS_NODE_ROUTINGS)[number];

export interface RedisAdapterHandle {
  /** The Socket.IO adapter (`broadcast` routings), or undefined with `direct`. */
  adapter: ServerOptions['adapter'] | undefined;
  /** The per-node router (`direct` routing), or undefined with the broadcast routings. */
  crossNode: CrossNodeRouter | undefined;
  /** The publishing client, also usable for commands (rate-limit budgets); the subscriber is not. */
  client: RedisEval;
  /** Both clients connected (publish and subscribe). */
  readonly up: boolean;
  close(): Promise<void>;
}

/** Reconnect delay: 100 ms doubling to 5 s, with jitter so nodes do not reconnect in lockstep. */
export function redisReconnectDelay(retries: number): number {
  const base = Math.min(5000, 100 * 2 ** Math.min(retries, 6));
  return Math.round(base * (0.5 + Math.random() / 2));
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.href;
  } catch {
    return 'invalid';
  }
}

/**
 * Connects the publish and subscribe clients and returns the adapter for `startRelay`.
 * Fails (QRA_ERR_CONFIG) when Redis cannot be reached within `connectTimeoutMs` at start:
 * a node that cannot reach its peers should not join the load balancer silently.
 */
export async function connectRedisAdapter(url: string, log: LogFn, connectTimeoutMs = 10_000, routing: CrossNodeRouting = 'direct'): Promise<RedisAdapterHandle> {
  if (!/^rediss?:\/\//.test(url)) throw new QrauthError('QRA_ERR_CONFIG', `--redis/REDIS_URL must start with redis:// or rediss:// (got ${redactUrl(url)})`);
  // No offline queue: while Redis is away a command fails at once (budgets fall back to memory,
  // cross-node requests time out like an offline host) instead of piling up and expiring later.
  const pub = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy: redisReconnectDelay, connectTimeout: 5000 } });
  const sub = pub.duplicate();
  // The adapter publishes without awaiting: a publish that fails while Redis is away would be an
  // unhandled rejection, which ends the node (every node at once, on one Redis restart).
  const publish = pub.publish.bind(pub);
  let publishFailing = false; // logged once per outage, not once per broadcast
  pub.on('ready', () => {
    publishFailing = false;
  });
  Object.assign(pub, {
    publish: (...args: Parameters<typeof publish>) => {
      const sent = publish(...args);
      sent.catch((e: unknown) => {
        if (publishFailing) return;
        publishFailing = true;
        log(kv({ event: 'redis', role: 'pub', state: 'publish_failed', cause: e instanceof Error ? e.message : 'unknown' }));
      });
      return sent;
    },
  });
  const state = { pub: false, sub: false };
  const shown = redactUrl(url);
  for (const [role, client] of [['pub', pub], ['sub', sub]] as const) {
    let lastError = '';
    // Without an 'error' listener a lost Redis connection would be an uncaught exception.
    client.on('error', (e: Error) => {
      if (e.message === lastError) return; // once per distinct error, not once per retry
      lastError = e.message;
      log(kv({ event: 'redis', role, state: 'error', cause: e.message }));
    });
    client.on('ready', () => {
      lastError = '';
      state[role] = true;
      log(kv({ event: 'redis', role, state: 'up', url: shown }));
    });
    client.on('end', () => {
      state[role] = false;
    });
    client.on('reconnecting', () => {
      if (state[role]) log(kv({ event: 'redis', role, state: 'down', url: shown }));
      state[role] = false;
    });
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.all([pub.connect(), sub.connect()]),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${connectTimeoutMs / 1000} s`)), connectTimeoutMs);
      }),
    ]);
  } catch (e) {
    pub.destroy();
    sub.destroy();
    throw new QrauthError('QRA_ERR_CONFIG', `cannot connect to Redis at ${shown}: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
  if (routing === 'direct') {
    const crossNode = new CrossNodeRouter({ pub, sub, log });
    return {
      adapter: undefined,
      crossNode,
      client: pub,
      get up() {
        return state.pub && state.sub;
      },
      async close() {
        await crossNode.close();
        await Promise.allSettled([pub.close(), sub.close()]);
      },
    };
  }
  const redisAdapter = createAdapter(pub, sub, { publishOnSpecificResponseChannel: routing === 'broadcast-specific' });
  // socket.io asks the adapter how many nodes to wait for on every broadcast with acks, and does
  // not catch a failure (an unhandled rejection: the node dies). Without Redis only this node counts.
  // A plain function: socket.io calls it with `new` (an object returned from a constructor is the result).
  const adapter = function countingOnlySelfWithoutRedis(nsp: Parameters<typeof redisAdapter>[0]) {
    const a = redisAdapter(nsp);
    const serverCount = a.serverCount.bind(a);
    a.serverCount = () => serverCount().catch(() => 1);
    return a;
  };
  return {
    adapter,
    crossNode: undefined,
    client: pub,
    get up() {
      return state.pub && state.sub;
    },
    async close() {
      await Promise.allSettled([pub.close(), sub.close()]);
    },
  };
}
