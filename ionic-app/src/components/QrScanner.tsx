import { IonButton, IonIcon } from '@ionic/react';
import { close, flashlight, flashlightOutline } from 'ionicons/icons';
import { useEffect, useRef, useState } from 'react';
import { createPortal } from 'react-dom';
import { startWebScan, type WebScan } from '../data/camera';

/**
 * The app's own camera view on the web: a dialog with instructions, the live picture, a named
 * Close button (Escape and the Android back button close it too) and a torch toggle where the
 * camera has one. Reads light- and dark-terminal QRs (camera.ts). Focus goes to the dialog's
 * heading on open and back to where it was on close.
 */
export function QrScanner({ onResult, onClose }: { onResult: (text: string) => void; onClose: (error?: string) => void }) {
  const video = useRef<HTMLVideoElement>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const scan = useRef<WebScan | null>(null);
  const [hasTorch, setHasTorch] = useState(false);
  const [torchOn, setTorchOn] = useState(false);
  const [live, setLive] = useState(false);

  useEffect(() => {
    const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    heading.current?.focus();
    let cancelled = false;
    const el = video.current;
    if (el) {
      startWebScan(el, (text) => {
        if (!cancelled) onResult(text);
      }).then(
        (s) => {
          if (cancelled) return s.stop();
          scan.current = s;
          setHasTorch(s.hasTorch);
          setLive(true);
        },
        (e: Error) => {
          if (!cancelled) onClose(e.message);
        },
      );
    }
    const onKey = (ev: KeyboardEvent) => {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        onClose();
      }
    };
    // Ionic turns the Android back button into this event (Capacitor); priority above page navigation.
    const onBack = (ev: Event) => (ev as CustomEvent<{ register(priority: number, handler: () => void): void }>).detail.register(150, () => onClose());
    document.addEventListener('keydown', onKey);
    document.addEventListener('ionBackButton', onBack);
    return () => {
      cancelled = true;
      scan.current?.stop();
      scan.current = null;
      document.removeEventListener('keydown', onKey);
      document.removeEventListener('ionBackButton', onBack);
      opener?.focus();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  const toggleTorch = async () => {
    const next = !torchOn;
    await scan.current?.setTorch(next).then(() => setTorchOn(next), () => setHasTorch(false));
  };

  // On top of everything (header and tabs too), not inside the page's scrolling content.
  return createPortal(
    <div className="scanner" role="dialog" aria-modal="true" aria-labelledby="scanner-title" aria-describedby="scanner-help" data-testid="scanner">
      <div className="scanner-bar">
        <h2 id="scanner-title" tabIndex={-1} ref={heading}>
          Scan the QR code
        </h2>
        <IonButton fill="solid" color="medium" onClick={() => onClose()} aria-label="Close the camera" data-testid="scanner-close">
          <IonIcon icon={close} slot="icon-only" aria-hidden="true" />
        </IonButton>
      </div>
      <p id="scanner-help" className="scanner-help">
        Point the camera at the QR code in your terminal, or the one from <code>qrauth enroll</code>. Dark and light terminals both work.
      </p>
      <div className="scanner-view">
        <video ref={video} className="scanner-video" muted playsInline aria-label="Camera picture" data-live={live ? 'yes' : 'no'} data-testid="scanner-video" />
        <div className="scanner-frame" aria-hidden="true" />
      </div>
      <p className="scanner-status" role="status">
        {live ? 'Looking for a QR code…' : 'Opening the camera…'}
      </p>
      {hasTorch ? (
        <IonButton expand="block" fill="outline" onClick={() => void toggleTorch()} aria-pressed={torchOn} data-testid="scanner-torch">
          <IonIcon icon={torchOn ? flashlight : flashlightOutline} slot="start" aria-hidden="true" />
          Torch
        </IonButton>
      ) : null}
      <IonButton expand="block" fill="clear" onClick={() => onClose()} data-testid="scanner-cancel">
        Cancel
      </IonButton>
    </div>,
    document.body,
  );
}
