/**
 * The control socket for the `qrauth` CLI: newline-delimited JSON, one request a line, bounded.
 * Any local user may connect: nothing here grants access. `enroll` opens a token and reports the
 * phone's request back; the CLI, running as the user (or root for --user), writes the devices
 * file itself after the user confirms the fingerprint. `status` and `last-used` only read.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { type Server, type Socket, createServer } from 'node:net';
import { dirname } from 'node:path';
import {
  ID_PATTERN,
  QrauthError,
  arrayOf,
  bool,
  formatEnrollPayload,
  isQrauthError,
  literal,
  object,
  parse,
  str,
} from '../../protocol/src/index.js';
import type { Enrollment, EnrollmentStore, EnrollRequest } from './enrollments.js';
import type { Logger } from './log.js';
import { USER_NAME_PATTERN } from './users.js';

export const CONTROL_MAX_LINE = 16 * 1024;
export const CONTROL_MAX_CONNECTIONS = 64;

export interface StatusReply {
  ok: true;
  version: string;
  hostId: string;
  hostname: string;
  relay: { url: string | null; state: 'up' | 'down' | 'none' };
  pendingLogins: number;
  openEnrollments: number;
  uptimeSeconds: number;
}

export interface ControlDeps {
  status(): StatusReply;
  enrollments: EnrollmentStore;
  hostPub: Uint8Array;
  hostname: string;
  relayUrl: string | null;
  lastUsed(deviceId: string): string | undefined;
  log: Logger;
}

const request = (v: unknown) => {
  const op = (v as { op?: unknown } | null)?.op;
  if (op === 'status') return parse(object({ op: literal('status') }), v, 'request');
  if (op === 'enroll') return parse(object({ op: literal('enroll'), user: str({ max: 256, min: 1, pattern: USER_NAME_PATTERN }) }), v, 'request');
  if (op === 'enroll-result') return parse(object({ op: literal('enroll-result'), accepted: bool() }), v, 'request');
  if (op === 'last-used') return parse(object({ op: literal('last-used'), deviceIds: arrayOf(str({ max: 22, min: 22, pattern: ID_PATTERN }), 200) }), v, 'request');
  throw new QrauthError('QRA_ERR_INVALID_INPUT', 'unknown request');
};

export class ControlServer {
  readonly server: Server;

  constructor(private readonly deps: ControlDeps) {
    this.server = createServer((s) => this.onConnection(s));
    this.server.maxConnections = CONTROL_MAX_CONNECTIONS;
  }

  async listen(path: string): Promise<void> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    try {
      if (lstatSync(path).isSocket()) unlinkSync(path);
    } catch {
      /* nothing there */
    }
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(path, () => resolve());
    });
    chmodSync(path, 0o666);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(sock: Socket): void {
    let buf = '';
    let enrollment: Enrollment | null = null;
    let request_: EnrollRequest | null = null;
    const send = (o: unknown) => {
      if (!sock.destroyed) sock.write(`${JSON.stringify(o)}\n`);
    };
    const fail = (e: unknown) => {
      send({ ok: false, code: isQrauthError(e) ? e.code : 'QRA_ERR_INTERNAL', message: isQrauthError(e) ? e.message : 'internal error' });
      sock.end();
    };
    sock.setTimeout(15 * 60_000, () => sock.destroy());
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > CONTROL_MAX_LINE) return fail(new QrauthError('QRA_ERR_INVALID_INPUT', 'request too long'));
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          handle(line);
        } catch (e) {
          return fail(e);
        }
      }
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      if (enrollment && !enrollment.used) enrollment.end('cancelled');
      else enrollment?.end('done');
    });

    const handle = (line: string) => {
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        throw new QrauthError('QRA_ERR_INVALID_INPUT', 'request is not JSON');
      }
      const req = request(json);
      const { deps } = this;
      switch (req.op) {
        case 'status':
          send(deps.status());
          return;
        case 'last-used':
          send({ ok: true, lastUsed: Object.fromEntries(req.deviceIds.map((id) => [id, deps.lastUsed(id) ?? null])) });
          return;
        case 'enroll': {
          if (enrollment) throw new QrauthError('QRA_ERR_INVALID_INPUT', 'one enrollment a connection');
          if (!deps.relayUrl) throw new QrauthError('QRA_ERR_CONFIG', 'no relay is configured (relayUrl in /etc/qrauth/agent.json); phones enroll through the relay');
          const e = deps.enrollments.start(req.user);
          enrollment = e;
          const payload = formatEnrollPayload({ hostPub: deps.hostPub, token: e.token, hostname: deps.hostname, relayUrl: deps.relayUrl });
          e.on('request', (r: EnrollRequest) => {
            request_ = r;
            send({ ok: true, event: 'request', ...r });
          });
          e.on('end', (why: string) => {
            if (!request_) {
              send({ ok: false, code: why === 'expired' ? 'QRA_ERR_EXPIRED' : 'QRA_ERR_ENROLL', message: why === 'expired' ? 'the enrollment code expired before a phone used it' : 'enrollment cancelled' });
              sock.end();
            }
          });
          send({ ok: true, event: 'open', payload, expiresIn: Math.round((e.expiresAt - Date.now()) / 1000), hostname: deps.hostname });
          return;
        }
        case 'enroll-result':
          if (!enrollment || !request_) throw new QrauthError('QRA_ERR_INVALID_INPUT', 'no enrollment request to confirm');
          deps.log('enroll', { user: enrollment.user, device: request_.deviceId, name: request_.deviceName, result: req.accepted ? 'accepted' : 'rejected' });
          send({ ok: true });
          enrollment.end('done');
          sock.end();
          return;
      }
    };
  }

}
