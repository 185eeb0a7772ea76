/**
 * The 8-digit code, in two groups of four for reading and typing, with what it logs in to and a
 * plain warning: the code is an approval on its own.
 */
export function OfflineCode({ code, hostname, user, rhost }: { code: string | null; hostname: string; user?: string; rhost?: string }) {
  const shown = code ? `${code.slice(0, 4)} ${code.slice(4)}` : '…';
  return (
    <section className="offline-code offline-code-prominent" aria-labelledby="offline-code-title" data-testid="offline-code-box">
      <h2 id="offline-code-title">Type this code at your terminal&apos;s prompt</h2>
      <p className="offline-code-digits" data-testid="offline-code">
        {shown}
      </p>
      <p data-testid="offline-code-what">
        {user ? (
          <>
            It logs in as <strong>{user}</strong> to <strong>{hostname}</strong> from <strong>{rhost || 'an unknown address'}</strong>.
          </>
        ) : (
          <>
            It logs in to <strong>{hostname}</strong>; this phone could not check as whom or from where.
          </>
        )}
      </p>
      <p className="offline-code-warning" data-testid="offline-code-warning">
        Type it only into a terminal you started yourself, just now. Never read it out, send it or type it anywhere else: whoever
        has it gets in.
      </p>
    </section>
  );
}
