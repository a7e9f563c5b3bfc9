// The workbench shell: navigation, status line, running jobs, notices, and the current view.
import { useCallback, useEffect, useMemo, useState } from 'react';
import type { ApiClient } from '../../../shared/api/client.js';
import type { QueueItem } from '../../../shared/api/schemas.js';
import { Progress } from '../components/bits.js';
import { Baselines } from '../views/Baselines.js';
import { Drift } from '../views/Drift.js';
import { ItemView } from '../views/Item.js';
import { MapView } from '../views/Map.js';
import { Models } from '../views/Models.js';
import { Triage } from '../views/Triage.js';
import { Ctx, type WorkbenchContext } from './context.js';
import { useJobs, useQuery } from './hooks.js';
import { href, useRoute, type Route } from './router.js';

const ANALYST_KEY = 'parallax.analyst';

interface Notice {
  id: number;
  message: string;
  kind: 'info' | 'error';
}

export function App({ api }: { api: ApiClient }) {
  const [analyst, setAnalystState] = useState(() => localStorage.getItem(ANALYST_KEY) ?? '');
  const [queueOrder, setQueueOrder] = useState<string[]>([]);
  const [queueItems] = useState(() => new Map<string, QueueItem>());
  const [notices, setNotices] = useState<Notice[]>([]);
  const notify = useCallback((message: string, kind: 'info' | 'error' = 'info') => {
    const id = Date.now() + Math.random();
    setNotices((n) => [...n.slice(-3), { id, message, kind }]);
    window.setTimeout(() => setNotices((n) => n.filter((x) => x.id !== id)), kind === 'error' ? 9000 : 4000);
  }, []);
  const setAnalyst = useCallback((name: string) => {
    localStorage.setItem(ANALYST_KEY, name);
    setAnalystState(name);
  }, []);
  const ctx = useMemo<WorkbenchContext>(
    () => ({ api, analyst, setAnalyst, queueOrder, setQueueOrder, queueItems, notify }),
    [api, analyst, setAnalyst, queueOrder, queueItems, notify],
  );
  return (
    <Ctx.Provider value={ctx}>
      <Shell />
      <div className="notices" aria-live="polite">
        {notices.map((n) => (
          <div key={n.id} className={`notice ${n.kind}`} role={n.kind === 'error' ? 'alert' : 'status'}>
            {n.message}
          </div>
        ))}
      </div>
    </Ctx.Provider>
  );
}

function Shell() {
  const route = useRoute();
  const { api, analyst, setAnalyst } = useWorkbenchSafe();
  const status = useQuery(() => api.status(), [api], ['queue', 'models', 'baselines']);
  const [connected, setConnected] = useState(true);
  useEffect(() => api.onConnection(setConnected), [api]);
  const jobs = useJobs();
  const active = jobs.filter((j) => j.state === 'running' || j.state === 'queued');
  // A failed job stays in view for two minutes, so its reason is read, then gets out of the way.
  const recent = jobs.filter((j) => j.state === 'failed' && Date.now() - Date.parse(j.updated_at) < 120_000).slice(0, 1);
  const s = status.data;
  const b = s?.baselines.find((x) => x.name === s.active_baseline);
  useEffect(() => {
    if (s && !analyst) setAnalyst(s.analyst);
  }, [s, analyst, setAnalyst]);
  const nav: [Route['view'], string, string][] = [
    ['triage', 'Triage', s ? String(s.queue.new + s.queue.triaged) : ''],
    ['map', 'Embedding map', ''],
    ['drift', 'Drift', ''],
    ['models', 'Models', b?.detector_set ? `v${b.detector_set.version}` : ''],
    ['baselines', 'Baselines', b ? String(b.items) : ''],
  ];
  const current = route.view === 'item' ? 'triage' : route.view;
  return (
    <div className="shell">
      <aside className="nav">
        <div className="brand">
          <span className="logo" aria-hidden="true">◈</span> Parallax
        </div>
        <nav aria-label="views">
          {nav.map(([view, label, badge]) => (
            <a key={view} href={href({ view } as Route)} className={current === view ? 'active' : ''} aria-current={current === view ? 'page' : undefined}>
              <span>{label}</span>
              {badge ? <span className="count">{badge}</span> : null}
            </a>
          ))}
        </nav>
        <div className="nav-foot">
          <label className="analyst">
            analyst
            <input value={analyst} onChange={(e) => setAnalyst(e.target.value)} aria-label="analyst name" />
          </label>
          <div className={`conn ${connected ? 'ok' : 'down'}`}>{connected ? `connected (${api.transport})` : 'reconnecting…'}</div>
          {s ? (
            <div className="muted small-print">
              {s.encoder.id ?? 'encoder unavailable'} on {s.encoder.provider ?? '?'}
              <br />
              audit chain {s.audit_chain_ok ? 'intact' : 'BROKEN'}
            </div>
          ) : null}
        </div>
      </aside>
      <main className="main">
        {s && b && !b.detector_set ? (
          <div className="warn" role="status">
            Baseline '{b.name}' has no trained detector set yet: train it under <a href="#/models">Models</a>.
          </div>
        ) : null}
        {s && b?.detector_set?.stale ? (
          <div className="warn" role="status">
            The active detector set is {b.detector_set.age_days.toFixed(0)} days old: retrain under <a href="#/models">Models</a>.
          </div>
        ) : null}
        {s && !s.audit_chain_ok ? (
          <div className="error" role="alert">
            The audit log's hash chain does not verify: a row was changed or removed outside Parallax.
          </div>
        ) : null}
        {active.length > 0 || recent.length > 0 ? (
          <section className="jobs" aria-label="running jobs">
            {[...active, ...recent].map((j) => (
              <Progress key={j.id} job={j} onCancel={() => void api.jobCancel({ id: j.id })} />
            ))}
          </section>
        ) : null}
        {route.view === 'triage' ? <Triage /> : null}
        {route.view === 'item' ? <ItemView sha256={route.sha256} /> : null}
        {route.view === 'map' ? <MapView /> : null}
        {route.view === 'drift' ? <Drift /> : null}
        {route.view === 'models' ? <Models /> : null}
        {route.view === 'baselines' ? <Baselines /> : null}
      </main>
    </div>
  );
}

import { useWorkbench as useWorkbenchSafe } from './context.js';
