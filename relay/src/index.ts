/** @qrauth/relay as a library: start a relay in-process (tests, embedding). The command is main.ts. */
export { DEFAULT_LIMITS, type Relay, type RelayLimits, type RelayOptions, startRelay } from './server.js';
export type { RelayMetricsSnapshot } from './metrics.js';
export { parseAllowHosts, readAllowHosts } from './allow-hosts.js';
