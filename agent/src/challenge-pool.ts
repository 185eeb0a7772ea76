/**
 * Login QRs made ahead of time. A login QR depends only on the host id and a fresh sid and
 * nonce, not on who logs in, so the agent renders a few while idle and a BEGIN only has to
 * sign the context. Rendering (the QR library scores all eight masks) is most of a BEGIN's
 * cost; see docs/BENCHMARKS.md, benchmark 1. Each prepared challenge is handed out once.
 */
import { formatLoginPayload, toB64url } from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import { renderQr } from './qr-render.js';

export interface PreparedChallenge {
  sid: string;
  nonce: Uint8Array;
  payload: string;
  /** The UTF-8 half-block rendering. */
  qrText: string;
}

export class ChallengePool {
  private readonly ready: PreparedChallenge[] = [];
  private refilling = false;
  private closed = false;

  constructor(
    private readonly hostId: string,
    /** How many to keep ready. @default 8 */
    private readonly size = 8,
  ) {
    this.refill();
  }

  /** Make one now (the pool was empty, or another rendering is wanted). */
  make(): PreparedChallenge {
    const sid = toB64url(nodeCrypto.randomBytes(16));
    const nonce = nodeCrypto.randomBytes(16);
    const payload = formatLoginPayload({ hostId: this.hostId, sid, nonce });
    return { sid, nonce, payload, qrText: renderQr(payload, 'utf8').text };
  }

  /** A prepared challenge, never handed out before; the pool refills in the background. */
  take(): PreparedChallenge {
    const c = this.ready.pop() ?? this.make();
    this.refill();
    return c;
  }

  get available(): number {
    return this.ready.length;
  }

  /** Render one at a time between other work, so a burst of BEGINs is not held up by refilling. */
  private refill(): void {
    if (this.refilling || this.closed || this.ready.length >= this.size) return;
    this.refilling = true;
    setImmediate(() => {
      this.refilling = false;
      if (this.closed || this.ready.length >= this.size) return;
      this.ready.push(this.make());
      this.refill();
    });
  }

  /** Wipe the prepared nonces. */
  close(): void {
    this.closed = true;
    for (const c of this.ready.splice(0)) c.nonce.fill(0);
  }
}
