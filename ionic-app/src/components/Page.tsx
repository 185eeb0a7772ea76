import { IonBackButton, IonButtons, IonContent, IonHeader, IonPage, IonTitle, IonToolbar, useIonViewDidEnter } from '@ionic/react';
import { type ReactNode, useEffect, useRef } from 'react';

/** Moves focus to the page's heading when the page is shown, so a screen reader starts there. */
export function useFocusHeading<T extends HTMLElement>(keepFocus: () => boolean = () => false) {
  const heading = useRef<T>(null);
  // The page may still be hidden when this runs (first mount, mid-transition): try for a moment
  // until the heading is shown and takes focus.
  const focus = () => {
    let tries = 0;
    const attempt = () => {
      const h = heading.current;
      // Checked on every try: a dialog opened meanwhile (the scanner) keeps its focus.
      if (!h || keepFocus()) return;
      if (h.offsetParent !== null) h.focus({ preventScroll: true });
      if (document.activeElement !== h && ++tries < 30) requestAnimationFrame(attempt);
    };
    attempt();
  };
  useIonViewDidEnter(focus);
  // Also on first render: a page outside the router (Welcome) gets no view events.
  useEffect(focus, []);
  return heading;
}

/**
 * One page: a header with the title (and a back button on pages reached from Scan). The body is
 * a plain div: ion-content already renders the page's one `main` landmark (in its shadow root).
 */
export function Page({
  title,
  back,
  children,
  testId,
  keepFocus,
}: {
  title: string;
  back?: string;
  children: ReactNode;
  testId: string;
  /** True while focus belongs elsewhere (the scanner dialog): the heading does not take it then. */
  keepFocus?: () => boolean;
}) {
  const heading = useFocusHeading<HTMLHeadingElement>(keepFocus);
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
            <h1 className="page-title" tabIndex={-1} ref={heading} data-testid="page-heading">
              {title}
            </h1>
          </IonTitle>
        </IonToolbar>
      </IonHeader>
      <IonContent className="ion-padding">
        <div className="page-body">{children}</div>
      </IonContent>
    </IonPage>
  );
}
