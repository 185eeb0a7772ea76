/**
 * A relay that lies: a real Socket.IO server speaking the /host protocol, under the test's
 * control, so tests can forge, replay, swap, reorder and flood what reaches the agent.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type Socket } from 'socket.io';
import { DEVICE_NAMESPACE, HOST_NAMESPACE, fromB64url, keyId } from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';

export interface HostileRelay {
  url: string;
  /** The connected agent's socket, once it has connected. */
  agent(): Promise<Socket>;
  /** Send an event to the agent and return its ack (or 'timeout'). */
  ask(event: string, payload: unknown, timeoutMs?: number): Promise<unknown>;
  /** With several agents connected: the one with this hostId (from the key in its handshake). */
  agentOf(hostId: string): Promise<Socket>;
  /** `ask`, addressed to the agent with this hostId. */
  askHost(hostId: string, event: string, payload: unknown, timeoutMs?: number): Promise<unknown>;
  /** How many /host connections it has accepted so far (reconnects count). */
  readonly hostConnections: number;
  /** Drop every agent: a server-side disconnect, or with `transport` the connection just dies. */
  kick(how?: 'disconnect' | 'transport'): void;
  close(): Promise<void>;
}

export interface HostileRelayOptions {
  /** Serve /device too, with this handler for each phone (accepts any handshake). */
  onDevice?: (socket: Socket) => void;
  /**
   * Serve /device as the real relay routes it (each request to the host its hostId names), but
   * pass every answer from the host through this function before the phone gets it: a relay
   * that forwards faithfully and then rewrites what the host said. Ignored with `onDevice`.
   */
  rewriteAnswer?: (event: DeviceEvent, answer: unknown) => unknown;
  /** With `rewriteAnswer`: pass each phone message through this before the host gets it (strip, swap, bend). */
  rewriteRequest?: (event: DeviceEvent, msg: unknown) => unknown;
}

export type DeviceEvent = 'context' | 'decision' | 'enroll';

/** A `rewriteAnswer` that changes only the host's accepting enrollment answers (ok: true); every other answer passes as the host gave it. */
export function rewriteEnrollAcceptance(change: (answer: Record<string, unknown>) => unknown): (event: DeviceEvent, answer: unknown) => unknown {
  return (event, answer) => {
    if (event !== 'enroll' || typeof answer !== 'object' || answer === null || (answer as { ok?: unknown }).ok !== true) return answer;
    return change(answer as Record<string, unknown>);
  };
}

export async function startHostileRelay(opts: HostileRelayOptions = {}): Promise<HostileRelay> {
  const http = createServer();
  const io = new Server(http, { transports: ['websocket'] });
  let resolveAgent: (s: Socket) => void;
  let agentSocket: Promise<Socket> = new Promise((r) => (resolveAgent = r));
  const byHost = new Map<string, Socket>();
  const hostWaiters = new Map<string, Array<(s: Socket) => void>>();
  let hostConnections = 0;
  // It accepts any handshake: a hostile relay does not care who the host is.
  io.of(HOST_NAMESPACE).on('connection', (s) => {
    hostConnections++;
    resolveAgent(s);
    let hostId: string | undefined;
    try {
      hostId = keyId(nodeCrypto, fromB64url(String((s.handshake.auth as { pub?: unknown }).pub), 32));
    } catch {
      hostId = undefined;
    }
    if (hostId) {
      byHost.set(hostId, s);
      for (const w of hostWaiters.get(hostId)?.splice(0) ?? []) w(s);
    }
    s.on('disconnect', () => {
      if (hostId && byHost.get(hostId) === s) byHost.delete(hostId);
      agentSocket = new Promise((r) => (resolveAgent = r));
    });
  });
  const agentOf = (hostId: string): Promise<Socket> => {
    const s = byHost.get(hostId);
    if (s?.connected) return Promise.resolve(s);
    return new Promise((r) => hostWaiters.set(hostId, [...(hostWaiters.get(hostId) ?? []), r]));
  };
  const askHost = async (hostId: string, event: string, payload: unknown, timeoutMs = 3000): Promise<unknown> => {
    const s = await agentOf(hostId);
    try {
      return await s.timeout(timeoutMs).emitWithAck(event, payload);
    } catch {
      return 'timeout';
    }
  };
  if (opts.onDevice) io.of(DEVICE_NAMESPACE).on('connection', opts.onDevice);
  else if (opts.rewriteAnswer) {
    const rewrite = opts.rewriteAnswer;
    io.of(DEVICE_NAMESPACE).on('connection', (s) => {
      for (const event of ['context', 'decision', 'enroll'] as const) {
        s.on(event, (msg: { hostId?: unknown; sid?: unknown }, ack: (a: unknown) => void) => {
          if (typeof ack !== 'function') return;
          // The host is asked for a context by sid alone, as the real relay does.
          const forHost = event === 'context' ? { sid: msg?.sid } : (opts.rewriteRequest?.(event, msg) ?? msg);
          void askHost(String(msg?.hostId), event, forHost).then((answer) => ack(rewrite(event, answer)));
        });
      }
    });
  }
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
    agentOf,
    askHost,
    get hostConnections() {
      return hostConnections;
    },
    kick(how = 'disconnect') {
      for (const s of io.of(HOST_NAMESPACE).sockets.values()) {
        if (how === 'disconnect') s.disconnect(true);
        else s.conn.close(); // the engine.io connection goes away without a goodbye
      }
    },
    async close() {
      io.disconnectSockets(true);
      await new Promise<void>((r) => io.close(() => r()));
    },
  };
}
