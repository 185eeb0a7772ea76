/**
 * Counters and gauges for /metrics (Prometheus text format 0.0.4). Labels are from fixed sets
 * (event names, reject reasons, results), never from client input, so series cannot explode.
 */

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

/** A Prometheus histogram: cumulative counts per upper bound, plus sum and count. */
export class LatencyHistogram {
  readonly counts: number[] = LATENCY_BUCKETS_S.map(() => 0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    LATENCY_BUCKETS_S.forEach((le, i) => {
      if (seconds <= le) this.counts[i]!++;
    });
  }
}

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

export class RelayMetrics {
  readonly forwarded: Record<ForwardedEvent, number> = { context: 0, decision: 0, enroll: 0, revokeLeases: 0 };
  readonly rejects = new Map<RejectReason, number>();
  readonly rateLimited: Record<RateLimitBudget, number> = { device: 0, address: 0, host: 0 };
  approvals = 0;
  denials = 0;
  /** From a phone's request arriving to the answer going back, for requests sent on to a host. */
  readonly latency: Record<ForwardedEvent, LatencyHistogram> = {
    context: new LatencyHistogram(),
    decision: new LatencyHistogram(),
    enroll: new LatencyHistogram(),
    revokeLeases: new LatencyHistogram(),
  };

  constructor(private readonly gauges: () => { hosts: number; devices: number }) {}

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

  render(): string {
    const s = this.snapshot();
    const lines = [
      '# HELP qrauth_relay_connected_hosts Host agents connected to this relay node.',
      '# TYPE qrauth_relay_connected_hosts gauge',
      `qrauth_relay_connected_hosts ${s.hostsConnected}`,
      '# HELP qrauth_relay_connected_devices Phones connected to this relay node.',
      '# TYPE qrauth_relay_connected_devices gauge',
      `qrauth_relay_connected_devices ${s.devicesConnected}`,
      '# HELP qrauth_relay_forwarded_total Phone requests forwarded to a host, by event.',
      '# TYPE qrauth_relay_forwarded_total counter',
      ...Object.entries(s.forwarded).map(([e, n]) => `qrauth_relay_forwarded_total{event="${e}"} ${n}`),
      '# HELP qrauth_relay_rejects_total Connections and messages refused, by reason.',
      '# TYPE qrauth_relay_rejects_total counter',
      ...Object.entries(s.rejects).map(([r, n]) => `qrauth_relay_rejects_total{reason="${r}"} ${n}`),
      '# HELP qrauth_relay_rate_limited_total Phone requests refused as rate limited, by the budget that refused them.',
      '# TYPE qrauth_relay_rate_limited_total counter',
      ...Object.entries(s.rateLimited).map(([b, n]) => `qrauth_relay_rate_limited_total{budget="${b}"} ${n}`),
      '# HELP qrauth_relay_decisions_total Decisions acknowledged by hosts, by result.',
      '# TYPE qrauth_relay_decisions_total counter',
      `qrauth_relay_decisions_total{result="approved"} ${s.approvals}`,
      `qrauth_relay_decisions_total{result="denied"} ${s.denials}`,
      '# HELP qrauth_relay_request_duration_seconds Phone request to answer, for requests forwarded to a host, by event.',
      '# TYPE qrauth_relay_request_duration_seconds histogram',
      ...Object.entries(this.latency).flatMap(([e, h]) => [
        ...LATENCY_BUCKETS_S.map((le, i) => `qrauth_relay_request_duration_seconds_bucket{event="${e}",le="${le}"} ${h.counts[i]}`),
        `qrauth_relay_request_duration_seconds_bucket{event="${e}",le="+Inf"} ${h.count}`,
        `qrauth_relay_request_duration_seconds_sum{event="${e}"} ${h.sum}`,
        `qrauth_relay_request_duration_seconds_count{event="${e}"} ${h.count}`,
      ]),
    ];
    return `${lines.join('\n')}\n`;
  }
}
