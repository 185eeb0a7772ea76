/**
 * What the phone says when a relay or host answers with an error. The answer's code and message
 * come through the relay and nothing signs them: a relay can write any text there, and shown as
 * the host's words (beside "I started this login: show the code") it could coach a person into
 * reading the offline code out to a phisher's "help desk". So the phone words each code itself
 * and shows no text it was sent (docs/threat-model.md, "What a relay can make the app say").
 */
import { type ErrorCode, QrauthError, asErrorCode } from '../../../protocol/src/index.js';

const TEXT: Partial<Record<ErrorCode, string>> = {
  QRA_ERR_INVALID_INPUT: 'the answer could not be read',
  QRA_ERR_SIGNATURE: 'a signature did not verify',
  QRA_ERR_UNKNOWN_SESSION: 'this login is not waiting any more: it ended, or it was never started',
  QRA_ERR_EXPIRED: 'this login has expired',
  QRA_ERR_NOT_ENROLLED: 'this phone is not enrolled for this user on this host',
  QRA_ERR_HOST_OFFLINE: 'the host is not connected to the relay',
  QRA_ERR_RATE_LIMITED: 'too many requests from this phone just now; wait a minute and try again',
  QRA_ERR_UNAUTHENTICATED: 'the relay did not accept this phone',
  QRA_ERR_FORBIDDEN: 'this is not allowed',
  QRA_ERR_ENROLL: 'the enrollment code is unknown, used or expired; run qrauth enroll again',
  QRA_ERR_LEASE: 'the host did not offer that',
  QRA_ERR_USER_VERIFICATION: 'the host needs your fingerprint, face or PIN with the approval',
  QRA_ERR_NO_PASSKEY: 'the host requires a passkey, and this phone was enrolled without one',
  QRA_ERR_PASSKEY: "the host did not accept the passkey's answer",
  QRA_ERR_PASSKEY_CLONED: "the host saw this passkey's counter go backwards: it may have been copied; tell the host's administrator",
};

/** The phone's own words for an error code from the network (any value: unknown codes get a plain line with the code). */
export function answerText(code: unknown): string {
  // Only a code of ours is named: a made-up one is also text the relay wrote.
  const known = asErrorCode(code);
  return TEXT[known] ?? `an error came back (${known})`;
}

/** An error answer from the network as an error of the phone's: its code, the phone's words. */
export function answerError(code: unknown): QrauthError {
  return new QrauthError(asErrorCode(code), answerText(code));
}
