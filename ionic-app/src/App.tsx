import { IonApp, IonIcon, IonLabel, IonRouterOutlet, IonSpinner, IonTabBar, IonTabButton, IonTabs, setupIonicReact } from '@ionic/react';
import { IonReactRouter } from '@ionic/react-router';
import { list, qrCode, server, settings } from 'ionicons/icons';
import { type ComponentType, type LazyExoticComponent, Suspense, lazy, useEffect } from 'react';
import { Navigate, Route } from 'react-router-dom';
import { AppStateProvider, useAppState } from './AppState';
import Scan from './pages/Scan';
import { endStartScreen } from './scan/start-screen';
import { pagePreloadsDone } from './sw-register';

/*
 * Opening the app must reach a live scanner fast (it sits on every login's critical path), so
 * only Scan is in the start bundle. The other pages, their Ionic components and the relay client
 * (socket.io) are chunks of their own, fetched after the start screen is up (preloadPages) so a
 * tap on them, or a scan that opens Approve, does not wait for the network.
 */
const pages = {
  approve: () => import('./pages/Approve'),
  enroll: () => import('./pages/Enroll'),
  hosts: () => import('./pages/Hosts'),
  history: () => import('./pages/History'),
  settings: () => import('./pages/Settings'),
};
const Approve = lazy(pages.approve);
const Enroll = lazy(pages.enroll);
const Hosts = lazy(pages.hosts);
const History = lazy(pages.history);
const Settings = lazy(pages.settings);
const Welcome = lazy(() => import('./pages/Welcome'));

/**
 * Fetches every page's chunk, the QR decoder and the signing code once the browser is idle after
 * the start screen (all needed offline, for the offline code), then lets the service worker
 * fetch whatever else it keeps.
 */
function preloadPages(): void {
  const all = () => {
    const loads = [...Object.values(pages), () => import('./data/qr-decoder'), () => import('../../protocol/src/crypto-web.js')];
    // Offline a failed preload is fine: lazy() and the callers load again on use.
    void Promise.allSettled(loads.map((load) => load())).then(pagePreloadsDone);
  };
  if ('requestIdleCallback' in window) window.requestIdleCallback(all, { timeout: 3000 });
  else setTimeout(all, 1000);
}

function Loading() {
  return (
    <div className="app-loading" role="status">
      <IonSpinner aria-label="Loading" />
    </div>
  );
}

/** A lazy page inside the router outlet: the spinner while its chunk arrives. */
function lazyPage(Component: LazyExoticComponent<ComponentType>) {
  return (
    <Suspense fallback={<Loading />}>
      <Component />
    </Suspense>
  );
}

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
  useEffect(preloadPages, []);
  return (
    <IonTabs>
      <IonRouterOutlet>
        <Route path="/scan" element={<Scan />} />
        <Route path="/approve" element={lazyPage(Approve)} />
        <Route path="/enroll" element={lazyPage(Enroll)} />
        <Route path="/hosts" element={lazyPage(Hosts)} />
        <Route path="/history" element={lazyPage(History)} />
        <Route path="/settings" element={lazyPage(Settings)} />
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
  // The start screen (start.ts) stays until the Scan page takes its panel; any other screen ends it.
  useEffect(() => {
    if (device === null) endStartScreen();
  }, [device]);
  if (device === undefined) return <Loading />;
  if (device === null) return lazyPage(Welcome);
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
