/**
 * The camera of the app's scanner (web and native): getUserMedia, a frame grabbed into a canvas
 * about ten times a second, decoded by qr-decoder.ts in both polarities (normal and inverted
 * frames alternate), and the torch where the camera track supports one. The native apps (Android
 * and iOS) use it too; the scanner plugin only where their WebView has no camera (platform.ts,
 * scanWithPlugin).
 */
import { isNativePlatform } from './native';

export class ScanError extends Error {
  override readonly name = 'ScanError';
}

/** The camera may be opened without asking the person (the site was allowed before). */
export async function cameraPermissionGranted(): Promise<boolean> {
  try {
    const status = await navigator.permissions?.query({ name: 'camera' as PermissionName });
    return status?.state === 'granted';
  } catch {
    return false; // a browser that cannot tell: wait for the person's tap
  }
}

/** Frames are scaled down to at most this many pixels on their longer side before decoding. */
const MAX_DECODE_PX = 640;
const FRAME_INTERVAL_MS = 100;
/** The first read waits for the first picture on screen, at most this long. */
const FIRST_FRAME_WAIT_MS = 500;

export interface ScanEvents {
  /** The view was closed: the camera stops at once, even while it is still starting. */
  signal?: AbortSignal;
  /**
   * The system ended the camera while it was reading (Android: another app took it; the camera
   * was switched off): the picture would otherwise stay frozen on screen. The camera is stopped.
   */
  onEnded?: () => void;
  /**
   * The camera sends no pictures for now (true) or again (false): the track was muted, as iOS does
   * while a call, Siri or another app has the camera, and Android while the app is in the
   * background. Nothing is read meanwhile.
   */
  onPaused?: (paused: boolean) => void;
}

export interface WebScan {
  /** The camera track offers a torch (most phones' back cameras; no desktop webcam). */
  readonly hasTorch: boolean;
  setTorch(on: boolean): Promise<void>;
  stop(): void;
}

function cameraError(e: unknown): ScanError {
  const name = e instanceof Error ? e.name : '';
  if (name !== 'NotAllowedError') return new ScanError('no camera could be opened; paste the code instead');
  // The app's own camera permission on a phone is in the system's Settings, not a site setting.
  const where = isNativePlatform() ? "for qrauth in the phone's Settings" : 'for this site';
  return new ScanError(`camera access was refused; allow the camera ${where}, or paste the code instead`);
}

const CONSTRAINTS: MediaStreamConstraints = { video: { facingMode: 'environment', width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false };

/** The camera being opened ahead of its view (warmCamera), for the next startWebScan. */
let warming: Promise<MediaStream> | null = null;

const stopStream = (stream: MediaStream) => {
  for (const t of stream.getTracks()) t.stop();
};

/**
 * Starts opening the camera now, when the site may use it without asking, so that the view
 * opened a moment later (startWebScan) finds it running: a camera takes about a third of a
 * second to give its first picture, time the start screen spends reading the store. Never asks
 * the person: without the permission already granted it does nothing. A camera warmed and not
 * taken is stopped by coolCamera.
 */
export function warmCamera(): void {
  // Nor behind an app that is not on screen (opened in a background tab).
  if (warming || !navigator.mediaDevices?.getUserMedia || document.visibilityState === 'hidden') return;
  warming = cameraPermissionGranted().then((granted) => {
    if (!granted) throw new ScanError('the camera is not allowed yet');
    return navigator.mediaDevices.getUserMedia(CONSTRAINTS);
  });
  warming.catch(() => {});
}

/** Stops a camera warmed by warmCamera and not taken by a view. */
export function coolCamera(): void {
  const w = warming;
  warming = null;
  void w?.then(stopStream, () => {});
}

/**
 * Opens the back camera into `video` (the warmed one when there is one) and calls `onText` once
 * with the first QR read. `events.signal` stops the camera even while it is still starting (a
 * camera that never plays must not stay on behind a closed view); the other events tell the view
 * what the camera does.
 */
export async function startWebScan(video: HTMLVideoElement, onText: (text: string) => void, events: ScanEvents = {}): Promise<WebScan> {
  const { signal, onEnded, onPaused } = events;
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new ScanError('this browser gives no camera access here (it needs https); paste the code instead');
  }
  const closed = () => new ScanError('the camera view was closed');
  const decoderLoading = import('./qr-decoder');
  const warmed = warming;
  warming = null;
  // A warm-up that failed (no permission then) is no answer: ask as the view always has, unless
  // the view was closed meanwhile (no prompt for a view that is gone).
  const warm = await warmed?.catch(() => null);
  if (!warm && signal?.aborted) throw closed();
  // A warmed camera the system ended meanwhile would give a black picture: a new one is asked for.
  const usable = warm?.getVideoTracks()[0]?.readyState === 'live' ? warm : null;
  if (warm && !usable) stopStream(warm);
  let stream: MediaStream;
  try {
    stream = usable ?? (await navigator.mediaDevices.getUserMedia(CONSTRAINTS));
  } catch (e) {
    throw cameraError(e);
  }
  const track = stream.getVideoTracks()[0];
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
    stopStream(stream);
    video.srcObject = null;
  };
  if (signal?.aborted) {
    stop();
    throw closed();
  }
  signal?.addEventListener('abort', stop, { once: true });
  track?.addEventListener(
    'ended',
    () => {
      if (stopped) return;
      stop();
      onEnded?.();
    },
    { once: true },
  );
  let paused = false;
  const pause = (now: boolean) => () => {
    if (stopped || paused === now) return;
    paused = now;
    onPaused?.(now);
  };
  track?.addEventListener('mute', pause(true));
  track?.addEventListener('unmute', pause(false));
  video.srcObject = stream;
  video.muted = true;
  video.playsInline = true;
  try {
    await video.play();
  } catch (e) {
    stop();
    throw signal?.aborted ? closed() : cameraError(e);
  }
  if (stopped) throw closed();
  const { decodeQr } = await decoderLoading;
  if (stopped) throw closed();
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!ctx) {
    stop();
    throw new ScanError('this browser cannot read camera pictures; paste the code instead');
  }
  let frame = 0;
  const tick = () => {
    if (stopped) return;
    const vw = video.videoWidth;
    const vh = video.videoHeight;
    // A muted camera shows its last picture: nothing new to read until it comes back.
    if (!paused && vw > 0 && vh > 0) {
      const scale = Math.min(1, MAX_DECODE_PX / Math.max(vw, vh));
      const w = Math.round(vw * scale);
      const h = Math.round(vh * scale);
      if (canvas.width !== w || canvas.height !== h) {
        canvas.width = w;
        canvas.height = h;
      }
      ctx.drawImage(video, 0, 0, w, h);
      const rgba = ctx.getImageData(0, 0, w, h).data;
      const gray = new Uint8ClampedArray(w * h);
      for (let i = 0, p = 0; p < gray.length; i += 4, p++) {
        // Rec. 601 luma in integers: the decoder only needs relative brightness.
        gray[p] = (rgba[i]! * 77 + rgba[i + 1]! * 150 + rgba[i + 2]! * 29) >> 8;
      }
      // Every other frame inverted: a light-terminal QR (light modules on dark) reads only so.
      const text = decodeQr(gray, w, h, frame % 2 === 1);
      frame++;
      if (text !== null) {
        stop();
        onText(text);
        return;
      }
    }
    timer = setTimeout(tick, FRAME_INTERVAL_MS);
  };
  // The first frame is read once the picture is on screen, not before: a read is ~25 ms of a
  // mid-range phone's CPU (60 ms at Lighthouse's ×4) that the person would otherwise wait for
  // before seeing anything. requestVideoFrameCallback fires as the first frame goes to the
  // screen; the read is a task after that frame's rendering. Browsers without it: a frame later.
  // A track that sends no new frame after this would never call back: the reads start after
  // FIRST_FRAME_WAIT_MS at the latest.
  let started = false;
  const startReading = (shown: boolean) => {
    if (started || stopped) return;
    started = true;
    if (timer !== undefined) clearTimeout(timer);
    // For measurements (bench/app-load.ts): when the first picture went to the screen.
    if (shown) performance.mark('qrauth:camera-shown');
    timer = setTimeout(tick, 0);
  };
  if (typeof video.requestVideoFrameCallback === 'function') video.requestVideoFrameCallback(() => startReading(true));
  else requestAnimationFrame(() => startReading(true));
  timer = setTimeout(() => startReading(false), FIRST_FRAME_WAIT_MS);

  const caps = (track?.getCapabilities?.() ?? {}) as MediaTrackCapabilities & { torch?: boolean };
  const hasTorch = caps.torch === true;
  return {
    hasTorch,
    async setTorch(on: boolean) {
      if (!track || !hasTorch) return;
      await track.applyConstraints({ advanced: [{ torch: on } as MediaTrackConstraintSet] });
    },
    stop,
  };
}
