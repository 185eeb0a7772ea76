/**
 * Enroll a headless phone through the real flow: `qrauth enroll --user U` on a pty, the phone
 * scans (its payload) and enrolls through the relay, the fingerprints are compared, "y".
 */
import type { ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { visibleIn } from './browser.js';
import type { AgentFixture } from './fixtures.js';
import type { HeadlessPhone } from './phone.js';
import { runInPty } from './pty.js';
import { ROOT } from './system.js';

// Up to the end of the line: under load the output can arrive split mid-payload.
export const ENROLL_RE = /QRE1:[A-Za-z0-9_:/.-]+(?=\r?\n)/;
/** The fingerprint line `qrauth enroll` prints: 16 Crockford base32 characters in groups of four. */
export const FINGERPRINT_LINE_RE = /Fingerprint: ([0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){3})\b/;

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
    const [, shown] = await cli.waitFor(FINGERPRINT_LINE_RE);
    if (shown !== fingerprint) throw new Error(`fingerprints differ: host ${shown}, phone ${fingerprint}`);
    await cli.waitFor(/Type y to enroll/);
    cli.type('y\r');
    const code = await cli.exited;
    if (code !== 0) throw new Error(`qrauth enroll exited ${code}:\n${cli.output}`);
  } finally {
    cli.kill();
  }
}

/**
 * The phone app on `page` enrolls through the real flow: `qrauth enroll --user U` on a pty, its
 * code pasted into the app's Scan page (as the scanner would hand it over), the fingerprints on
 * both screens compared, "y"; then the user's devices file lists `publicKey` named `name`.
 */
export async function enrollAppWithCli(
  t: ExecutionContext,
  page: Page,
  agent: Pick<AgentFixture, 'configPath' | 'dir'>,
  user: string,
  publicKey: string,
  name: string,
): Promise<void> {
  const shown = (id: string) => visibleIn(page, id);
  const cli = qrauthCli(agent.configPath, ['enroll', '--user', user]);
  t.teardown(() => cli.kill());
  const [payload] = await cli.waitFor(ENROLL_RE);
  await page.getByTestId('tab-scan').click();
  await page.locator('.ion-page:not(.ion-page-hidden)[data-testid="page-scan"]').waitFor();
  await shown('payload-input').locator('textarea').fill(payload!);
  await shown('payload-submit').click();
  await shown('page-enroll').waitFor();
  const shownOnPhone = ((await shown('enroll-fingerprint').textContent()) ?? '').trim();
  await shown('enroll-send').click();
  await shown('enroll-waiting').waitFor();
  const [, shownOnHost] = await cli.waitFor(FINGERPRINT_LINE_RE);
  t.is(shownOnHost, shownOnPhone);
  await cli.waitFor(/Type y to enroll/);
  cli.type('y\r');
  t.is(await cli.exited, 0, cli.output);
  // The phone learns the terminal's answer (signed by the host) and says so.
  await shown('enroll-result').waitFor({ timeout: 15_000 });
  t.is(await shown('enroll-result').getAttribute('data-outcome'), 'confirmed');
  const devices = readFileSync(join(agent.dir, 'devices', user), 'utf8');
  t.true(devices.split('\n').some((l) => l.includes(publicKey) && l.endsWith(` ${name}`)), devices);
}
