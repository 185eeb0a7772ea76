/**
 * A relay that lies: a real Socket.IO server speaking the /host protocol, under the test's
 * control, so tests can forge, replay, swap, reorder and flood what reaches the agent.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type Socket } from 'socket.io';
import { HOST_NAMESPACE } from '../../protocol/src/index.js';

export interface HostileRelay {
  url: string;
  /** The connected agent's socket, once it has connected. */
  agent(): Promise<Socket>;
  /** Send an event to the agent and return its ack (or 'timeout'). */
  ask(event: string, payload: unknown, timeoutMs?: number): Promise<unknown>;
  close(): Promise<void>;
}

export async function startHostileRelay(): Promise<HostileRelay> {
  const http = createServer();
  const io = new Server(http, { transports: ['websocket'] });
  let resolveAgent: (s: Socket) => void;
  let agentSocket: Promise<Socket> = new Promise((r) => (resolveAgent = r));
  // It accepts any handshake: a hostile relay does not care who the host is.
  io.of(HOST_NAMESPACE).on('connection', (s) => {
    resolveAgent(s);
    s.on('disconnect', () => (agentSocket = new Promise((r) => (resolveAgent = r))));
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    agent: () => agentSocket,
    async ask(event, payload, timeoutMs = 3000) {
      const s = await agentSocket;
      try {
        return await s.timeout(timeoutMs).emitWithAck(event, payload);
      } catch {
        return 'timeout';
      }
    },
    async close() {
      io.disconnectSockets(true);
      await new Promise<void>((r) => io.close(() => r()));
    },
  };
}
