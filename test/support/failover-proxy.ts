/**
 * A tiny TCP load balancer on 127.0.0.1 standing in for the one in front of several relay nodes:
 * each new connection goes to the first backend that accepts it (in list order), so a dead node
 * is skipped the way a health-checked balancer skips it. Bytes are piped unchanged.
 */
import { type Server, type Socket, connect, createServer } from 'node:net';

export interface FailoverProxy {
  readonly port: number;
  readonly url: string;
  /** Backend ports, tried in order for each new connection. */
  backends: number[];
  close(): Promise<void>;
}

export async function startFailoverProxy(backends: number[]): Promise<FailoverProxy> {
  const open = new Set<Socket>();
  const track = (s: Socket) => {
    open.add(s);
    s.once('close', () => open.delete(s));
    s.on('error', () => s.destroy());
  };
  const proxy: { backends: number[] } = { backends: [...backends] };
  const server: Server = createServer((client) => {
    track(client);
    client.pause();
    const tryBackend = (i: number) => {
      const port = proxy.backends[i];
      if (port === undefined || client.destroyed) return void client.destroy();
      const upstream = connect({ host: '127.0.0.1', port });
      const onFail = () => {
        upstream.destroy();
        tryBackend(i + 1);
      };
      upstream.once('error', onFail);
      upstream.once('connect', () => {
        upstream.off('error', onFail);
        track(upstream);
        client.pipe(upstream);
        upstream.pipe(client);
        client.once('close', () => upstream.destroy());
        upstream.once('close', () => client.destroy());
        client.resume();
      });
    };
    tryBackend(0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get backends() {
      return proxy.backends;
    },
    set backends(b: number[]) {
      proxy.backends = [...b];
    },
    close() {
      for (const s of open) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
