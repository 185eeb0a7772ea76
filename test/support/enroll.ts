/**
 * Enroll a headless phone through the real flow: `qrauth enroll --user U` on a pty, the phone
 * scans (its payload) and enrolls through the relay, the fingerprints are compared, "y".
 */
import { join } from 'node:path';
import type { AgentFixture } from './fixtures.js';
import type { HeadlessPhone } from './phone.js';
import { runInPty } from './pty.js';
import { ROOT } from './system.js';

// Up to the end of the line: under load the output can arrive split mid-payload.
export const ENROLL_RE = /QRE1:[A-Za-z0-9_:/.-]+(?=\r?\n)/;

export function qrauthCli(configPath: string, args: string[], asUser?: string) {
  const argv = [process.execPath, '--import', 'tsx', join(ROOT, 'agent/src/cli.ts'), '--config', configPath, ...args];
  return runInPty(asUser ? ['runuser', '-u', asUser, '--', ...argv] : argv);
}

export async function enrollPhone(agent: AgentFixture, user: string, phone: HeadlessPhone): Promise<void> {
  const cli = qrauthCli(agent.configPath, ['enroll', '--user', user]);
  try {
    const [payload] = await cli.waitFor(ENROLL_RE);
    const { fingerprint, ack } = await phone.enroll(payload);
    if (!ack.ok) throw new Error(`enrollment refused: ${ack.message}`);
    const [, shown] = await cli.waitFor(/Fingerprint: ([0-9A-Z]{4}-[0-9A-Z]{4})/);
    if (shown !== fingerprint) throw new Error(`fingerprints differ: host ${shown}, phone ${fingerprint}`);
    await cli.waitFor(/Type y to enroll/);
    cli.type('y\r');
    const code = await cli.exited;
    if (code !== 0) throw new Error(`qrauth enroll exited ${code}:\n${cli.output}`);
  } finally {
    cli.kill();
  }
}
