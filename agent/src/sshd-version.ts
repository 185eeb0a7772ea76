/**
 * Does sshd show PAM info messages at once? OpenSSH before 10.3 shows them only together with
 * the next prompt, so there the QR must live inside the prompt. Asked once at start, never per login.
 */
import { execFile } from 'node:child_process';

export function parseOpenSshVersion(text: string): [number, number] | null {
  const m = /OpenSSH_(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

export function showsInfoAtOnce(version: [number, number] | null): boolean {
  if (!version) return false;
  const [major, minor] = version;
  return major > 10 || (major === 10 && minor >= 3);
}

export function detectSshdVersion(sshdPath: string): Promise<[number, number] | null> {
  return new Promise((resolve) => {
    execFile(sshdPath, ['-V'], { timeout: 3000 }, (_err, stdout, stderr) => {
      resolve(parseOpenSshVersion(`${stdout}${stderr}`));
    });
  });
}
