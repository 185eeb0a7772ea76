/**
 * Which web pages may talk to the relay. The web app has an origin of its own (a static web
 * server the operator runs, never the relay): a relay that served the app's code could take
 * every web user's key. Browsers always send Origin on a WebSocket upgrade and on cross-origin
 * requests, so a request with an Origin is a browser page: it needs an allow-listed origin and
 * may use only /device. Agents and other non-browser clients send no Origin.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'socket.io';
import { QrauthError } from '../../protocol/src/index.js';
import { isLoopbackHostname } from '../../protocol/src/relay-url.js';
import { HandshakeError } from './auth.js';

/**
 * The origins of the native app's WebView (Capacitor: iOS, Android). Always allowed: the native
 * app carries its own code, and no web site can be served to a browser from these origins.
 */
export const NATIVE_APP_ORIGINS: readonly string[] = ['capacitor://localhost', 'https://localhost'];

/** An app origin as browsers send it (scheme://host[:port]); QRA_ERR_CONFIG for anything else. */
export function parseAppOrigin(text: string): string {
  const bad = (why: string) =>
    new QrauthError('QRA_ERR_CONFIG', `--app-origin ${JSON.stringify(text)}: ${why}; give the web app's origin, e.g. https://qrauth-app.example.com`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad('not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw bad('must start with https://');
  if (url.protocol === 'http:' && !isLoopbackHostname(url.hostname)) throw bad('plain http is allowed only on loopback (browsers keep keys and cameras from it anyway)');
  if (url.username || url.password || (url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) throw bad('an origin has no path, query or credentials');
  return url.origin;
}

export class AppOrigins {
  private readonly allowed: ReadonlySet<string>;

  /**
   * @param origins allow-listed web app origins (parsed with parseAppOrigin)
   * @param sameOrigin also allow a page from the relay's own host: only when the relay itself
   *   serves the app (--serve-app-trusting-relay)
   */
  constructor(
    origins: readonly string[],
    private readonly sameOrigin: boolean,
  ) {
    this.allowed = new Set([...origins.map(parseAppOrigin), ...NATIVE_APP_ORIGINS]);
  }

  /** The configured web origins, for the start-up log line. */
  get web(): string[] {
    return [...this.allowed].filter((o) => !NATIVE_APP_ORIGINS.includes(o));
  }

  /** No Origin (not a browser), or one on the allow-list. */
  allows(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    if (this.allowed.has(origin.toLowerCase())) return true;
    if (!this.sameOrigin) return false;
    // The relay serves the app itself: its pages come from the Host the browser asked for
    // (the scheme may differ behind a TLS-terminating proxy).
    try {
      return new URL(origin).host === req.headers.host?.toLowerCase();
    } catch {
      return false;
    }
  }
}

/** /host middleware: agents are not browsers; a page, even an allowed one, has no business there. */
export function refuseBrowsers(socket: Socket, next: (err?: Error) => void): void {
  if (socket.handshake.headers.origin === undefined) return next();
  next(new HandshakeError('QRA_ERR_UNAUTHENTICATED', `a browser page may not connect as a host; agents connect without an Origin`));
}
