/**
 * The start screen: the Scan screen in plain DOM, shown by start.ts before React and Ionic have
 * loaded, until the app's Scan page takes its panel over (endStartScreen).
 */
import { cameraPermissionGranted, coolCamera } from '../data/camera';
import type { ThemeSetting } from '../models';
import { followTheme } from '../theme/palette';
import { el } from './dom';
import { scanPanel } from './scan-panel';

/** With the camera closed, the rest of the app comes this long after the start screen is up. */
const APP_AFTER_MS = 1000;

let stopFollowingTheme: (() => void) | null = null;
let shownTheme: ThemeSetting = 'system';
/** A host is enrolled, as far as the start screen knows (the store's copy, then the store). */
let startSomeHost = false;
/** Undoes what showStartScreen hooked onto the long-lived panel (its timer, listener, callbacks). */
let stopStartScreen: (() => void) | null = null;

/**
 * Shows the start screen in `theme`; `loadApp` brings the rest of the app (once the camera is
 * live, a code waits, the person turns to the paste field, or APP_AFTER_MS with the camera
 * closed). `someHost`: a host is enrolled, so the camera opens at once when it is allowed.
 * Both may come from the store's copy (data/start-hint.ts); correctStartScreen then gets the
 * store's own answer.
 */
export function showStartScreen(loadApp: () => Promise<unknown>, theme: ThemeSetting, someHost: boolean): void {
  shownTheme = theme;
  stopFollowingTheme = followTheme(theme);
  const panel = scanPanel();
  const heading = el('h1', { className: 'page-title', tabIndex: -1, 'data-testid': 'start-heading' }, 'Scan');
  const screen = el(
    'div',
    { id: 'start-screen', className: 'start-screen', 'data-testid': 'start-screen' },
    el('header', { className: 'start-header' }, heading),
    el('main', { className: 'start-main' }, el('div', { className: 'page-body' }, panel.element)),
  );
  document.body.classList.add('starting');
  document.body.prepend(screen);
  heading.focus({ preventScroll: true });
  performance.mark('qrauth:start-screen');

  const bringApp = () => void loadApp().catch(() => {});
  panel.onLive(bringApp);
  panel.onWaiting(() => {
    panel.setStatus('Opening…');
    loadApp().catch(() => panel.setStatus('The rest of the app could not be loaded. Check the connection and try again.'));
  });
  const onFocusIn = (e: FocusEvent) => (e.target as HTMLElement).tagName === 'TEXTAREA' && bringApp();
  panel.element.addEventListener('focusin', onFocusIn);
  // With the camera open, checked again later: a camera that fails or is cancelled without ever
  // going live must not leave the person on the start screen with no way to the other pages.
  let checked = false;
  const later = () => {
    // The first check, marked for the tests (test/app-load.test.ts) and traces.
    if (!checked) performance.mark('qrauth:start-check', { detail: { scannerOpen: panel.scannerOpen() } });
    checked = true;
    timer = panel.scannerOpen() ? setTimeout(later, APP_AFTER_MS) : undefined;
    if (timer === undefined) bringApp();
  };
  let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(later, APP_AFTER_MS);
  stopStartScreen = () => {
    clearTimeout(timer);
    panel.element.removeEventListener('focusin', onFocusIn);
    panel.onLive(() => {});
    panel.onWaiting(() => {});
  };
  startSomeHost = someHost;
  panel.openAtStartOnce(async () => {
    const granted = await cameraPermissionGranted();
    // Read after the wait: the store's answer (correctStartScreen) may have come meanwhile.
    const open = startSomeHost && granted;
    if (!open) coolCamera();
    return open;
  });
}

/**
 * The store's answer, when the start screen was shown from its copy: another theme is applied;
 * no host after all closes the camera the start screen opened by itself (not one the person
 * opened: they may be about to enroll a host); a host after all opens it, as the start would
 * have, unless the person is already doing something else.
 */
export function correctStartScreen(theme: ThemeSetting, someHost: boolean): void {
  const panel = scanPanel();
  const wasSomeHost = startSomeHost;
  startSomeHost = someHost;
  if (!someHost && panel.scannerOpenedAtStart()) panel.closeScanner();
  if (someHost && !wasSomeHost) {
    // The start screen or the Scan page that took it over, if it is still what the person sees.
    const onScreen = () => panel.element.isConnected && panel.element.getClientRects().length > 0;
    void cameraPermissionGranted().then((granted) => {
      if (granted && onScreen() && !panel.scannerOpen() && !panel.hasFocus()) panel.scan();
    });
  }
  if (stopFollowingTheme && theme !== shownTheme) {
    stopFollowingTheme();
    shownTheme = theme;
    stopFollowingTheme = followTheme(theme);
  }
}

/** Makes the app visible (it is hidden behind the start screen while it starts). */
export function revealApp(): void {
  document.body.classList.remove('starting');
}

/** The app is up (its Scan page holds the panel now, or it shows another screen): the start screen goes. */
export function endStartScreen(): void {
  revealApp();
  document.getElementById('start-screen')?.remove();
  stopFollowingTheme?.();
  stopFollowingTheme = null;
  stopStartScreen?.();
  stopStartScreen = null;
}
