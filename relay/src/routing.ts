/**
 * Routes a phone's requests to the room of the host they name and the host's ack back.
 * Everything from either side is validated here; a bad message gets an error ack (or is
 * dropped when it asked for none) and never reaches the other side. Handlers never throw.
 */
import type { Namespace, Socket } from 'socket.io';
import {
  type Ack,
  type Check,
  type DeviceClientToServer,
  type DeviceServerToClient,
  ERROR_CODES,
  type ErrorCode,
  type HostClientToServer,
  type HostServerToClient,
  QrauthError,
  contextAck,
  contextRequest,
  decisionAck,
  decisionMessage,
  enrollAck,
  enrollMessage,
  hostRoom,
  leaseRevokeAck,
  leaseRevokeMessage,
  fromB64url,
  keyId,
  parse,
} from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import type { PeerData } from './auth.js';
import type { CrossNodeRouter } from './cross-node.js';
import { type LogFn, kv, shortId } from './log.js';
import type { ForwardedEvent, RateLimitBudget, RelayMetrics } from './metrics.js';
import { type RelayBudgets, addressKey } from './rate-limit.js';

type EmptyEvents = Record<string, never>;
export type HostNamespace = Namespace<HostClientToServer, HostServerToClient, EmptyEvents, PeerData>;
export type DeviceNamespace = Namespace<DeviceClientToServer, DeviceServerToClient, EmptyEvents, PeerData>;
export type DeviceSocket = Socket<DeviceClientToServer, DeviceServerToClient, EmptyEvents, PeerData>;

type ErrAck = { ok: false; code: ErrorCode; message: string };
type HostCallback<A> = (err: Error | null, responses: A[]) => void;
/** The node holding the host waits `ackTimeoutMs` for it; the asking node waits this much longer for that node. */
const CROSS_NODE_MARGIN_MS = 1000;
const errAck = (code: ErrorCode, message: string): ErrAck => ({ ok: false, code, message });

export interface RouterOptions {
  hostNs: HostNamespace;
  metrics: RelayMetrics;
  log: LogFn;
  ackTimeoutMs: number;
  budgets: RelayBudgets;
  /** Several nodes with direct routing: reaches hosts on other nodes (cross-node.ts). */
  crossNode?: CrossNodeRouter;
}

export class DeviceRouter {
  constructor(private readonly o: RouterOptions) {}

  attach(socket: DeviceSocket): void {
    // The listeners take unknown arguments: the event maps describe what a well-behaved phone sends.
    socket.on('context', (...args: unknown[]) => void this.#handle(socket, 'context', args));
    socket.on('decision', (...args: unknown[]) => void this.#handle(socket, 'decision', args));
    socket.on('enroll', (...args: unknown[]) => void this.#handle(socket, 'enroll', args));
    socket.on('revokeLeases', (...args: unknown[]) => void this.#handle(socket, 'revokeLeases', args));
    socket.onAny((event: unknown) => {
      if (event !== 'context' && event !== 'decision' && event !== 'enroll' && event !== 'revokeLeases') this.o.metrics.reject('unknown_event');
    });
  }

  async #handle(socket: DeviceSocket, event: ForwardedEvent, args: unknown[]): Promise<void> {
    const last = args[args.length - 1];
    if (typeof last !== 'function') {
      this.o.metrics.reject('no_ack'); // nobody to answer: drop, the phone asked for nothing
      return;
    }
    const reply = (a: unknown): void => {
      try {
        (last as (a: unknown) => void)(a);
      } catch {
        // The phone went away; nothing to do.
      }
    };
    try {
      const result = await this.#route(socket, event, args.length === 2 ? args[0] : undefined, args.length === 2);
      reply(result);
    } catch (e) {
      this.o.log(kv({ event: 'error', where: `device.${event}`, message: e instanceof Error ? e.message : 'unknown' }));
      reply(errAck('QRA_ERR_INTERNAL', 'the relay failed to handle this request; try again'));
    }
  }

  async #route(socket: DeviceSocket, event: ForwardedEvent, payload: unknown, oneArg: boolean): Promise<Ack<object>> {
    const deviceId = socket.data.id;
    const started = process.hrtime.bigint();
    const timed = (e: ForwardedEvent) => this.o.metrics.latency[e].observe(Number(process.hrtime.bigint() - started) / 1e9);
    const room = (hostId: string) => this.o.hostNs.to(hostRoom(hostId)).timeout(this.o.ackTimeoutMs);
    // A valid request is charged all its budgets at once (#admit); anything else still costs its
    // device below: a phone sending garbage is throttled like one sending requests.
    let charged = false;
    const admit = (hostId: string): Promise<ErrAck | undefined> => {
      charged = true;
      return this.#admit(deviceId, hostId, socket);
    };
    try {
      if (!oneArg) throw new QrauthError('QRA_ERR_INVALID_INPUT', `${event}: expected exactly one message and an ack`);
      if (event === 'context') {
        const req = parse(contextRequest, payload, event);
        const go = await admit(req.hostId);
        if (go) return go;
        const answer = await this.#ask(contextAck, this.#toHost(req.hostId, 'context', req, (cb) => room(req.hostId).emit('context', { sid: req.sid }, cb)), (a) =>
          a.ok ? a.context.hostId === req.hostId && a.context.sid === req.sid : true,
        );
        this.o.metrics.forwarded.context++;
        timed('context');
        return answer;
      }
      if (event === 'decision') {
        const d = parse(decisionMessage, payload, event);
        if (d.deviceId !== deviceId) {
          throw new QrauthError('QRA_ERR_INVALID_INPUT', 'decision.deviceId is not the id of the key this connection proved');
        }
        const go = await admit(d.hostId);
        if (go) return go;
        const answer = await this.#ask(decisionAck, this.#toHost(d.hostId, 'decision', d, (cb) => room(d.hostId).emit('decision', d, cb)));
        this.o.metrics.forwarded.decision++;
        timed('decision');
        if (answer.ok && answer.result === 'approved') this.o.metrics.approvals++;
        if (answer.ok && answer.result === 'denied') this.o.metrics.denials++;
        this.o.log(
          kv({
            event: 'decision',
            hostId: d.hostId,
            sid: shortId(d.sid),
            deviceId: d.deviceId,
            decision: d.decision,
            result: answer.ok ? answer.result : 'error',
            code: answer.ok ? undefined : answer.code,
          }),
        );
        return answer;
      }
      if (event === 'revokeLeases') {
        // Same budgets as every other phone request: device, its address's share of the host, the host.
        const r = parse(leaseRevokeMessage, payload, event);
        if (r.deviceId !== deviceId) {
          throw new QrauthError('QRA_ERR_INVALID_INPUT', 'revokeLeases.deviceId is not the id of the key this connection proved');
        }
        const go = await admit(r.hostId);
        if (go) return go;
        const answer = await this.#ask(leaseRevokeAck, this.#toHost(r.hostId, 'revokeLeases', r, (cb) => room(r.hostId).emit('revokeLeases', r, cb)));
        this.o.metrics.forwarded.revokeLeases++;
        timed('revokeLeases');
        this.o.log(kv({ event: 'revoke_leases', hostId: r.hostId, deviceId, result: answer.ok ? String(answer.revoked) : 'error', code: answer.ok ? undefined : answer.code }));
        return answer;
      }
      const m = parse(enrollMessage, payload, event);
      if (keyId(nodeCrypto, fromB64url(m.devicePub, 32)) !== deviceId) {
        throw new QrauthError('QRA_ERR_INVALID_INPUT', 'enroll.devicePub is not the key this connection proved');
      }
      const go = await admit(m.hostId);
      if (go) return go;
      const answer = await this.#ask(enrollAck, this.#toHost(m.hostId, 'enroll', m, (cb) => room(m.hostId).emit('enroll', m, cb)));
      this.o.metrics.forwarded.enroll++;
      timed('enroll');
      this.o.log(kv({ event: 'enroll', hostId: m.hostId, deviceId, result: answer.ok ? 'ok' : 'error', code: answer.ok ? undefined : answer.code }));
      return answer;
    } catch (e) {
      if (!charged && !(await this.o.budgets.device(deviceId))) return this.#limited('device');
      if (!(e instanceof QrauthError) || e.code !== 'QRA_ERR_INVALID_INPUT') throw e;
      this.o.metrics.reject('invalid_input');
      return errAck('QRA_ERR_INVALID_INPUT', e.message);
    }
  }

  /** The phone's budget, its address's share of the target host, then the host's ceiling; an error ack when over, else undefined. */
  async #admit(deviceId: string, hostId: string, socket: DeviceSocket): Promise<ErrAck | undefined> {
    const refused = await this.o.budgets.request(deviceId, hostId, addressKey(socket.data.ip));
    return refused ? this.#limited(refused) : undefined;
  }

  #limited(budget: RateLimitBudget): ErrAck {
    this.o.metrics.reject('rate_limited');
    this.o.metrics.rateLimited[budget]++;
    return errAck('QRA_ERR_RATE_LIMITED', 'too many requests from this phone, this network or for this host; wait a few seconds and try again');
  }

  /**
   * The host's sockets on this node (`local`, also every node's through the Socket.IO adapter
   * when one is installed), or, with direct routing, the node holding the host (cross-node.ts).
   * `forwarded` is the validated message that node validates again and hands to the host.
   */
  #toHost<A>(hostId: string, event: ForwardedEvent, forwarded: object, local: (cb: HostCallback<A>) => void): (cb: HostCallback<A>) => void {
    const crossNode = this.o.crossNode;
    if (!crossNode || crossNode.isLocal(hostId)) return local;
    return (cb) => {
      crossNode.ask(hostId, event, forwarded, this.o.ackTimeoutMs + CROSS_NODE_MARGIN_MS).then(
        (a) => {
          if (!a) return cb(null, []); // not connected anywhere we can reach: "host offline"
          // Raw acks from the host, validated one by one in #ask like local ones.
          cb(a.timedOut ? new Error('operation has timed out') : null, a.responses as A[]);
        },
        () => cb(null, []), // fail closed: "host offline"
      );
    };
  }

  /**
   * Sends to the host's room and waits for every connected agent of that host (usually one).
   * The first valid success wins, else the first valid error; anything invalid is counted and dropped.
   */
  #ask<A extends Ack<object>>(
    check: Check<A>,
    emit: (cb: HostCallback<A>) => void,
    matches: (a: A) => boolean = () => true,
  ): Promise<A | ErrAck> {
    return new Promise((resolve) => {
      emit((err, responses) => {
        let firstError: A | ErrAck | undefined;
        // Typed as acks by the event map, but they are whatever the host sent: validate each.
        const raws: unknown[] = Array.isArray(responses) ? responses : [];
        for (const raw of raws) {
          let a: A;
          try {
            a = parse(check, raw, 'ack');
          } catch {
            this.o.metrics.reject('invalid_host_ack');
            continue;
          }
          if (!matches(a)) {
            this.o.metrics.reject('invalid_host_ack');
          } else if (a.ok) {
            return resolve(a);
          } else {
            // The code is free text matching QRA_ERR_*; only pass on codes we define.
            firstError ??= Object.hasOwn(ERROR_CODES, a.code) ? a : errAck('QRA_ERR_INTERNAL', a.message);
          }
        }
        if (firstError) return resolve(firstError);
        if (err) {
          this.o.metrics.reject('host_timeout');
          return resolve(errAck('QRA_ERR_HOST_OFFLINE', `the host did not answer within ${Math.round(this.o.ackTimeoutMs / 1000)} s; try again`));
        }
        if (!Array.isArray(responses) || responses.length === 0) {
          this.o.metrics.reject('host_offline');
          return resolve(errAck('QRA_ERR_HOST_OFFLINE', 'that host is not connected to the relay'));
        }
        // Every host answer was invalid.
        resolve(errAck('QRA_ERR_INTERNAL', 'the host sent an invalid answer; check the qrauth agent version on that host'));
      });
    });
  }
}
