/**
 * The host's Ed25519 key: made on first start, private seed in <stateDir>/host.key (0600,
 * agent only), public key in <stateDir>/host.pub (world-readable, for `qrauth` and admins).
 */
import { closeSync, constants, fstatSync, mkdirSync, openSync, readSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { QrauthError, fromB64url, keyId, toB64url } from '../../protocol/src/index.js';
import { ed25519Signer, nodeCrypto } from '../../protocol/src/crypto-node.js';

export interface HostKey {
  seed: Uint8Array;
  /** Ed25519 signature by this key (the expanded key is kept, see ed25519Signer). */
  sign: (message: Uint8Array) => Uint8Array;
  publicKey: Uint8Array;
  hostId: string;
}

function readSmallFile(path: string, requirePrivate: boolean): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new QrauthError('QRA_ERR_CONFIG', `${path} is not a regular file`);
    if (requirePrivate && (st.mode & 0o077) !== 0) {
      throw new QrauthError('QRA_ERR_CONFIG', `${path} must not be readable by group or others (chmod 600 ${path})`);
    }
    if (requirePrivate && process.getuid && st.uid !== process.getuid()) {
      throw new QrauthError('QRA_ERR_CONFIG', `${path} must be owned by the agent's user`);
    }
    if (st.size > 4096) throw new QrauthError('QRA_ERR_CONFIG', `${path} is too large to be a key file`);
    const b = Buffer.alloc(st.size);
    readSync(fd, b, 0, st.size, 0);
    const s = b.toString('utf8');
    b.fill(0);
    return s;
  } finally {
    closeSync(fd);
  }
}

export function publicKeyLine(publicKey: Uint8Array, hostId: string): string {
  return `ed25519 ${toB64url(publicKey)} ${hostId}\n`;
}

/** Load the host key, or make it when there is none. */
export function loadOrCreateHostKey(stateDir: string): HostKey {
  mkdirSync(stateDir, { recursive: true, mode: 0o755 });
  const keyPath = join(stateDir, 'host.key');
  let seed: Uint8Array;
  try {
    const text = readSmallFile(keyPath, true).trim();
    const m = /^qrauth-host-key-v1 ([A-Za-z0-9_-]{43})$/.exec(text);
    if (!m) throw new QrauthError('QRA_ERR_CONFIG', `${keyPath} is not a qrauth host key; move it away to make a new one`);
    seed = fromB64url(m[1]!, 32);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    seed = nodeCrypto.randomBytes(32);
    // O_EXCL: two agents starting at once cannot both write a key.
    const tmp = `${keyPath}.${process.pid}.tmp`;
    writeFileSync(tmp, `qrauth-host-key-v1 ${toB64url(seed)}\n`, { mode: 0o600, flag: 'wx' });
    renameSync(tmp, keyPath);
  }
  const { publicKey } = nodeCrypto.ed25519FromSeed(seed);
  const hostId = keyId(nodeCrypto, publicKey);
  const pubPath = join(stateDir, 'host.pub');
  writeFileSync(`${pubPath}.tmp`, publicKeyLine(publicKey, hostId), { mode: 0o644 });
  renameSync(`${pubPath}.tmp`, pubPath);
  return { seed, sign: ed25519Signer(seed), publicKey, hostId };
}

/** Read host.pub (for the CLI, which cannot read the private key). */
export function readHostPublicKey(stateDir: string): { publicKey: Uint8Array; hostId: string } {
  const text = readSmallFile(join(stateDir, 'host.pub'), false).trim();
  const m = /^ed25519 ([A-Za-z0-9_-]{43}) ([A-Za-z0-9_-]{22})$/.exec(text);
  if (!m) throw new QrauthError('QRA_ERR_CONFIG', `${join(stateDir, 'host.pub')} is malformed`);
  const publicKey = fromB64url(m[1]!, 32);
  const hostId = keyId(nodeCrypto, publicKey);
  if (hostId !== m[2]) throw new QrauthError('QRA_ERR_CONFIG', `${join(stateDir, 'host.pub')}: host id does not match the key`);
  return { publicKey, hostId };
}
