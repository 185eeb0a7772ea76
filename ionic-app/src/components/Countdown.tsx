import { useEffect, useState } from 'react';

/** Seconds left until `expSeconds` (unix s), ticking; calls onExpire once at zero. */
export function useSecondsLeft(expSeconds: number | undefined, onExpire?: () => void): number | undefined {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (expSeconds === undefined) return;
    const t = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(t);
  }, [expSeconds]);
  const left = expSeconds === undefined ? undefined : Math.max(0, Math.ceil(expSeconds - now / 1000));
  useEffect(() => {
    if (left === 0) onExpire?.();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [left === 0]);
  return left;
}

export function formatSeconds(s: number): string {
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export function Countdown({ secondsLeft }: { secondsLeft: number }) {
  return (
    <span className={`countdown${secondsLeft <= 10 ? ' countdown-low' : ''}`} data-testid="time-left">
      {secondsLeft > 0 ? `${formatSeconds(secondsLeft)} left` : 'expired'}
    </span>
  );
}
