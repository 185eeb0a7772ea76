/** The optional allow-list of hostIds: one a line, `#` comments and blank lines allowed. */
import { readFile } from 'node:fs/promises';
import { ID_PATTERN, QrauthError } from '../../protocol/src/index.js';

export function parseAllowHosts(text: string, source = 'allow-hosts'): Set<string> {
  const ids = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    if (!ID_PATTERN.test(line)) {
      throw new QrauthError('QRA_ERR_CONFIG', `${source}:${i + 1}: expected a hostId (22 base64url characters, from \`qrauth status\`)`);
    }
    ids.add(line);
  });
  return ids;
}

export async function readAllowHosts(file: string): Promise<Set<string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new QrauthError('QRA_ERR_CONFIG', `cannot read the allow-hosts file ${file}: ${(cause as Error).message}`, { cause });
  }
  return parseAllowHosts(text, file);
}
