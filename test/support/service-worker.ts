/**
 * Stopping a browser context's service workers over CDP and seeing them stopped: shared by
 * test/app-load.test.ts and bench/app-load.ts ("worker stopped": as a phone stops an app's
 * worker a while after its last use).
 */
import type { CDPSession, Page } from 'playwright-core';

type Version = { versionId: string; scriptURL: string; runningStatus: string; status: string };

/**
 * Stops every service worker of the session's browser context and waits until Chromium reports
 * each one stopped (ServiceWorker.workerVersionUpdated). ServiceWorker.stopAllWorkers only asks:
 * it answers before the workers are down. Throws, naming the workers and their states, when
 * there is no worker to stop or one is not stopped within `timeoutMs`. Returns how many it stopped.
 */
export async function stopServiceWorkers(cdp: CDPSession, timeoutMs = 10_000): Promise<number> {
  const versions = new Map<string, Version>();
  let changed: () => void = () => {};
  const onUpdate = (e: { versions: Version[] }) => {
    for (const v of e.versions) versions.set(v.versionId, v);
    changed();
  };
  // A redundant version is on its way out; it controls nothing and is not started again.
  const live = () => [...versions.values()].filter((v) => v.status !== 'redundant');
  const describe = () => live().map((v) => `${v.scriptURL} version ${v.versionId}: ${v.runningStatus}`).join('; ') || 'none';
  const until = async (what: string, done: () => boolean, deadline: number) => {
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`service workers: ${what} within ${timeoutMs} ms (workers: ${describe()})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        changed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  };
  cdp.on('ServiceWorker.workerVersionUpdated', onUpdate);
  try {
    const deadline = Date.now() + timeoutMs;
    await cdp.send('ServiceWorker.enable');
    // The versions that exist come as events after enable answers.
    await until('none reported, so none to stop', () => live().length > 0, deadline);
    await cdp.send('ServiceWorker.stopAllWorkers');
    await until('not all stopped', () => live().every((v) => v.runningStatus === 'stopped'), deadline);
    return live().length;
  } finally {
    cdp.off('ServiceWorker.workerVersionUpdated', onUpdate);
    await cdp.send('ServiceWorker.disable').catch(() => {});
  }
}

/** stopServiceWorkers on a CDP session of its own for `page`'s context. */
export async function stopPageServiceWorkers(page: Page, timeoutMs?: number): Promise<number> {
  const cdp = await page.context().newCDPSession(page);
  try {
    return await stopServiceWorkers(cdp, timeoutMs);
  } finally {
    await cdp.detach().catch(() => {});
  }
}
