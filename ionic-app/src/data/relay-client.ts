/**
 * The phone's side of the Socket.IO wire (namespace /device), ported from the headless phone
 * (test/support/phone.ts): one connection per relay URL, a fresh signed handshake on every
 * (re)connect, every ack validated against protocol/src/events.ts before it is believed.
 */
import { type Socket, io } from 'socket.io-client';
import { webCrypto } from '../../../protocol/src/crypto-web.js';
import {
  type Check,
  DEVICE_NAMESPACE,
  type DeviceClientToServer,
  type DeviceServerToClient,
  QrauthError,
  asErrorCode,
  makeAuthHandshake,
  parse,
  relayUrlProblem,
} from '../../../protocol/src/index.js';
import { DeviceKeyError, onDeviceReset, withDeviceSeed } from './device-key';
import { answerText } from './error-text';

type DeviceSocket = Socket<DeviceServerToClient, DeviceClientToServer>;

/** How long to wait for the relay to connect, and then for each answer. */
export const RELAY_TIMEOUT_MS = 8000;


const sockets = new Map<string, DeviceSocket>();
/** Who waits for a connection of this socket, to hear that its handshake could not be signed. */
const handshakeWaiters = new WeakMap<DeviceSocket, Set<(err: Error) => void>>();

// A connection proves the device key it was opened with, and the relay holds every enroll and
// decision on it to that key: none may outlive the key.
onDeviceReset(() => disconnectAll());

/**
 * The handshake could not be signed: the device key cannot be used (DeviceKeyError, passed on as
 * it is, so the screen names the key problem rather than the relay), or the store failed.
 */
function handshakeError(e: unknown): Error {
  if (e instanceof DeviceKeyError) return e;
  return new QrauthError('QRA_ERR_INTERNAL', `this phone could not sign its handshake with the relay: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

/** Connects (or reuses the connection) to the relay at `relayUrl`. */
export async function connectRelay(relayUrl: string, timeoutMs = RELAY_TIMEOUT_MS): Promise<DeviceSocket> {
  // A host stored before this rule, or by a tampered store: never over plain http off loopback.
  const insecure = relayUrlProblem(relayUrl);
  if (insecure) throw new QrauthError('QRA_ERR_CONFIG', `this phone will not use the relay ${relayUrl}: ${insecure}`);
  let socket = sockets.get(relayUrl);
  if (socket?.connected) return socket;
  if (!socket) {
    const created: DeviceSocket = io(`${relayUrl}${DEVICE_NAMESPACE}`, {
      // The handshake proves the device key: signed afresh for each connection attempt.
      auth: (cb) => {
        withDeviceSeed((seed) => makeAuthHandshake(webCrypto, 'device', seed, Date.now(), relayUrl)).then(
          (h) => cb(h as unknown as Record<string, unknown>),
          (e: unknown) => {
            // Send no handshake at all (an empty one would only be refused, and the refusal
            // would read as the relay's doing), stop retrying, and tell whoever is waiting why.
            created.disconnect();
            const err = handshakeError(e);
            for (const fail of [...(handshakeWaiters.get(created) ?? [])]) fail(err);
          },
        );
      },
      transports: ['websocket'],
      forceNew: true,
      timeout: timeoutMs,
      reconnectionAttempts: 3,
    }) as DeviceSocket;
    socket = created;
    sockets.set(relayUrl, socket);
  } else if (!socket.active) {
    socket.connect(); // refused last time (handshake): try once more with a fresh proof
  }
  const s = socket;
  try {
    await new Promise<void>((resolve, reject) => {
      let lastError = 'no answer';
      const done = (err?: Error) => {
        clearTimeout(timer);
        s.off('connect', onConnect);
        s.off('connect_error', onError);
        handshakeWaiters.get(s)?.delete(done);
        if (err) reject(err);
        else resolve();
      };
      const waiters = handshakeWaiters.get(s) ?? new Set();
      handshakeWaiters.set(s, waiters.add(done));
      const onConnect = () => done();
      const onError = (err: Error & { data?: { code?: unknown } }) => {
        lastError = err.message;
        if (!s.active) {
          // Refused by the relay's handshake check: retrying will not help.
          // In the phone's own words: the relay's text is the relay's to write (error-text.ts).
          const code = err.data?.code !== undefined ? err.data.code : 'QRA_ERR_UNAUTHENTICATED';
          done(new QrauthError(asErrorCode(code), `the relay refused this phone: ${answerText(code)}`));
        } else {
          // Network-level failure (refused, DNS, offline): say so now rather than after the
          // timeout; the person has the offline code and a "Try again" button meanwhile.
          done(new QrauthError('QRA_ERR_HOST_OFFLINE', `cannot reach the relay at ${relayUrl} (${err.message})`));
        }
      };
      const timer = setTimeout(
        () => done(new QrauthError('QRA_ERR_HOST_OFFLINE', `cannot reach the relay at ${relayUrl} (${lastError})`)),
        timeoutMs,
      );
      s.on('connect', onConnect);
      s.on('connect_error', onError);
    });
  } catch (e) {
    s.disconnect();
    sockets.delete(relayUrl);
    throw e;
  }
  return s;
}

/** Sends one request and waits for its ack; no answer in time is QRA_ERR_HOST_OFFLINE. */
export async function ask<T>(send: () => Promise<T>, timeoutMs = RELAY_TIMEOUT_MS): Promise<T> {
  try {
    return await send();
  } catch (cause) {
    throw new QrauthError('QRA_ERR_HOST_OFFLINE', `no answer from the relay within ${timeoutMs / 1000} s`, { cause });
  }
}

/** Validates an ack from the relay; a malformed one is an error, never believed. */
export function checkAck<T>(check: Check<T>, raw: unknown, what: string): T {
  try {
    return parse(check, raw, what);
  } catch (cause) {
    throw new QrauthError('QRA_ERR_INVALID_INPUT', `the relay sent an invalid ${what}: ${(cause as Error).message}`, { cause });
  }
}

export function disconnectAll(): void {
  for (const s of sockets.values()) s.disconnect();
  sockets.clear();
}
