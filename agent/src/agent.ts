/**
 * The agent: host key, sessions, the PAM socket, the relay link, wired together.
 * `startAgent` is what `qrauth-agent` runs and what tests start in-process.
 */
import { Mode, QrauthError, type BeginMsg } from '../../protocol/src/index.js';
import type { AgentConfig } from './config.js';
import { type Device, devicesPath, readDevicesFile } from './devices-file.js';
import { type HostKey, loadOrCreateHostKey } from './host-key.js';
import { ChallengePool } from './challenge-pool.js';
import { CodeBudget } from './code-budget.js';
import { ControlServer, passwdFinder } from './control-server.js';
import { EnrollmentStore } from './enrollments.js';
import { LastUsed } from './last-used.js';
import { ReverseNames, SeenAddresses } from './login-source.js';
import { LeaseStore, PhoneLeaseRevokes } from './leases.js';
import { type Logger, stderrLogger } from './log.js';
import { PamServer } from './pam-server.js';
import { RelayLink } from './relay-link.js';
import { SessionStore } from './sessions.js';
import { detectSshdVersion, showsInfoAtOnce } from './sshd-version.js';
import { type UserInfo, lookupUserInPasswd } from './users.js';
import { PasskeyVerifier } from './webauthn.js';

export const VERSION = '0.1.0';

export interface AgentStartOptions {
  /** Inherited listening fd (systemd socket activation) instead of creating config.socket. */
  listenFd?: number;
  log?: Logger;
  /** Override the passwd file for user lookups (tests). */
  passwdPath?: string;
  /** Stalled-peer cut-off on the PAM socket (tests shorten it). */
  frameTimeoutMs?: number;
  /** Do not open the control socket (a second agent on the same host for tests). */
  noControl?: boolean;
  /** While on a fallback relay, how often to probe the preferred one (tests shorten it). @default 30000 */
  relayProbeMs?: number;
}

export interface Agent {
  config: AgentConfig;
  host: HostKey;
  sessions: SessionStore;
  pam: PamServer;
  relay: RelayLink | null;
  enrollments: EnrollmentStore;
  /** Wrong offline codes across sessions and restarts. */
  codeBudget: CodeBudget;
  control: ControlServer | null;
  lastUsed: LastUsed;
  /** Leases granted by phones (leases.ts); used only with maxLeaseSeconds > 0. */
  leases: LeaseStore;
  /** Whether sshd on this host shows info messages at once (decides mode=auto). */
  sshdInfoAtOnce: boolean;
  /** One line for systemd's STATUS= (`systemctl status`): relay link state and pending logins. */
  statusLine(): string;
  close(): Promise<void>;
}

/** sshd's PAM service is "sshd"; tests and multi-instance setups use "sshd-<name>". */
export function isSshdService(service: string): boolean {
  return service === 'sshd' || /^sshd[-_]/.test(service);
}

export async function startAgent(config: AgentConfig, opts: AgentStartOptions = {}): Promise<Agent> {
  const log = opts.log ?? stderrLogger();
  const host = loadOrCreateHostKey(config.stateDir);
  const codeBudget = new CodeBudget(
    config.stateDir,
    {
      failureLimit: config.codeFailureLimit,
      failureWindowSeconds: config.codeFailureWindowSeconds,
      dailyLimit: config.codeFailureDailyLimit,
      lockSeconds: config.codeLockSeconds,
      lockMaxSeconds: config.codeLockMaxSeconds,
      checksPerSecond: config.codeChecksPerSecond,
    },
    log,
  );
  const passkeys = new PasskeyVerifier(config.stateDir, log);
  const seenAddresses = new SeenAddresses(config.stateDir);
  const reverseNames = config.reverseDns ? new ReverseNames() : undefined;
  const sessions = new SessionStore(
    host,
    config.hostname,
    config.expirySeconds,
    codeBudget,
    { verifier: passkeys, userVerification: config.userVerification, offlineCodes: config.offlineCodes },
    { seen: seenAddresses, ...(reverseNames ? { names: reverseNames } : {}) },
  );
  const challenges = new ChallengePool(host.hostId);
  let sshdInfoAtOnce = config.sshdInfoMessages === 'yes';
  if (config.sshdInfoMessages === 'auto') sshdInfoAtOnce = showsInfoAtOnce(await detectSshdVersion(config.sshdPath));

  const enrollments = new EnrollmentStore(host, config.hostname, config.enrollSeconds, log, config.relayUrl, config.relayUrls.slice(1));
  const lastUsed = new LastUsed(config.stateDir);
  const leases = new LeaseStore(config.stateDir, log);
  const findUser = passwdFinder(opts.passwdPath);
  /** A user's devices by the agent's own devices-file rules (config.authfile), as `qrauth devices` reads them. */
  const enrolledDevices = (user: UserInfo): Device[] => readDevicesFile(devicesPath(config.authfile, user), user).devices;
  const phoneRevokes = new PhoneLeaseRevokes({
    leases,
    hostId: host.hostId,
    devicePub: async (name, deviceId) => {
      const user = await findUser(name);
      if (!user) return undefined;
      try {
        return enrolledDevices(user).find((d) => d.deviceId === deviceId)?.publicKey;
      } catch {
        return undefined; // unreadable or unsafe file: no key to check the request with, nothing ends
      }
    },
    sign: host.sign,
    log,
  });
  const relay =
    config.relayUrls.length > 0
      ? new RelayLink({
          urls: config.relayUrls,
          host,
          sessions,
          log,
          onEnroll: async (msg) => enrollments.handle(msg),
          onRevokeLeases: (msg) => phoneRevokes.handle(msg),
          ...(opts.relayProbeMs ? { preferredProbeMs: opts.relayProbeMs } : {}),
        })
      : null;
  const startedAt = Date.now();

  const devicesFor = (begin: BeginMsg): (() => Device[]) => {
    // The module sends uid and home from getpwnam(3) (NSS users work); older callers fall back to /etc/passwd.
    const user =
      begin.uid !== undefined && begin.home !== undefined && begin.home.startsWith('/')
        ? { name: begin.user, uid: begin.uid, home: begin.home }
        : lookupUserInPasswd(begin.user, opts.passwdPath);
    // An unknown user looks exactly like one with no phone: the answer must not tell them apart.
    if (!user) return () => [];
    const path = devicesPath(begin.authfile ?? config.authfile, user);
    return () => {
      const f = readDevicesFile(path, user);
      for (const p of f.problems) log('devices_file_problem', { user: user.name, problem: p });
      // A file that is there but has no usable line is broken, not empty: "no device" would let
      // nouserok skip qrauth for this user (issue #10.6a). Only comments and blank lines is empty.
      if (f.devices.length === 0 && f.problems.length > 0) {
        throw new QrauthError('QRA_ERR_DEVICES_FILE', `no usable device line in ${path} (the lines skipped are logged as devices_file_problem); fix or remove it`);
      }
      return f.devices;
    };
  };

  const pam = new PamServer({
    sessions,
    hostId: host.hostId,
    log,
    devicesFor,
    relayUp: () => relay?.up ?? false,
    onRelayChange: (cb) => {
      if (!relay) return () => {};
      relay.on('change', cb);
      return () => relay.off('change', cb);
    },
    effectiveMode: (begin) => {
      const sshd = isSshdService(begin.service);
      if (begin.mode === Mode.PROMPT) return Mode.PROMPT;
      // sshd before 10.3 would hold info messages back until the login ends: the QR would never show.
      if (begin.mode === Mode.INFO) return sshd && !sshdInfoAtOnce ? Mode.PROMPT : Mode.INFO;
      // auto: info for sudo, login and the like. For sshd, prompt even on OpenSSH >= 10.3: its info
      // messages escape every non-ASCII byte and are cut at about 1 KiB, so only a tall ASCII QR
      // (41 lines) survives there, which does not fit a 24-line terminal. See docs/design-notes.md.
      return sshd ? Mode.PROMPT : Mode.INFO;
    },
    asciiOnlyInfo: (begin) => isSshdService(begin.service),
    challenges,
    onApproved: (deviceId) => lastUsed.record(deviceId),
    leases,
    maxLeaseSeconds: config.maxLeaseSeconds,
    hostname: config.hostname,
    maxConnections: config.maxConnections,
    maxConnectionsPerCaller: config.maxConnectionsPerCaller,
    ...(opts.frameTimeoutMs ? { frameTimeoutMs: opts.frameTimeoutMs } : {}),
  });
  await pam.listen(opts.listenFd !== undefined ? { fd: opts.listenFd } : { path: config.socket });
  const control = opts.noControl
    ? null
    : new ControlServer({
        status: () => ({
          ok: true,
          version: VERSION,
          hostId: host.hostId,
          hostname: config.hostname,
          relay: {
            url: relay?.url ?? config.relayUrl,
            state: relay ? (relay.up ? 'up' : 'down') : 'none',
            ...(config.relayUrls.length > 1 ? { preferredUrl: config.relayUrls[0] } : {}),
            ...(relay && relay.unboundRelays.length > 0 ? { unboundRelays: relay.unboundRelays } : {}),
          },
          pendingLogins: sessions.size,
          openEnrollments: enrollments.size,
          uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
        }),
        enrollments,
        hostPub: host.publicKey,
        hostname: config.hostname,
        // The enrollment QR names the relay the link is on now: the one phones can reach.
        get relayUrl() {
          return relay?.url ?? config.relayUrl;
        },
        lastUsed: (id) => lastUsed.get(id),
        deviceIdsOf: (user) => enrolledDevices(user).map((d) => d.deviceId),
        codeLocks: () => codeBudget.locked(),
        codeStateDamaged: () => codeBudget.damaged,
        unlockCodes: (user) => codeBudget.unlock(user),
        unlockAllCodes: () => codeBudget.unlockAll(),
        findUser,
        leases,
        log,
      });
  try {
    await control?.listen(config.controlSocket);
  } catch (e) {
    challenges.close();
    await pam.close();
    throw e;
  }
  relay?.start();
  log('started', { version: VERSION, hostId: host.hostId, socket: opts.listenFd !== undefined ? `fd:${opts.listenFd}` : config.socket, relay: config.relayUrl ?? 'none' });

  return {
    config,
    host,
    sessions,
    pam,
    relay,
    enrollments,
    codeBudget,
    control,
    lastUsed,
    leases,
    sshdInfoAtOnce,
    statusLine() {
      const n = sessions.size;
      const link = relay ? `relay ${relay.up ? 'up' : 'down'}` : 'no relay (offline codes only)';
      return `${link}; ${n} pending login${n === 1 ? '' : 's'}`;
    },
    async close() {
      // First: no new login is accepted by an agent that is going away (pam-server.ts).
      pam.stopAccepting();
      challenges.close();
      sessions.closeAll();
      enrollments.closeAll();
      await Promise.all([lastUsed.flush(), seenAddresses.flush()]);
      reverseNames?.cancel();
      // The sign counters seen so far must be on disk, or a restart would let a replayed counter pass.
      await passkeys.counters.flush();
      await relay?.close();
      await control?.close();
      await pam.close();
    },
  };
}
