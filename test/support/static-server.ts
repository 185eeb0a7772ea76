/**
 * A plain static web server for the app's build on its own loopback origin, as an operator's
 * nginx or CDN would serve it: nothing but files, no relay, no Socket.IO. Records every request
 * path so tests can see what the app loaded.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createStaticHandler } from '../../relay/src/static.js';

export interface StaticServer {
  /** http://127.0.0.1:port: the app's origin. */
  readonly origin: string;
  /** Every request path, in order. */
  readonly requests: readonly string[];
  close(): Promise<void>;
}

export async function startStaticServer(dir: string): Promise<StaticServer> {
  const serve = await createStaticHandler(dir);
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://static.invalid').pathname;
    requests.push(pathname);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    serve(req, res, pathname).then(
      (served) => {
        if (!served) res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      },
      () => res.destroy(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
