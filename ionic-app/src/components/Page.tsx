import { IonBackButton, IonButtons, IonContent, IonHeader, IonPage, IonTitle, IonToolbar } from '@ionic/react';
import type { ReactNode } from 'react';

/** One page: a header with the title (and a back button on pages reached from Scan). */
export function Page({ title, back, children, testId }: { title: string; back?: string; children: ReactNode; testId: string }) {
  return (
    <IonPage data-testid={testId}>
      <IonHeader>
        <IonToolbar>
          {back ? (
            <IonButtons slot="start">
              <IonBackButton defaultHref={back} aria-label="Back" />
            </IonButtons>
          ) : null}
          <IonTitle>
            <h1 className="page-title">{title}</h1>
          </IonTitle>
        </IonToolbar>
      </IonHeader>
      <IonContent className="ion-padding">
        <main className="page-body">{children}</main>
      </IonContent>
    </IonPage>
  );
}
