/**
 * The phone app falls over to a host's next relay (issue #16), in real Chromium: the app on its
 * own origin learns the host's relay list at enrollment (signed by the host); when the first
 * relay is gone, a login pasted into the app is fetched, shown and approved through the second,
 * where the agent moved its link.
 */
import test from 'ava';
import type { Page } from 'playwright-core';
import { MsgType, Result, type FrameMsg } from '../protocol/src/index.js';
import { startRelay, type Relay } from '../relay/src/server.js';
import { type AppInChromium, READ_DEVICE_PUBLIC_KEY, createDevice, newAppContext, pasteIntoApp, reportFailedPage, startAppInChromium, visibleIn } from './support/browser.js';
import { enrollAppWithCli } from './support/enroll.js';
import { type AgentFixture, startTestAgent } from './support/fixtures.js';
import { eventually } from './support/net.js';
import { PamClient } from './support/pam-client.js';
import { ensureUser, isRoot } from './support/system.js';

const USER = 'qrtest-fo-app';
let user: { uid: number; home: string };
let chromiumApp: AppInChromium;
let relayA: Relay | undefined;
let relayB: Relay;
let agent: AgentFixture;
let page: Page;

test.before(async () => {
  if (!isRoot()) throw new Error('end-to-end tests run as root (they create users)');
  const u = ensureUser(USER);
  user = { uid: u.uid, home: u.home };
  chromiumApp = await startAppInChromium('qrfo-cam-'); // this test pastes codes instead of scanning
  const { app } = chromiumApp;
  relayA = await startRelay({ log: () => {}, appOrigins: [app.origin] });
  relayB = await startRelay({ log: () => {}, appOrigins: [app.origin] });
  agent = await startTestAgent({ relayUrl: relayA.url, relayUrls: [relayA.url, relayB.url], hostname: 'test-host', expirySeconds: 60 }, { relayProbeMs: 300 });
  await eventually(() => agent.agent.relay!.up && agent.agent.relay!.url === relayA!.url, 15_000);
  const context = await newAppContext(chromiumApp.browser, app.origin);
  page = await context.newPage();
  await page.goto(`${app.origin}/`);
  await createDevice(page, 'Failover web');
});

test.afterEach.always((t) => reportFailedPage(t, page, 'failed-app-failover-'));

test.after.always(async () => {
  await chromiumApp?.close();
  await agent?.close();
  await relayA?.close();
  await relayB?.close();
});

test.serial("the host's first relay is gone: the app reaches the host through its second relay and the approval lets the login in", async (t) => {
  const publicKey = (await page.evaluate(READ_DEVICE_PUBLIC_KEY)) as string;
  // Enrolled through relay A; the host's signed answer names B as its fallback.
  await enrollAppWithCli(t, page, agent, USER, publicKey, 'Failover web');
  const stored = (await page.evaluate(`new Promise((resolve, reject) => {
    const open = indexedDB.open('qrauth', 1);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const req = open.result.transaction('kv', 'readonly').objectStore('kv').get('hosts');
      req.onsuccess = () => { open.result.close(); resolve(JSON.stringify(req.result ?? null)); };
      req.onerror = () => reject(req.error);
    };
  })`)) as string;
  t.true(stored.includes(relayB.url), `the app keeps the host's fallback relay: ${stored}`);

  // Relay A dies; the agent moves its one link to B.
  await relayA!.close();
  relayA = undefined;
  await eventually(() => agent.agent.relay!.up && agent.agent.relay!.url === relayB.url, 20_000);

  const client = await PamClient.connect(agent.socket);
  t.teardown(() => client.close());
  client.send({ type: MsgType.BEGIN, user: USER, service: 'sshd', rhost: '127.0.0.1', tty: 'ssh', uid: user.uid, home: user.home } as FrameMsg);
  const challenge = (await client.next()) as { type: number; payload: string };
  t.is(challenge.type, MsgType.CHALLENGE);

  await pasteIntoApp(page, challenge.payload);
  // The app tried A, could not reach it, and asked B: the host's signed context is on screen.
  await visibleIn(page, 'login-context').waitFor({ timeout: 20_000 });
  t.is(await visibleIn(page, 'ctx-user').innerText(), USER);
  t.is(await visibleIn(page, 'ctx-host').innerText(), 'test-host');
  t.is(await page.locator('.ion-page:not(.ion-page-hidden) [data-testid="warning-offline"]').count(), 0, 'no "cannot reach the relay" while another relay answers');
  await visibleIn(page, 'approve').click();
  await visibleIn(page, 'decision-result').waitFor();
  t.regex(await visibleIn(page, 'decision-result').innerText(), /Approved/);

  client.send({ type: MsgType.WAIT } as FrameMsg);
  t.like(await client.next(), { type: MsgType.VERDICT, result: Result.APPROVED });
  t.true(agent.logs.some((l) => /event=login .*result=approved/.test(l)), agent.logs.join('\n'));
});
