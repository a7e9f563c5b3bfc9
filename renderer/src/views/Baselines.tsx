// Baselines: what each holds, how old it and its detector set are, its media, and importing a
// folder into one (a job with progress and cancel).
import { useState } from 'react';
import { useWorkbench } from '../app/context.js';
import { ago, basename, when } from '../app/format.js';
import { useJobWatcher, useQuery } from '../app/hooks.js';
import { Empty, ErrorBox, Label, Progress, Thumb } from '../components/bits.js';
import type { Job } from '../../../shared/api/schemas.js';

export function Baselines() {
  const { api, analyst, notify } = useWorkbench();
  const list = useQuery(() => api.baselines(), [], ['baselines', 'models']);
  const [open, setOpen] = useState<string | null>(null);
  const [name, setName] = useState('default');
  const [path, setPath] = useState('');
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState<string | null>(null);
  const watch = useJobWatcher();

  const submit = async () => {
    setError(null);
    const paths = path.split('\n').map((p) => p.trim()).filter(Boolean);
    if (!paths.length) return;
    try {
      const r = await api.baselineImport({ baseline: name.trim() || 'default', paths, analyst: analyst || undefined });
      setJob(r.job);
      const end = await watch(r.job);
      setJob(end);
      if (end.state === 'done') {
        const res = end.result as { added: number; already_present: number; total: number; errors: { path: string; reason: string }[] };
        notify(`'${name}': ${res.added} added, ${res.already_present} already present, ${res.total} in total${res.errors.length ? `; ${res.errors.length} could not be read` : ''}`);
      }
    } catch (err) {
      setError((err as Error).message);
    }
  };

  return (
    <section className="view baselines" aria-label="baselines">
      <header className="view-head">
        <h1>Baselines</h1>
      </header>
      <ErrorBox error={error ?? list.error} />
      <section className="card">
        <h2>Import a folder</h2>
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            void submit();
          }}
        >
          <input aria-label="baseline name" className="narrow" value={name} onChange={(e) => setName(e.target.value)} placeholder="baseline" />
          <input aria-label="folder to import" value={path} onChange={(e) => setPath(e.target.value)} placeholder="/path/to/legitimate/media (on the server)" />
          <button type="submit" className="primary" disabled={!path.trim() || (!!job && (job.state === 'running' || job.state === 'queued'))}>
            Import
          </button>
        </form>
        <p className="muted small-print">Only legitimate media belongs in a baseline: every item in it teaches the detectors what normal looks like.</p>
        {job ? <Progress job={job} onCancel={() => void api.jobCancel({ id: job.id })} /> : null}
        {job?.state === 'done' && (job.result as { errors?: { path: string; reason: string }[] })?.errors?.length ? (
          <ul className="history">
            {(job.result as { errors: { path: string; reason: string }[] }).errors.slice(0, 20).map((e) => (
              <li key={e.path}>
                <span className="mono">{basename(e.path)}</span>: {e.reason}
              </li>
            ))}
          </ul>
        ) : null}
      </section>
      {list.data && list.data.baselines.length === 0 ? <Empty>No baseline yet: import a folder of legitimate media above.</Empty> : null}
      <div className="baseline-cards">
        {list.data?.baselines.map((b) => (
          <article key={b.name} className="card baseline" data-baseline={b.name}>
            <h2>
              {b.name} <span className="muted">{b.items.toLocaleString()} items</span>
            </h2>
            <p>
              created {ago(b.created_at)}, updated {ago(b.updated_at)} ·{' '}
              {b.active_version ? (
                <>
                  detector set v{b.active_version}, {b.detector_set_age_days?.toFixed(1)} days old{' '}
                  {b.stale ? <span className="badge decision-review">stale: over {b.max_age_days} days</span> : null}
                </>
              ) : (
                <span className="badge decision-review">not trained</span>
              )}
              {b.items < b.min_samples ? <span className="badge decision-block"> needs {b.min_samples} items to train</span> : null}
            </p>
            <div className="strip">
              {b.sample.map((s) => (
                <a key={s} href={`#/item/${s}`}>
                  <Thumb sha256={s} size={64} />
                </a>
              ))}
            </div>
            <button className="small" onClick={() => setOpen(open === b.name ? null : b.name)} aria-expanded={open === b.name}>
              {open === b.name ? 'Hide items' : 'Show items'}
            </button>
            {open === b.name ? <BaselineItems name={b.name} /> : null}
          </article>
        ))}
      </div>
    </section>
  );
}

function BaselineItems({ name }: { name: string }) {
  const { api } = useWorkbench();
  const [offset, setOffset] = useState(0);
  const q = useQuery(() => api.baselineItems({ baseline: name, offset, limit: 60 }), [name, offset], ['baselines']);
  if (q.error) return <ErrorBox error={q.error} />;
  if (!q.data) return <div className="muted">loading…</div>;
  return (
    <div>
      <div className="grid">
        {q.data.items.map((i) => (
          <a key={i.sha256} href={`#/item/${i.sha256}`} className="grid-cell" title={`${i.path ?? i.sha256}\nadded ${when(i.added_at)}`}>
            <Thumb sha256={i.sha256} size={96} />
            {i.label ? <Label l={i.label} /> : null}
          </a>
        ))}
      </div>
      <div className="pager">
        <button className="small" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - 60))}>
          ← previous
        </button>
        <span className="muted">
          {offset + 1}–{Math.min(offset + 60, q.data.total)} of {q.data.total}
        </span>
        <button className="small" disabled={offset + 60 >= q.data.total} onClick={() => setOffset(offset + 60)}>
          next →
        </button>
      </div>
    </div>
  );
}
