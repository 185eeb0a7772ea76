/**
 * Counters and gauges for /metrics (Prometheus text format 0.0.4). Labels are from fixed sets
 * (event names, reject reasons, results), never from client input, so series cannot explode.
 */

export type ForwardedEvent = 'context' | 'decision' | 'enroll';
export type RejectReason =
  | 'unauthenticated'
  | 'not_allowed'
  | 'default_namespace'
  | 'connection_rate_limited'
  | 'invalid_input'
  | 'no_ack'
  | 'rate_limited'
  | 'host_offline'
  | 'host_timeout'
  | 'invalid_host_ack'
  | 'unknown_event';

export interface RelayMetricsSnapshot {
  hostsConnected: number;
  devicesConnected: number;
  forwarded: Record<ForwardedEvent, number>;
  rejects: Partial<Record<RejectReason, number>>;
  approvals: number;
  denials: number;
}

export class RelayMetrics {
  readonly forwarded: Record<ForwardedEvent, number> = { context: 0, decision: 0, enroll: 0 };
  readonly rejects = new Map<RejectReason, number>();
  approvals = 0;
  denials = 0;

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
      '# HELP qrauth_relay_decisions_total Decisions acknowledged by hosts, by result.',
      '# TYPE qrauth_relay_decisions_total counter',
      `qrauth_relay_decisions_total{result="approved"} ${s.approvals}`,
      `qrauth_relay_decisions_total{result="denied"} ${s.denials}`,
    ];
    return `${lines.join('\n')}\n`;
  }
}
