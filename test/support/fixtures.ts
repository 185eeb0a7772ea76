/**
 * Start the real agent in-process on a temp socket with its own state dir and an admin-style
 * devices directory (`<dir>/devices/%u`, root-owned), so test files never share state.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgent, type Agent } from '../../agent/src/agent.js';
import { makeConfig, type AgentConfig } from '../../agent/src/config.js';
import { formatLog, type Logger } from '../../agent/src/log.js';
import { tempDir } from './system.js';

export interface AgentFixture {
  agent: Agent;
  dir: string;
  socket: string;
  /** The agent's config as a file, for the qrauth CLI (--config). */
  configPath: string;
  logs: string[];
  /** Write a user's devices file (lines in docs/protocol.md §4 format). */
  setDevices(user: string, lines: string[]): void;
  close(): Promise<void>;
}

/** A test agent's files under `dir` (devices files in `dir/devices/`), with the quiet defaults every test agent shares. */
export function testAgentConfig(dir: string) {
  return {
    socket: join(dir, 'agent.sock'),
    controlSocket: join(dir, 'control.sock'),
    stateDir: join(dir, 'state'),
    authfile: join(dir, 'devices', '%u'),
    sshdInfoMessages: 'no' as const,
    hostname: 'test-host',
  };
}

export async function startTestAgent(overrides: Partial<AgentConfig> = {}, opts: { passwdPath?: string; frameTimeoutMs?: number; noControl?: boolean; relayProbeMs?: number } = {}): Promise<AgentFixture> {
  const tmp = tempDir('qra-');
  const dir = tmp.path;
  mkdirSync(join(dir, 'devices'), { mode: 0o755 });
  const logs: string[] = [];
  const log: Logger = (event, fields) => logs.push(formatLog(event, fields));
  const config = makeConfig({
    ...testAgentConfig(dir),
    relayUrl: null,
    ...overrides,
  });
  const configPath = join(dir, 'agent.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  const agent = await startAgent(config, { log, ...opts });
  return {
    agent,
    dir,
    socket: config.socket,
    configPath,
    logs,
    setDevices(user, lines) {
      writeFileSync(join(dir, 'devices', user), `${lines.join('\n')}\n`, { mode: 0o600 });
    },
    async close() {
      await agent.close();
      tmp.remove();
    },
  };
}
