/**
 * Cross-node routing without a broadcast: a phone's request for a host on another relay node
 * goes to that node only, over that node's own Redis channel, and its answer comes back over
 * the asking node's channel.
 *
 * Why: the Socket.IO Redis adapter sends every broadcast-with-ack to every node and the asking
 * node waits for all of them to report how many clients they reached, so each approval cost
 * work on every node and waited for the slowest (docs/relay.md, "Several nodes").
 *
 * What Redis holds: one key per connected host, `qrauth:host:<hostId>` → the id of the node
 * holding its connection (a random id per process start), with a TTL refreshed while the host
 * stays connected. It is a routing map of connected hosts, not a session store: losing it (a
 * Redis restart) makes hosts unreachable across nodes until the nodes write it again, which they
 * do as soon as Redis is back.
 *
 * Races: the last connection wins (a connect overwrites the key); a disconnect deletes the key
 * only if it still names this node, so an old connection closing late on node A does not hide
 * the host that reconnected to node B. A host connected to two nodes at once (two agents with
 * one host key) is reached on the node it connected to last; should that one go, the other node
 * takes the key back at its next refresh.
 *
 * Failing closed: no key, a key naming this node (the host left), a node that is gone (PUBLISH
 * reached no subscriber), no answer in time, Redis unreachable: the phone is told the host is
 * offline or did not answer. The relay never answers for a host; the host's own ack, validated
 * by the asking node (routing.ts), is the only answer a phone gets.
 */
import { randomBytes } from 'node:crypto';
import { MAX_MESSAGE_BYTES } from '../../protocol/src/index.js';
import { type Check, anything, arrayOf, bool, object, oneOf, parse, str } from '../../protocol/src/validate.js';
import { type LogFn, kv } from './log.js';
import type { ForwardedEvent } from './metrics.js';

/** What this module uses of a node-redis client (structural, so the client's generics stay in redis.ts). */
export interface CrossNodeRedis {
  set(key: string, value: string, options: { expiration: { type: 'PX'; value: number } }): Promise<unknown>;
  evalSha(sha: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  scriptLoad(script: string): Promise<unknown>;
  publish(channel: string, message: string): Promise<unknown>;
  on(event: 'ready', listener: () => void): unknown;
  off(event: 'ready', listener: () => void): unknown;
}
export interface CrossNodeSubscriber {
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
}

const FORWARDED_EVENTS = ['context', 'decision', 'enroll', 'revokeLeases'] as const satisfies readonly ForwardedEvent[];
const NODE_ID = /^[A-Za-z0-9_-]{12}$/;
const HOST_ID = /^[A-Za-z0-9_-]{22}$/;
/** One host answers with one ack; a handful covers a host whose key two agents share. */
const MAX_RESPONSES = 8;

/** What a node's handler for a forwarded request resolves with: the host's raw acks (validated by the asker). */
export interface HostAnswers {
  timedOut: boolean;
  responses: unknown[];
}
/** Delivers a forwarded request to the host's sockets on this node and collects their acks. */
export type LocalDelivery = (hostId: string, event: ForwardedEvent, payload: unknown) => Promise<HostAnswers>;

interface ForwardRequest {
  t: 'req';
  id: string;
  from: string;
  hostId: string;
  event: ForwardedEvent;
  payload: unknown;
}
interface ForwardResponse {
  t: 'res';
  id: string;
  timedOut: boolean;
  responses: unknown[];
}
const requestId = str({ max: 40, min: 1, pattern: /^[A-Za-z0-9_.-]+$/ });
const forwardRequest: Check<ForwardRequest> = object({
  t: oneOf(['req'] as const),
  id: requestId,
  from: str({ max: 12, min: 12, pattern: NODE_ID }),
  hostId: str({ max: 22, min: 22, pattern: HOST_ID }),
  event: oneOf(FORWARDED_EVENTS),
  payload: anything,
});
const forwardResponse: Check<ForwardResponse> = object({
  t: oneOf(['res'] as const),
  id: requestId,
  timedOut: bool(),
  responses: arrayOf(anything, MAX_RESPONSES),
});
/** Keys and channels; one prefix so an operator can see (and a test can clear) what the relay keeps. */
const hostKey = (hostId: string) => `qrauth:host:${hostId}`;
const NODE_CHANNEL_PREFIX = 'qrauth:node:';

/**
 * Lua, so each step is one atomic round trip:
 * - ROUTE: look the host up and publish the request to its node's channel; -1 no key, -2 the key
 *   names the asking node itself (the host left it), else the number of subscribers reached
 *   (0: that node is gone).
 * - REFRESH: keep the key if it names this node or nobody (after a Redis restart, or after the
 *   node that had it let go), never take it from another node: the last connection wins.
 * - RELEASE: delete the key only if it still names this node.
 */
const ROUTE = `local n = redis.call('GET', KEYS[1])
if not n then return -1 end
if n == ARGV[3] then return -2 end
return redis.call('PUBLISH', ARGV[1] .. n, ARGV[2])`;
const REFRESH = `local n = redis.call('GET', KEYS[1])
if n == false or n == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export interface CrossNodeOptions {
  /** A connected client for commands (not in subscribe mode). */
  pub: CrossNodeRedis;
  /** A connected client this module may subscribe with (it may be shared with other subscribers). */
  sub: CrossNodeSubscriber;
  log: LogFn;
  /**
   * How long a host's key lives without a refresh; it only bounds what a node that died leaves
   * behind (requests to a dead node fail at once: its channel has no subscriber).
   * @default 900000 (15 min)
   */
  hostTtlMs?: number;
  /**
   * How often each node rewrites the keys of its connected hosts (also at once after Redis comes back).
   * @default hostTtlMs / 3
   */
  refreshMs?: number;
}

export class CrossNodeRouter {
  /** This process's id in the routing map; random per start so a restarted node never inherits stale keys. */
  readonly nodeId = randomBytes(9).toString('base64url');
  readonly #o: CrossNodeOptions;
  readonly #ttlMs: number;
  readonly #channel: string;
  /** Connected hosts on this node: hostId → number of its sockets here. */
  readonly #local = new Map<string, number>();
  readonly #pending = new Map<string, { resolve: (a: HostAnswers | undefined) => void; timer: NodeJS.Timeout }>();
  #deliver: LocalDelivery | undefined;
  #seq = 0;
  #refreshTimer: NodeJS.Timeout | undefined;
  #failing = false; // logged once per outage, not once per command
  #closed = false;
  #sha = new Map<string, string>();

  constructor(o: CrossNodeOptions) {
    this.#o = o;
    this.#ttlMs = o.hostTtlMs ?? 900_000;
    this.#channel = NODE_CHANNEL_PREFIX + this.nodeId;
    this.#refreshTimer = setInterval(() => void this.refreshAll(), o.refreshMs ?? Math.max(1000, Math.floor(this.#ttlMs / 3)));
    this.#refreshTimer.unref();
    // After a reconnect Redis may have lost every key (a restart): write ours again.
    o.pub.on('ready', this.#onReady);
  }

  readonly #onReady = (): void => {
    this.#redisWorks();
    void this.refreshAll();
  };

  /** Subscribes this node's channel; `deliver` serves the requests other nodes forward here. */
  async start(deliver: LocalDelivery): Promise<void> {
    this.#deliver = deliver;
    await this.#o.sub.subscribe(this.#channel, (message) => void this.#onMessage(message));
  }

  /** A host connected here: it is now reached through this node (last connection wins). */
  hostConnected(hostId: string): void {
    this.#local.set(hostId, (this.#local.get(hostId) ?? 0) + 1);
    this.#o.pub.set(hostKey(hostId), this.nodeId, { expiration: { type: 'PX', value: this.#ttlMs } }).then(
      () => this.#redisWorks(),
      (e: unknown) => this.#redisFailed('claim', e),
    );
  }

  /** One of the host's sockets here closed; the key goes with its last one, if it still names this node. */
  hostDisconnected(hostId: string): void {
    const left = (this.#local.get(hostId) ?? 1) - 1;
    if (left > 0) {
      this.#local.set(hostId, left);
      return;
    }
    this.#local.delete(hostId);
    this.#script(RELEASE, [hostKey(hostId)], [this.nodeId]).then(
      () => this.#redisWorks(),
      (e: unknown) => this.#redisFailed('release', e),
    );
  }

  /** Whether the host has a socket on this node (then no Redis is involved). */
  isLocal(hostId: string): boolean {
    return this.#local.has(hostId);
  }

  /**
   * Forwards a request to the node holding the host and waits for its answer. Resolves with
   * `undefined` when the host is not reachable (no key, its node gone, Redis down): the caller
   * says "host offline". A node that does not answer within `timeoutMs` counts as timed out.
   */
  async ask(hostId: string, event: ForwardedEvent, payload: unknown, timeoutMs: number): Promise<HostAnswers | undefined> {
    const id = `${this.nodeId}.${(this.#seq++).toString(36)}`;
    const message = JSON.stringify({ t: 'req', id, from: this.nodeId, hostId, event, payload } satisfies ForwardRequest);
    const answer = new Promise<HostAnswers | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve({ timedOut: true, responses: [] });
      }, timeoutMs);
      this.#pending.set(id, { resolve, timer });
    });
    let reached: unknown;
    try {
      reached = await this.#script(ROUTE, [hostKey(hostId)], [NODE_CHANNEL_PREFIX, message, this.nodeId]);
    } catch (e) {
      this.#redisFailed('route', e);
      reached = 0;
    }
    if (typeof reached !== 'number' || reached < 1) {
      this.#settle(id, undefined); // no key, the key names us, or nobody subscribes that node's channel
    }
    return answer;
  }

  /** Rewrites the keys of every host connected here, in batches so a large node does not stall its event loop. */
  async refreshAll(): Promise<void> {
    const hosts = [...this.#local.keys()];
    for (let i = 0; i < hosts.length && !this.#closed; i += 500) {
      const batch = hosts.slice(i, i + 500).filter((h) => this.#local.has(h));
      try {
        await Promise.all(batch.map((h) => this.#script(REFRESH, [hostKey(h)], [this.nodeId, String(this.#ttlMs)])));
        this.#redisWorks();
      } catch (e) {
        this.#redisFailed('refresh', e);
        return; // the next 'ready' or interval tries again
      }
    }
  }

  /** Stops refreshing and answering; removes this node's keys when Redis is reachable. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#refreshTimer);
    this.#o.pub.off('ready', this.#onReady);
    for (const id of [...this.#pending.keys()]) this.#settle(id, undefined);
    await Promise.allSettled([
      this.#o.sub.unsubscribe(this.#channel),
      ...[...this.#local.keys()].map((h) => this.#script(RELEASE, [hostKey(h)], [this.nodeId])),
    ]);
    this.#local.clear();
  }

  #settle(id: string, a: HostAnswers | undefined): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    p.resolve(a);
  }

  async #onMessage(message: string): Promise<void> {
    if (this.#closed || message.length > 4 * MAX_MESSAGE_BYTES) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return this.#dropped('not JSON');
    }
    const t = typeof parsed === 'object' && parsed !== null ? (parsed as { t?: unknown }).t : undefined;
    if (t === 'res') {
      let r: ForwardResponse;
      try {
        r = parse(forwardResponse, parsed, 'crossNode.response');
      } catch (e) {
        return this.#dropped((e as Error).message);
      }
      return this.#settle(r.id, { timedOut: r.timedOut, responses: r.responses });
    }
    let req: ForwardRequest;
    try {
      req = parse(forwardRequest, parsed, 'crossNode.request');
    } catch (e) {
      return this.#dropped((e as Error).message);
    }
    let answers: HostAnswers = { timedOut: false, responses: [] };
    if (this.#local.has(req.hostId) && this.#deliver) {
      try {
        answers = await this.#deliver(req.hostId, req.event, req.payload);
      } catch (e) {
        this.#o.log(kv({ event: 'error', where: 'cross_node.deliver', message: e instanceof Error ? e.message : 'unknown' }));
      }
    }
    const response = JSON.stringify({ t: 'res', id: req.id, timedOut: answers.timedOut, responses: answers.responses.slice(0, MAX_RESPONSES) } satisfies ForwardResponse);
    // The asking node times out on its own if this publish fails.
    this.#o.pub.publish(NODE_CHANNEL_PREFIX + req.from, response).catch((e: unknown) => this.#redisFailed('answer', e));
  }

  #dropped(why: string): void {
    this.#o.log(kv({ event: 'refused', where: 'cross_node', reason: why.slice(0, 200) }));
  }

  #redisFailed(what: string, e: unknown): void {
    if (this.#failing) return;
    this.#failing = true;
    this.#o.log(kv({ event: 'redis', role: 'cross_node', state: `${what}_failed`, cause: e instanceof Error ? e.message : 'unknown' }));
  }

  /** EVALSHA, loading the script on the first use and again after Redis forgot it (a restart). */
  async #script(script: string, keys: string[], args: string[]): Promise<unknown> {
    const sha = this.#sha.get(script);
    if (sha) {
      try {
        return await this.#o.pub.evalSha(sha, { keys, arguments: args });
      } catch (e) {
        if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      }
    }
    this.#sha.set(script, String(await this.#o.pub.scriptLoad(script)));
    return this.#o.pub.evalSha(this.#sha.get(script)!, { keys, arguments: args });
  }

  /**
   * A write went through (a claim, release or refresh; not a route, which only reads and
   * publishes, and so works on a read-only replica too), or the connection is ready again: an
   * outage that never dropped the connection (READONLY, OOM), so no 'ready' followed it, is
   * over, and the next one is logged again.
   */
  #redisWorks(): void {
    if (!this.#failing) return;
    this.#failing = false;
    this.#o.log(kv({ event: 'redis', role: 'cross_node', state: 'working' }));
  }
}
