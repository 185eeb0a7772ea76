/**
 * The app's own camera view (web and native apps alike): a dialog with instructions, the live
 * picture, a named Close button (Escape and the Android back button close it too) and a torch
 * toggle where the camera has one. Reads light- and dark-terminal QRs (camera.ts). Focus goes to
 * the dialog's heading on open and back to where it was on close.
 *
 * Plain DOM, no React or Ionic: it is part of the start screen (start.ts), which must have the
 * camera live before the rest of the app has even downloaded. The Scan page reuses it.
 */
import { startWebScan, type WebScan } from '../data/camera';
import { el, icon, ICON_CLOSE, ICON_TORCH, ICON_TORCH_OFF } from './dom';

export interface ScannerView {
  /** Closes the camera and the dialog; `onClose` is not called. */
  close(): void;
}

/**
 * Opens the dialog on top of everything (header and tabs too). `onResult` gets the first QR
 * read; `onClose` is called when the person closes it, or with a message when the camera
 * cannot be used. The dialog is gone before either is called. `onLive` once the picture is live.
 */
export function openScannerView(
  onResult: (text: string) => void,
  onClose: (error?: string) => void,
  onLive: () => void = () => {},
  /** Where focus goes on close when the element it came from is gone (the start screen's heading). */
  fallbackFocus?: HTMLElement,
): ScannerView {
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  let scan: WebScan | null = null;
  let closed = false;
  /** Stops the camera even while it is still starting. */
  const starting = new AbortController();

  const heading = el('h2', { id: 'scanner-title', tabIndex: -1 }, 'Scan the QR code');
  const closeButton = el('button', { type: 'button', className: 'q-button q-button-icon q-button-medium', 'aria-label': 'Close the camera', 'data-testid': 'scanner-close' }, icon(ICON_CLOSE));
  const video = el('video', { className: 'scanner-video', 'aria-label': 'Camera picture', 'data-live': 'no', 'data-testid': 'scanner-video' });
  video.muted = true;
  video.playsInline = true;
  const status = el('p', { className: 'scanner-status', role: 'status' }, 'Opening the camera…');
  const torch = el('button', { type: 'button', className: 'q-button q-button-outline', 'aria-pressed': 'false', 'data-testid': 'scanner-torch', hidden: true }, icon(ICON_TORCH_OFF), 'Torch');
  const cancel = el('button', { type: 'button', className: 'q-button q-button-clear', 'data-testid': 'scanner-cancel' }, 'Cancel');
  const dialog = el(
    'div',
    { className: 'scanner', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'scanner-title', 'aria-describedby': 'scanner-help', 'data-testid': 'scanner' },
    el('div', { className: 'scanner-bar' }, heading, closeButton),
    el('p', { id: 'scanner-help', className: 'scanner-help' }, 'Point the camera at the QR code in your terminal, or the one from ', el('code', {}, 'qrauth enroll'), '. Dark and light terminals both work.'),
    el('div', { className: 'scanner-view' }, video, el('div', { className: 'scanner-frame', 'aria-hidden': 'true' })),
    status,
    torch,
    cancel,
  );

  const onKey = (ev: KeyboardEvent) => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      finish(() => onClose());
    } else if (ev.key === 'Tab') keepTabInside(ev);
  };
  // A modal dialog keeps keyboard focus: Tab past the last control comes back to the first, and
  // Shift+Tab from the first (or the heading) goes to the last, never to the page behind.
  const keepTabInside = (ev: KeyboardEvent) => {
    const controls = [closeButton, torch, cancel].filter((b) => !b.hidden && !b.disabled);
    const first = controls[0];
    const last = controls[controls.length - 1];
    if (!first || !last) return;
    const active = document.activeElement;
    const inside = active instanceof HTMLElement && dialog.contains(active);
    if (ev.shiftKey ? !inside || active === first || active === heading : !inside || active === last) {
      ev.preventDefault();
      (ev.shiftKey ? last : first).focus();
    }
  };
  // The app went to the background (another app, the lock screen): the camera is let go rather
  // than kept on behind it; the person taps Scan again on return.
  const onHidden = () => {
    if (document.visibilityState === 'hidden') finish(() => onClose());
  };
  // Ionic turns the Android back button into this event (Capacitor); priority above page navigation.
  const onBack = (ev: Event) => (ev as CustomEvent<{ register(priority: number, handler: () => void): void }>).detail.register(150, () => finish(() => onClose()));

  const teardown = () => {
    if (closed) return false;
    closed = true;
    starting.abort();
    scan?.stop();
    scan = null;
    document.removeEventListener('keydown', onKey);
    document.removeEventListener('ionBackButton', onBack);
    document.removeEventListener('visibilitychange', onHidden);
    dialog.remove();
    return true;
  };
  // After the caller's own handling, which enables the Scan button again: focus() on a button
  // still disabled would leave focus on the body.
  const restoreFocus = () => {
    if (opener?.isConnected) opener.focus();
    else if (fallbackFocus?.isConnected) fallbackFocus.focus();
  };
  function finish(then: () => void) {
    if (!teardown()) return;
    then();
    restoreFocus();
  }

  closeButton.addEventListener('click', () => finish(() => onClose()));
  cancel.addEventListener('click', () => finish(() => onClose()));
  let torchOn = false;
  torch.addEventListener('click', () => {
    const next = !torchOn;
    void scan?.setTorch(next).then(
      () => {
        torchOn = next;
        torch.setAttribute('aria-pressed', String(next));
        torch.replaceChildren(icon(next ? ICON_TORCH : ICON_TORCH_OFF), 'Torch');
      },
      () => {
        torch.hidden = true;
      },
    );
  });
  document.addEventListener('keydown', onKey);
  document.addEventListener('ionBackButton', onBack);
  document.addEventListener('visibilitychange', onHidden);
  document.body.append(dialog);
  heading.focus();

  performance.mark('qrauth:camera-requested');
  // Opened behind an app that is not on screen (a background tab): closed at once, after the
  // caller has taken the view.
  queueMicrotask(onHidden);
  startWebScan(video, (text) => finish(() => onResult(text)), {
    signal: starting.signal,
    onEnded: () => finish(() => onClose('the phone stopped the camera (another app may be using it); tap Scan QR code to open it again')),
    onPaused: (paused) => {
      status.textContent = paused ? 'The camera is paused (a call or another app is using it)…' : 'Looking for a QR code…';
    },
  }).then(
    (s) => {
      if (closed) return s.stop();
      scan = s;
      torch.hidden = !s.hasTorch;
      video.dataset.live = 'yes';
      status.textContent = 'Looking for a QR code…';
      // For measurements (bench/app-load.ts, test/app-load.test.ts): when the camera could first read.
      performance.mark('qrauth:camera-live');
      onLive();
    },
    (e: Error) => finish(() => onClose(e.message)),
  );
  return {
    close: () => {
      if (teardown()) restoreFocus();
    },
  };
}
