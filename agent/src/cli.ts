#!/usr/bin/env node
/**
 * qrauth: enroll phones, list and revoke them, and ask the agent how it is.
 *
 * Exit codes: 0 done; 1 error; 2 usage; 3 the agent is not running; 4 enrollment not
 * confirmed (answered no, expired, or cancelled); 78 configuration error.
 */
import { execFileSync } from 'node:child_process';
import { userInfo } from 'node:os';
import { createInterface } from 'node:readline';
import { Command, CommanderError } from 'commander';
import {
  DEVICE_NAME_PATTERN,
  FINGERPRINT_PATTERN,
  ID_PATTERN,
  PUBKEY_PATTERN,
  passkeyInfo,
  fromB64url,
  isQrauthError,
  parseEnrollPayload,
  literal,
  object,
  oneOf,
  parse,
  str,
  int,
  arrayOf,
  bool,
  optional,
  nullable,
  type Check,
} from '../../protocol/src/index.js';
import { VERSION } from './agent.js';
import { type AgentConfig, DEFAULT_CONFIG_PATH, loadConfig } from './config.js';
import { ControlClient } from './control-client.js';
import { addDeviceLine, devicesPath, removeDeviceLines } from './devices-file.js';
import { printable } from './log.js';
import { renderQr } from './qr-render.js';
import { readDevicesFileAs, writeDevicesFileAs } from './user-files.js';
import { USER_NAME_PATTERN, lookupUserInPasswd, type UserInfo } from './users.js';

export const EXIT = { OK: 0, ERROR: 1, USAGE: 2, AGENT_DOWN: 3, NOT_CONFIRMED: 4, CONFIG: 78 } as const;

class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

interface Target extends UserInfo {
  gid: number;
  path: string;
}

function lookupUser(name: string): (UserInfo & { gid: number }) | null {
  if (!USER_NAME_PATTERN.test(name)) return null;
  try {
    // getent asks NSS, so LDAP/sssd users work; this is the CLI, not the login path.
    const f = execFileSync('getent', ['passwd', name], { encoding: 'utf8', timeout: 5000 }).trim().split(':');
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    // Root acts for this user with exactly these ids (user-files.ts): no guessing.
    if (!Number.isSafeInteger(uid) || uid < 0 || !Number.isSafeInteger(gid) || gid < 0 || !f[5]?.startsWith('/')) return null;
    return { name, uid, gid, home: f[5] };
  } catch {
    const u = lookupUserInPasswd(name);
    return u && u.gid !== null ? { ...u, gid: u.gid } : null;
  }
}

/** Whose devices file: the caller's, or --user's when the caller is root. */
function target(config: AgentConfig, user?: string): Target {
  const me = userInfo();
  const uid = process.getuid?.() ?? me.uid;
  const name = user ?? me.username;
  if (name !== me.username && uid !== 0) {
    throw new CliError(`only root can manage another user's devices (try: sudo qrauth … --user ${name})`, EXIT.ERROR);
  }
  const u = name === me.username ? { name, uid, gid: process.getgid?.() ?? me.gid, home: me.homedir } : lookupUser(name);
  if (!u) throw new CliError(`no such user: ${name}`, EXIT.ERROR);
  return { ...u, path: devicesPath(config.authfile, u) };
}

async function agent(config: AgentConfig): Promise<ControlClient> {
  try {
    return await ControlClient.connect(config.controlSocket);
  } catch (e) {
    if (isQrauthError(e) && e.code !== 'QRA_ERR_AGENT_UNREACHABLE') throw new CliError(`${e.message} [${e.code}]`, EXIT.ERROR);
    throw new CliError(
      `the qrauth agent is not running (${(e as Error).message}).\nStart it with: systemctl start qrauth-agent.socket qrauth-agent.service`,
      EXIT.AGENT_DOWN,
    );
  }
}

const errorReply = object({ ok: literal(false), code: str({ max: 64 }), message: str({ max: 512 }) });
function checkReply<T>(check: Check<T>, v: unknown, what: string): T {
  if (typeof v === 'object' && v !== null && (v as { ok?: unknown }).ok === false) {
    const e = parse(errorReply, v, what);
    throw new CliError(`${e.message} [${e.code}]`, e.code === 'QRA_ERR_EXPIRED' || e.code === 'QRA_ERR_ENROLL' ? EXIT.NOT_CONFIRMED : EXIT.ERROR);
  }
  return parse(check, v, what);
}

const statusReply = object({
  ok: literal(true),
  version: str({ max: 32 }),
  hostId: str({ max: 22, pattern: ID_PATTERN }),
  hostname: str({ max: 253 }),
  relay: object({
    url: nullable(str({ max: 300 })),
    state: oneOf(['up', 'down', 'none'] as const),
    preferredUrl: optional(str({ max: 300 })),
    unboundRelays: optional(arrayOf(str({ max: 300 }), 8)),
  }),
  // Pending counts and everyone's code locks only for root; a user sees their own lock.
  pendingLogins: optional(int({ min: 0, max: 1e9 })),
  openEnrollments: optional(int({ min: 0, max: 1e9 })),
  uptimeSeconds: int({ min: 0, max: 1e12 }),
  codeLocks: arrayOf(object({ user: str({ max: 256 }), until: str({ max: 40 }), retryAfterSeconds: int({ min: 0, max: 1e9 }) }), 5000),
  codeStateDamaged: optional(nullable(str({ max: 512 }))),
});
const unlockReply = object({ ok: literal(true), unlocked: bool() });
const openReply = object({
  ok: literal(true),
  event: literal('open'),
  payload: str({ max: 512 }),
  expiresIn: int({ min: 0, max: 3600 }),
  hostname: str({ max: 253 }),
});
const requestReply = object({
  ok: literal(true),
  event: literal('request'),
  devicePub: str({ max: 43, min: 43, pattern: PUBKEY_PATTERN }),
  deviceId: str({ max: 22, min: 22, pattern: ID_PATTERN }),
  deviceName: str({ max: 64, pattern: DEVICE_NAME_PATTERN }),
  fingerprint: str({ max: 19, pattern: FINGERPRINT_PATTERN }),
  passkey: optional(passkeyInfo),
});

function ask(question: string): Promise<string> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: false });
    process.stdout.write(question);
    let answered = false;
    rl.once('line', (l) => {
      answered = true;
      rl.close();
      resolve(l.trim());
    });
    rl.once('close', () => {
      if (!answered) resolve('');
    });
  });
}

function duration(s: number): string {
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

const program = new Command()
  .name('qrauth')
  .description('Manage qrauth: enroll phones that approve logins on this host, list and revoke them, check the agent.')
  .version(VERSION)
  .option('-c, --config <file>', 'agent config file', DEFAULT_CONFIG_PATH)
  .addHelpText(
    'after',
    `
Exit codes: 0 done, 1 error, 2 usage, 3 agent not running, 4 enrollment not confirmed, 78 config error.
See qrauth(1) and docs/enrollment.md.`,
  )
  .exitOverride()
  .showHelpAfterError();

function config(): AgentConfig {
  const o = program.opts<{ config: string }>();
  try {
    return loadConfig(o.config, { mustExist: program.getOptionValueSource('config') === 'cli' });
  } catch (e) {
    throw new CliError((e as Error).message, EXIT.CONFIG);
  }
}

program
  .command('enroll')
  .description('show an enrollment QR; scan it in the qrauth app to let that phone approve your logins here')
  .option('-u, --user <name>', "enroll for another user (root only; writes that user's devices file)")
  .action(async (o: { user?: string }) => {
    const cfg = config();
    const t = target(cfg, o.user);
    // Check the file now: an unsafe file is refused before a phone is involved.
    await readDevicesFileAs(t, t.path);
    const client = await agent(cfg);
    try {
      const open = checkReply(openReply, await client.request({ op: 'enroll', user: t.name }), 'enroll');
      parseEnrollPayload(open.payload);
      // Level L keeps the longer enrollment payload within version 6 (45 columns, 23 lines).
      const qr = renderQr(open.payload, 'utf8', 2, 'L');
      process.stdout.write(
        `Enroll a phone for ${t.name} on ${open.hostname}.\nIn the qrauth app tap Scan and scan this code (valid ${duration(open.expiresIn)}):\n${qr.text}${open.payload}\n\nWaiting for the phone...\n`,
      );
      const req = checkReply(requestReply, await client.next(), 'enroll');
      // Say whether a passkey comes along: without one this phone cannot approve where a host requires UV.
      const passkeyNote = req.passkey
        ? `It brings a passkey (fingerprint, face or PIN on the phone; app ${req.passkey.origin}).\n`
        : 'It has no passkey: it cannot approve logins that require the phone owner\'s fingerprint, face or PIN (uv=required).\n';
      process.stdout.write(`\nPhone "${req.deviceName}" (id ${req.deviceId}) asks to enroll.\n${passkeyNote}\n    Fingerprint: ${req.fingerprint}\n\n`);
      const answer = await ask('Does the app show the same fingerprint? Type y to enroll this phone, anything else to cancel: ');
      let accepted = /^y(es)?$/i.test(answer);
      let notWritten: unknown = null;
      if (accepted) {
        try {
          const current = await readDevicesFileAs(t, t.path);
          const already = current.devices.find((d) => d.deviceId === req.deviceId);
          if (already && req.passkey && already.passkey?.credentialId !== req.passkey.credentialId) {
            // Re-enrolling to add (or replace) a passkey: the phone's line gets it, the rest stays.
            const enrolled = new Date().toISOString().slice(0, 10);
            const without = removeDeviceLines(current.text, new Set([req.deviceId]));
            await writeDevicesFileAs(t, t.path, addDeviceLine(without, { publicKey: fromB64url(req.devicePub, 32), enrolled, name: req.deviceName, passkey: req.passkey }));
            process.stdout.write(`Updated "${req.deviceName}" for ${t.name} with its new passkey (${t.path}).\n`);
          } else if (already) {
            process.stdout.write(`This phone is already enrolled for ${t.name}; nothing changed.\n`);
          } else {
            const enrolled = new Date().toISOString().slice(0, 10);
            await writeDevicesFileAs(t, t.path, addDeviceLine(current.text, { publicKey: fromB64url(req.devicePub, 32), enrolled, name: req.deviceName, passkey: req.passkey }));
            process.stdout.write(`Enrolled "${req.deviceName}" for ${t.name} (${t.path}).\n`);
          }
        } catch (e) {
          // The agent (and so the phone) hears it did not happen; then the reason is shown.
          accepted = false;
          notWritten = e;
        }
      }
      client.send({ op: 'enroll-result', accepted });
      await client.next().catch(() => undefined);
      if (notWritten !== null) throw notWritten;
      if (!accepted) throw new CliError('not enrolled: the fingerprint was not confirmed; nothing was written', EXIT.NOT_CONFIRMED);
    } finally {
      client.close();
    }
  });

program
  .command('devices')
  .description('list the phones enrolled for you (or --user)')
  .option('-u, --user <name>', "another user's devices (root only)")
  .option('--json', 'machine-readable output')
  .action(async (o: { user?: string; json?: boolean }) => {
    const cfg = config();
    const t = target(cfg, o.user);
    const f = await readDevicesFileAs(t, t.path);
    let lastUsed: Record<string, string | null> = {};
    try {
      const c = await ControlClient.connect(cfg.controlSocket, 1000);
      // The agent answers only for the devices in this user's own file (and only to them or root).
      const r = (await c.request({ op: 'last-used', user: t.name, deviceIds: f.devices.map((d) => d.deviceId) })) as { ok?: boolean; lastUsed?: Record<string, string | null> };
      c.close();
      if (r.ok && r.lastUsed && typeof r.lastUsed === 'object') lastUsed = r.lastUsed;
    } catch {
      /* agent not running: last-used is unknown */
    }
    const rows = f.devices.map((d) => ({ name: d.name, id: d.deviceId, enrolled: d.enrolled, lastUsed: typeof lastUsed[d.deviceId] === 'string' ? lastUsed[d.deviceId]! : null }));
    if (o.json) {
      process.stdout.write(`${JSON.stringify({ user: t.name, file: t.path, devices: rows, problems: f.problems }, null, 2)}\n`);
      return;
    }
    // Problems quote the user's file: cleaned where they are made (devices-file.ts), and here too,
    // since this line goes to the terminal of root running `qrauth devices --user`.
    for (const p of f.problems) process.stderr.write(`qrauth: ${printable(p)}\n`);
    if (rows.length === 0) {
      process.stdout.write(`No phones are enrolled for ${t.name} (${t.path}). Run: qrauth enroll${o.user ? ` --user ${t.name}` : ''}\n`);
      return;
    }
    const w = Math.max(4, ...rows.map((r) => [...r.name].length));
    process.stdout.write(`${'NAME'.padEnd(w)}  ID                      ENROLLED    LAST USED\n`);
    for (const r of rows) process.stdout.write(`${r.name.padEnd(w)}  ${r.id}  ${r.enrolled}  ${r.lastUsed ? r.lastUsed.replace('T', ' ').slice(0, 16) : '-'}\n`);
  });

program
  .command('revoke')
  .description('remove an enrolled phone by its name or id; it can no longer approve logins')
  .argument('<name-or-id>', 'the device name or id, as `qrauth devices` shows it')
  .option('-u, --user <name>', "another user's devices (root only)")
  .action(async (which: string, o: { user?: string }) => {
    const cfg = config();
    const t = target(cfg, o.user);
    const f = await readDevicesFileAs(t, t.path);
    const byId = f.devices.filter((d) => d.deviceId === which);
    const byName = f.devices.filter((d) => d.name === which);
    const hits = byId.length > 0 ? byId : byName;
    if (hits.length === 0) throw new CliError(`no device named or with id "${which}" is enrolled for ${t.name}; see qrauth devices`, EXIT.ERROR);
    if (hits.length > 1) {
      throw new CliError(`several devices are named "${which}"; revoke one by id:\n${hits.map((d) => `  ${d.deviceId}  ${d.name}`).join('\n')}`, EXIT.ERROR);
    }
    await writeDevicesFileAs(t, t.path, removeDeviceLines(f.text, new Set([hits[0]!.deviceId])));
    process.stdout.write(`Revoked "${hits[0]!.name}" (${hits[0]!.deviceId}) for ${t.name}.\n`);
    // Its leases end with it, now: the same phone enrolled again must not find them alive.
    let client: ControlClient | undefined;
    try {
      client = await agent(cfg);
      const r = checkReply(leasesRevokeReply, await client.request({ op: 'leases-revoke', user: t.name, deviceId: hits[0]!.deviceId }), 'leases revoke');
      if (r.revoked > 0) process.stdout.write(`Ended its ${r.revoked} lease${r.revoked === 1 ? '' : 's'}.\n`);
    } catch (e) {
      // The file is written: the phone cannot approve. The agent drops its leases at the user's next login.
      process.stderr.write(`qrauth: could not end this phone's leases now (${e instanceof Error ? e.message.split('\n')[0] : 'agent error'}); they end at ${t.name}'s next login\n`);
    } finally {
      client?.close();
    }
  });

program
  .command('status')
  .description('is the agent running, is it linked to the relay, how many logins are waiting')
  .option('--json', 'machine-readable output')
  .action(async (o: { json?: boolean }) => {
    const cfg = config();
    const client = await agent(cfg);
    try {
      const s = checkReply(statusReply, await client.request({ op: 'status' }), 'status');
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ running: true, ...s, ok: undefined }, null, 2)}\n`);
        return;
      }
      const onFallback = s.relay.preferredUrl !== undefined && s.relay.url !== s.relay.preferredUrl;
      const relay =
        s.relay.state === 'none'
          ? 'none configured (offline codes only)'
          : `${s.relay.url} (${s.relay.state === 'up' ? 'connected' : 'not connected; offline codes still work'})` +
            (onFallback ? `\n          fallback: the preferred relay ${s.relay.preferredUrl} is unreachable; the agent moves back when it answers` : '') +
            (s.relay.unboundRelays?.length
              ? `\n          warning: ${s.relay.unboundRelays.join(', ')} ${s.relay.unboundRelays.length > 1 ? 'do' : 'does'} not check which relay a handshake was signed for; its operator should start it with --public-url`
              : '');
      process.stdout.write(
        `qrauth-agent ${s.version}: running (up ${duration(s.uptimeSeconds)})\nhost      ${s.hostname} (id ${s.hostId})\nrelay     ${relay}\n`,
      );
      if (s.pendingLogins !== undefined) process.stdout.write(`pending   ${s.pendingLogins} login(s), ${s.openEnrollments ?? 0} enrollment(s)\n`);
      if (s.codeStateDamaged) process.stdout.write(`codes     OFF for every user: the code-lock state is damaged (${s.codeStateDamaged}); see the log, then: qrauth unlock-codes --all\n`);
      for (const l of s.codeLocks) {
        process.stdout.write(`codes locked for ${l.user} until ${l.until.replace('T', ' ').slice(0, 16)} UTC (${duration(l.retryAfterSeconds)}); phones still work. Lift: qrauth unlock-codes --user ${l.user}\n`);
      }
    } finally {
      client.close();
    }
  });

program
  .command('unlock-codes')
  .description("lift the lock on a user's offline codes after too many wrong ones (root only)")
  .option('-u, --user <name>', 'the user whose codes to unlock')
  .option('--all', 'every user, and a damaged code-lock state file (rewritten empty)')
  .action(async (o: { user?: string; all?: boolean }) => {
    if ((o.user === undefined) === (o.all !== true)) throw new CliError('say --user NAME or --all', EXIT.USAGE);
    if (o.user !== undefined && !USER_NAME_PATTERN.test(o.user)) throw new CliError(`not a user name: ${o.user}`, EXIT.USAGE);
    const cfg = config();
    const client = await agent(cfg);
    try {
      const r = checkReply(unlockReply, await client.request(o.all ? { op: 'unlock-codes', all: true } : { op: 'unlock-codes', user: o.user }), 'unlock-codes');
      process.stdout.write(o.all ? 'Offline codes are unlocked for every user.\n' : r.unlocked ? `Offline codes are unlocked for ${o.user}.\n` : `Offline codes were not locked for ${o.user}; nothing changed.\n`);
    } finally {
      client.close();
    }
  });

const leaseItem = object({
  id: str({ max: 22, min: 22 }),
  user: str({ max: 256 }),
  service: str({ max: 64 }),
  host: str({ max: 253 }),
  keyFp: str({ max: 50 }),
  deviceId: str({ max: 22 }),
  deviceName: str({ max: 64 }),
  granted: int({ min: 0, max: 2 ** 40 }),
  expires: int({ min: 0, max: 2 ** 40 }),
});
const leasesReply = object({ ok: literal(true), leases: arrayOf(leaseItem, 10_000) });
const leasesRevokeReply = object({ ok: literal(true), revoked: int({ min: 0, max: 10_000 }) });

const leasesCmd = program
  .command('leases')
  .description('list the leases phones granted ("approve for 1 h from this key"); yours, or --user / everyone for root')
  .option('-u, --user <name>', 'whose leases (root for others)')
  .option('--json', 'machine-readable output')
  .action(async (o: { user?: string; json?: boolean }) => {
    if (o.user !== undefined && !USER_NAME_PATTERN.test(o.user)) throw new CliError(`not a user name: ${o.user}`, EXIT.USAGE);
    const client = await agent(config());
    try {
      const r = checkReply(leasesReply, await client.request({ op: 'leases', ...(o.user ? { user: o.user } : {}) }), 'leases');
      if (o.json) return void process.stdout.write(`${JSON.stringify(r.leases, null, 2)}\n`);
      if (r.leases.length === 0) return void process.stdout.write('No leases.\n');
      for (const l of r.leases) {
        const until = new Date(l.expires * 1000).toISOString().replace('T', ' ').slice(0, 16);
        process.stdout.write(`${l.id.slice(0, 8)}  ${l.user}  ${l.service}  ${l.keyFp}  ${l.deviceName || l.deviceId}  until ${until} UTC\n`);
      }
    } finally {
      client.close();
    }
  });
leasesCmd
  .command('revoke')
  .description('end a lease (its id from `qrauth leases`, 8 characters are enough) or all of a user\'s (--all)')
  .argument('[id]', 'the lease id')
  .option('-u, --user <name>', 'whose leases (root for others)')
  .option('--all', 'every lease of the user (root without --user: every lease on this host)')
  .action(async (id: string | undefined, o: { user?: string; all?: boolean }) => {
    if ((id === undefined) === (o.all !== true)) throw new CliError('say a lease id or --all', EXIT.USAGE);
    if (o.user !== undefined && !USER_NAME_PATTERN.test(o.user)) throw new CliError(`not a user name: ${o.user}`, EXIT.USAGE);
    const client = await agent(config());
    try {
      const r = checkReply(leasesRevokeReply, await client.request({ op: 'leases-revoke', ...(o.user ? { user: o.user } : {}), ...(id ? { id } : {}) }), 'leases revoke');
      process.stdout.write(r.revoked === 0 ? 'No lease matched; nothing changed.\n' : `Ended ${r.revoked} lease${r.revoked === 1 ? '' : 's'}.\n`);
    } finally {
      client.close();
    }
  });

try {
  await program.parseAsync();
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : EXIT.USAGE);
  if (e instanceof CliError) {
    process.stderr.write(`qrauth: ${e.message}\n`);
    process.exit(e.exitCode);
  }
  if (isQrauthError(e)) {
    process.stderr.write(`qrauth: ${e.message} [${e.code}]\n`);
    process.exit(e.code === 'QRA_ERR_CONFIG' ? EXIT.CONFIG : EXIT.ERROR);
  }
  process.stderr.write(`qrauth: ${(e as Error).message}\n`);
  process.exit(EXIT.ERROR);
}
