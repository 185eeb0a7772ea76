/**
 * A plain static web server for the app's build on its own loopback origin, as an operator's
 * nginx or CDN would serve it: nothing but files, no relay, no Socket.IO. Records every request
 * path so tests can see what the app loaded.
 */
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createStaticHandler } from '../../relay/src/static.js';

export interface StaticServer {
  /** http://127.0.0.1:port: the app's origin. */
  readonly origin: string;
  /** Every request path, in order. */
  readonly requests: readonly string[];
  /** Bytes written to the network so far (headers and bodies as sent, compressed or not). */
  bytesSent(): number;
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
  const open = new Set<Socket>();
  let closedBytes = 0;
  server.on('connection', (socket) => {
    open.add(socket);
    socket.on('close', () => {
      open.delete(socket);
      closedBytes += socket.bytesWritten;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    bytesSent: () => closedBytes + [...open].reduce((sum, socket) => sum + socket.bytesWritten, 0),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
