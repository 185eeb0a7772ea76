/**
 * Counters, gauges and the request latency histogram for /metrics, rendered by prom-client
 * (Prometheus text format 0.0.4). Labels are from fixed sets (event names, reject reasons,
 * results), never from client input, so series cannot explode.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export type ForwardedEvent = 'context' | 'decision' | 'enroll' | 'revokeLeases';
/** The budget that refused a phone's request (rate-limit.ts): the phone, its address's share of the host, or the host. */
export type RateLimitBudget = 'device' | 'address' | 'host';
export type RejectReason =
  | 'unauthenticated'
  | 'not_allowed'
  | 'origin_not_allowed'
  | 'default_namespace'
  | 'connection_rate_limited'
  | 'invalid_input'
  | 'no_ack'
  | 'rate_limited'
  | 'host_offline'
  | 'host_timeout'
  | 'invalid_host_ack'
  | 'unknown_event';

/** Upper bounds (seconds) of the request latency histogram: a LAN round trip up to the ack timeout. */
export const LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

export interface RelayMetricsSnapshot {
  hostsConnected: number;
  devicesConnected: number;
  forwarded: Record<ForwardedEvent, number>;
  rejects: Partial<Record<RejectReason, number>>;
  approvals: number;
  denials: number;
  /** Phone requests refused with QRA_ERR_RATE_LIMITED, by the budget that refused them. */
  rateLimited: Record<RateLimitBudget, number>;
  /** Requests answered (by the host, or by the relay when the host did not answer), by event. */
  latency: Record<ForwardedEvent, { count: number; sum: number }>;
}

/** One event's series of the latency histogram, plus the count and sum that snapshot() reports. */
class EventLatency {
  count = 0;
  sum = 0;
  constructor(private readonly series: { observe(seconds: number): void }) {}

  observe(seconds: number): void {
    this.series.observe(seconds);
    this.count++;
    this.sum += seconds;
  }
}

/**
 * A counter that takes its values, at scrape time, from counts the relay keeps itself. The relay
 * keeps them because snapshot() (Relay.metrics, /healthz) is synchronous and prom-client's reads
 * are not; prom-client then only renders them, in the order given.
 */
function countedCounter<L extends string>(registry: Registry, name: string, help: string, label: L, counts: () => Iterable<[string, number]>): void {
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [value, n] of counts()) this.inc({ [label]: value } as Record<L, string>, n);
    },
  });
}

export class RelayMetrics {
  readonly forwarded: Record<ForwardedEvent, number> = { context: 0, decision: 0, enroll: 0, revokeLeases: 0 };
  readonly rejects = new Map<RejectReason, number>();
  readonly rateLimited: Record<RateLimitBudget, number> = { device: 0, address: 0, host: 0 };
  approvals = 0;
  denials = 0;
  /** From a phone's request arriving to the answer going back, for requests sent on to a host. */
  readonly latency: Record<ForwardedEvent, EventLatency>;
  /** This relay's own registry, never prom-client's global one: tests run several relays in one process. */
  private readonly registry = new Registry();

  constructor(private readonly gauges: () => { hosts: number; devices: number }) {
    const registers = [this.registry];
    new Gauge({
      name: 'qrauth_relay_connected_hosts',
      help: 'Host agents connected to this relay node.',
      registers,
      collect() {
        this.set(gauges().hosts);
      },
    });
    new Gauge({
      name: 'qrauth_relay_connected_devices',
      help: 'Phones connected to this relay node.',
      registers,
      collect() {
        this.set(gauges().devices);
      },
    });
    countedCounter(this.registry, 'qrauth_relay_forwarded_total', 'Phone requests forwarded to a host, by event.', 'event', () =>
      Object.entries(this.forwarded),
    );
    // Only reasons counted at least once: the list is long and most stay at zero.
    countedCounter(this.registry, 'qrauth_relay_rejects_total', 'Connections and messages refused, by reason.', 'reason', () => this.rejects);
    countedCounter(
      this.registry,
      'qrauth_relay_rate_limited_total',
      'Phone requests refused as rate limited, by the budget that refused them.',
      'budget',
      () => Object.entries(this.rateLimited),
    );
    countedCounter(this.registry, 'qrauth_relay_decisions_total', 'Decisions acknowledged by hosts, by result.', 'result', () => [
      ['approved', this.approvals],
      ['denied', this.denials],
    ]);
    const duration = new Histogram({
      name: 'qrauth_relay_request_duration_seconds',
      help: 'Phone request to answer, for requests forwarded to a host, by event.',
      labelNames: ['event'],
      buckets: [...LATENCY_BUCKETS_S],
      registers,
    });
    const series = (event: ForwardedEvent) => {
      duration.zero({ event }); // every event's series from the start, at 0
      return new EventLatency(duration.labels({ event }));
    };
    this.latency = { context: series('context'), decision: series('decision'), enroll: series('enroll'), revokeLeases: series('revokeLeases') };
  }

  reject(reason: RejectReason): void {
    this.rejects.set(reason, (this.rejects.get(reason) ?? 0) + 1);
  }

  snapshot(): RelayMetricsSnapshot {
    const g = this.gauges();
    return {
      hostsConnected: g.hosts,
      devicesConnected: g.devices,
      forwarded: { ...this.forwarded },
      rejects: Object.fromEntries(this.rejects) as Partial<Record<RejectReason, number>>,
      approvals: this.approvals,
      denials: this.denials,
      rateLimited: { ...this.rateLimited },
      latency: Object.fromEntries(Object.entries(this.latency).map(([e, h]) => [e, { count: h.count, sum: h.sum }])) as RelayMetricsSnapshot['latency'],
    };
  }

  /** The /metrics body; serve it as `contentType`. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
