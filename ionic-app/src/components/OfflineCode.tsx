/** The 8-digit code, in two groups of four for reading aloud and typing. */
export function OfflineCode({ code, prominent }: { code: string | null; prominent: boolean }) {
  const shown = code ? `${code.slice(0, 4)} ${code.slice(4)}` : '…';
  return (
    <section
      className={`offline-code${prominent ? ' offline-code-prominent' : ''}`}
      aria-labelledby="offline-code-title"
      data-testid="offline-code-box"
    >
      <h2 id="offline-code-title">{prominent ? 'Type this code at the prompt' : 'Offline? Type this code at the prompt instead'}</h2>
      <p className="offline-code-digits" data-testid="offline-code" aria-label={code ? `Offline code ${code.split('').join(' ')}` : 'Offline code loading'}>
        {shown}
      </p>
    </section>
  );
}
