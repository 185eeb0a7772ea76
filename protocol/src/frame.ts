/**
 * The framed binary protocol on /run/qrauth.sock (docs/protocol.md §1), TypeScript side.
 * The C side (pam_qrauth/frame.c) implements the same limits; both are tested against the
 * same byte strings.
 *
 *   frame = length:u32be body ; body = type:u8 (tag:u8 len:u16be value)*
 */
import { QrauthError } from './errors.js';

export const QR_MAX_FRAME = 16384;
/** Longest SSH_AUTH_INFO_0 a BEGIN carries (a few keys; a longer one is not sent, so no lease). */
export const MAX_AUTH_INFO = 8192;

export const MsgType = {
  BEGIN: 0x01,
  WAIT: 0x02,
  CODE: 0x03,
  /** The person asked for another rendering of the same session's QR (docs/protocol.md §1). */
  RENDER: 0x04,
  CHALLENGE: 0x81,
  VERDICT: 0x82,
} as const;
export type MsgTypeValue = (typeof MsgType)[keyof typeof MsgType];

export const Result = {
  APPROVED: 0,
  DENIED: 1,
  EXPIRED: 2,
  CODE_WRONG: 3,
  NO_DEVICE: 4,
  OFFLINE: 5,
  ERROR: 6,
  LOCKED: 7,
} as const;
export type ResultValue = (typeof Result)[keyof typeof Result];

export const Mode = { AUTO: 0, PROMPT: 1, INFO: 2 } as const;
/** TEXT: no picture, the payload as text (for the app's paste field); only in RENDER. */
export const QrStyle = { UTF8: 0, ASCII: 1, TEXT: 2 } as const;

type FieldKind = 'str' | 'u8' | 'u32';
interface FieldSpec {
  tag: number;
  name: string;
  kind: FieldKind;
  max?: number; // for str: bytes
  required?: boolean;
}

const SPECS: Record<number, { name: string; fields: FieldSpec[] }> = {
  [MsgType.BEGIN]: {
    name: 'BEGIN',
    fields: [
      { tag: 1, name: 'user', kind: 'str', max: 256, required: true },
      { tag: 2, name: 'rhost', kind: 'str', max: 256 },
      { tag: 3, name: 'service', kind: 'str', max: 64, required: true },
      { tag: 4, name: 'tty', kind: 'str', max: 64 },
      { tag: 5, name: 'mode', kind: 'u8' },
      { tag: 6, name: 'qr', kind: 'u8' },
      { tag: 7, name: 'timeout', kind: 'u32' },
      { tag: 8, name: 'authfile', kind: 'str', max: 256 },
      { tag: 9, name: 'uid', kind: 'u32' },
      { tag: 10, name: 'home', kind: 'str', max: 1024 },
      { tag: 11, name: 'lease', kind: 'u8' },
      { tag: 12, name: 'authInfo', kind: 'str', max: MAX_AUTH_INFO },
      { tag: 13, name: 'uv', kind: 'u8' },
      { tag: 14, name: 'ruser', kind: 'str', max: 256 },
    ],
  },
  [MsgType.WAIT]: { name: 'WAIT', fields: [{ tag: 1, name: 'maxWait', kind: 'u32' }] },
  [MsgType.CODE]: { name: 'CODE', fields: [{ tag: 1, name: 'digits', kind: 'str', max: 16, required: true }] },
  [MsgType.RENDER]: { name: 'RENDER', fields: [{ tag: 1, name: 'qr', kind: 'u8', required: true }] },
  [MsgType.CHALLENGE]: {
    name: 'CHALLENGE',
    fields: [
      { tag: 1, name: 'qrText', kind: 'str', max: 12288, required: true },
      { tag: 2, name: 'prompt', kind: 'str', max: 512, required: true },
      { tag: 3, name: 'expires', kind: 'u32', required: true },
      { tag: 4, name: 'mode', kind: 'u8', required: true },
      { tag: 5, name: 'payload', kind: 'str', max: 256, required: true },
    ],
  },
  [MsgType.VERDICT]: {
    name: 'VERDICT',
    fields: [
      { tag: 1, name: 'result', kind: 'u8', required: true },
      { tag: 2, name: 'message', kind: 'str', max: 512 },
      { tag: 3, name: 'triesLeft', kind: 'u8' },
    ],
  },
};

export interface BeginMsg {
  type: typeof MsgType.BEGIN;
  user: string;
  rhost?: string;
  service: string;
  tty?: string;
  mode?: number;
  qr?: number;
  timeout?: number;
  authfile?: string;
  /** From getpwnam(3) in the module, so NSS users (LDAP, sssd) need no lookup in the agent. */
  uid?: number;
  home?: string;
  /** 1: the PAM line has the `lease` option (docs/pam_qrauth.8). */
  lease?: number;
  /** sshd's SSH_AUTH_INFO_0 from the PAM environment: the methods (and keys) it verified. */
  authInfo?: string;
  /** 1: the PAM line has `uv=required` (approvals need UV whatever the agent's userVerification). */
  uv?: number;
  /** PAM_RUSER: who asked (su and sudo set the caller's name); the agent limits the logins waiting for each. */
  ruser?: string;
}
export interface WaitMsg {
  type: typeof MsgType.WAIT;
  maxWait?: number;
}
export interface CodeMsg {
  type: typeof MsgType.CODE;
  digits: string;
}
export interface RenderMsg {
  type: typeof MsgType.RENDER;
  qr: number;
}
export interface ChallengeMsg {
  type: typeof MsgType.CHALLENGE;
  qrText: string;
  prompt: string;
  expires: number;
  mode: number;
  payload: string;
}
export interface VerdictMsg {
  type: typeof MsgType.VERDICT;
  result: ResultValue;
  message?: string;
  triesLeft?: number;
}
export type FrameMsg = BeginMsg | WaitMsg | CodeMsg | RenderMsg | ChallengeMsg | VerdictMsg;

function frameError(msg: string): never {
  throw new QrauthError('QRA_ERR_FRAME', msg);
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** Decode one frame body (type + fields). Throws QRA_ERR_FRAME on anything off-spec. */
export function decodeBody(body: Uint8Array): FrameMsg {
  if (body.length < 1) frameError('empty frame');
  const spec = SPECS[body[0]!];
  if (!spec) frameError(`unknown message type 0x${body[0]!.toString(16)}`);
  const out: Record<string, unknown> = { type: body[0] };
  const seen = new Set<number>();
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let o = 1;
  while (o < body.length) {
    if (o + 3 > body.length) frameError('truncated field header');
    const tag = body[o]!;
    const len = view.getUint16(o + 1);
    o += 3;
    if (o + len > body.length) frameError('field runs past the end of the frame');
    const f = spec.fields.find((x) => x.tag === tag);
    if (!f) frameError(`unknown tag ${tag} in ${spec.name}`);
    if (seen.has(tag)) frameError(`repeated tag ${tag} in ${spec.name}`);
    seen.add(tag);
    const v = body.subarray(o, o + len);
    if (f.kind === 'u8') {
      if (len !== 1) frameError(`${spec.name}.${f.name} must be 1 byte`);
      out[f.name] = v[0];
    } else if (f.kind === 'u32') {
      if (len !== 4) frameError(`${spec.name}.${f.name} must be 4 bytes`);
      out[f.name] = view.getUint32(o);
    } else {
      if (len > f.max!) frameError(`${spec.name}.${f.name} longer than ${f.max} bytes`);
      if (v.includes(0)) frameError(`${spec.name}.${f.name} contains a NUL byte`);
      try {
        out[f.name] = utf8Strict.decode(v);
      } catch {
        frameError(`${spec.name}.${f.name} is not UTF-8`);
      }
    }
    o += len;
  }
  for (const f of spec.fields) if (f.required && !seen.has(f.tag)) frameError(`${spec.name}.${f.name} is missing`);
  return out as unknown as FrameMsg;
}

/** Encode a message as a full frame (length prefix included). */
export function encodeFrame(msg: FrameMsg): Uint8Array {
  const spec = SPECS[msg.type];
  if (!spec) frameError(`unknown message type ${msg.type}`);
  const parts: Uint8Array[] = [];
  let size = 1;
  const rec = msg as unknown as Record<string, unknown>;
  for (const f of spec.fields) {
    const v = rec[f.name];
    if (v === undefined) {
      if (f.required) frameError(`${spec.name}.${f.name} is missing`);
      continue;
    }
    let value: Uint8Array;
    if (f.kind === 'u8') value = Uint8Array.of(Number(v) & 0xff);
    else if (f.kind === 'u32') {
      value = new Uint8Array(4);
      new DataView(value.buffer).setUint32(0, Number(v) >>> 0);
    } else {
      value = new TextEncoder().encode(String(v));
      if (value.length > f.max!) frameError(`${spec.name}.${f.name} longer than ${f.max} bytes`);
    }
    const hdr = new Uint8Array(3);
    hdr[0] = f.tag;
    new DataView(hdr.buffer).setUint16(1, value.length);
    parts.push(hdr, value);
    size += 3 + value.length;
  }
  if (size > QR_MAX_FRAME) frameError('frame larger than QR_MAX_FRAME');
  const out = new Uint8Array(4 + size);
  new DataView(out.buffer).setUint32(0, size);
  out[4] = msg.type;
  let o = 5;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Incremental, bounded frame reader: feed it chunks as they arrive, in any split; it returns
 * whole messages. Never buffers more than one frame (4 + QR_MAX_FRAME bytes).
 */
export class FrameDecoder {
  private header = new Uint8Array(4);
  private headerFill = 0;
  private body: Uint8Array | null = null;
  private bodyFill = 0;

  /** True while a frame has started but not finished (for the stalled-peer timeout). */
  get midFrame(): boolean {
    return this.headerFill > 0 || this.body !== null;
  }

  push(chunk: Uint8Array): FrameMsg[] {
    const msgs: FrameMsg[] = [];
    let o = 0;
    while (o < chunk.length) {
      if (this.body === null) {
        const n = Math.min(4 - this.headerFill, chunk.length - o);
        this.header.set(chunk.subarray(o, o + n), this.headerFill);
        this.headerFill += n;
        o += n;
        if (this.headerFill < 4) break;
        const len = new DataView(this.header.buffer).getUint32(0);
        if (len < 1 || len > QR_MAX_FRAME) frameError(`frame length ${len} outside 1..${QR_MAX_FRAME}`);
        this.body = new Uint8Array(len);
        this.bodyFill = 0;
      }
      const n = Math.min(this.body.length - this.bodyFill, chunk.length - o);
      this.body.set(chunk.subarray(o, o + n), this.bodyFill);
      this.bodyFill += n;
      o += n;
      if (this.bodyFill === this.body.length) {
        const body = this.body;
        this.body = null;
        this.headerFill = 0;
        msgs.push(decodeBody(body));
        body.fill(0);
      }
    }
    return msgs;
  }
}
