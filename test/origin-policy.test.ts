/**
 * Issue #11 without a browser: which origins the relay lets in, and plain http refused on the
 * network by the agent (real qrauth-agent process) and in enrollment codes. The browser side is
 * test/app-origin.test.ts.
 */
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeCrypto } from '../protocol/src/crypto-node.js';
import { DEVICE_NAMESPACE, HOST_NAMESPACE, formatEnrollPayload, makeAuthHandshake, parseEnrollPayload, toB64url } from '../protocol/src/index.js';
import { startRelay } from '../relay/src/server.js';
import { tryConnect } from './support/net.js';
import { ROOT } from './support/system.js';

test('the relay lets in a browser only from an allow-listed app origin; agents and phones without a browser send no Origin and connect', async (t) => {
  const app = 'http://127.0.0.1:5999';
  const relay = await startRelay({ log: () => {}, appOrigins: [app] });
  t.teardown(() => relay.close());
  const device = () => makeAuthHandshake(nodeCrypto, 'device', nodeCrypto.randomBytes(32));
  const withOrigin = async (origin: string | undefined, ns = DEVICE_NAMESPACE, auth: object = device()) => {
    const r = await tryConnect(relay.url, ns, auth, 3000, origin ? { origin } : undefined);
    if (r.ok) r.socket.disconnect();
    return r;
  };
  t.true((await withOrigin(app)).ok, 'the allow-listed app origin');
  t.true((await withOrigin(undefined)).ok, 'no Origin: not a browser (native HTTP clients, the headless phone)');
  for (const other of ['http://127.0.0.1:6000', 'https://evil.example', 'null', relay.url, `${app}.evil.example`]) {
    const r = await withOrigin(other);
    t.false(r.ok, `Origin ${other} must be refused`);
  }
  // A browser page, even on the app's origin, has no business on /host.
  const host = makeAuthHandshake(nodeCrypto, 'host', nodeCrypto.randomBytes(32));
  t.false((await withOrigin(app, HOST_NAMESPACE, host)).ok, 'a browser on /host');
});

test('a relay with no --app-origin refuses every browser (fail closed)', async (t) => {
  const relay = await startRelay({ log: () => {} });
  t.teardown(() => relay.close());
  const r = await tryConnect(relay.url, DEVICE_NAMESPACE, makeAuthHandshake(nodeCrypto, 'device', nodeCrypto.randomBytes(32)), 3000, { origin: 'https://app.example' });
  if (r.ok) r.socket.disconnect();
  t.false(r.ok);
});

/** The real qrauth-agent with `--check-config`: its exit status and output. */
function agentCheckConfig(t: ExecutionContext, relayUrl: string) {
  const dir = mkdtempSync(join(tmpdir(), 'qra-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = join(dir, 'agent.json');
  writeFileSync(cfg, JSON.stringify({ relayUrl, stateDir: join(dir, 'state'), socket: join(dir, 's.sock') }));
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'agent/src/main.ts'), '--config', cfg, '--check-config'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

test('the agent refuses a plain-http relay that is not on loopback: config error, exit 78 (EX_CONFIG)', (t) => {
  for (const url of ['http://relay.example.com', 'http://192.0.2.7:8080', 'http://127.0.0.1.evil.example', 'ws://relay.example.com']) {
    const r = agentCheckConfig(t, url);
    t.is(r.status, 78, `${url}: ${r.out}`);
    t.regex(r.out, /QRA_ERR_CONFIG/, url);
    t.regex(r.out, /https/, `${url}: the message says what to use instead`);
  }
  for (const url of ['https://relay.example.com', 'http://127.0.0.1:8080', 'http://127.8.9.10', 'http://localhost:8080', 'http://[::1]:8080']) {
    const r = agentCheckConfig(t, url);
    t.is(r.status, 0, `${url} is allowed: ${r.out}`);
  }
});

test('an enrollment code carries only an https relay, or plain http on loopback', (t) => {
  const base = { hostPub: nodeCrypto.randomBytes(32), token: nodeCrypto.randomBytes(16), hostname: 'web-01' };
  for (const relayUrl of ['https://relay.example.com', 'http://127.0.0.1:8080', 'http://localhost:1', 'http://[::1]:2']) {
    t.is(parseEnrollPayload(formatEnrollPayload({ ...base, relayUrl })).relayUrl, relayUrl);
  }
  for (const relayUrl of ['http://relay.example.com', 'http://10.0.0.1:8080']) {
    t.throws(() => formatEnrollPayload({ ...base, relayUrl }), { code: 'QRA_ERR_PAYLOAD' }, `formatted with ${relayUrl}`);
    // A code made by something else: the parser refuses it too.
    const text = `QRE1:${toB64url(base.hostPub)}:${toB64url(base.token)}:${toB64url(Buffer.from('web-01'))}:${relayUrl}`;
    t.throws(() => parseEnrollPayload(text), { code: 'QRA_ERR_PAYLOAD', message: /https/ }, `parsed with ${relayUrl}`);
  }
});

