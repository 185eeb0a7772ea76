/**
 * The relay container: `make relay-image` with podman (chroot isolation, no registry: the base
 * image is imported from a root filesystem made here from the host's node binary and the
 * libraries it links), run with runc on the host network bound to 127.0.0.1, HEALTHCHECK,
 * non-root user, then a real enrollment and ssh login through the relay inside the container.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { makeInstall, run, until } from './support/daemon.js';
import { enrollPhone } from './support/enroll.js';
import { type AgentFixture, startTestAgent } from './support/fixtures.js';
import { HeadlessPhone } from './support/phone.js';
import { type Sshd, freePort, startSshd } from './support/sshd.js';
import { ALICE, sshLoginApprovedByPhone } from './support/stack.js';
import { MODULE_PATH, ensureUser, installPamService, isRoot, randomName, tempDir } from './support/system.js';

const tmp = tempDir('qrct-');
const tag = randomName('t');
const BASE_IMAGE = `localhost/qrauth-test-base:${tag}`;
const IMAGE = `localhost/qrauth-relay-test:${tag}`;
const CONTAINER = `qrauth-relay-test-${tag}`;
const PODMAN = ['podman', '--runtime', 'runc'];
let port: number;
let relayUrl: string;
let imagesBefore = new Set<string>();
const cleanups: Array<() => Promise<void> | void> = [];

async function podman(args: string[], timeoutMs = 120_000) {
  const r = await run([...PODMAN, ...args], { timeoutMs });
  if (r.code !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout.trim();
}

async function imageIds(): Promise<Set<string>> {
  return new Set((await podman(['images', '-a', '-q', '--no-trunc'])).split('\n').filter(Boolean));
}

/** A minimal root filesystem: node, /bin/sh and the shared libraries they link, as a tar. */
function baseRootfsTar(): string {
  const root = join(tmp.path, 'rootfs');
  const files = new Set<string>([process.execPath, '/bin/sh']);
  for (const bin of [process.execPath, '/bin/sh']) {
    for (const m of execFileSync('ldd', [bin]).toString().matchAll(/(\/\S+\.so[^\s]*)/g)) files.add(m[1]!);
  }
  for (const f of files) {
    const dest = join(root, f === process.execPath ? '/usr/bin/node' : f);
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(execFileSync('readlink', ['-f', f]).toString().trim(), dest);
    chmodSync(dest, 0o755);
  }
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
  mkdirSync(join(root, 'tmp'), { mode: 0o1777 });
  chmodSync(join(root, 'tmp'), 0o1777);
  const tar = join(tmp.path, 'rootfs.tar');
  execFileSync('tar', ['-C', root, '-cf', tar, '.']);
  return tar;
}

test.before(async () => {
  if (!isRoot()) throw new Error('run as root: podman (rootful), sshd and users');
  const v = await run(['podman', '--version']);
  if (v.code !== 0) throw new Error(`podman is not installed (apt-get install podman runc): ${v.stderr}`);
  imagesBefore = await imageIds();
  cleanups.push(async () => {
    // Our images, and the intermediate layers the multi-stage build left: only ids that were not there before.
    const ours = [...(await imageIds())].filter((id) => !imagesBefore.has(id));
    if (ours.length) await run([...PODMAN, 'rmi', '-f', ...ours]);
  });
  await podman(['import', baseRootfsTar(), BASE_IMAGE]);
  await makeInstall(
    { BUILDDIR: join(tmp.path, 'build'), RELAY_BASE_IMAGE: BASE_IMAGE, RELAY_IMAGE: IMAGE, CONTAINER_BUILD_FLAGS: '--format docker --isolation chroot' },
    'relay-image',
  );
  port = await freePort();
  relayUrl = `http://127.0.0.1:${port}`;
  cleanups.push(() => run([...PODMAN, 'rm', '-f', '-t', '2', CONTAINER]).then(() => undefined));
  await podman([
    'run', '-d', '--name', CONTAINER,
    '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024',
    // The host's network, but bound to loopback only.
    '--network', 'host', '-e', 'QRAUTH_RELAY_HOST=127.0.0.1', '-e', `QRAUTH_RELAY_PORT=${port}`,
    IMAGE,
  ]);
  await until(async () => (await fetch(`${relayUrl}/healthz`)).ok, 30_000, 'the relay in the container to answer /healthz');
});

test.after.always(async () => {
  for (const f of cleanups.reverse()) await f();
  tmp.remove();
});

test.serial('the image runs the relay as a non-root user, declares its health check, and the check passes', async (t) => {
  type Check = { Test: string[] };
  const [img] = JSON.parse(await podman(['image', 'inspect', IMAGE])) as Array<{ Config: { User: string; ExposedPorts?: Record<string, unknown>; Healthcheck?: Check }; Healthcheck?: Check }>;
  t.is(img!.Config.User, '10001:10001');
  // podman shows a docker-format image's HEALTHCHECK at the top level, docker under Config.
  t.regex((img!.Healthcheck ?? img!.Config.Healthcheck)?.Test.join(' ') ?? '', /\/healthz/);
  t.truthy(img!.Config.ExposedPorts?.['8080/tcp']);
  t.log(`image size: ${(Number(await podman(['image', 'inspect', IMAGE, '--format', '{{.Size}}'])) / 1e6).toFixed(0)} MB (base: node + libc)`);
  const pid = Number(await podman(['inspect', CONTAINER, '--format', '{{.State.Pid}}']));
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  t.regex(status, /^Uid:\s+10001\s+10001\s+10001\s+10001$/m, 'the relay process runs as uid 10001');
  const hc = await run([...PODMAN, 'healthcheck', 'run', CONTAINER]);
  t.is(hc.code, 0, `healthcheck: ${hc.stdout}${hc.stderr}`);
  t.like(await (await fetch(`${relayUrl}/healthz`)).json(), { status: 'ok' });
  t.regex(await (await fetch(`${relayUrl}/metrics`)).text(), /^qrauth_relay_connected_hosts 0$/m);
});

test.serial('a real enrollment and ssh login through the relay in the container', async (t) => {
  ensureUser(ALICE);
  const agent: AgentFixture = await startTestAgent({ relayUrl });
  cleanups.push(() => agent.close());
  await until(() => agent.agent.relay?.up, 15_000, 'the agent linked to the relay in the container');
  const phone = await HeadlessPhone.create(join(tmp.path, 'phone'), 'Container phone');
  cleanups.push(() => phone.close());
  await enrollPhone(agent, ALICE, phone);

  const service = randomName('sshd-qra');
  const pam = installPamService(service, [`auth required ${MODULE_PATH} socket=${agent.socket}`]);
  cleanups.push(() => pam.remove());
  const sshd: Sshd = await startSshd({ dir: agent.dir, service });
  cleanups.push(() => sshd.stop());

  const login = await sshLoginApprovedByPhone(sshd.port, ALICE, phone);
  t.is(login.code, 0);
  const logs = await run([...PODMAN, 'logs', CONTAINER]);
  t.regex(logs.stdout + logs.stderr, /event=decision .*decision=approve result=approved/, 'the decision went through the container');
});
