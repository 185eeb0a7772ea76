/**
 * Every error qrauth raises on purpose has a stable code (QRA_ERR_…) and a message that says
 * what to do. Codes are part of the interface: tests check they are unique and documented in
 * docs/errors.md.
 */
export const ERROR_CODES = {
  QRA_ERR_INVALID_INPUT: 'A message or value from outside did not match its schema.',
  QRA_ERR_FRAME: 'A frame on the PAM socket was malformed or over a size limit.',
  QRA_ERR_PAYLOAD: 'A QR payload could not be parsed.',
  QRA_ERR_SIGNATURE: 'A signature did not verify.',
  QRA_ERR_CONFIG: 'The configuration file or an option is invalid.',
  QRA_ERR_DEVICES_FILE: 'A devices file is unsafe (owner, mode, symlink) or unreadable.',
  QRA_ERR_UNKNOWN_SESSION: 'The login session does not exist or has already ended.',
  QRA_ERR_EXPIRED: 'The login session or enrollment token has expired.',
  QRA_ERR_NOT_ENROLLED: 'The device is not enrolled for this user on this host.',
  QRA_ERR_HOST_OFFLINE: 'The host is not connected to the relay.',
  QRA_ERR_RATE_LIMITED: 'Too many requests; slow down.',
  QRA_ERR_UNAUTHENTICATED: 'The connection did not prove its key.',
  QRA_ERR_FORBIDDEN: 'The caller may not do this: only root may act for another user or unlock codes.',
  QRA_ERR_UNKNOWN_HOST: 'The QR belongs to a host this phone has not enrolled with.',
  QRA_ERR_ENROLL: 'Enrollment failed (token unknown, used, expired, or a key mismatch).',
  QRA_ERR_AGENT_UNREACHABLE: 'The qrauth agent is not running or its socket cannot be reached.',
  QRA_ERR_LEASE: 'A lease was asked for that the host did not offer (duration, key), or a lease request was malformed.',
  QRA_ERR_USER_VERIFICATION: "This host requires the phone owner's fingerprint, face or PIN (a passkey assertion with user verification) and the approval did not carry it.",
  QRA_ERR_NO_PASSKEY: 'This host requires a passkey and the device was enrolled without one.',
  QRA_ERR_PASSKEY: 'The passkey assertion sent with an approval did not verify (origin, RP ID, challenge, credential, flags, signature or format).',
  QRA_ERR_PASSKEY_CLONED: "The passkey's signature counter went backwards: the credential may have been copied.",
  QRA_ERR_INTERNAL: 'An unexpected internal error.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class QrauthError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QrauthError';
    this.code = code;
  }
}

export function isQrauthError(e: unknown, code?: ErrorCode): e is QrauthError {
  return e instanceof QrauthError && (code === undefined || e.code === code);
}

/**
 * A code that came from elsewhere (an ack, a reply, a refusal), as one of ours: anything else is
 * `otherwise`, so text a peer made up is never shown or logged as if it were one of our codes.
 */
export function asErrorCode(code: unknown, otherwise: ErrorCode = 'QRA_ERR_INTERNAL'): ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code) ? (code as ErrorCode) : otherwise;
}
