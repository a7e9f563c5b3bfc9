// One item: the media, the verdict and why (every signal's calibrated risk, weight and share),
// its nearest baseline neighbours, metadata, history, labels, and the triage actions.
import { useState } from 'react';
import type { ItemDetail } from '../../../shared/api/schemas.js';
import { useWorkbench } from '../app/context.js';
import { ago, basename, bytes, short, when } from '../app/format.js';
import { useKeys, useQuery } from '../app/hooks.js';
import { go } from '../app/router.js';
import { Decision, Empty, ErrorBox, Kbd, Label, RiskBar, State, Thumb } from '../components/bits.js';
import { SignalBreakdown } from '../components/breakdown.js';
import { CloseDialog, ReasonDialog, type Disposition } from '../components/dialogs.js';

export function ItemView({ sha256 }: { sha256: string }) {
  const { api, analyst, notify, queueOrder } = useWorkbench();
  const q = useQuery(() => api.item({ sha256 }), [sha256], ['items', 'queue', 'models']);
  const [dialog, setDialog] = useState<null | 'benign' | 'malicious' | 'close'>(null);
  const [similar, setSimilar] = useState<null | { sha256: string; distance: number; decision: string | null; label: string | null }[]>(null);
  const item: ItemDetail | undefined = q.data;
  const pos = queueOrder.indexOf(sha256);

  const step = (d: number) => {
    const next = queueOrder[pos + d];
    if (pos >= 0 && next) {
      setSimilar(null);
      go({ view: 'item', sha256: next });
    }
  };
  const label = async (value: 'benign' | 'malicious', reason: string) => {
    try {
      await api.label({ sha256, label: value, reason: reason || undefined, analyst: analyst || undefined });
      notify(`${short(sha256)} labelled ${value}`);
    } catch (err) {
      notify(`labelling failed: ${(err as Error).message}`, 'error');
    }
  };
  const triage = async (state: 'new' | 'triaged' | 'closed', disposition?: Disposition, reason?: string) => {
    try {
      await api.triage({ sha256s: [sha256], state, disposition, reason: reason || undefined, analyst: analyst || undefined });
      notify(`${short(sha256)} ${state === 'closed' ? `closed as ${disposition?.replace('_', ' ')}` : `marked ${state}`}`);
    } catch (err) {
      notify(`triage failed: ${(err as Error).message}`, 'error');
    }
  };
  const loadSimilar = async () => {
    try {
      const r = await api.similar({ sha256, k: 12 });
      setSimilar(r.items);
    } catch (err) {
      notify(`similar items: ${(err as Error).message}`, 'error');
    }
  };
  const rescan = async () => {
    try {
      const { job } = await api.rescan({ sha256s: [sha256] });
      notify(`re-scoring with the active version (job #${job.id})`);
    } catch (err) {
      notify(`rescan: ${(err as Error).message}`, 'error');
    }
  };

  useKeys(
    (e) => {
      if (dialog) return;
      const k = e.key;
      if (k === 'Escape' || k === 'Backspace') {
        e.preventDefault();
        go({ view: 'triage' });
      } else if (k === 'j' || k === 'ArrowDown') {
        e.preventDefault();
        step(1);
      } else if (k === 'k' || k === 'ArrowUp') {
        e.preventDefault();
        step(-1);
      } else if (k === 'b' || k === 'm') {
        e.preventDefault();
        setDialog(k === 'b' ? 'benign' : 'malicious');
      } else if (k === 't') {
        e.preventDefault();
        void triage('triaged');
      } else if (k === 'c') {
        e.preventDefault();
        setDialog('close');
      } else if (k === 's') {
        e.preventDefault();
        void loadSimilar();
      } else if (k === 'r') {
        e.preventDefault();
        void rescan();
      }
    },
    [dialog, sha256, pos, queueOrder, analyst],
  );

  if (q.error) return <ErrorBox error={q.error} />;
  if (!item) return <div className="muted">loading {short(sha256)}…</div>;
  const v = item.verdict;
  return (
    <section className="view item" aria-label={`item ${short(sha256)}`}>
      <header className="view-head">
        <a href="#/triage" className="back">
          ← queue
        </a>
        <h1 title={item.item.first_path ?? sha256}>{basename(item.item.first_path) || short(sha256)}</h1>
        {pos >= 0 ? (
          <span className="muted">
            {pos + 1} of {queueOrder.length} in the queue
          </span>
        ) : null}
        <div className="actions">
          <button onClick={() => setDialog('benign')}>
            <Kbd>b</Kbd> Benign
          </button>
          <button onClick={() => setDialog('malicious')}>
            <Kbd>m</Kbd> Malicious
          </button>
          <button onClick={() => void triage('triaged')}>
            <Kbd>t</Kbd> Triaged
          </button>
          <button onClick={() => setDialog('close')}>
            <Kbd>c</Kbd> Close…
          </button>
          <button onClick={() => void loadSimilar()}>
            <Kbd>s</Kbd> Similar
          </button>
          <button onClick={() => void rescan()} disabled={!item.media.retained} title={item.media.retained ? 'score again with the active version' : item.media.reason ?? ''}>
            <Kbd>r</Kbd> Rescan
          </button>
        </div>
      </header>
      <div className="item-grid">
        <div className="media">
          {item.media.retained ? (
            <Thumb sha256={sha256} variant="full" alt={`media of item ${short(sha256)}`} />
          ) : (
            <div className="thumb missing big">
              <span>{item.media.reason ?? 'media not retained'}</span>
            </div>
          )}
          <dl className="meta">
            <dt>sha256</dt>
            <dd className="mono">{sha256}</dd>
            <dt>type</dt>
            <dd>
              {item.item.mime} · {item.item.width}×{item.item.height} · {bytes(item.item.bytes)}
            </dd>
            <dt>first seen</dt>
            <dd>
              {when(item.item.first_seen_at)} at <span className="mono">{item.item.first_path ?? '(no file)'}</span>
            </dd>
            <dt>baselines</dt>
            <dd>{item.baselines.length ? item.baselines.join(', ') : 'none'}</dd>
            {item.features.map((f) => (
              <div key={f.name} className="dl-row">
                <dt>{f.name}</dt>
                <dd>{f.value.toFixed(4)}</dd>
              </div>
            ))}
          </dl>
        </div>
        <div className="verdict">
          {v ? (
            <>
              <div className="verdict-head">
                <Decision d={v.decision} />
                <RiskBar value={v.risk} thresholds={v.thresholds} />
                <span className="muted">
                  p = {v.p < 0.001 ? v.p.toExponential(2) : v.p.toFixed(4)} · detector set v{v.detector_set.version}
                  {v.detector_set.active ? '' : ' (not the active version)'} · {ago(v.created_at)}
                </span>
              </div>
              <SignalBreakdown signals={v.signals} />
              <div className="muted small-print">
                {v.encoder_id} on {v.provider} · engine {v.engine_version} · {v.duration_ms?.toFixed(0) ?? '?'} ms · source {v.source}
              </div>
            </>
          ) : (
            <Empty>Never scanned: this item is in a baseline only.</Empty>
          )}
          <div className="triage-state">
            <State s={item.triage.state} disposition={item.triage.disposition} />
            {item.triage.reason ? <span className="muted"> “{item.triage.reason}”</span> : null}
            {item.triage.updated_by ? <span className="muted"> by {item.triage.updated_by}, {ago(item.triage.updated_at)}</span> : null}
            <span className="spacer" />
            <Label l={item.labels[0]?.label ?? null} />
          </div>
        </div>
      </div>
      <h2>Nearest baseline items</h2>
      {item.neighbours.length ? (
        <div className="neighbours">
          {item.neighbours.map((n) => (
            <a key={n.sha256} href={`#/item/${n.sha256}`} className="neighbour" title={n.path ?? n.sha256}>
              <Thumb sha256={n.sha256} size={96} />
              <span className="mono">d = {n.distance.toFixed(3)}</span>
            </a>
          ))}
        </div>
      ) : (
        <Empty>No neighbours recorded.</Empty>
      )}
      {similar ? (
        <>
          <h2>Similar scanned items</h2>
          <div className="neighbours">
            {similar.length === 0 ? <Empty>None.</Empty> : null}
            {similar.map((n) => (
              <a key={n.sha256} href={`#/item/${n.sha256}`} className="neighbour">
                <Thumb sha256={n.sha256} size={96} />
                <span className="mono">d = {n.distance.toFixed(3)}</span>
                <Decision d={n.decision as 'allow' | 'review' | 'block' | null} />
              </a>
            ))}
          </div>
        </>
      ) : null}
      <div className="columns">
        <div>
          <h2>Labels</h2>
          {item.labels.length === 0 ? <Empty>No labels yet.</Empty> : null}
          <ul className="history">
            {item.labels.map((l) => (
              <li key={l.id}>
                <Label l={l.label} /> by {l.analyst}, {when(l.created_at)}
                {l.reason ? <span className="muted"> — “{l.reason}”</span> : null}
              </li>
            ))}
          </ul>
          <h2>Verdicts</h2>
          <ul className="history">
            {item.verdict_history.map((h) => (
              <li key={h.id}>
                <Decision d={h.decision} /> risk {h.risk.toFixed(2)} · v{h.detector_set_version ?? '?'} · {h.source} · {when(h.created_at)}
              </li>
            ))}
          </ul>
          <h2>Sightings</h2>
          <ul className="history">
            {item.sightings.slice(0, 20).map((s, i) => (
              <li key={i}>
                {s.source} · <span className="mono">{s.path ?? '(no file)'}</span> · {when(s.seen_at)}
              </li>
            ))}
          </ul>
        </div>
        <div>
          <h2>Audit history</h2>
          {item.audit.length === 0 ? <Empty>No audited actions on this item.</Empty> : null}
          <ul className="history audit">
            {item.audit.map((a) => (
              <li key={a.id}>
                <span className="mono">{a.action}</span> by {a.actor}, {when(a.at)}
                <span className="muted"> {summarise(a.details)}</span>
              </li>
            ))}
          </ul>
        </div>
      </div>
      <footer className="legend">
        <span>
          <Kbd>j</Kbd>/<Kbd>k</Kbd> next/previous
        </span>
        <span>
          <Kbd>b</Kbd> benign
        </span>
        <span>
          <Kbd>m</Kbd> malicious
        </span>
        <span>
          <Kbd>t</Kbd> triaged
        </span>
        <span>
          <Kbd>c</Kbd> close
        </span>
        <span>
          <Kbd>s</Kbd> similar
        </span>
        <span>
          <Kbd>r</Kbd> rescan
        </span>
        <span>
          <Kbd>Esc</Kbd> back to the queue
        </span>
      </footer>
      {dialog === 'benign' || dialog === 'malicious' ? (
        <ReasonDialog
          title={`Label ${short(sha256)} ${dialog}`}
          hint={dialog === 'benign' ? 'Benign items join the baseline at the next retrain.' : 'Malicious items measure each version’s detection rate.'}
          onCancel={() => setDialog(null)}
          onSubmit={(reason) => {
            setDialog(null);
            void label(dialog, reason);
          }}
        />
      ) : null}
      {dialog === 'close' ? (
        <CloseDialog
          count={1}
          onCancel={() => setDialog(null)}
          onSubmit={(d, reason) => {
            setDialog(null);
            void triage('closed', d, reason);
          }}
        />
      ) : null}
    </section>
  );
}

function summarise(details: unknown): string {
  if (!details || typeof details !== 'object') return '';
  return Object.entries(details as Record<string, unknown>)
    .filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(', ');
}
