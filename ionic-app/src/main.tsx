// The whole app (React, Ionic, every page); start.ts loads it behind the start screen.
import { createRoot } from 'react-dom/client';
import App from './App';

createRoot(document.getElementById('root')!).render(<App />);
