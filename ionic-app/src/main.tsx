import { createRoot } from 'react-dom/client';
import App from './App';
import { registerServiceWorker } from './sw-register';

createRoot(document.getElementById('root')!).render(<App />);
registerServiceWorker();
