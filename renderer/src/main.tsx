// Entry of the workbench page.
import './zod-csp.js';
import { createRoot } from 'react-dom/client';
import { App } from './app/App.js';
import { connect } from './transports/select.js';

const root = createRoot(document.getElementById('root')!);
const api = connect();
if ('error' in api) {
  root.render(
    <div className="fatal" role="alert">
      <h1>Parallax</h1>
      <p>{api.error}</p>
    </div>,
  );
} else {
  root.render(<App api={api} />);
}
