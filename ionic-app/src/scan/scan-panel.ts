/**
 * The Scan screen's body: the "Scan QR code" button, the camera (scanner-view.ts), a field to
 * paste a code's text, and the error when a code is not ours. Plain DOM and one instance for the
 * app's whole life: the start screen (start.ts) shows it before React and Ionic have loaded, and
 * the Scan page (pages/Scan.tsx) then takes the same element over, with the camera still live if
 * it was, so a person can scan before the rest of the app has arrived.
 *
 * A code read or pasted goes to the handler the owner set (the Scan page routes it); until there
 * is one, it waits, and the start screen is told so it can bring the app in at once.
 */
import { payloadKind } from '../../../protocol/src/payloads.js';
import { el, icon, ICON_CAMERA, ICON_ERROR } from './dom';
import { openScannerView, type ScannerView } from './scanner-view';

export type PayloadHandler = (text: string, kind: 'login' | 'enroll') => void;
/** A native build's scanner (the plugin's own view): the text read, or null when closed. */
export type NativeScan = (instructions: string) => Promise<string | null>;

export interface ScanPanel {
  readonly element: HTMLElement;
  /** The owner of scanned codes (null: keep them until there is one). */
  setHandler(handler: PayloadHandler | null): void;
  /** Called when a code waits for a handler (the start screen loads the app then). */
  onWaiting(cb: () => void): void;
  /** Called once the camera picture is live (the start screen loads the app then). */
  onLive(cb: () => void): void;
  setNativeScan(scan: NativeScan | null): void;
  /** What the person sees while a code waits for the app (null: nothing). */
  setStatus(text: string | null): void;
  /** Opens the camera (the button's action). */
  scan(): void;
  closeScanner(): void;
  scannerOpen(): boolean;
  /** Focus is in the panel (the person is typing a code). */
  hasFocus(): boolean;
  /** Moves the panel under `parent`, keeping focus and the text selection where they were. */
  moveTo(parent: HTMLElement): void;
  /** Opening the app goes straight to the camera once, when `shouldOpen` (a host to log in to, the camera allowed). */
  openAtStartOnce(shouldOpen: () => Promise<boolean>): void;
  /** The camera view open now is the one openAtStartOnce opened (not one the person opened). */
  scannerOpenedAtStart(): boolean;
}

const NOT_OURS = 'This is not a qrauth code. Login codes start with QRA1:, enrollment codes with QRE1:.';
const NATIVE_INSTRUCTIONS = 'Point the camera at the QR code in your terminal';

function createScanPanel(): ScanPanel {
  let handler: PayloadHandler | null = null;
  let pending: { text: string; kind: 'login' | 'enroll' } | null = null;
  let waiting: () => void = () => {};
  let live: () => void = () => {};
  let nativeScan: NativeScan | null = null;
  let view: ScannerView | null = null;
  let nativeBusy = false;
  let openedAtStart = false;
  /** The view openAtStartOnce opened (the one open now, or a closed one). */
  let startView: ScannerView | null = null;
  /** Focus is on its way back into the panel after a move (moveTo). */
  let restoringFocus = false;

  const scanButton = el('button', { type: 'button', className: 'q-button q-button-block q-button-large scan-button', 'data-testid': 'scan-camera' });
  const errorBox = el('div', { className: 'scan-error' });
  const status = el('p', { className: 'scan-status', role: 'status' });
  const textarea = el('textarea', { id: 'payload-text', rows: 2, placeholder: 'QRA1:…', autocapitalize: 'off', autocomplete: 'off', spellcheck: 'false' });
  const submit = el('button', { type: 'submit', className: 'q-button q-button-block q-button-outline', 'data-testid': 'payload-submit', disabled: true }, 'Continue');
  const form = el(
    'form',
    { className: 'paste-form' },
    el('div', { className: 'q-field', 'data-testid': 'payload-input' }, el('label', { for: 'payload-text' }, "Or paste the code's text"), textarea),
    submit,
  );
  const element = el(
    'div',
    { className: 'scan-panel' },
    el('p', {}, 'Scan the QR code your terminal shows to approve a login, or the one from ', el('code', {}, 'qrauth enroll'), ' to add a host.'),
    scanButton,
    errorBox,
    status,
    form,
  );

  const showScanning = (on: boolean) => {
    scanButton.disabled = on;
    scanButton.replaceChildren(icon(ICON_CAMERA), on ? 'Scanning…' : 'Scan QR code');
  };
  showScanning(false);

  const showError = (message: string | null, title = 'Cannot use this code') => {
    errorBox.replaceChildren();
    if (message === null) return;
    errorBox.append(
      el(
        'div',
        { className: 'warning warning-danger', role: 'alert', 'data-testid': 'warning-error' },
        icon(ICON_ERROR, 'q-icon warning-icon'),
        el('div', {}, el('strong', {}, title), el('div', { className: 'warning-body' }, message)),
      ),
    );
  };
  const CAMERA_ERROR = 'Cannot use the camera';

  const deliver = (raw: string) => {
    const kind = payloadKind(raw);
    if (!kind) {
      showError(NOT_OURS);
      return;
    }
    showError(null);
    textarea.value = '';
    submit.disabled = true;
    const text = raw.trim();
    if (handler) handler(text, kind);
    else {
      pending = { text, kind };
      waiting();
    }
  };

  const scan = () => {
    showError(null);
    if (nativeScan) {
      if (nativeBusy) return;
      nativeBusy = true;
      showScanning(true);
      nativeScan(NATIVE_INSTRUCTIONS)
        .then((text) => text !== null && deliver(text), (e: Error) => showError(e.message, CAMERA_ERROR))
        .finally(() => {
          nativeBusy = false;
          showScanning(false);
        });
      return;
    }
    if (view) return;
    showScanning(true);
    view = openScannerView(
      (text) => {
        view = null;
        showScanning(false);
        deliver(text);
      },
      (message) => {
        view = null;
        showScanning(false);
        if (message) showError(message, CAMERA_ERROR);
      },
      () => live(),
      scanButton,
    );
  };

  scanButton.addEventListener('click', scan);
  textarea.addEventListener('input', () => {
    submit.disabled = textarea.value.trim() === '';
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    deliver(textarea.value);
  });

  return {
    element,
    setHandler(h) {
      handler = h;
      if (h && pending) {
        const p = pending;
        pending = null;
        status.textContent = '';
        h(p.text, p.kind);
      }
    },
    onWaiting(cb) {
      waiting = cb;
    },
    onLive(cb) {
      live = cb;
    },
    setNativeScan(s) {
      nativeScan = s;
    },
    setStatus(text) {
      status.textContent = text ?? '';
    },
    scan,
    closeScanner() {
      view?.close();
      view = null;
      showScanning(nativeBusy);
    },
    scannerOpen: () => view !== null,
    scannerOpenedAtStart: () => view !== null && view === startView,
    hasFocus: () => restoringFocus || element.contains(document.activeElement),
    moveTo(parent) {
      // Taking an element out of the document drops its focus: a person typing on the start
      // screen while the app arrives keeps typing where they were. The new parent may join the
      // document a frame later (Ionic's outlet), so focus returns as soon as it can.
      const focused = element.contains(document.activeElement) ? (document.activeElement as HTMLElement) : null;
      const selection = focused === textarea ? ([textarea.selectionStart, textarea.selectionEnd, textarea.selectionDirection] as const) : null;
      parent.append(element);
      if (!focused || document.activeElement === focused) return;
      restoringFocus = true;
      let frames = 0;
      const restore = () => {
        if (focused.isConnected) {
          focused.focus({ preventScroll: true });
          if (selection && document.activeElement === textarea) textarea.setSelectionRange(selection[0], selection[1], selection[2]);
        }
        if (document.activeElement === focused || ++frames > 60) restoringFocus = false;
        else requestAnimationFrame(restore);
      };
      restore();
    },
    openAtStartOnce(shouldOpen) {
      if (openedAtStart) return;
      openedAtStart = true;
      // data-start-check: the decision is made (the camera is open now, or will not open by itself).
      void shouldOpen()
        .then((yes) => {
          if (!yes || view) return;
          scan();
          startView = view;
        }, () => {})
        .finally(() => {
          element.dataset.startCheck = 'done';
        });
    },
  };
}

let panel: ScanPanel | null = null;

/** The one Scan panel (made on first use). */
export function scanPanel(): ScanPanel {
  panel ??= createScanPanel();
  return panel;
}
