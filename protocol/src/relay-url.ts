/**
 * Which relay URLs a host or a phone may use. Plain http only on loopback: anywhere else a
 * network attacker could read and rewrite the traffic, including (for a web app loaded over
 * that connection) the code that holds the phone's key.
 */

/** 127.0.0.0/8, ::1 and localhost, as `URL.hostname` spells them. */
export function isLoopbackHostname(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === 'localhost' || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Why `relayUrl` must not be used, or null when it may: https anywhere, http on loopback only.
 * The message tells the reader what to use instead.
 */
export function relayUrlProblem(relayUrl: string): string | null {
  let url: URL;
  try {
    url = new URL(relayUrl);
  } catch {
    return `${relayUrl} is not a valid URL`;
  }
  if (url.username || url.password) return 'the relay URL must not carry a user name or password';
  if (url.protocol === 'https:') return null;
  if (url.protocol === 'http:' && isLoopbackHostname(url.hostname)) return null;
  if (url.protocol === 'http:') {
    return `plain http is allowed only for a relay on this machine (127.0.0.1, ::1, localhost); use https://${url.host}${url.pathname === '/' ? '' : url.pathname}`;
  }
  return `the relay URL must start with https:// (got ${url.protocol}//)`;
}
