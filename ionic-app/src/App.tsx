import { IonApp, IonIcon, IonLabel, IonRouterOutlet, IonSpinner, IonTabBar, IonTabButton, IonTabs, setupIonicReact } from '@ionic/react';
import { IonReactRouter } from '@ionic/react-router';
import { list, qrCode, server, settings } from 'ionicons/icons';
import { Navigate, Route } from 'react-router-dom';
import { AppStateProvider, useAppState } from './AppState';
import Approve from './pages/Approve';
import Enroll from './pages/Enroll';
import History from './pages/History';
import Hosts from './pages/Hosts';
import Scan from './pages/Scan';
import Settings from './pages/Settings';
import Welcome from './pages/Welcome';

import '@ionic/react/css/core.css';
import '@ionic/react/css/normalize.css';
import '@ionic/react/css/structure.css';
import '@ionic/react/css/typography.css';
import '@ionic/react/css/padding.css';
import '@ionic/react/css/display.css';
// Dark palette when <html> has .ion-palette-dark; AppState sets it from the setting or the system.
import '@ionic/react/css/palettes/dark.class.css';
import './theme/variables.css';
import './theme/app.css';

// Page transitions and other animations off for people who ask the system for less motion.
// Ionic's mode follows the platform (iOS style on iPhones, Material elsewhere).
setupIonicReact({ animated: !window.matchMedia?.('(prefers-reduced-motion: reduce)').matches });

function Tabs() {
  return (
    <IonTabs>
      <IonRouterOutlet>
        <Route path="/scan" element={<Scan />} />
        <Route path="/approve" element={<Approve />} />
        <Route path="/enroll" element={<Enroll />} />
        <Route path="/hosts" element={<Hosts />} />
        <Route path="/history" element={<History />} />
        <Route path="/settings" element={<Settings />} />
        <Route path="*" element={<Navigate to="/scan" replace />} />
      </IonRouterOutlet>
      {/* A navigation landmark around the tabs, so every part of the screen is in a landmark. */}
      <nav slot="bottom" aria-label="Main" className="tab-nav">
      <IonTabBar slot="bottom" aria-label="Main">
        <IonTabButton tab="scan" href="/scan" data-testid="tab-scan">
          <IonIcon icon={qrCode} aria-hidden="true" />
          <IonLabel>Scan</IonLabel>
        </IonTabButton>
        <IonTabButton tab="hosts" href="/hosts" data-testid="tab-hosts">
          <IonIcon icon={server} aria-hidden="true" />
          <IonLabel>Hosts</IonLabel>
        </IonTabButton>
        <IonTabButton tab="history" href="/history" data-testid="tab-history">
          <IonIcon icon={list} aria-hidden="true" />
          <IonLabel>History</IonLabel>
        </IonTabButton>
        <IonTabButton tab="settings" href="/settings" data-testid="tab-settings">
          <IonIcon icon={settings} aria-hidden="true" />
          <IonLabel>Settings</IonLabel>
        </IonTabButton>
      </IonTabBar>
      </nav>
    </IonTabs>
  );
}

function Root() {
  const { device } = useAppState();
  if (device === undefined) {
    return (
      <div className="app-loading" role="status">
        <IonSpinner aria-label="Loading" />
      </div>
    );
  }
  if (device === null) return <Welcome />;
  return (
    <IonReactRouter future={{ v7_startTransition: true, v7_relativeSplatPath: true }}>
      <Tabs />
    </IonReactRouter>
  );
}

export default function App() {
  return (
    <IonApp>
      <AppStateProvider>
        <Root />
      </AppStateProvider>
    </IonApp>
  );
}
