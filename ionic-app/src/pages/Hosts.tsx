import { IonButton, IonIcon, IonItem, IonLabel, IonList, useIonAlert } from '@ionic/react';
import { trash } from 'ionicons/icons';
import { useEffect, useState } from 'react';
import type { TrustedHost } from '../models';
import { Page } from '../components/Page';
import { listHosts, onStoreChange, removeHost } from '../data/store';

function useHosts(): TrustedHost[] | undefined {
  const [hosts, setHosts] = useState<TrustedHost[]>();
  useEffect(() => {
    const load = () => void listHosts().then(setHosts);
    load();
    return onStoreChange(load);
  }, []);
  return hosts;
}

/** The hosts this phone enrolled with; removing one makes its login QRs "unknown host". */
export default function Hosts() {
  const hosts = useHosts();
  const [presentAlert] = useIonAlert();

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
