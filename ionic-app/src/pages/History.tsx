import { IonButton, IonItem, IonLabel, IonList, IonNote } from '@ionic/react';
import { useEffect, useState } from 'react';
import type { HistoryEntry } from '../models';
import { Page } from '../components/Page';
import { clearHistory, listHistory, onStoreChange } from '../data/store';

const OUTCOME_TEXT: Record<HistoryEntry['outcome'], string> = {
  approved: 'Approved',
  denied: 'Denied',
  rejected: 'Not accepted',
  unsent: 'Not sent (offline)',
  'code-shown': 'Offline code shown',
};

/** This phone's decisions, kept on this phone only. */
export default function History() {
  const [entries, setEntries] = useState<HistoryEntry[]>();
  useEffect(() => {
    const load = () => void listHistory().then(setEntries);
    load();
    return onStoreChange(load);
  }, []);

  return (
    <Page title="History" testId="page-history">
      {entries && entries.length === 0 ? <p data-testid="no-history">No decisions yet.</p> : null}
      <IonList aria-label="Decisions made on this phone">
        {entries?.map((e) => (
          <IonItem key={`${e.time}-${e.hostId}`} data-testid="history-item">
            <IonLabel>
              <h2>
                {OUTCOME_TEXT[e.outcome] ?? e.outcome}: {e.user ? `${e.user}@` : ''}{e.hostname}
              </h2>
              <p>
                {e.service ? `from ${e.rhost || 'unknown'} (${e.service})` : ''}
                {e.detail ? `${e.service ? ' — ' : ''}${e.detail}` : ''}
              </p>
            </IonLabel>
            <IonNote slot="end">{new Date(e.time).toLocaleString()}</IonNote>
          </IonItem>
        ))}
      </IonList>
      {entries && entries.length > 0 ? (
        <IonButton fill="outline" color="medium" onClick={() => void clearHistory()}>
          Clear history
        </IonButton>
      ) : null}
    </Page>
  );
}
