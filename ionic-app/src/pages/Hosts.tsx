import { IonButton, IonIcon, IonItem, IonLabel, IonList, useIonAlert } from '@ionic/react';
import { trash } from 'ionicons/icons';
import { useEffect, useState } from 'react';
import type { TrustedHost } from '../models';
import { Page } from '../components/Page';
import { endMyLeases } from '../data/qrauth';
import { listHosts, onStoreChange, removeHost } from '../data/store';

/** What the last "End my leases" did, per host id. */
type LeaseEnd = { state: 'sending' } | { state: 'ended'; revoked: number } | { state: 'unconfirmed' } | { state: 'failed'; message: string };

function useHosts(): TrustedHost[] | undefined {
  const [hosts, setHosts] = useState<TrustedHost[]>();
  useEffect(() => {
    const load = () => void listHosts().then(setHosts);
    load();
    return onStoreChange(load);
  }, []);
  return hosts;
}

function leaseStatus(end: LeaseEnd | undefined): string {
  if (!end) return '';
  if (end.state === 'sending') return 'Ending…';
  if (end.state === 'failed') return `Could not end them: ${end.message}`;
  if (end.state === 'unconfirmed') {
    return "Sent, but the answer is not signed by the host (an older qrauth there, or a relay that answered for it): this phone cannot tell whether they ended. To be sure, run qrauth leases revoke on the host.";
  }
  if (end.revoked === 0) return 'This phone had no lease there.';
  return `Ended ${end.revoked} ${end.revoked === 1 ? 'lease' : 'leases'}: the next login there needs this phone again.`;
}

/** The hosts this phone enrolled with; removing one makes its login QRs "unknown host". */
export default function Hosts() {
  const hosts = useHosts();
  const [presentAlert] = useIonAlert();
  const [leaseEnds, setLeaseEnds] = useState<Record<string, LeaseEnd>>({});

  // Ends every "approve for … from this key" this phone granted there: the next login shows a QR again.
  const endLeases = async (h: TrustedHost) => {
    setLeaseEnds((m) => ({ ...m, [h.hostId]: { state: 'sending' } }));
    let end: LeaseEnd;
    try {
      end = await endMyLeases(h);
    } catch (e) {
      end = { state: 'failed', message: e instanceof Error ? e.message : String(e) };
    }
    setLeaseEnds((m) => ({ ...m, [h.hostId]: end }));
  };

  const confirmRemove = (h: TrustedHost) =>
    void presentAlert({
      header: `Remove ${h.hostname}?`,
      message: 'This phone will no longer approve logins on it. To stop the host trusting this phone too, run qrauth revoke there.',
      buttons: [
        { text: 'Cancel', role: 'cancel' },
        { text: 'Remove', role: 'destructive', handler: () => void removeHost(h.hostId) },
      ],
    });

  return (
    <Page title="Hosts" testId="page-hosts">
      {hosts && hosts.length === 0 ? (
        <p data-testid="no-hosts">No hosts yet. Run <code>qrauth enroll</code> on a host and scan its code.</p>
      ) : null}
      <IonList aria-label="Enrolled hosts">
        {hosts?.map((h) => (
          <IonItem key={h.hostId} data-testid="host-item">
            <IonLabel>
              <h2>{h.hostname || '(no name)'}</h2>
              <p>{h.relayUrl}</p>
              <p>
                id {h.hostId} · enrolled {new Date(h.enrolledAt).toLocaleDateString()}
              </p>
              <IonButton
                size="small"
                fill="outline"
                color="danger"
                data-testid="end-leases"
                disabled={leaseEnds[h.hostId]?.state === 'sending'}
                onClick={() => void endLeases(h)}
              >
                End my leases on {h.hostname || 'this host'}
              </IonButton>
              <p role="status" data-testid="end-leases-result">
                {leaseStatus(leaseEnds[h.hostId])}
              </p>
            </IonLabel>
            <IonButton slot="end" fill="clear" color="danger" aria-label={`Remove ${h.hostname}`} onClick={() => confirmRemove(h)}>
              <IonIcon icon={trash} slot="icon-only" aria-hidden="true" />
            </IonButton>
          </IonItem>
        ))}
      </IonList>
    </Page>
  );
}
