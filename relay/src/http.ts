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

/** The registry's text and content type; 500 if it cannot be rendered (a collect callback threw). */
async function sendMetrics(res: ServerResponse, metrics: RelayMetrics, head: boolean): Promise<void> {
  let body: string;
  try {
    body = await metrics.render();
  } catch {
    return send(res, 500, 'text/plain; charset=utf-8', 'metrics unavailable\n', {}, head);
  }
  send(res, 200, metrics.contentType, body, {}, head);
}

/**
 * `serveMetrics: false` when /metrics has its own listener: the public port then answers 404 there.
 * `boundHandshakes`: the relay checks which relay a handshake is signed for (--public-url), told
 * in /healthz so that agents can warn about a relay of theirs that does not.
 */
export function createHttpHandler(metrics: RelayMetrics, serveStatic: StaticHandler | undefined, { serveMetrics = true, boundHandshakes = false } = {}) {
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
        send(res, 200, 'application/json', JSON.stringify({ status: 'ok', hosts: s.hostsConnected, devices: s.devicesConnected, boundHandshakes }), {}, head);
        return;
      }
      if (serveMetrics && pathname === '/metrics') return await sendMetrics(res, metrics, head);
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
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
    const pathname = (req.url ?? '/').split('?')[0];
    if (pathname === '/metrics') return sendMetrics(res, metrics, head);
    send(res, 404, 'text/plain; charset=utf-8', 'not found\n', {}, head);
  };
}
