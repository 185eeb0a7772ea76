/**
 * The whole product on one machine for end-to-end tests: relay + agent (in-process, real
 * sockets) + a real sshd using pam_qrauth.so + a headless phone trusted by the host.
 */
import { join } from 'node:path';
import { once } from 'node:events';
import { toB64url } from '../../protocol/src/index.js';
import { startRelay, type Relay, type RelayOptions } from '../../relay/src/server.js';
import { startTestAgent, type AgentFixture } from './fixtures.js';
import { enrollPhone } from './enroll.js';
import { HeadlessPhone } from './phone.js';
import { nextMarker, runInPty, type PtyRun } from './pty.js';
import { freePort, sshArgs, startSshd, type Sshd } from './sshd.js';
import { MODULE_PATH, ensureUser, installPamService, randomName, tempDir } from './system.js';
import type { AgentConfig } from '../../agent/src/config.js';

export interface Stack {
  relay: Relay | null;
  agent: AgentFixture;
  sshd: Sshd;
  phone: HeadlessPhone;
  service: string;
  dir: string;
  /** Another phone, enrolled for `user` through the real flow when given. */
  newPhone(name: string, user?: string): Promise<HeadlessPhone>;
  close(): Promise<void>;
}

export const ALICE = 'qrtest-alice';
export const BOB = 'qrtest-bob';
/** Never has a device: for the no-device cases while other tests enroll bob. */
export const CAROL = 'qrtest-carol';

/**
 * A relay told its own URL (publicUrls), on a free port. The port is free when asked for and
 * could be taken before the relay binds it (tests run in parallel): then another is tried.
 */
export async function startBoundRelay(options: RelayOptions = {}): Promise<Relay> {
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    try {
      return await startRelay({ log: () => {}, port, publicUrls: [`http://127.0.0.1:${port}`], ...options });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || options.port !== undefined || attempt >= 5) throw e;
    }
  }
}

export async function startStack(opts: {
  moduleArgs?: string[];
  agent?: Partial<AgentConfig>;
  withRelay?: boolean;
  relayUrl?: string;
  sshdPath?: string;
  /** Extra relay options, e.g. `appOrigins` to let the app's origin in (test/app.test.ts). */
  relayOptions?: RelayOptions;
} = {}): Promise<Stack> {
  ensureUser(ALICE);
  ensureUser(BOB);
  ensureUser(CAROL);
  const tmp = tempDir('qrs-');
  // The relay knows its own URL (publicUrls), as a production relay is told with --public-url:
  // every handshake in these tests, the app's in Chromium too, must be signed for it.
  const relay = opts.withRelay === false ? null : await startBoundRelay(opts.relayOptions);
  const agent = await startTestAgent({ relayUrl: relay?.url ?? opts.relayUrl ?? null, ...opts.agent });
  if (relay) {
    if (!agent.agent.relay!.up) await once(agent.agent.relay!, 'change');
  }
  const service = randomName('sshd-qra');
  const pam = installPamService(service, [`auth required ${MODULE_PATH} socket=${agent.socket} ${(opts.moduleArgs ?? []).join(' ')}`]);
  let sshd: Sshd;
  try {
    sshd = await startSshd({ dir: tmp.path, service, ...(opts.sshdPath ? { sshdPath: opts.sshdPath } : {}) });
  } catch (e) {
    pam.remove();
    throw e;
  }
  const phones: HeadlessPhone[] = [];
  const newPhone = async (name: string, user?: string) => {
    const p = await HeadlessPhone.create(join(tmp.path, `phone-${phones.length}`), name);
    phones.push(p);
    if (user && relay) await enrollPhone(agent, user, p);
    else {
      // Without a relay there is no enrollment; the phone is set up as if it had enrolled earlier.
      await p.trustHost({ hostPub: toB64url(agent.agent.host.publicKey), hostname: 'test-host', relayUrl: relay?.url ?? 'http://127.0.0.1:9' });
      if (user) agent.setDevices(user, [p.devicesLine()]);
    }
    return p;
  };
  const phone = await newPhone('Alice phone', ALICE);
  return {
    relay,
    agent,
    sshd,
    phone,
    service,
    dir: tmp.path,
    newPhone,
    async close() {
      for (const p of phones) await p.close();
      await sshd.stop();
      pam.remove();
      await agent.close();
      await relay?.close();
      tmp.remove();
    },
  };
}

export const LOGIN_PAYLOAD_RE = /QRA1:[A-Za-z0-9_-]{22}:[A-Za-z0-9_-]{22}:[A-Za-z0-9_-]{22}/;

/**
 * One whole ssh login as a person does it: run ssh on a pty, wait for the QR and the prompt,
 * approve on the phone, press Enter, and see the command's output. Returns the run, exited.
 */
export async function sshLoginApprovedByPhone(port: number, user: string, phone: HeadlessPhone): Promise<{ run: PtyRun; code: number | null; marker: string }> {
  const marker = nextMarker('LOGGED_IN');
  const run = runInPty(sshArgs(port, user, `echo ${marker}`));
  try {
    const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
    await run.waitFor(/press Enter/);
    const ack = await phone.decide(payload, 'approve');
    if (!ack.ok) throw new Error(`the phone's approval was refused: ${ack.message}`);
    run.type('\r');
    await run.waitFor(new RegExp(marker));
    return { run, code: await run.exited, marker };
  } finally {
    run.kill();
  }
}
