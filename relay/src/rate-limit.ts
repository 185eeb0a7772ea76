/**
 * The relay's budgets, on rate-limiter-flexible (fixed windows per key). A phone's request is
 * charged in order, and each budget only when the ones before it let the request through, so
 * that what one sender wastes never comes out of a budget others share:
 *
 *   1. its device key           (device keys cost nothing: this alone stops nothing; a message
 *                                that is no valid request is charged here only)
 *   2. its address's share of the target host   (hostId + address)
 *   3. the target host's ceiling, from all addresses together
 *
 * One address, with as many keys as it likes, gets at most its share of a host; the ceiling
 * only runs out when several addresses flood the same host. Connections are charged per
 * address. An address is an IPv4 address or an IPv6 /64 (one customer's usual allocation).
 * In Redis the three are one script, so a request costs one round trip, not three.
 */
import { isIP } from 'node:net';
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { AUTH_CLOCK_SKEW_MS } from '../../protocol/src/index.js';
import type { RateLimitBudget } from './metrics.js';

export interface RelayLimits {
  /**
   * New Socket.IO connections one address may open per minute (both namespaces share one
   * connection). A connection carries one handshake; a further one on it costs one more.
   * @default 120
   */
  connectionsPerIpPerMinute: number;
  /**
   * Requests (context, decision, enroll) one phone may send per 10 s.
   * @default 30
   */
  deviceEventsPer10s: number;
  /**
   * Requests the relay forwards to one host per 10 s from one address, all its phones together:
   * the most of a host's budget one address can take.
   * @default 100
   */
  hostEventsPerAddressPer10s: number;
  /**
   * Requests the relay forwards to one host per 10 s, from all addresses together.
   * @default 300
   */
  hostEventsPer10s: number;
  /**
   * Handshake nonces the relay remembers so that no handshake can be replayed, each for at most
   * 4 minutes; while it is full of live ones every new handshake is refused. Optional, as is the
   * next one, so that a caller listing the limits above (the command line) keeps the defaults.
   * @default 200000
   */
  handshakeNonces?: number;
  /**
   * Of those, the most one address may hold; past it, that address's handshakes are refused and
   * everyone else's still fit.
   * @default 5 × connectionsPerIpPerMinute, at most a tenth of handshakeNonces (handshakeNonceShare)
   */
  handshakeNoncesPerAddress?: number;
}

const DEFAULT_HANDSHAKE_NONCES = 200_000;

export const DEFAULT_LIMITS: RelayLimits = {
  connectionsPerIpPerMinute: 120,
  deviceEventsPer10s: 30,
  hostEventsPerAddressPer10s: 100,
  hostEventsPer10s: 300,
  handshakeNonces: DEFAULT_HANDSHAKE_NONCES,
};

/**
 * The most handshake nonces one address may hold: as set, else all that an address keeping to
 * its connection budget can leave in the cache, so that the share never refuses it. A nonce is
 * kept until its handshake's time plus AUTH_CLOCK_SKEW_MS, and that time may be up to
 * AUTH_CLOCK_SKEW_MS ahead of the relay's clock: 4 minutes, which touch at most 5 one-minute
 * budget windows. Never more than a tenth of the cache: filling it takes ten addresses at least.
 */
export function handshakeNonceShare(limits: RelayLimits): number {
  if (limits.handshakeNoncesPerAddress !== undefined) return limits.handshakeNoncesPerAddress;
  const windows = Math.ceil((2 * AUTH_CLOCK_SKEW_MS) / 60_000) + 1;
  const cache = limits.handshakeNonces ?? DEFAULT_HANDSHAKE_NONCES;
  return Math.max(1, Math.min(limits.connectionsPerIpPerMinute * windows, Math.floor(cache / 10)));
}

/** One budget to charge: its key as the store holds it (`RateLimiterAbstract.getKey`), `points` per `duration` seconds. */
export interface ChainedBudget {
  key: string;
  points: number;
  duration: number;
}

/**
 * Makes the limiter of one budget: `points` per `duration` seconds per key. `name` keeps the
 * keys of different budgets apart in a shared store. `chain`, when the store has one, charges
 * several budgets in order in one round trip (see RelayBudgets.request).
 */
export type LimiterFactory = ((name: string, points: number, duration: number) => RateLimiterAbstract) & {
  /**
   * Charges `budgets` in order, each only while the ones before it let the request through:
   * resolves with the 1-based position of the first one over its points, or 0. Rejects when the
   * store cannot answer (the caller falls back to the limiters one by one).
   */
  chain?: (budgets: readonly ChainedBudget[]) => Promise<number>;
};

/** What `redisLimiters` uses of a connected node-redis client besides what rate-limiter-flexible does. */
export interface RedisEval {
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
}

/**
 * rate-limiter-flexible's fixed window (its incr-TTL script) for several keys in one script;
 * ARGV holds points and seconds of each key in turn.
 */
const CHAIN_SCRIPT = `for i = 1, #KEYS do
  local seconds = ARGV[2 * i]
  redis.call('SET', KEYS[i], 0, 'EX', seconds, 'NX')
  local consumed = redis.call('INCR', KEYS[i])
  if redis.call('PTTL', KEYS[i]) == -1 then redis.call('EXPIRE', KEYS[i], seconds) end
  if consumed > tonumber(ARGV[2 * i - 1]) then return i end
end
return 0`;

/** Budgets in this process's memory: each relay node counts for itself. */
export const memoryLimiters: LimiterFactory = (name, points, duration) => new RateLimiterMemory({ keyPrefix: name, points, duration });

/**
 * Budgets in Redis, shared by every relay node using it. `client` is a connected node-redis
 * client (not one in subscribe mode). While Redis cannot answer, each node falls back to its own
 * memory budgets: limits then hold per node instead of failing every request or none.
 */
export function redisLimiters(client: RedisEval, prefix = 'qrauth:rl'): LimiterFactory {
  const make = (name: string, points: number, duration: number) =>
    new RateLimiterRedis({
      storeClient: client,
      useRedisPackage: true,
      rejectIfRedisNotReady: true,
      keyPrefix: `${prefix}:${name}`,
      points,
      duration,
      insuranceLimiter: memoryLimiters(name, points, duration),
    });
  const chain = async (budgets: readonly ChainedBudget[]): Promise<number> => {
    const over = await client.eval(CHAIN_SCRIPT, { keys: budgets.map((b) => b.key), arguments: budgets.flatMap((b) => [String(b.points), String(b.duration)]) });
    // Fail closed: anything but a position is no "let through" (the caller then asks the limiters one by one).
    if (!(Number.isInteger(over) && (over as number) >= 0 && (over as number) <= budgets.length)) throw new Error('the budget script gave no position');
    return over as number;
  };
  return Object.assign(make, { chain });
}

export class RelayBudgets {
  readonly #connections: RateLimiterAbstract;
  readonly #device: RateLimiterAbstract;
  readonly #addressOfHost: RateLimiterAbstract;
  readonly #host: RateLimiterAbstract;
  readonly #chain: LimiterFactory['chain'];

  constructor(limits: RelayLimits, make: LimiterFactory = memoryLimiters) {
    for (const [k, v] of Object.entries(limits)) if (!(Number.isInteger(v) && v > 0)) throw new RangeError(`limits.${k} must be a positive whole number`);
    this.#connections = make('conn', limits.connectionsPerIpPerMinute, 60);
    this.#device = make('dev', limits.deviceEventsPer10s, 10);
    this.#addressOfHost = make('hostaddr', limits.hostEventsPerAddressPer10s, 10);
    this.#host = make('host', limits.hostEventsPer10s, 10);
    this.#chain = make.chain;
  }

  /** A new connection from `address` (an `addressKey`); false when over its limit. */
  connection(address: string): Promise<boolean> {
    return take(this.#connections, address);
  }

  /** A phone's message that is not a valid request: it costs its device all the same (garbage costs like requests). */
  device(deviceId: string): Promise<boolean> {
    return take(this.#device, deviceId);
  }

  /** A valid request for `hostId` from `address` (an `addressKey`): its share of the host, then the host's ceiling. */
  host(hostId: string, address: string): Promise<RateLimitBudget | undefined> {
    return this.#charge([this.#hostShare(hostId, address), [this.#host, hostId, 'host']]);
  }

  /** A valid request from `deviceId` for `hostId` from `address`: its device, then as `host`. One store round trip where the store allows. */
  request(deviceId: string, hostId: string, address: string): Promise<RateLimitBudget | undefined> {
    return this.#charge([[this.#device, deviceId, 'device'], this.#hostShare(hostId, address), [this.#host, hostId, 'host']]);
  }

  #hostShare(hostId: string, address: string): Step {
    return [this.#addressOfHost, `${hostId}/${address}`, 'address'];
  }

  /** Charges `steps` in order until one refuses; the budget that refused, or undefined. */
  async #charge(steps: readonly Step[]): Promise<RateLimitBudget | undefined> {
    if (this.#chain) {
      try {
        const over = await this.#chain(steps.map(([limiter, key]) => ({ key: limiter.getKey(key), points: limiter.points, duration: limiter.duration })));
        return over > 0 ? steps[over - 1]![2] : undefined;
      } catch {
        // The store cannot answer: each limiter's own fallback (memory budgets) below.
      }
    }
    for (const [limiter, key, budget] of steps) if (!(await take(limiter, key))) return budget;
    return undefined;
  }
}

type Step = readonly [RateLimiterAbstract, string, RateLimitBudget];

/** Spends one point of `key`: false when over budget. A store error (no insurance left) throws: the caller fails closed. */
async function take(limiter: RateLimiterAbstract, key: string): Promise<boolean> {
  try {
    await limiter.consume(key);
    return true;
  } catch (e) {
    if (e instanceof RateLimiterRes) return false;
    throw e;
  }
}

/**
 * A client address as written by a socket or a proxy ("192.0.2.1", "192.0.2.1:4711",
 * "[2001:db8::1]:4711", "fe80::1%eth0", "::ffff:192.0.2.1") as a plain IP address, an IPv4-mapped
 * IPv6 address as its IPv4 address; undefined when it is not an IP address.
 */
export function clientAddress(raw: string): string | undefined {
  let s = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(s);
  if (bracketed) s = bracketed[1]!;
  else if (/^[0-9.]+:\d{1,5}$/.test(s)) s = s.slice(0, s.lastIndexOf(':'));
  s = s.replace(/%.*$/, '');
  const v = isIP(s);
  if (v === 4) return s;
  if (v !== 6) return undefined;
  const g = ipv6Groups(s);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return [g[6]! >> 8, g[6]! & 255, g[7]! >> 8, g[7]! & 255].join('.');
  return s.toLowerCase();
}

/** The key an address is limited by: an IPv4 address itself, an IPv6 address's /64 ("2001:db8:a:b::/64"). */
export function addressKey(address: string): string {
  if (isIP(address) !== 6) return address;
  return `${ipv6Groups(address)
    .slice(0, 4)
    .map((x) => x.toString(16))
    .join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (isIP() === 6), "::" and a dotted IPv4 tail expanded. */
function ipv6Groups(address: string): number[] {
  let s = address.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const parse = (part: string) => (part ? part.split(':').map((h) => Number.parseInt(h, 16)) : []);
  const [head = '', tail] = s.split('::');
  const h = parse(head);
  if (tail === undefined) return h;
  const t = parse(tail);
  return [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
}
