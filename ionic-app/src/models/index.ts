/** Plain data the app stores and shows; no behaviour here (see src/data/ for that). */
import type { PasskeyInfo } from '../../../protocol/src/index.js';

/** The phone's identity as the screens see it. The seed never appears in these objects. */
export interface DeviceInfo {
  /** base64url of the Ed25519 public key (43 characters) */
  publicKey: string;
  /** base64url(SHA-256(publicKey)[0..16]), what the hosts' logs and the relay call this phone */
  deviceId: string;
  /** Shown on the host when enrolling ("Alice's Pixel"); letters, digits, spaces, ._'()+- */
  name: string;
  /** unix ms */
  createdAt: number;
}

/** A host this phone enrolled with: its key from the enrollment QR and the relay it uses. */
export interface TrustedHost {
  hostId: string;
  /** base64url of the host's Ed25519 public key */
  hostPub: string;
  hostname: string;
  /** http(s) URL of the relay the host is connected to, from the enrollment QR */
  relayUrl: string;
  /** The host's further relays, its order, from its signed enrollment answer: tried when relayUrl cannot be reached. */
  fallbackRelayUrls?: string[];
  /** The passkey made when enrolling with this host (issue #12): approvals there carry its assertion. */
  passkey?: PasskeyInfo;
  /** unix ms */
  enrolledAt: number;
}

export type HistoryOutcome =
  | 'approved' // the host accepted our approval
  | 'denied' // the host accepted our denial
  | 'rejected' // the host refused the decision (expired, not enrolled, already answered…)
  | 'unsent' // the relay could not be reached
  | 'code-shown'; // the offline code was shown (its use is in the host's log)

/** One decision this phone made, kept only on this phone. */
export interface HistoryEntry {
  /** unix ms when the decision was made */
  time: number;
  hostId: string;
  hostname: string;
  user: string;
  rhost: string;
  service: string;
  /** 'code': the offline code was shown, no decision sent */
  decision: 'approve' | 'deny' | 'code';
  outcome: HistoryOutcome;
  /** the host's error message when outcome is rejected or unsent */
  detail?: string;
}

export type ThemeSetting = 'system' | 'light' | 'dark';

export interface Settings {
  theme: ThemeSetting;
}
