/**
 * Faults in the middle of a login, with the agent and the relay as their own processes killed
 * for real: the agent dies (the login is refused with a message that says what happened; a
 * restarted agent serves the next one), the relay dies and comes back (the agent reconnects and
 * the login completes, or it times out; never a wrong success).
 */
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadOrCreateHostKey } from '../agent/src/host-key.js';
import { MsgType, Result, toB64url, type FrameMsg } from '../protocol/src/index.js';
import { startRelay, type Relay } from '../relay/src/server.js';
import { startTestAgent } from './support/fixtures.js';
import { eventually } from './support/net.js';
import { PamClient } from './support/pam-client.js';
import { runPamtester } from './support/pamtester.js';
import { HeadlessPhone } from './support/phone.js';
import { runInPty } from './support/pty.js';
import { freePort, sshArgs, startSshd } from './support/sshd.js';
import { ALICE, LOGIN_PAYLOAD_RE } from './support/stack.js';
import { MODULE_PATH, ROOT, ensureUser, installPamService, isRoot, randomName, tempDir } from './support/system.js';
import { watchOutput, type OutputWatch } from './support/watch.js';

const tmp = tempDir('qrf-');
const services: Array<{ remove(): void }> = [];
const children: ChildProcess[] = [];
test.before(() => {
  if (!isRoot()) throw new Error('runs as root (PAM services, sshd, users)');
  ensureUser(ALICE);
});
test.after.always(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const s of services) s.remove();
  tmp.remove();
});

function service(args: string): string {
  const name = randomName('qrauth-pt-fault');
  services.push(installPamService(name, [`auth required ${MODULE_PATH} ${args}`]));
  return name;
}

/** Run one of our programs as its own process (what systemd would run), stdout+stderr watched. */
function program(script: string, args: string[]): OutputWatch & { child: ChildProcess } {
  const child = spawn(process.execPath, ['--import=tsx', script, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return Object.assign(watchOutput(child, script), { child });
}

/** qrauth-agent as a process, with its own config, linked to `relayUrl`. */
function agentProcess(dir: string, relayUrl: string) {
  const config = {
    socket: join(dir, 'agent.sock'),
    controlSocket: join(dir, 'control.sock'),
    stateDir: join(dir, 'state'),
    relayUrl,
    authfile: join(dir, 'devices', '%u'),
    sshdInfoMessages: 'no',
    hostname: 'fault-host',
    expirySeconds: 30,
  };
  writeFileSync(join(dir, 'agent.json'), JSON.stringify(config));
  const start = async () => {
    const p = program('agent/src/main.ts', ['--config', join(dir, 'agent.json')]);
    await p.waitFor(/event=relay_link state=up/, 30_000);
    return p;
  };
  return { config, start };
}

test.serial('the agent killed mid-login: refused with a message saying so, and a restarted agent serves the next login', async (t) => {
  const relay: Relay = await startRelay({ log: () => {} });
  t.teardown(() => relay.close());
  const dir = join(tmp.path, 'agent-kill');
  mkdirSync(join(dir, 'devices'), { recursive: true });
  const host = loadOrCreateHostKey(join(dir, 'state')); // the agent process loads this key
  const phone = await HeadlessPhone.create(join(dir, 'phone'), 'Alice phone');
  t.teardown(() => phone.close());
  await phone.trustHost({ hostPub: toB64url(host.publicKey), hostname: 'fault-host', relayUrl: relay.url });
  writeFileSync(join(dir, 'devices', ALICE), `${phone.devicesLine()}\n`, { mode: 0o600 });
  const agentDef = agentProcess(dir, relay.url);

  // Info mode (sudo-like): the module is waiting for the phone when the agent dies.
  let agent = await agentDef.start();
  const info = runPamtester(service(`socket=${agentDef.config.socket} mode=info`), ALICE);
  await info.waitFor(/approve on your phone/);
  agent.child.kill('SIGKILL');
  t.not(await info.exited, 0);
  t.regex(info.output, /lost contact with the login approval service/);
  t.notRegex(info.output, /successfully authenticated/);

  // Prompt mode: the user presses Enter after the agent died.
  agent = await agentDef.start();
  const prompt = runPamtester(service(`socket=${agentDef.config.socket} mode=prompt`), ALICE);
  await prompt.waitFor(/press Enter/);
  agent.child.kill('SIGKILL');
  await once(agent.child, 'exit');
  prompt.type('\n');
  t.not(await prompt.exited, 0);
  t.regex(prompt.output, /lost contact with the login approval service/);

  // Through real sshd: the QR is on screen, the agent dies, Enter: no shell.
  agent = await agentDef.start();
  const sshdService = randomName('sshd-qrafault');
  services.push(installPamService(sshdService, [`auth required ${MODULE_PATH} socket=${agentDef.config.socket}`]));
  mkdirSync(join(dir, 'sshd'));
  const sshd = await startSshd({ dir: join(dir, 'sshd'), service: sshdService });
  t.teardown(() => sshd.stop());
  const ssh = runInPty(sshArgs(sshd.port, ALICE, 'echo FAULT_SHELL'));
  t.teardown(() => ssh.kill());
  await ssh.waitFor(/press Enter/);
  agent.child.kill('SIGKILL');
  await once(agent.child, 'exit');
  ssh.type('\r');
  t.not(await ssh.exited, 0);
  t.false(ssh.output.includes('FAULT_SHELL'));

  // The agent comes back (its old socket file is still there): the next login works.
  agent = await agentDef.start();
  const again = runPamtester(service(`socket=${agentDef.config.socket} mode=info`), ALICE);
  const [payload] = await again.waitFor(LOGIN_PAYLOAD_RE);
  t.like(await phone.decide(payload, 'approve'), { ok: true, result: 'approved' });
  t.is(await again.exited, 0);
  agent.child.kill('SIGTERM');
  await once(agent.child, 'exit');
});

test.serial('the relay restarted mid-login: the agent reconnects and the waiting login completes', async (t) => {
  const port = await freePort();
  const relayUrl = `http://127.0.0.1:${port}`;
  const startRelayProcess = async () => {
    const r = program('relay/src/main.ts', ['--port', String(port)]);
    await r.waitFor(/listening on/);
    return r;
  };
  let relay = await startRelayProcess();
  const agent = await startTestAgent({ relayUrl, expirySeconds: 60 }, { noControl: true });
  t.teardown(() => agent.close());
  await eventually(() => agent.agent.relay!.up, 10_000);
  const phone = await HeadlessPhone.create(join(tmp.path, 'relay-restart-phone'), 'Alice phone', { timeoutMs: 3000 });
  t.teardown(() => phone.close());
  await phone.trustHost({ hostPub: toB64url(agent.agent.host.publicKey), hostname: 'test-host', relayUrl });
  agent.setDevices(ALICE, [phone.devicesLine()]);

  const run = runPamtester(service(`socket=${agent.socket} mode=prompt`), ALICE);
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  run.type('\n'); // the module now waits for the verdict
  await sleep(300);
  relay.child.kill('SIGKILL');
  await run.waitFor(/cannot reach this host right now/, 10_000); // the module offers the code instead
  // While the relay is down the phone cannot approve, and nothing gets in.
  await t.throwsAsync(phone.decide(payload, 'approve'));
  t.notRegex(run.output, /successfully authenticated/);

  relay = await startRelayProcess();
  await eventually(() => agent.agent.relay!.up, 30_000);
  t.like(await phone.decide(payload, 'approve'), { ok: true, result: 'approved' });
  run.type('\n');
  t.is(await run.exited, 0);
  t.regex(run.output, /successfully authenticated/);
  relay.child.kill('SIGTERM');
  await once(relay.child, 'exit');
});

test.serial('the relay restarted mid-login and nobody approves: the login expires, never a wrong success', async (t) => {
  const port = await freePort();
  const relayUrl = `http://127.0.0.1:${port}`;
  let relay = program('relay/src/main.ts', ['--port', String(port)]);
  await relay.waitFor(/listening on/);
  const agent = await startTestAgent({ relayUrl, expirySeconds: 6 }, { noControl: true });
  t.teardown(() => agent.close());
  await eventually(() => agent.agent.relay!.up, 10_000);
  const phone = await HeadlessPhone.create(join(tmp.path, 'relay-expire-phone'), 'Alice phone', { timeoutMs: 2000 });
  t.teardown(() => phone.close());
  await phone.trustHost({ hostPub: toB64url(agent.agent.host.publicKey), hostname: 'test-host', relayUrl });
  agent.setDevices('alice', [phone.devicesLine()]);

  const client = await PamClient.connect(agent.socket);
  client.send({ type: MsgType.BEGIN, user: 'alice', service: 'sshd', uid: 4242, home: '/nonexistent' } as FrameMsg);
  const ch = (await client.next()) as FrameMsg & { payload: string };
  t.is(ch.type, MsgType.CHALLENGE);
  client.send({ type: MsgType.WAIT });
  relay.child.kill('SIGKILL');
  t.like(await client.next(5000), { type: MsgType.VERDICT, result: Result.OFFLINE });
  relay = program('relay/src/main.ts', ['--port', String(port)]);
  await relay.waitFor(/listening on/);
  await eventually(() => agent.agent.relay!.up, 30_000).catch(() => {}); // it may still be backing off
  client.send({ type: MsgType.WAIT });
  const v = (await client.next(15_000)) as { result: number };
  t.true(v.result === Result.EXPIRED || v.result === Result.OFFLINE, `verdict ${v.result}`);
  t.not(v.result, Result.APPROVED);
  t.false(agent.logs.some((l) => /result=approved/.test(l)));
  client.close();
  relay.child.kill('SIGTERM');
  await once(relay.child, 'exit');
});
