/**
 * The control socket for the `qrauth` CLI: newline-delimited JSON, one request a line, bounded.
 *
 * Who calls. Node has no SO_PEERCRED, and the npm wrappers for it are unmaintained native code
 * (`peercred` on nan; `unix-socket-credentials` on ffi, which does not build on Node 20); an
 * N-API addon of our own would need a C toolchain wherever the agent is installed. So the caller
 * proves its uid with the filesystem (file-owner proof):
 *
 *   1. on connect the agent sends a random `name` (128 bits) and `token` (256 bits);
 *   2. the client creates <dir>/<name> with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0644, writes the
 *      token, and sends {"op":"proved"};
 *   3. the agent opens it O_NOFOLLOW|O_NONBLOCK, fstat: a regular file, one link, not group- or
 *      world-writable, small; reads it, compares the token in constant time, takes st_uid as the
 *      caller's uid, and unlinks it.
 *
 * <dir> (`cred` next to the socket) is the agent's, mode 1733: anyone may create, nobody but the
 * agent may list it (the names stay secret), and the sticky bit stops anyone from removing or
 * replacing another's entry. A new file's owner is its creator's fsuid, which only root can
 * choose. A hard link of someone else's file has two links; a symlink fails O_NOFOLLOW; a file of
 * someone else's moved in (rename) could hold the token only if this caller could write it, and
 * such a file (group/world-writable) is refused; a FIFO or device is not a regular file. The proof
 * is as strong as "can create a file with chosen name and content as uid X", which is already
 * everything for X. Unproven connections get nothing and are cut after PROOF_TIMEOUT_MS.
 *
 * Who may do what: status for anyone (pending counts and every user's code lock only for root, a
 * user sees their own lock); enroll and last-used for the caller's own user unless root;
 * unlock-codes for root. Each uid holds at most CONTROL_MAX_PER_UID connections and a few open
 * enrollments (enrollments.ts). root also has its own socket, root/<socket name> in a 0700
 * directory only root (and the agent) can enter, so no flood on the shared socket can keep root's
 * `qrauth status` out.
 *
 * Memory. A connection is read only while it has no request in hand and its replies are being
 * taken: one request is handled at a time, and while more than the socket's high-water mark (16
 * KiB) of replies sits unsent the socket is paused (the kernel then stops the client's writes) and
 * resumed on 'drain'. Before this, a client that sent status requests paced under the per-read
 * limit and never read a reply grew the agent by ~170 bytes a request without end (security
 * review: 8 such connections ran a 192 MB heap out of memory in ~10 s, dropping every pending
 * login). So a connection costs at most about CONTROL_MAX_LINE of request, the socket's read
 * buffer, and the high-water mark plus one reply; CONTROL_MAX_UNSENT cuts one that gets far past
 * that anyway. With CONTROL_MAX_CONNECTIONS (+ 64 on root's socket) that bounds the whole.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { execFile } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  unlinkSync,
} from 'node:fs';
import { type Server, type Socket, createServer } from 'node:net';
import { basename, dirname, join } from 'node:path';
import {
  ID_PATTERN,
  QrauthError,
  arrayOf,
  bool,
  formatEnrollPayload,
  isQrauthError,
  literal,
  object,
  optional,
  parse,
  str,
} from '../../protocol/src/index.js';
import type { CodeLock } from './code-budget.js';
import type { DevicesReader } from './devices-file.js';
import type { Enrollment, EnrollmentStore, EnrollRequest } from './enrollments.js';
import type { Logger } from './log.js';
import type { LeaseStore } from './leases.js';
import { type PasswdUser, USER_NAME_PATTERN } from './users.js';

export const CONTROL_MAX_LINE = 16 * 1024;
/** Sockets at once on the shared socket, proven or not (a file-descriptor bound). */
export const CONTROL_MAX_CONNECTIONS = 512;
/** Connections still proving who they are; more are closed at once. */
export const CONTROL_MAX_UNPROVEN = 64;
/** Proven connections one non-root uid may hold. */
export const CONTROL_MAX_PER_UID = 8;
/**
 * Unsent output past which a connection is cut. Reading stops at the socket's high-water mark
 * (16 KiB), so only one very large reply (a long lease list) or enrollment events to a client that
 * reads nothing get near this.
 */
export const CONTROL_MAX_UNSENT = 1024 * 1024;
/** A client proves who it is within this, or is cut off. */
export const PROOF_TIMEOUT_MS = 3000;
const PROOF_NAME = /^[0-9a-f]{32}$/;

/** The proof directory of a control socket. */
export function credDirFor(socketPath: string): string {
  return join(dirname(socketPath), 'cred');
}

/** root's own socket next to the shared one, in a 0700 directory. */
export function rootSocketFor(socketPath: string): string {
  return join(dirname(socketPath), 'root', basename(socketPath));
}

export interface StatusReply {
  ok: true;
  version: string;
  hostId: string;
  hostname: string;
  /** url: the relay the link is on (or trying); preferredUrl: the first of several configured. */
  relay: {
    url: string | null;
    state: 'up' | 'down' | 'none';
    preferredUrl?: string;
    /** Configured relays whose /healthz says they do not check which relay a handshake is for (no --public-url). */
    unboundRelays?: string[];
  };
  /** root only */
  pendingLogins?: number;
  /** root only */
  openEnrollments?: number;
  uptimeSeconds: number;
  /** Users whose offline codes are locked: all for root, the caller's own otherwise. */
  codeLocks: CodeLock[];
  /** root only: why offline codes are off for everyone (damaged state file), or null. */
  codeStateDamaged?: string | null;
}

export interface ControlDeps {
  status(): Omit<StatusReply, 'codeLocks' | 'codeStateDamaged'> & { pendingLogins: number; openEnrollments: number };
  enrollments: EnrollmentStore;
  hostPub: Uint8Array;
  hostname: string;
  relayUrl: string | null;
  lastUsed(deviceId: string): string | undefined;
  /**
   * The device ids in a user's devices file (throws on an unsafe file). The user object is passed
   * on to readDevicesFile: with `onlyAs`, only what that uid could read itself is read.
   */
  deviceIdsOf(user: DevicesReader): string[];
  codeLocks(): CodeLock[];
  codeStateDamaged(): string | null;
  unlockCodes(user: string): boolean;
  unlockAllCodes(): void;
  /** A user by name or uid (passwd file, then NSS through getent). */
  findUser?(key: string | number): Promise<PasswdUser | null>;
  /** Leases (leases.ts), for `qrauth leases`. */
  leases?: LeaseStore;
  log: Logger;
}

const userName = str({ max: 256, min: 1, pattern: USER_NAME_PATTERN });
const request = (v: unknown) => {
  const op = (v as { op?: unknown } | null)?.op;
  if (op === 'status') return parse(object({ op: literal('status') }), v, 'request');
  if (op === 'enroll') return parse(object({ op: literal('enroll'), user: userName }), v, 'request');
  if (op === 'enroll-result') return parse(object({ op: literal('enroll-result'), accepted: bool() }), v, 'request');
  if (op === 'last-used') {
    return parse(object({ op: literal('last-used'), user: optional(userName), deviceIds: arrayOf(str({ max: 22, min: 22, pattern: ID_PATTERN }), 200) }), v, 'request');
  }
  if (op === 'unlock-codes') return parse(object({ op: literal('unlock-codes'), user: optional(userName), all: optional(bool()) }), v, 'request');
  if (op === 'leases') return parse(object({ op: literal('leases'), user: optional(userName) }), v, 'request');
  if (op === 'leases-revoke') {
    return parse(
      object({
        op: literal('leases-revoke'),
        user: optional(userName),
        id: optional(str({ max: 22, min: 8, pattern: /^[A-Za-z0-9_-]+$/ })),
        // `qrauth revoke` ends the revoked phone's leases with it.
        deviceId: optional(str({ max: 22, min: 22, pattern: ID_PATTERN })),
      }),
      v,
      'request',
    );
  }
  throw new QrauthError('QRA_ERR_INVALID_INPUT', 'unknown request');
};

function parsePasswdLine(line: string): PasswdUser | null {
  const f = line.trim().split(':');
  if (f.length < 7) return null;
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  if (!Number.isSafeInteger(uid) || uid < 0 || !Number.isSafeInteger(gid)) return null;
  return { name: f[0]!, uid, gid: gid >= 0 ? gid : null, home: f[5]! };
}

/** /etc/passwd first, then NSS (getent) so LDAP/sssd users work; async: the PAM path shares this loop. */
export function passwdFinder(passwdPath = '/etc/passwd'): (key: string | number) => Promise<PasswdUser | null> {
  return async (key) => {
    if (typeof key === 'string' && !USER_NAME_PATTERN.test(key)) return null;
    try {
      for (const line of readFileSync(passwdPath, 'utf8').split('\n')) {
        const u = parsePasswdLine(line);
        if (u && (typeof key === 'number' ? u.uid === key : u.name === key)) return u;
      }
    } catch {
      /* no passwd file: NSS only */
    }
    return new Promise((resolve) => {
      execFile('getent', ['passwd', String(key)], { timeout: 5000, encoding: 'utf8' }, (err, stdout) => {
        const u = err ? null : parsePasswdLine(stdout.split('\n')[0] ?? '');
        resolve(u && (typeof key === 'number' ? u.uid === key : u.name === key) ? u : null);
      });
    });
  };
}

/** Make (or check) a directory of ours with exactly `mode`; refuse one someone else made. */
function ownDir(path: string, mode: number): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  try {
    mkdirSync(path, { mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = lstatSync(path);
  const euid = process.geteuid?.() ?? 0;
  if (!st.isDirectory() || st.uid !== euid) {
    throw new QrauthError('QRA_ERR_CONFIG', `${path} is not a directory of the agent's user (uid ${euid}); remove it and start the agent again`);
  }
  // mkdir's mode passes through the umask (0077 under systemd): set it exactly.
  chmodSync(path, mode);
}

/**
 * Check a client's proof file. Returns the uid that made it; throws QRA_ERR_UNAUTHENTICATED.
 * The file is removed whatever the outcome (the directory is ours: the sticky bit lets us).
 */
export function verifyProof(dir: string, name: string, token: Buffer): number {
  const path = join(dir, name);
  const refuse = (why: string): never => {
    throw new QrauthError('QRA_ERR_UNAUTHENTICATED', `the proof of who you are was refused (${why}); use the qrauth command`);
  };
  const remove = () => {
    try {
      unlinkSync(path);
    } catch {
      /* not there */
    }
  };
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    remove();
    const code = (e as NodeJS.ErrnoException).code;
    return refuse(code === 'ELOOP' ? 'a symlink' : code === 'ENOENT' ? 'no proof file' : `cannot open it: ${code}`);
  }
  try {
    // fstat before the unlink: its link count is the one to judge.
    const st = fstatSync(fd);
    remove();
    if (!st.isFile()) refuse('not a regular file');
    if (st.nlink !== 1) refuse('a file with other links');
    if ((st.mode & 0o022) !== 0) refuse('a file others can write');
    if (st.size > 256) refuse('too large');
    const buf = Buffer.alloc(256);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const got = buf.subarray(0, n);
    if (got.length !== token.length || !timingSafeEqual(got, token)) refuse('wrong token');
    return st.uid;
  } finally {
    closeSync(fd);
  }
}

export class ControlServer {
  readonly server: Server;
  /** root's own socket (see above). */
  readonly rootServer: Server;
  private credDir = '';
  private unproven = 0;
  private readonly perUid = new Map<number, number>();
  private readonly findUser: (key: string | number) => Promise<PasswdUser | null>;

  constructor(private readonly deps: ControlDeps) {
    this.server = createServer((s) => this.onConnection(s, false));
    this.server.maxConnections = CONTROL_MAX_CONNECTIONS;
    this.rootServer = createServer((s) => this.onConnection(s, true));
    this.rootServer.maxConnections = 64;
    this.findUser = deps.findUser ?? passwdFinder();
  }

  async listen(path: string): Promise<void> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    this.credDir = credDirFor(path);
    ownDir(this.credDir, 0o1733);
    // Proof files left by clients of an earlier run.
    for (const f of readdirSync(this.credDir)) {
      try {
        unlinkSync(join(this.credDir, f));
      } catch {
        /* gone */
      }
    }
    const rootPath = rootSocketFor(path);
    ownDir(dirname(rootPath), 0o700);
    for (const [server, p, mode] of [
      [this.server, path, 0o666],
      [this.rootServer, rootPath, 0o600],
    ] as const) {
      try {
        if (lstatSync(p).isSocket()) unlinkSync(p);
      } catch {
        /* nothing there */
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(p, () => {
          server.off('error', reject);
          resolve();
        });
      });
      chmodSync(p, mode);
    }
  }

  close(): Promise<void> {
    const closeOne = (s: Server) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()));
    return Promise.all([closeOne(this.server), closeOne(this.rootServer)]).then(() => undefined);
  }

  /**
   * A non-root caller's devices file is read only as far as they could read it themselves
   * (devices-file.ts, ReadLimit), and what is wrong with it goes to the log, not to them: the
   * details (exists, regular file, group-writable, over 64 KiB) would describe files they may not
   * see (security review: `last-used` through a linked ~/.config/qrauth). root's as before.
   */
  private deviceIdsFor(owner: PasswdUser, isRoot: boolean): string[] {
    if (isRoot) return this.deps.deviceIdsOf(owner);
    const onlyAs = { uid: owner.uid, gid: owner.gid };
    try {
      return this.deps.deviceIdsOf({ ...owner, onlyAs });
    } catch (e) {
      this.deps.log('devices_file_refused', { user: owner.name, uid: owner.uid, op: 'last-used', cause: (e as Error)?.message ?? String(e) });
      throw new QrauthError('QRA_ERR_DEVICES_FILE', 'your devices file could not be read; check it with `qrauth devices`, or ask the administrator (see the system log)');
    }
  }

  private onConnection(sock: Socket, rootOnly: boolean): void {
    let buf = '';
    let enrollment: Enrollment | null = null;
    let request_: EnrollRequest | null = null;
    let caller: number | null = null;
    let closed = false;
    const lines: string[] = [];
    let busy = false;
    const name = randomBytes(16).toString('hex');
    const token = randomBytes(32).toString('base64url');
    let failed = false;
    let waitingForDrain = false;
    const send = (o: unknown) => {
      if (sock.destroyed) return;
      sock.write(`${JSON.stringify(o)}\n`);
      if (sock.writableLength > CONTROL_MAX_UNSENT) {
        this.deps.log('control_dropped', { uid: caller ?? undefined, cause: 'replies not read', unsent: sock.writableLength });
        sock.destroy();
        return;
      }
      if (sock.writableNeedDrain) readWhenFree();
    };
    /**
     * Read only with no request in hand and no backlog of replies (see "Memory" above). Paused, a
     * socket stops reading from the kernel once its read buffer is full, and the client's writes
     * wait in its own kernel buffer, not here.
     */
    const readWhenFree = () => {
      if (closed || sock.destroyed) return;
      if (sock.writableNeedDrain) {
        sock.pause();
        if (!waitingForDrain) {
          waitingForDrain = true;
          sock.once('drain', guard('drain', () => {
            waitingForDrain = false;
            readWhenFree();
            pump().catch((e: unknown) => contain('pump', e));
          }));
        }
      } else if (busy || lines.length > 0) sock.pause();
      else sock.resume();
    };
    // Every event handler of this connection runs through here: whatever one request, proof
    // file or enrollment event does, it can end this connection, never the agent.
    const contain = (where: string, e: unknown): void => {
      this.deps.log('internal_error', { where: 'control', handler: where, uid: caller ?? undefined, cause: (e as Error)?.message ?? String(e) });
      sock.destroy();
    };
    const guard =
      <A extends unknown[]>(where: string, fn: (...a: A) => void) =>
      (...a: A): void => {
        try {
          fn(...a);
        } catch (e) {
          contain(where, e);
        }
      };
    const fail = (e: unknown) => {
      // Nothing more is handled on this connection (what comes is read and dropped until the
      // peer closes or the timer below): one error reply, then the end.
      failed = true;
      lines.length = 0;
      buf = '';
      send({ ok: false, code: isQrauthError(e) ? e.code : 'QRA_ERR_INTERNAL', message: isQrauthError(e) ? e.message : 'internal error' });
      sock.end();
      // end() waits for the peer; a peer that keeps sending is not waited for.
      setTimeout(() => sock.destroy(), 1000).unref();
    };

    if (!rootOnly && this.unproven >= CONTROL_MAX_UNPROVEN) {
      sock.destroy();
      return;
    }
    this.unproven++;
    let counted: 'unproven' | 'proven' | null = 'unproven';
    const uncount = () => {
      if (counted === 'unproven') this.unproven--;
      if (counted === 'proven' && caller !== null) {
        const n = (this.perUid.get(caller) ?? 1) - 1;
        if (n <= 0) this.perUid.delete(caller);
        else this.perUid.set(caller, n);
      }
      counted = null;
    };
    const proofTimer = setTimeout(() => fail(new QrauthError('QRA_ERR_UNAUTHENTICATED', 'no proof of who you are in time; use the qrauth command')), PROOF_TIMEOUT_MS);
    proofTimer.unref();

    sock.setTimeout(15 * 60_000, () => sock.destroy());
    sock.setEncoding('utf8');
    send({ ok: true, event: 'prove', name, token });

    // One request at a time, and none while earlier replies wait unread ('drain' starts it again).
    const pump = async () => {
      if (busy) return;
      busy = true;
      try {
        while (lines.length > 0 && !closed && !sock.destroyed && !failed && !sock.writableNeedDrain) {
          const line = lines.shift()!;
          try {
            await handle(line);
          } catch (e) {
            fail(e);
          }
        }
      } finally {
        busy = false;
        readWhenFree();
      }
    };
    sock.on('data', guard('data', (chunk: string) => {
      if (failed) return;
      buf += chunk;
      if (buf.length > CONTROL_MAX_LINE) return fail(new QrauthError('QRA_ERR_INVALID_INPUT', 'request too long'));
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (lines.length > 16) return fail(new QrauthError('QRA_ERR_INVALID_INPUT', 'too many requests at once'));
      }
      readWhenFree();
      pump().catch((e: unknown) => contain('pump', e));
    }));
    sock.on('error', () => sock.destroy());
    sock.on('close', guard('close', () => {
      closed = true;
      clearTimeout(proofTimer);
      uncount();
      if (caller === null) {
        // A client that never said "proved" may have left its file.
        try {
          unlinkSync(join(this.credDir, name));
        } catch {
          /* none */
        }
      }
      if (enrollment && !enrollment.used) enrollment.end('cancelled');
      else enrollment?.end('done');
    }));

    const prove = (json: unknown) => {
      if ((json as { op?: unknown } | null)?.op !== 'proved') {
        throw new QrauthError('QRA_ERR_UNAUTHENTICATED', 'prove who you are first (see the "prove" message); use the qrauth command');
      }
      parse(object({ op: literal('proved') }), json, 'request');
      if (!PROOF_NAME.test(name)) throw new QrauthError('QRA_ERR_INTERNAL', 'bad proof name');
      const uid = verifyProof(this.credDir, name, Buffer.from(token));
      clearTimeout(proofTimer);
      if (rootOnly && uid !== 0) throw new QrauthError('QRA_ERR_FORBIDDEN', 'this socket is for root; use the shared control socket');
      const held = this.perUid.get(uid) ?? 0;
      if (uid !== 0 && held >= CONTROL_MAX_PER_UID) {
        this.deps.log('control_refused', { uid, cause: 'too many connections for this uid' });
        throw new QrauthError('QRA_ERR_RATE_LIMITED', `you already hold ${held} connections to the qrauth agent; close some and try again`);
      }
      this.unproven--;
      counted = 'proven';
      caller = uid;
      this.perUid.set(uid, held + 1);
      send({ ok: true, event: 'caller', uid });
    };

    /** A non-root caller may act only for a user name that is theirs. */
    const mustBeCallerOrRoot = async (user: string, what: string): Promise<PasswdUser | null> => {
      const u = await this.findUser(user);
      if (caller === 0) return u;
      if (!u || u.uid !== caller) {
        this.deps.log('control_refused', { uid: caller ?? undefined, op: what, user, cause: 'not the caller' });
        throw new QrauthError('QRA_ERR_FORBIDDEN', `you can ${what} only for your own user; root can use --user (sudo qrauth … --user ${user})`);
      }
      return u;
    };

    const handle = async (line: string) => {
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        throw new QrauthError('QRA_ERR_INVALID_INPUT', 'request is not JSON');
      }
      if (caller === null) return prove(json);
      const req = request(json);
      const { deps } = this;
      const isRoot = caller === 0;
      switch (req.op) {
        case 'status': {
          const s = deps.status();
          const locks = deps.codeLocks();
          let mine: CodeLock[] = locks;
          if (!isRoot) {
            mine = [];
            for (const l of locks) if ((await this.findUser(l.user))?.uid === caller) mine.push(l);
          }
          const { pendingLogins, openEnrollments, ...open } = s;
          send(isRoot ? { ...s, codeLocks: mine, codeStateDamaged: deps.codeStateDamaged() } : { ...open, codeLocks: mine });
          void pendingLogins;
          void openEnrollments;
          return;
        }
        case 'last-used': {
          let owner: PasswdUser | null;
          if (req.user !== undefined) owner = await mustBeCallerOrRoot(req.user, 'read last-used times');
          else owner = isRoot ? null : await this.findUser(caller);
          if (!isRoot && !owner) throw new QrauthError('QRA_ERR_FORBIDDEN', `uid ${caller} has no user entry; nothing to show`);
          // Only the ids in that user's own devices file: ids are public, their use is not.
          const own = owner ? new Set(this.deviceIdsFor(owner, isRoot)) : null;
          send({ ok: true, lastUsed: Object.fromEntries(req.deviceIds.map((id) => [id, own && !own.has(id) ? null : (deps.lastUsed(id) ?? null)])) });
          return;
        }
        case 'leases':
        case 'leases-revoke': {
          // Root sees and ends anyone's; a user only their own (by the caller's uid, not a claim).
          let user: string | undefined = req.user;
          if (user !== undefined) await mustBeCallerOrRoot(user, 'manage leases');
          else if (!isRoot) {
            const me = await this.findUser(caller);
            if (!me) throw new QrauthError('QRA_ERR_FORBIDDEN', `uid ${caller} has no user entry; nothing to show`);
            user = me.name;
          }
          const store = deps.leases;
          if (req.op === 'leases') {
            send({ ok: true, leases: store ? store.list(user) : [] });
            return;
          }
          const id = req.id;
          const deviceId = req.op === 'leases-revoke' ? req.deviceId : undefined;
          const n = store
            ? store.revoke(
                (l) => (user === undefined || l.user === user) && (id === undefined || l.id === id || l.id.startsWith(id)) && (deviceId === undefined || l.deviceId === deviceId),
              )
            : 0;
          deps.log('leases_revoked', { user: user ?? '*', id: id?.slice(0, 8), device: deviceId, by: caller, count: n });
          send({ ok: true, revoked: n });
          return;
        }
        case 'unlock-codes': {
          if (!isRoot) throw new QrauthError('QRA_ERR_FORBIDDEN', 'only root can unlock offline codes (sudo qrauth unlock-codes --user NAME)');
          if (req.all === true) {
            deps.unlockAllCodes();
            deps.log('codes_unlocked', { user: '*', by: caller });
            send({ ok: true, unlocked: true });
            return;
          }
          if (req.user === undefined) throw new QrauthError('QRA_ERR_INVALID_INPUT', 'say which user (--user NAME) or --all');
          const had = deps.unlockCodes(req.user);
          deps.log('codes_unlocked', { user: req.user, by: caller, had: had ? 'yes' : 'no' });
          send({ ok: true, unlocked: had });
          return;
        }
        case 'enroll': {
          if (enrollment) throw new QrauthError('QRA_ERR_INVALID_INPUT', 'one enrollment a connection');
          if (!deps.relayUrl) throw new QrauthError('QRA_ERR_CONFIG', 'no relay is configured (relayUrl in /etc/qrauth/agent.json); phones enroll through the relay');
          await mustBeCallerOrRoot(req.user, 'enroll phones');
          if (closed) return;
          const e = deps.enrollments.start(req.user, caller);
          enrollment = e;
          const payload = formatEnrollPayload({ hostPub: deps.hostPub, token: e.token, hostname: deps.hostname, relayUrl: deps.relayUrl });
          e.on('request', guard('enroll-request', (r: EnrollRequest) => {
            request_ = r;
            send({ ok: true, event: 'request', ...r });
          }));
          e.on('end', guard('enroll-end', (why: string) => {
            if (!request_) {
              send({ ok: false, code: why === 'expired' ? 'QRA_ERR_EXPIRED' : 'QRA_ERR_ENROLL', message: why === 'expired' ? 'the enrollment code expired before a phone used it' : 'enrollment cancelled' });
              sock.end();
            }
          }));
          send({ ok: true, event: 'open', payload, expiresIn: Math.round((e.expiresAt - Date.now()) / 1000), hostname: deps.hostname });
          return;
        }
        case 'enroll-result':
          if (!enrollment || !request_) throw new QrauthError('QRA_ERR_INVALID_INPUT', 'no enrollment request to confirm');
          deps.log('enroll', { user: enrollment.user, by: caller, device: request_.deviceId, name: request_.deviceName, result: req.accepted ? 'accepted' : 'rejected' });
          send({ ok: true });
          enrollment.settle(req.accepted);
          sock.end();
          return;
      }
    };
  }
}
