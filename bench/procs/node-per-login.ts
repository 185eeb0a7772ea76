/**
 * The baseline of benchmark 1: a Node process started for one login doing what the agent does
 * for a BEGIN (load the host key, read the user's devices file, make and sign the session,
 * render the QR, encode the CHALLENGE), then write the frame to stdout and exit. This is the
 * design qrauth rejects ("sshd never starts Node per login"); the run measures what it would cost.
 */
import { readDevicesFile } from '../../agent/src/devices-file.js';
import { loadOrCreateHostKey } from '../../agent/src/host-key.js';
import { renderQr } from '../../agent/src/qr-render.js';
import { SessionStore } from '../../agent/src/sessions.js';
import { MsgType, encodeFrame, formatLoginPayload } from '../../protocol/src/index.js';

const [stateDir, devicesPath, user] = process.argv.slice(2) as [string, string, string];
const host = loadOrCreateHostKey(stateDir);
const { devices } = readDevicesFile(devicesPath, { name: user, uid: 0, home: '/root' });
if (devices.length === 0) process.exit(3);
const sessions = new SessionStore(host, 'bench-host', 90);
const s = sessions.create({ user, rhost: '198.51.100.1', service: 'sshd', tty: 'ssh', loadDevices: () => devices });
const payload = formatLoginPayload({ hostId: host.hostId, sid: s.sid, nonce: s.nonce });
const qr = renderQr(payload, 'utf8');
process.stdout.write(
  encodeFrame({ type: MsgType.CHALLENGE, qrText: `\n${qr.text}${payload}\n`, prompt: 'Scan with qrauth', expires: 90, mode: 1, payload }),
  () => process.exit(0),
);
