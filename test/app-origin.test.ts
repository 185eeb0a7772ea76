/**
 * The web app on its own origin (issue #11): the app's build served by a plain static server on
 * one loopback origin, the real relay on another, allow-listing the app's origin. A relay holds
 * no key and serves no code here, so whatever it does, it cannot read the phone's key.
 *
 * Real Chromium, real relay, real agent, real `qrauth enroll`, real ssh with pam_qrauth.
 */
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { Socket } from 'socket.io';
import { nodeCrypto } from '../protocol/src/crypto-node.js';
import { type SignedContext, contextBytes, keyId, toB64url } from '../protocol/src/index.js';
import { startRelay } from '../relay/src/server.js';
import {
  APP_DIST,
  type AppInChromium,
  READ_DEVICE_PUBLIC_KEY,
  approveAndFinishSsh,
  artifactPath,
  createDevice,
  newAppContext,
  pasteIntoApp,
  reportFailedPage,
  startAppInChromium,
  storeHostsScript,
  visibleIn,
} from './support/browser.js';
import { enrollAppWithCli } from './support/enroll.js';
import { startHostileRelay } from './support/hostile-relay.js';
import { nextMarker, runInPty } from './support/pty.js';
import { sshArgs } from './support/sshd.js';
import { ALICE, LOGIN_PAYLOAD_RE, type Stack, startStack } from './support/stack.js';
import type { StaticServer } from './support/static-server.js';
import { prng, testSeed } from './support/seeded.js';
import { isRoot } from './support/system.js';

/** Host keys, login ids and enrollment tokens made up by these tests come from this seed (printed by each test that uses it). */
const SEED = testSeed(0x0a11_0e1d);
const seededBytes = prng(SEED);

// ---------------------------------------------------------------- in Chromium

let chromiumApp: AppInChromium;
let app: StaticServer;
let stack: Stack;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let enrolled = false;
/** Every HTTP request and WebSocket the app's pages opened, by URL. */
const requested: Array<{ url: string; type: string }> = [];
const sockets: string[] = [];
const pageErrors: string[] = [];

// Collects CSP violations in every page of a context, from the first script on (init scripts
// are not subject to the page's CSP).
const COLLECT_CSP_VIOLATIONS = `window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));`;

async function appContext(b: Browser): Promise<BrowserContext> {
  const ctx = await newAppContext(b, app.origin);
  await ctx.addInitScript({ content: COLLECT_CSP_VIOLATIONS });
  ctx.on('request', (r) => requested.push({ url: r.url(), type: r.resourceType() }));
  ctx.on('page', (p) => p.on('websocket', (ws) => sockets.push(ws.url())));
  return ctx;
}

async function newDevice(p: Page, name: string): Promise<void> {
  p.on('pageerror', (e) => pageErrors.push(e.message));
  p.on('websocket', (ws) => sockets.push(ws.url()));
  await p.goto(`${app.origin}/`);
  await createDevice(p, name);
}

const cspViolations = (p: Page) => p.evaluate('window.__cspViolations') as Promise<string[]>;

async function startSsh(t: ExecutionContext) {
  const m = nextMarker('ORIGIN');
  const run = runInPty(sshArgs(stack.sshd.port, ALICE, `echo ${m}`));
  t.teardown(() => run.kill());
  const [payload] = await run.waitFor(LOGIN_PAYLOAD_RE);
  await run.waitFor(/press Enter/);
  return { m, run, payload: payload! };
}

test.before(async () => {
  if (!isRoot()) throw new Error('end-to-end tests run as root (they start sshd and create users)');
  chromiumApp = await startAppInChromium(); // these tests paste codes instead of scanning
  ({ app, browser } = chromiumApp);
  stack = await startStack({ agent: { expirySeconds: 60 }, relayOptions: { appOrigins: [app.origin] } });
  context = await appContext(browser);
  page = await context.newPage();
  await newDevice(page, 'Alice web');
});

test.afterEach.always((t) => reportFailedPage(t, page, 'failed-origin-'));

test.after.always(async () => {
  await chromiumApp?.close();
  await stack?.close();
});

test.serial('cross-origin: enroll with the real `qrauth enroll` and approve a real ssh login, the app on its own origin, the relay on another', async (t) => {
  t.not(new URL(app.origin).port, new URL(stack.relay!.url).port);
  const publicKey = (await page.evaluate(READ_DEVICE_PUBLIC_KEY)) as string;
  await enrollAppWithCli(t, page, stack.agent, ALICE, publicKey, 'Alice web');
  enrolled = true;
  const { m, run, payload } = await startSsh(t);
  await pasteIntoApp(page, payload);
  await visibleIn(page, 'login-context').waitFor();
  t.is(await visibleIn(page, 'ctx-user').textContent(), ALICE);
  await approveAndFinishSsh(t, page, run, m);
  t.true(sockets.some((u) => u.startsWith(stack.relay!.url.replace(/^http/, 'ws'))), 'the app spoke to the relay over a WebSocket');
});

test.serial('the app never loads anything from the relay: every request it makes goes to its own origin; only WebSockets go to the relay', async (t) => {
  t.true(requested.some((r) => r.type === 'script'), 'scripts were recorded');
  const foreign = requested.filter((r) => new URL(r.url).origin !== app.origin && !r.url.startsWith('data:'));
  t.deepEqual(foreign, [], 'requests to another origin');
  const relayWs = stack.relay!.url.replace(/^http/, 'ws');
  t.deepEqual(sockets.filter((u) => !u.startsWith(relayWs)), [], 'WebSockets to anything but the relay');
  t.deepEqual(await cspViolations(page), [], 'no CSP violation in normal use');
});

test.serial('CSP and SRI are in the built index.html: no inline script, script-src self, connect-src the relays, integrity on every script and style', (t) => {
  const html = readFileSync(join(APP_DIST, 'index.html'), 'utf8');
  const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(html)?.[1] ?? '';
  // The one inline script is the import map that holds every chunk's integrity, allowed by its hash.
  const importMapTag = /<script type="importmap">([^<]*)<\/script>/.exec(html);
  t.truthy(importMapTag, 'an import map');
  const mapHash = createHash('sha256').update(importMapTag![1]!).digest('base64');
  t.true(csp.includes(`script-src 'self' 'sha256-${mapHash}';`), csp);
  const chunks = readdirSync(join(APP_DIST, 'assets')).filter((f) => f.endsWith('.js'));
  const integrity = (JSON.parse(importMapTag![1]!) as { integrity: Record<string, string> }).integrity;
  for (const f of chunks) t.is(integrity[`/assets/${f}`], `sha384-${createHash('sha384').update(readFileSync(join(APP_DIST, 'assets', f))).digest('base64')}`, f);
  t.regex(csp, /(^|; )default-src 'none'(;|$)/, csp);
  t.regex(csp, /(^|; )object-src 'none'(;|$)/, csp);
  t.regex(csp, /(^|; )connect-src [^;]*http:\/\/127\.0\.0\.1:\*/, 'the default build talks to loopback relays');
  t.notRegex(csp, /unsafe-eval|'unsafe-inline'[^;]*;?\s*$|script-src[^;]*unsafe/, csp);
  const withoutMap = html.replace(importMapTag![0], '');
  t.notRegex(withoutMap, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
  const tags = withoutMap.match(/<(script|link)\b[^>]*>/g) ?? [];
  const loaded = tags.filter((tag) => /<script/.test(tag) || /rel="(stylesheet|modulepreload)"/.test(tag));
  // The entry script and the one stylesheet; every other chunk is pinned by the import map above.
  t.true(loaded.some((tag) => /<script[^>]*type="module"/.test(tag)) && loaded.some((tag) => /rel="stylesheet"/.test(tag)), html);
  for (const tag of loaded) t.regex(tag, /integrity="sha384-[A-Za-z0-9+/]{64}"/, tag);
  t.notRegex(html, /(src|href)="(https?:)?\/\//, 'no third-party origin');
});

test.serial('markup in the host name, user and service is shown as text: no script runs and no CSP violation is needed or reported', async (t) => {
  t.log(`seed ${SEED}`);
  // A host of our own (we hold its key) whose signed context carries markup in every field.
  const hostKey = nodeCrypto.ed25519FromSeed(seededBytes(32));
  const hostId = keyId(nodeCrypto, hostKey.publicKey);
  const markup = {
    hostname: '<script>window.__pwned="hostname"</script><b>web</b>',
    user: '<img src=x onerror="window.__pwned=\'user\'">',
    service: '<svg onload="window.__pwned=\'service\'"></svg>',
    rhost: '"><iframe srcdoc="<script>parent.__pwned=1</script>">',
  };
  const relay = await startHostileRelay({
    onDevice: (s: Socket) =>
      s.on('context', (req: { hostId: string; sid: string }, ack: (a: unknown) => void) => {
        const now = Math.floor(Date.now() / 1000);
        const fields = { hostId: req.hostId, sid: req.sid, ...markup, iat: now, exp: now + 60 };
        const context: SignedContext = { v: 1, ...fields, sig: toB64url(nodeCrypto.ed25519Sign(hostKey.seed, contextBytes(fields))) };
        ack({ ok: true, context });
      }),
  });
  const ctx = await appContext(browser);
  t.teardown(async () => {
    await ctx.close();
    await relay.close();
  });
  const p = await ctx.newPage();
  await newDevice(p, 'Markup phone');
  await p.evaluate(storeHostsScript([{ hostId, hostPub: toB64url(hostKey.publicKey), hostname: markup.hostname, relayUrl: relay.url, enrolledAt: Date.now() }]));
  await pasteIntoApp(p, `QRA1:${hostId}:${toB64url(seededBytes(16))}:${toB64url(seededBytes(16))}`);
  await visibleIn(p, 'login-context').waitFor();
  t.is(await visibleIn(p, 'ctx-host').textContent(), markup.hostname);
  t.is(await visibleIn(p, 'ctx-user').textContent(), markup.user);
  t.is(await visibleIn(p, 'ctx-service').textContent(), markup.service);
  t.is(await visibleIn(p, 'ctx-rhost').textContent(), markup.rhost);
  t.is(await p.locator('.ion-page:not(.ion-page-hidden) [data-testid="login-context"] :is(script, img, svg, iframe, b)').count(), 0, 'no element made from the markup');
  await p.screenshot({ path: artifactPath('origin-markup-360.png') });
  t.is(await p.evaluate('window.__pwned'), undefined, 'no script ran');
  t.deepEqual(await cspViolations(p), [], 'the app escaped it; the CSP did not have to stop anything');

  // And the CSP is live: an inline script put into the page is blocked and reported.
  await p.evaluate(`(() => { const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; document.body.append(s); })()`);
  await p.waitForFunction(() => (globalThis as unknown as { __cspViolations: unknown[] }).__cspViolations.length > 0);
  t.is(await p.evaluate('window.__inline'), undefined, 'the inline script did not run');
  t.regex((await cspViolations(p)).join('\n'), /script-src/);
});

test.serial('a hostile relay serving its own page at its own origin reads nothing of the app: the key lives in the app origin\'s storage', async (t) => {
  if (!enrolled) return t.fail('needs the enrollment test');
  // A relay that serves a page of its own, the most a hostile relay can do once it serves no app code.
  const evilDir = mkdtempSync(join(tmpdir(), 'qrauth-evil-'));
  t.teardown(() => rmSync(evilDir, { recursive: true, force: true }));
  writeFileSync(join(evilDir, 'index.html'), '<!doctype html><title>qrauth</title><p>looks like the app');
  const evil = await startRelay({ log: () => {}, serveAppTrustingRelay: evilDir, appOrigins: [app.origin] });
  t.teardown(() => evil.close());
  const p = await context.newPage();
  t.teardown(() => p.close());
  await p.goto(`${evil.url}/`);
  t.regex(await p.title(), /qrauth/);
  const seen = (await p.evaluate(`(async () => {
    const dbs = (await indexedDB.databases()).map((d) => d.name);
    const found = await new Promise((resolve) => {
      const open = indexedDB.open('qrauth', 1);
      open.onupgradeneeded = () => open.result.createObjectStore('kv');
      open.onsuccess = () => {
        const req = open.result.transaction('kv', 'readonly').objectStore('kv').get('device');
        req.onsuccess = () => resolve(req.result ?? null);
        req.onerror = () => resolve('error');
      };
      open.onerror = () => resolve('error');
    });
    // The window starts as about:blank (same origin as the opener) until the app's page commits:
    // read its storage until that happens, for up to 10 s.
    let appStorage;
    const w = window.open(${JSON.stringify(`${app.origin}/`)});
    for (let i = 0; i < 100; i++) {
      try { appStorage = typeof w.indexedDB; } catch (e) { appStorage = e.name; break; }
      await new Promise((r) => setTimeout(r, 100));
    }
    w.close();
    return JSON.stringify({ dbs, found, appStorage, local: localStorage.length });
  })()`)) as string;
  const r = JSON.parse(seen) as { dbs: string[]; found: unknown; appStorage: string; local: number };
  t.deepEqual(r.dbs, [], "the relay's origin sees none of the app's databases");
  t.is(r.found, null, 'no device record under the same name');
  t.is(r.appStorage, 'SecurityError', "the app's window is cross-origin to the relay's page");
  t.is(r.local, 0);
  // The app's own origin still holds the key.
  t.truthy(await page.evaluate(READ_DEVICE_PUBLIC_KEY));
});

test.serial('a relay started without the app\'s origin in its allow-list refuses the app\'s WebSocket; the allow-listing relay accepts it', async (t) => {
  const other = await startRelay({ log: () => {}, appOrigins: ['https://some-other-app.example'] });
  t.teardown(() => other.close());
  const wsOpens = (relayUrl: string) =>
    page.evaluate(`new Promise((resolve) => {
      const ws = new WebSocket(${JSON.stringify(`${relayUrl.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`)});
      ws.onmessage = (m) => { ws.close(); resolve('open ' + String(m.data).slice(0, 1)); };
      ws.onerror = () => resolve('refused');
      setTimeout(() => resolve('timeout'), 5000);
    })`) as Promise<string>;
  t.is(await wsOpens(stack.relay!.url), 'open 0', 'engine.io open packet from the allow-listing relay');
  t.is(await wsOpens(other.url), 'refused');
});

test.serial('the app refuses to enroll with a plain-http relay that is not on loopback; nothing is sent', async (t) => {
  t.log(`seed ${SEED}`);
  const text = `QRE1:${toB64url(seededBytes(32))}:${toB64url(seededBytes(16))}:${toB64url(Buffer.from('web-01'))}:http://relay.example.com`;
  const before = requested.length;
  await pasteIntoApp(page, text);
  await visibleIn(page, 'page-enroll').waitFor();
  const warning = page.locator('.ion-page:not(.ion-page-hidden)[data-testid="page-enroll"] [data-testid="warning-error"]');
  await warning.waitFor();
  t.regex((await warning.textContent()) ?? '', /plain http is allowed only for a relay on this machine.*use https:\/\/relay\.example\.com/);
  t.is(await visibleIn(page, 'enroll-send').count(), 0, 'no Enroll button');
  t.false(requested.slice(before).some((r) => r.url.includes('relay.example.com')));
  t.false(sockets.some((u) => u.includes('relay.example.com')));
});

test.serial('relay unreachable: the app says the login could not be checked, and shows the code only after the person confirms; typed into ssh → in', async (t) => {
  if (!enrolled) return t.fail('needs the enrollment test');
  const { m, run, payload } = await startSsh(t);
  await stack.relay!.close();
  await pasteIntoApp(page, payload);
  const unverified = visibleIn(page, 'warning-unverified');
  await unverified.waitFor({ timeout: 20_000 });
  t.regex((await unverified.textContent()) ?? '', /could not be checked/i);
  const approvePage = page.locator('.ion-page:not(.ion-page-hidden)[data-testid="page-approve"]');
  t.is(await approvePage.locator('[data-testid="offline-code"]').count(), 0, 'no code in the DOM before the confirmation');
  t.notRegex(await approvePage.innerText(), /\b\d{4} ?\d{4}\b/, 'no 8 digits anywhere on the page');
  await page.screenshot({ path: artifactPath('origin-unverified-360.png') });
  await visibleIn(page, 'confirm-own-login').click();
  const code = ((await visibleIn(page, 'offline-code').textContent()) ?? '').replace(/\s/g, '');
  t.regex(code, /^\d{8}$/);
  run.type(`${code}\r`);
  await run.waitFor(new RegExp(m));
  t.is(await run.exited, 0);
  t.deepEqual(await cspViolations(page), []);
  t.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});
