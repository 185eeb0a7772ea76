/**
 * Plain HTTP on the relay's port: health, metrics, and the app's web build. Socket.IO takes
 * /socket.io/ first. Metrics can have a listener of their own instead (createMetricsHandler).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RelayMetrics } from './metrics.js';
import type { StaticHandler } from './static.js';

function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}, head = false): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...extra,
  });
  res.end(head ? undefined : body);
}

/** `serveMetrics: false` when /metrics has its own listener: the public port then answers 404 there. */
export function createHttpHandler(metrics: RelayMetrics, serveStatic: StaticHandler | undefined, { serveMetrics = true } = {}) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      const pathname = new URL(req.url ?? '/', 'http://relay.invalid').pathname;
      const head = req.method === 'HEAD';
      if (req.method !== 'GET' && !head) {
        send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
        return;
      }
      if (pathname === '/healthz') {
        const s = metrics.snapshot();
        send(res, 200, 'application/json', JSON.stringify({ status: 'ok', hosts: s.hostsConnected, devices: s.devicesConnected }), {}, head);
        return;
      }
      if (serveMetrics && pathname === '/metrics') {
        send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', metrics.render(), {}, head);
        return;
      }
      if (serveStatic && (await serveStatic(req, res, pathname))) return;
      send(res, 404, 'text/plain; charset=utf-8', 'not found\n', {}, head);
    } catch {
      // A malformed URL or a vanished file must not take the relay down.
      if (!res.headersSent) send(res, 400, 'text/plain; charset=utf-8', 'bad request\n');
      else res.destroy();
    }
  };
}

/** The metrics listener: GET/HEAD /metrics, 404 for everything else. */
export function createMetricsHandler(metrics: RelayMetrics) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
    const pathname = (req.url ?? '/').split('?')[0];
    if (pathname === '/metrics') return send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', metrics.render(), {}, head);
    send(res, 404, 'text/plain; charset=utf-8', 'not found\n', {}, head);
  };
}
