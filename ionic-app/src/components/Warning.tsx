import { IonIcon } from '@ionic/react';
import { alertCircle, cloudOffline, informationCircle, timeOutline, warning } from 'ionicons/icons';
import type { ReactNode } from 'react';

export type WarningKind = 'unknown-host' | 'expired' | 'signature' | 'offline' | 'unverified' | 'error' | 'info';

const ICONS: Record<WarningKind, string> = {
  'unknown-host': warning,
  expired: timeOutline,
  signature: alertCircle,
  offline: cloudOffline,
  unverified: warning,
  error: alertCircle,
  info: informationCircle,
};

/** A message that matters: announced to screen readers (role=alert) and coloured by severity. */
export function Warning({ kind, title, children }: { kind: WarningKind; title: string; children?: ReactNode }) {
  const danger = kind === 'signature' || kind === 'unknown-host' || kind === 'error' || kind === 'unverified';
  return (
    <div className={`warning ${danger ? 'warning-danger' : 'warning-caution'}`} role="alert" data-testid={`warning-${kind}`}>
      <IonIcon icon={ICONS[kind]} aria-hidden="true" className="warning-icon" />
      <div>
        <strong>{title}</strong>
        {children ? <div className="warning-body">{children}</div> : null}
      </div>
    </div>
  );
}
