/**
 * qrauth-relay for benchmarks: the real startRelay in its own process, with the rate limits
 * given as JSON in argv[2] (qrauth-relay's command line has no flags for them). Prints
 * "URL <url>"; operator log lines go to stderr.
 */
import { startRelay, type RelayLimits } from '../../relay/src/server.js';

const limits = JSON.parse(process.argv[2] ?? '{}') as Partial<RelayLimits>;
const relay = await startRelay({ port: 0, limits, log: (l) => process.stderr.write(`${l}\n`) });
process.stdout.write(`URL ${relay.url}\n`);
process.once('SIGTERM', () => {
  relay.close().then(() => process.exit(0), () => process.exit(1));
});
