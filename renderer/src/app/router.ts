// Hash routes: #/triage, #/item/<sha256>, #/map, #/drift, #/models, #/baselines.
import { useEffect, useState } from 'react';

export type Route =
  | { view: 'triage' }
  | { view: 'item'; sha256: string }
  | { view: 'map' }
  | { view: 'drift' }
  | { view: 'models' }
  | { view: 'baselines' };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/');
  switch (parts[0]) {
    case 'item':
      return /^[0-9a-f]{64}$/.test(parts[1] ?? '') ? { view: 'item', sha256: parts[1] } : { view: 'triage' };
    case 'map':
    case 'drift':
    case 'models':
    case 'baselines':
      return { view: parts[0] };
    default:
      return { view: 'triage' };
  }
}

export function href(route: Route): string {
  return route.view === 'item' ? `#/item/${route.sha256}` : `#/${route.view}`;
}

export function go(route: Route): void {
  window.location.hash = href(route);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}
