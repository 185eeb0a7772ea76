/**
 * What the pamtester-driven tests share: a relay, an agent linked to it ("online"), an agent
 * whose relay is a closed port ("offline"), and one phone trusted by both and listed in both
 * agents' devices files for alice; PAM service files that are removed when the file ends.
 */
import { once } from 'node:events';
import { join } from 'node:path';
import { toB64url } from '../../protocol/src/index.js';
import { startRelay, type Relay } from '../../relay/src/server.js';
import type { AgentConfig } from '../../agent/src/config.js';
import { startTestAgent, type AgentFixture } from './fixtures.js';
import { HeadlessPhone } from './phone.js';
import { freePort } from './sshd.js';
import { ALICE, CAROL } from './stack.js';
import { MODULE_PATH, ensureUser, installPamService, randomName, tempDir } from './system.js';

export interface PamFixture {
  relay: Relay;
  online: AgentFixture;
  offline: AgentFixture;
  phone: HeadlessPhone;
  dir: string;
  /** A PAM service whose only auth module is `module` with these options. */
  service(args: string, module?: string): string;
  /** A stack where success means the module returned PAM_IGNORE (it jumps over pam_deny). */
  ignoreProbe(args: string, module?: string): string;
  close(): Promise<void>;
}

export async function startPamFixture(opts: { online?: Partial<AgentConfig>; noControl?: boolean } = {}): Promise<PamFixture> {
  ensureUser(ALICE);
  ensureUser(CAROL);
  const tmp = tempDir('qrp-');
  const services: Array<{ remove(): void }> = [];
  const relay = await startRelay({ log: () => {} });
  const agentOpts = opts.noControl ? { noControl: true } : {};
  const online = await startTestAgent({ relayUrl: relay.url, expirySeconds: 30, ...opts.online }, agentOpts);
  const offline = await startTestAgent({ relayUrl: `http://127.0.0.1:${await freePort()}` }, agentOpts);
  if (!online.agent.relay!.up) await once(online.agent.relay!, 'change');
  const phone = await HeadlessPhone.create(join(tmp.path, 'phone'), 'Alice phone');
  for (const f of [online, offline]) {
    await phone.trustHost({ hostPub: toB64url(f.agent.host.publicKey), hostname: 'test-host', relayUrl: relay.url });
    f.setDevices(ALICE, [phone.devicesLine()]);
  }
  const install = (lines: string[]) => {
    const name = randomName('qrauth-pt-');
    services.push(installPamService(name, lines));
    return name;
  };
  return {
    relay,
    online,
    offline,
    phone,
    dir: tmp.path,
    service: (args, module = MODULE_PATH) => install([`auth required ${module} ${args}`]),
    ignoreProbe: (args, module = MODULE_PATH) =>
      install([`auth [ignore=1 default=die] ${module} ${args}`, 'auth requisite pam_deny.so', 'auth required pam_permit.so']),
    async close() {
      for (const s of services) s.remove();
      await phone.close();
      await online.close();
      await offline.close();
      await relay.close();
      tmp.remove();
    },
  };
}
