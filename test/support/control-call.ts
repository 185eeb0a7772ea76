/**
 * A control-socket client the tests run AS ANOTHER LOCAL USER (`runuser -u <user> -- node
 * --import tsx test/support/control-call.ts …`), to see what the agent lets that user do.
 *
 *   call  <socket> <json>              prove who we are (ControlClient), send one request, print each reply line
 *   hold  <socket> <n>                 keep n proven and n unproven connections open (reopening closed ones)
 *   enroll-hold <socket> <n> <user>    open n enrollments for <user> at once and keep them open
 *   forge <socket> <how> <file> <json> answer the agent's proof challenge with a forgery, then send <json>:
 *                                      how = hardlink | rename | symlink | wrong-token | silent; <file> is a
 *                                      file of the victim's (world-writable, so this user can write it)
 *
 * Prints JSON lines: {"reply": …} for each message from the agent, {"closed": true} at the end.
 */
import { linkSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { ControlClient, credDirFor } from '../../agent/src/control-client.js';

const [mode, socketPath, ...rest] = process.argv.slice(2);
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

/** Read newline-delimited JSON from a raw socket. */
function lines(s: Socket, onLine: (v: unknown) => void): void {
  let buf = '';
  s.setEncoding('utf8');
  s.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        onLine(JSON.parse(l));
      } catch {
        onLine({ unparsable: l.slice(0, 200) });
      }
    }
  });
}

if (mode === 'call') {
  try {
    const c = await ControlClient.connect(socketPath!);
    c.send(JSON.parse(rest[0]!));
    // Every reply until the agent closes, or 2 s of quiet (an open enrollment waits for a phone).
    for (;;) {
      const quiet = new Promise<'quiet'>((r) => setTimeout(() => r('quiet'), 2000).unref());
      const next = await Promise.race([c.next(), quiet]);
      if (next === 'quiet') break;
      out({ reply: next });
    }
    c.close();
  } catch (e) {
    out({ error: (e as Error).message });
  }
  out({ closed: true });
  process.exit(0);
} else if (mode === 'enroll-hold') {
  // Open up to n enrollments for ourselves and keep them open.
  const n = Number(rest[0]);
  const user = rest[1]!;
  let opened = 0;
  let refused = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      try {
        const c = await ControlClient.connect(socketPath!);
        const r = (await c.request({ op: 'enroll', user })) as { event?: string };
        if (r.event === 'open') opened++;
        else refused++;
      } catch {
        refused++;
      }
    }),
  );
  out({ opened, refused });
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
} else if (mode === 'hold') {
  const n = Number(rest[0]);
  let proven = 0;
  let refused = 0;
  const proved = async () => {
    try {
      const c = await ControlClient.connect(socketPath!);
      proven++;
      // Keep it; if the agent closes it, open another.
      c.next().catch(() => {
        proven--;
        setTimeout(() => void proved(), 50);
      });
    } catch {
      refused++;
      setTimeout(() => void proved(), 200);
    }
  };
  const raw = () => {
    const s = connect(socketPath!);
    s.on('error', () => {});
    s.on('close', () => setTimeout(raw, 50));
  };
  for (let i = 0; i < n; i++) {
    void proved();
    raw();
  }
  setTimeout(() => out({ holding: true, proven, refused }), 1500);
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
} else if (mode === 'forge') {
  const [how, victimFile, json] = rest;
  const s = connect(socketPath!);
  let done = false;
  // An agent without a proof step says nothing first: then just ask (what any user could do before).
  const noChallenge = setTimeout(() => {
    if (!done) s.write(`${json}\n`);
  }, 1000);
  lines(s, (msg) => {
    out({ reply: msg });
    const m = msg as { event?: string; name?: string; token?: string };
    if (m.event === 'prove' && m.name && m.token && !done) {
      done = true;
      clearTimeout(noChallenge);
      const target = join(credDirFor(socketPath!), m.name);
      if (how === 'silent') {
        // No proof at all: straight to the request.
        s.write(`${json}\n`);
        return;
      }
      try {
        if (how === 'hardlink') {
          linkSync(victimFile!, target);
          writeFileSync(target, m.token);
        } else if (how === 'rename') {
          writeFileSync(victimFile!, m.token);
          renameSync(victimFile!, target);
        } else if (how === 'symlink') {
          writeFileSync(victimFile!, m.token);
          symlinkSync(victimFile!, target);
        } else {
          writeFileSync(target, `${m.token.slice(0, -4)}AAAA`, { mode: 0o644 });
        }
      } catch (e) {
        out({ forgeError: (e as Error).message });
      }
      s.write(`${JSON.stringify({ op: 'proved' })}\n`);
      s.write(`${json}\n`);
    }
  });
  s.on('error', (e) => out({ error: e.message }));
  s.on('close', () => {
    out({ closed: true });
    process.exit(0);
  });
  setTimeout(() => process.exit(0), 8000).unref();
} else {
  process.stderr.write('usage: control-call.ts call|hold|forge <socket> …\n');
  process.exit(2);
}
