// Detector-set versions: what each measured, retraining from relabels (with a preview and the
// poisoning warnings in plain sight), activation, roll-back, comparison, export and import.
import { useState } from 'react';
import type { CompareResponse, Job, RetrainPlan, RetrainPreviewResult, RetrainResult } from '../../../shared/api/schemas.js';
import { useWorkbench } from '../app/context.js';
import { ago, pct, short, when } from '../app/format.js';
import { useJobWatcher, useQuery } from '../app/hooks.js';
import { Decision, Empty, ErrorBox, Label, Progress, Thumb } from '../components/bits.js';

export function Models() {
  const { api, analyst, notify } = useWorkbench();
  const sets = useQuery(() => api.detectorSets({}), [], ['models']);
  const [compareIds, setCompareIds] = useState<number[]>([]);
  const [compare, setCompare] = useState<CompareResponse | null>(null);
  const [retrainOpen, setRetrainOpen] = useState(false);
  const [exported, setExported] = useState<{ dir: string; files: { path: string; sha256: string; bytes: number }[] } | null>(null);
  const [importDir, setImportDir] = useState('');
  const [error, setError] = useState<string | null>(null);
  const versions = sets.data?.versions ?? [];
  const active = versions.find((v) => v.active);

  const act = async (what: string, fn: () => Promise<unknown>) => {
    setError(null);
    try {
      await fn();
    } catch (err) {
      setError(`${what}: ${(err as Error).message}`);
    }
  };
  const toggleCompare = (id: number) =>
    setCompareIds((ids) => (ids.includes(id) ? ids.filter((x) => x !== id) : [...ids.slice(-1), id]));

  return (
    <section className="view models" aria-label="models">
      <header className="view-head">
        <h1>Models</h1>
        <div className="actions">
          <button className="primary" onClick={() => setRetrainOpen(!retrainOpen)} aria-expanded={retrainOpen}>
            {versions.length ? 'Retrain…' : 'Train'}
          </button>
          <button disabled={!active || versions.length < 2} onClick={() => void act('roll back', async () => {
            const r = await api.rollback({ analyst: analyst || undefined });
            notify(`rolled back to v${r.active.version}`);
          })}>
            Roll back
          </button>
          <button disabled={compareIds.length !== 2} onClick={() => void act('compare', async () => {
            const [a, b] = [...compareIds].sort((x, y) => x - y);
            setCompare(await api.compare({ a, b }));
          })}>
            Compare {compareIds.length === 2 ? 'selected' : '(pick two)'}
          </button>
          <button disabled={!active} onClick={() => void act('export', async () => {
            const r = await api.exportBundle({ analyst: analyst || undefined });
            setExported(r);
            notify(`exported v${r.detector_set.version} to ${r.dir}`);
          })}>
            Export active
          </button>
        </div>
      </header>
      <ErrorBox error={error ?? sets.error} />
      {retrainOpen ? <RetrainPanel hasVersion={versions.length > 0} onClose={() => setRetrainOpen(false)} /> : null}
      {versions.length === 0 && sets.data ? <Empty>No detector set yet. Import media into a baseline, then train.</Empty> : null}
      {versions.length ? (
        <table className="table versions">
          <thead>
            <tr>
              <th title="pick two to compare">cmp</th>
              <th>version</th>
              <th>trained</th>
              <th>baseline items</th>
              <th title="out-of-fold false-positive rate on held-out baseline items">FPR review / block</th>
              <th title={sets.data?.tpr_note}>TPR review / block</th>
              <th>signals</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {versions.map((v) => (
              <tr key={v.id} className={v.active ? 'active' : ''} data-version={v.version}>
                <td>
                  <input type="checkbox" aria-label={`compare v${v.version}`} checked={compareIds.includes(v.id)} onChange={() => toggleCompare(v.id)} />
                </td>
                <td>
                  <strong>v{v.version}</strong> {v.active ? <span className="badge decision-allow">active</span> : null}
                </td>
                <td title={when(v.created_at)}>{ago(v.created_at)}{v.train_seconds ? ` · ${v.train_seconds.toFixed(1)} s` : ''}</td>
                <td>{v.n_items}</td>
                <td>{v.fpr ? `${pct(v.fpr.review, 1)} / ${pct(v.fpr.block, 1)}` : '—'}</td>
                <td>{v.tpr ? `${pct(v.tpr.review)} / ${pct(v.tpr.block)} of ${v.n_malicious}` : <span className="muted">no malicious labels</span>}</td>
                <td className="muted">{v.signals.map((s) => `${s} ×${v.weights[s] ?? '?'}`).join(', ')}</td>
                <td>
                  {!v.active ? (
                    <button className="small" onClick={() => void act('activate', async () => {
                      await api.activate({ id: v.id, analyst: analyst || undefined });
                      notify(`v${v.version} is active`);
                    })}>
                      Activate
                    </button>
                  ) : null}
                  <button className="small" onClick={() => void act('export', async () => {
                    const r = await api.exportBundle({ detector_set_id: v.id, analyst: analyst || undefined });
                    setExported(r);
                  })}>
                    Export
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {sets.data ? <p className="muted small-print">{sets.data.tpr_note}</p> : null}
      {exported ? (
        <section className="card" aria-label="export result" data-export-dir={exported.dir}>
          <h2>Exported bundle</h2>
          <p>
            <span className="mono">{exported.dir}</span>
          </p>
          <table className="table">
            <tbody>
              {exported.files.map((f) => (
                <tr key={f.path}>
                  <td className="mono">{f.path}</td>
                  <td className="mono muted">{f.sha256.slice(0, 16)}…</td>
                  <td>{f.bytes.toLocaleString()} B</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      ) : null}
      <section className="card">
        <h2>Import a bundle</h2>
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            void act('import', async () => {
              const r = await api.importBundle({ dir: importDir.trim(), analyst: analyst || undefined });
              notify(`imported v${r.detector_set.version} into '${r.baseline}' (${r.verified_files} files verified)`);
              setImportDir('');
            });
          }}
        >
          <input aria-label="bundle folder" placeholder="/path/to/bundle (a folder with manifest.json)" value={importDir} onChange={(e) => setImportDir(e.target.value)} />
          <button type="submit" disabled={!importDir.trim()}>
            Import
          </button>
        </form>
      </section>
      {compare ? <ComparePanel c={compare} /> : null}
    </section>
  );
}

function RetrainPanel({ hasVersion, onClose }: { hasVersion: boolean; onClose(): void }) {
  const { api, analyst, notify } = useWorkbench();
  const watch = useJobWatcher();
  const plan = useQuery(() => api.retrainPlan({}), [], ['queue', 'items', 'models', 'baselines']);
  const [ack, setAck] = useState(false);
  const [previewJob, setPreviewJob] = useState<Job | null>(null);
  const [preview, setPreview] = useState<RetrainPreviewResult | null>(null);
  const [trainJob, setTrainJob] = useState<Job | null>(null);
  const [result, setResult] = useState<RetrainResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const p: RetrainPlan | undefined = plan.data;
  const blocking = p?.warnings.filter((w) => w.kind !== 'no_reason') ?? [];

  const runPreview = async () => {
    setError(null);
    try {
      const { job } = await api.retrainPreview({});
      setPreviewJob(job);
      const end = await watch(job);
      setPreviewJob(end);
      if (end.state === 'done') setPreview(end.result as RetrainPreviewResult);
      else setError(`preview ${end.state}: ${end.error ?? end.detail ?? ''}`);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const runTrain = async () => {
    setError(null);
    try {
      const { job } = await api.retrain({ acknowledge_warnings: ack, analyst: analyst || undefined });
      setTrainJob(job);
      const end = await watch(job);
      setTrainJob(end);
      if (end.state === 'done') {
        const r = end.result as RetrainResult;
        setResult(r);
        notify(`v${r.detector_set.version} trained on ${r.detector_set.n_items} items and activated`);
      } else setError(`training ${end.state}: ${end.error ?? end.detail ?? ''}`);
    } catch (err) {
      setError((err as Error).message);
    }
  };

  return (
    <section className="card retrain" aria-label="retrain">
      <h2>
        {hasVersion ? 'Retrain from relabels' : 'Train the first version'} <button className="small" onClick={onClose}>Close</button>
      </h2>
      <ErrorBox error={error ?? plan.error} />
      {p ? (
        <>
          <p>
            Baseline '{p.baseline}': {p.baseline_before} items → <strong>{p.baseline_after}</strong> ({p.joining.length} benign relabels join,{' '}
            {p.leaving.length} malicious-labelled members leave). {p.malicious_for_measurement} malicious labels measure detection; they never move a
            threshold.
          </p>
          {p.warnings.map((w) => (
            <div key={w.kind} className={w.kind === 'no_reason' ? 'warn' : 'alert'} role={w.kind === 'no_reason' ? 'status' : 'alert'} data-warning={w.kind}>
              <strong>{w.kind === 'no_reason' ? 'Note' : 'Possible baseline poisoning'}:</strong> {w.message}
            </div>
          ))}
          {p.joining.length ? (
            <>
              <h3>Joining the baseline</h3>
              <PlanList items={p.joining} />
            </>
          ) : null}
          {p.leaving.length ? (
            <>
              <h3>Leaving the baseline</h3>
              <PlanList items={p.leaving} />
            </>
          ) : null}
          <div className="actions">
            {hasVersion ? (
              <button onClick={() => void runPreview()} disabled={!!previewJob && (previewJob.state === 'running' || previewJob.state === 'queued')}>
                Preview (trains a candidate, stores nothing)
              </button>
            ) : null}
            {blocking.length ? (
              <label className="ack">
                <input type="checkbox" checked={ack} onChange={(e) => setAck(e.target.checked)} /> I have reviewed the {blocking.length} warning
                {blocking.length > 1 ? 's' : ''}
              </label>
            ) : null}
            <button className="primary" disabled={(blocking.length > 0 && !ack) || (!!trainJob && (trainJob.state === 'running' || trainJob.state === 'queued'))} onClick={() => void runTrain()}>
              {hasVersion ? 'Retrain now' : 'Train now'}
            </button>
          </div>
        </>
      ) : (
        <div className="muted">loading the plan…</div>
      )}
      {previewJob && previewJob.state !== 'done' ? <Progress job={previewJob} onCancel={() => void api.jobCancel({ id: previewJob.id })} /> : null}
      {preview ? (
        <div className="preview-result" aria-label="preview">
          <h3>Preview</h3>
          <table className="table">
            <thead>
              <tr>
                <th />
                <th>baseline items</th>
                <th>FPR review / block</th>
                <th>TPR review / block</th>
              </tr>
            </thead>
            <tbody>
              <tr>
                <td>current v{preview.current.version}</td>
                <td>{preview.current.n_items}</td>
                <td>{preview.current.fpr ? `${pct(preview.current.fpr.review, 1)} / ${pct(preview.current.fpr.block, 1)}` : '—'}</td>
                <td>{preview.current.tpr ? `${pct(preview.current.tpr.review)} / ${pct(preview.current.tpr.block)}` : '—'}</td>
              </tr>
              <tr>
                <td>candidate</td>
                <td>{preview.candidate.n_items}</td>
                <td>{`${pct(preview.candidate.fpr.review, 1)} / ${pct(preview.candidate.fpr.block, 1)}`}</td>
                <td>{preview.candidate.tpr ? `${pct(preview.candidate.tpr.review)} / ${pct(preview.candidate.tpr.block)}` : '—'}</td>
              </tr>
            </tbody>
          </table>
          <h4>How far legitimate scores reach (99th percentile of held-out raw scores), per signal</h4>
          <table className="table">
            <tbody>
              {preview.threshold_shift.map((t) => (
                <tr key={t.signal}>
                  <td>{t.signal}</td>
                  <td>{t.before?.toPrecision(4) ?? '—'}</td>
                  <td>→ {t.after?.toPrecision(4) ?? '—'}</td>
                  <td className="muted">{t.before && t.after ? `${t.after >= t.before ? '+' : ''}${(((t.after - t.before) / Math.abs(t.before)) * 100).toFixed(1)}%` : ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {preview.joining_after.length ? (
            <>
              <h4>Joining items, scored by the candidate as newcomers</h4>
              <ul className="history">
                {preview.joining_after.map((j) => (
                  <li key={j.sha256}>
                    <span className="mono">{short(j.sha256)}</span> risk {j.risk_before?.toFixed(2) ?? '—'} → {j.risk_after.toFixed(2)}
                  </li>
                ))}
              </ul>
            </>
          ) : null}
          {preview.current.tpr && preview.candidate.tpr && preview.current.tpr.review - preview.candidate.tpr.review > 0.1 ? (
            <div className="alert" role="alert" data-warning="tpr_drop">
              <strong>Detection drops:</strong> the candidate flags {pct(preview.candidate.tpr.review)} of the malicious-labelled items, the current
              version {pct(preview.current.tpr.review)}. The relabels make attacks look normal: check each joining item.
            </div>
          ) : null}
          <p className="muted small-print">
            Candidate trained in {preview.seconds.toFixed(1)} s by the engine's own training, on a scratch copy of the database with the relabels
            applied; nothing was stored.
          </p>
        </div>
      ) : null}
      {trainJob && trainJob.state !== 'done' ? <Progress job={trainJob} onCancel={() => void api.jobCancel({ id: trainJob.id })} /> : null}
      {result ? (
        <div className="train-result" aria-label="retrain result" data-version={result.detector_set.version}>
          <h3>
            v{result.detector_set.version} is active ({result.detector_set.n_items} baseline items, {result.seconds.toFixed(1)} s)
          </h3>
          <p>
            {result.joined} joined, {result.left} left; {result.rescanned} items re-scored.
          </p>
          {result.changed.length ? (
            <ul className="history">
              {result.changed.map((c) => (
                <li key={c.sha256}>
                  <a href={`#/item/${c.sha256}`} className="mono">
                    {short(c.sha256)}
                  </a>{' '}
                  <Decision d={c.before} /> {c.risk_before?.toFixed(2) ?? '—'} → <Decision d={c.after} /> {c.risk_after.toFixed(2)}
                </li>
              ))}
            </ul>
          ) : null}
          {result.not_rescanned.length ? <p className="muted">{result.not_rescanned.length} could not be re-scored: {result.not_rescanned[0].reason}</p> : null}
        </div>
      ) : null}
    </section>
  );
}

function PlanList({ items }: { items: RetrainPlan['joining'] }) {
  return (
    <ul className="plan-list">
      {items.map((i) => (
        <li key={i.sha256}>
          <a href={`#/item/${i.sha256}`}>
            <Thumb sha256={i.sha256} size={48} />
          </a>
          <Label l={i.label} /> by {i.analyst} {ago(i.labelled_at)} {i.reason ? <span className="muted">“{i.reason}”</span> : <span className="muted">(no reason)</span>}{' '}
          <Decision d={i.decision} /> {i.risk?.toFixed(2) ?? ''}
          {!i.has_embedding ? <span className="warn-inline"> no cached embedding: re-embedded from its file at training</span> : null}
        </li>
      ))}
    </ul>
  );
}

function ComparePanel({ c }: { c: CompareResponse }) {
  const order = ['allow', 'review', 'block'];
  return (
    <section className="card" aria-label="comparison">
      <h2>
        v{c.a.version} vs v{c.b.version}
      </h2>
      <p>
        Members: {c.members.both} shared, {c.members.only_a} only in v{c.a.version}, {c.members.only_b} only in v{c.b.version}. FPR review{' '}
        {pct(c.a.fpr?.review, 1)} → {pct(c.b.fpr?.review, 1)}; TPR review {pct(c.a.tpr?.review)} → {pct(c.b.tpr?.review)}.
      </p>
      <h3>Decisions of {c.items.n} items (rows v{c.a.version}, columns v{c.b.version})</h3>
      <table className="table matrix">
        <thead>
          <tr>
            <th />
            {order.map((o) => (
              <th key={o}>{o}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {order.map((from) => (
            <tr key={from}>
              <th>{from}</th>
              {order.map((to) => (
                <td key={to} className={from !== to && (c.items.transitions[from]?.[to] ?? 0) > 0 ? 'changed' : ''}>
                  {c.items.transitions[from]?.[to] ?? 0}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      {c.params.length ? (
        <>
          <h3>Parameters that differ</h3>
          <table className="table">
            <tbody>
              {c.params.map((p) => (
                <tr key={p.key}>
                  <td className="mono">{p.key}</td>
                  <td>{p.a}</td>
                  <td>{p.b}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : (
        <p className="muted">Same parameters: the versions differ by their baseline.</p>
      )}
      {c.items.changed.length ? (
        <>
          <h3>Items whose decision changes</h3>
          <ul className="history">
            {c.items.changed.slice(0, 50).map((x) => (
              <li key={x.sha256}>
                <a href={`#/item/${x.sha256}`} className="mono">
                  {short(x.sha256)}
                </a>{' '}
                <Label l={x.label} /> <Decision d={x.a.decision} /> {x.a.risk.toFixed(2)} → <Decision d={x.b.decision} /> {x.b.risk.toFixed(2)}
              </li>
            ))}
          </ul>
        </>
      ) : null}
      <p className="muted small-print">{c.note}</p>
    </section>
  );
}
