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
import { startSshd, type Sshd } from './sshd.js';
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

export async function startStack(opts: {
  moduleArgs?: string[];
  agent?: Partial<AgentConfig>;
  withRelay?: boolean;
  relayUrl?: string;
  sshdPath?: string;
  /** Extra relay options, e.g. `staticDir` to serve the app's web build (test/app.test.ts). */
  relayOptions?: RelayOptions;
} = {}): Promise<Stack> {
  ensureUser(ALICE);
  ensureUser(BOB);
  ensureUser(CAROL);
  const tmp = tempDir('qrs-');
  const relay = opts.withRelay === false ? null : await startRelay({ log: () => {}, ...opts.relayOptions });
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
