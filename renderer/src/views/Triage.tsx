// The triage queue: keyboard first. j/k move, Enter opens, b/m label (with a reason), t marks
// triaged, c closes with a disposition, x selects, s selects everything similar to the focused
// item, a selects the page; bulk actions apply to the selection when there is one.
import { useEffect, useMemo, useRef, useState } from 'react';
import type { QueueItem } from '../../../shared/api/schemas.js';
import { useWorkbench } from '../app/context.js';
import { ago, basename, pct, short, signalLabel } from '../app/format.js';
import { useKeys, useQuery } from '../app/hooks.js';
import { go } from '../app/router.js';
import { Decision, Empty, ErrorBox, Kbd, Label, RiskBar, State, Thumb } from '../components/bits.js';
import { CloseDialog, ReasonDialog, type Disposition } from '../components/dialogs.js';

type D = 'allow' | 'review' | 'block';
type S = 'new' | 'triaged' | 'closed';

interface Filter {
  decision: D[];
  state: S[];
  source: string;
  label: '' | 'none' | 'benign' | 'malicious';
  /** Only items scanned within this long (by their latest verdict). */
  within: '' | '1h' | '24h' | '7d' | '30d';
  sort: 'risk' | 'time';
  offset: number;
}

const FILTER_KEY = 'parallax.triage.filter';
const PAGE = 50;
const DEFAULT_FILTER: Filter = { decision: ['review', 'block'], state: ['new', 'triaged'], source: '', label: '', within: '', sort: 'risk', offset: 0 };
const WITHIN_MS: Record<Exclude<Filter['within'], ''>, number> = { '1h': 3_600_000, '24h': 86_400_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000 };

function loadFilter(): Filter {
  try {
    return { ...DEFAULT_FILTER, ...(JSON.parse(sessionStorage.getItem(FILTER_KEY) ?? '{}') as Partial<Filter>) };
  } catch {
    return DEFAULT_FILTER;
  }
}

export function Triage() {
  const { api, analyst, notify, setQueueOrder, queueItems } = useWorkbench();
  const [filter, setFilterState] = useState<Filter>(loadFilter);
  const setFilter = (f: Filter) => {
    sessionStorage.setItem(FILTER_KEY, JSON.stringify(f));
    setFilterState(f);
  };
  const key = JSON.stringify(filter);
  const q = useQuery(
    () =>
      api.queue({
        decision: filter.decision.length ? filter.decision : undefined,
        state: filter.state.length ? filter.state : undefined,
        source: filter.source ? [filter.source] : undefined,
        label: filter.label ? [filter.label] : undefined,
        since: filter.within ? new Date(Date.now() - WITHIN_MS[filter.within]).toISOString() : undefined,
        sort: filter.sort,
        offset: filter.offset,
        limit: PAGE,
      }),
    [key],
    ['queue'],
  );
  const items = useMemo(() => q.data?.items ?? [], [q.data]);
  // Focus follows an item, not a row number: when an item leaves the list (labelled under an
  // "unlabelled" filter, closed), the one after it takes its place and keeps the focus.
  const [focusSha, setFocusSha] = useState<string | null>(null);
  const lastIndex = useRef(0);
  let focus = items.findIndex((i) => i.sha256 === focusSha);
  if (focus < 0) focus = Math.max(0, Math.min(lastIndex.current, items.length - 1));
  lastIndex.current = focus;
  const setFocus = (i: number) => setFocusSha(items[Math.max(0, Math.min(i, items.length - 1))]?.sha256 ?? null);
  const advance = () => setFocusSha(items[focus + 1]?.sha256 ?? items[focus]?.sha256 ?? null);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [dialog, setDialog] = useState<null | { kind: 'benign' | 'malicious' } | { kind: 'close' }>(null);
  const [legend, setLegend] = useState(true);
  const [similarCut, setSimilarCut] = useState(0.25);
  const rowRefs = useRef<(HTMLDivElement | null)[]>([]);

  useEffect(() => {
    setQueueOrder(items.map((i) => i.sha256));
    for (const i of items) queueItems.set(i.sha256, i);
  }, [items, setQueueOrder, queueItems]);
  useEffect(() => {
    rowRefs.current[focus]?.scrollIntoView({ block: 'nearest' });
  }, [focus]);

  const focused: QueueItem | undefined = items[focus];
  const targets = (): string[] => (selected.size > 0 ? [...selected] : focused ? [focused.sha256] : []);

  const label = async (value: 'benign' | 'malicious', reason: string) => {
    const t = targets();
    if (t.length === 0) return;
    try {
      if (t.length === 1) await api.label({ sha256: t[0], label: value, reason: reason || undefined, analyst: analyst || undefined });
      else await api.labelBulk({ sha256s: t, label: value, reason: reason || undefined, analyst: analyst || undefined });
      notify(`${t.length === 1 ? short(t[0]) : `${t.length} items`} labelled ${value}`);
      if (selected.size > 0) setSelected(new Set());
      else advance();
    } catch (err) {
      notify(`labelling failed: ${(err as Error).message}`, 'error');
    }
  };
  const setState = async (state: S, disposition?: Disposition, reason?: string) => {
    const t = targets();
    if (t.length === 0) return;
    try {
      await api.triage({ sha256s: t, state, disposition, reason: reason || undefined, analyst: analyst || undefined });
      notify(`${t.length === 1 ? short(t[0]) : `${t.length} items`} ${state === 'closed' ? `closed as ${disposition?.replace('_', ' ')}` : `marked ${state}`}`);
      if (selected.size > 0) setSelected(new Set());
      else advance();
    } catch (err) {
      notify(`triage failed: ${(err as Error).message}`, 'error');
    }
  };
  const selectSimilar = async () => {
    if (!focused) return;
    try {
      const r = await api.similar({ sha256: focused.sha256, k: 200, max_distance: similarCut });
      const next = new Set(selected);
      next.add(focused.sha256);
      for (const s of r.items) next.add(s.sha256);
      setSelected(next);
      notify(`${r.items.length} scanned items within cosine distance ${similarCut} of ${short(focused.sha256)} selected`);
    } catch (err) {
      notify(`similar items: ${(err as Error).message}`, 'error');
    }
  };
  const toggle = (sha: string) => {
    const next = new Set(selected);
    if (next.has(sha)) next.delete(sha);
    else next.add(sha);
    setSelected(next);
  };
  const page = (delta: number) => {
    const total = q.data?.total ?? 0;
    const offset = Math.max(0, Math.min(filter.offset + delta * PAGE, Math.max(0, total - 1)));
    if (offset !== filter.offset) {
      setFilter({ ...filter, offset: offset - (offset % PAGE) });
      setFocusSha(null);
      lastIndex.current = delta > 0 ? 0 : PAGE - 1;
    }
  };

  useKeys(
    (e) => {
      if (dialog) return;
      const k = e.key;
      const handled = () => e.preventDefault();
      if (k === 'j' || k === 'ArrowDown') {
        handled();
        if (focus < items.length - 1) setFocus(focus + 1);
        else page(1);
      } else if (k === 'k' || k === 'ArrowUp') {
        handled();
        if (focus > 0) setFocus(focus - 1);
        else page(-1);
      } else if ((k === 'Enter' || k === 'o') && focused) {
        handled();
        go({ view: 'item', sha256: focused.sha256 });
      } else if (k === 'x' && focused) {
        handled();
        toggle(focused.sha256);
      } else if (k === 'a') {
        handled();
        setSelected(selected.size === items.length ? new Set() : new Set(items.map((i) => i.sha256)));
      } else if (k === 'Escape') {
        setSelected(new Set());
      } else if (k === 'b' || k === 'm') {
        handled();
        if (targets().length) setDialog({ kind: k === 'b' ? 'benign' : 'malicious' });
      } else if (k === 't') {
        handled();
        void setState('triaged');
      } else if (k === 'u') {
        handled();
        void setState('new');
      } else if (k === 'c') {
        handled();
        if (targets().length) setDialog({ kind: 'close' });
      } else if (k === 's') {
        handled();
        void selectSimilar();
      } else if (k === ']') {
        handled();
        page(1);
      } else if (k === '[') {
        handled();
        page(-1);
      } else if (k === 'r') {
        handled();
        q.reload();
      } else if (k === '?') {
        handled();
        setLegend(!legend);
      }
    },
    [dialog, focus, focusSha, items, selected, legend, filter, similarCut, analyst],
  );

  const chip = <T extends string>(list: T[], value: T, set: (l: T[]) => void) => (
    <button
      key={value}
      className={`chip ${list.includes(value) ? 'on' : ''}`}
      aria-pressed={list.includes(value)}
      onClick={() => set(list.includes(value) ? list.filter((x) => x !== value) : [...list, value])}
    >
      {value}
      {q.data ? (
        <span className="chip-count">
          {value in (q.data.counts.decision as Record<string, number>) ? (q.data.counts.decision as Record<string, number>)[value] : (q.data.counts.state as Record<string, number>)[value]}
        </span>
      ) : null}
    </button>
  );

  return (
    <section className="view triage" aria-label="triage queue">
      <header className="view-head">
        <h1>Triage</h1>
        <div className="filters" role="toolbar" aria-label="filters">
          <span className="group-label">decision</span>
          {(['block', 'review', 'allow'] as D[]).map((d) => chip(filter.decision, d, (l) => setFilter({ ...filter, decision: l, offset: 0 })))}
          <span className="group-label">state</span>
          {(['new', 'triaged', 'closed'] as S[]).map((s) => chip(filter.state, s, (l) => setFilter({ ...filter, state: l, offset: 0 })))}
          <select aria-label="source" value={filter.source} onChange={(e) => setFilter({ ...filter, source: e.target.value, offset: 0 })}>
            <option value="">all sources</option>
            {(q.data?.sources ?? []).map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
          <select aria-label="label filter" value={filter.label} onChange={(e) => setFilter({ ...filter, label: e.target.value as Filter['label'], offset: 0 })}>
            <option value="">any label</option>
            <option value="none">unlabelled</option>
            <option value="benign">benign</option>
            <option value="malicious">malicious</option>
          </select>
          <select aria-label="time window" value={filter.within} onChange={(e) => setFilter({ ...filter, within: e.target.value as Filter['within'], offset: 0 })}>
            <option value="">any time</option>
            <option value="1h">last hour</option>
            <option value="24h">last 24 hours</option>
            <option value="7d">last 7 days</option>
            <option value="30d">last 30 days</option>
          </select>
          <select aria-label="sort" value={filter.sort} onChange={(e) => setFilter({ ...filter, sort: e.target.value as Filter['sort'], offset: 0 })}>
            <option value="risk">highest risk first</option>
            <option value="time">newest first</option>
          </select>
        </div>
        <ScanForm />
      </header>
      <ErrorBox error={q.error} />
      <div className="triage-body">
        <div className="queue" role="listbox" aria-label="items" aria-multiselectable="true" aria-activedescendant={focused ? `row-${focused.sha256}` : undefined}>
          <div className="queue-meta muted">
            {q.data ? `${q.data.total === 0 ? 0 : filter.offset + 1}–${filter.offset + items.length} of ${q.data.total}` : 'loading…'}
            {selected.size > 0 ? <strong className="sel"> · {selected.size} selected (actions apply to all)</strong> : null}
          </div>
          {q.data && items.length === 0 ? (
            <Empty>
              Nothing here with these filters. {filter.decision.length < 3 ? 'Include allowed items, or ' : ''}scan files with the form above.
            </Empty>
          ) : null}
          {items.map((it, i) => (
            <div
              key={it.sha256}
              id={`row-${it.sha256}`}
              ref={(el) => {
                rowRefs.current[i] = el;
              }}
              role="option"
              aria-selected={selected.has(it.sha256)}
              data-sha256={it.sha256}
              className={`row ${i === focus ? 'focused' : ''} ${selected.has(it.sha256) ? 'selected' : ''}`}
              onClick={() => setFocus(i)}
              onDoubleClick={() => go({ view: 'item', sha256: it.sha256 })}
            >
              <span className="check" aria-hidden="true">{selected.has(it.sha256) ? '☑' : '☐'}</span>
              <Thumb sha256={it.sha256} size={48} />
              <span className="cell-decision">
                <Decision d={it.decision} />
              </span>
              <RiskBar value={it.risk} />
              <span className="cell-signals muted">
                {it.top_signals.slice(0, 2).map((s) => `${signalLabel(s.name)} ${pct(s.share)}`).join(' · ')}
              </span>
              <span className="cell-name" title={it.path ?? it.sha256}>
                <span className="name">{basename(it.path) || short(it.sha256)}</span>
                <span className="sub">
                  {it.source} · {ago(it.scanned_at)}
                </span>
              </span>
              <State s={it.state} disposition={it.disposition} />
              <Label l={it.label} />
            </div>
          ))}
        </div>
        <aside className="preview" aria-label="focused item">
          {focused ? (
            <>
              <Thumb sha256={focused.sha256} size={256} />
              <div className="preview-line">
                <Decision d={focused.decision} /> <RiskBar value={focused.risk} />
              </div>
              <div className="preview-name">{basename(focused.path) || short(focused.sha256)}</div>
              <ul className="preview-signals">
                {focused.top_signals.map((s) => (
                  <li key={s.name}>
                    {signalLabel(s.name)}: risk {s.risk.toFixed(2)}, {pct(s.share)} of the evidence
                  </li>
                ))}
              </ul>
              <div className="muted">
                {focused.mime} · {focused.width}×{focused.height} · v{focused.detector_set_version ?? '?'} · {short(focused.sha256)}
              </div>
              <label className="similar-cut">
                similar within distance
                <input type="number" step={0.05} min={0} max={2} value={similarCut} onChange={(e) => setSimilarCut(Number(e.target.value) || 0)} />
              </label>
            </>
          ) : (
            <Empty>No item focused.</Empty>
          )}
        </aside>
      </div>
      {legend ? <Legend /> : null}
      {dialog && dialog.kind !== 'close' ? (
        <ReasonDialog
          title={`Label ${targets().length === 1 ? 'item' : `${targets().length} items`} ${dialog.kind}`}
          hint={dialog.kind === 'benign' ? 'Benign items join the baseline at the next retrain.' : 'Malicious items measure each version’s detection rate.'}
          onCancel={() => setDialog(null)}
          onSubmit={(reason) => {
            setDialog(null);
            void label(dialog.kind, reason);
          }}
        />
      ) : null}
      {dialog?.kind === 'close' ? (
        <CloseDialog
          count={targets().length}
          onCancel={() => setDialog(null)}
          onSubmit={(d, reason) => {
            setDialog(null);
            void setState('closed', d, reason);
          }}
        />
      ) : null}
    </section>
  );
}

function Legend() {
  const keys: [string, string][] = [
    ['j / ↓', 'next'],
    ['k / ↑', 'previous'],
    ['Enter / o', 'open'],
    ['b', 'label benign'],
    ['m', 'label malicious'],
    ['t', 'mark triaged'],
    ['u', 'back to new'],
    ['c', 'close with disposition'],
    ['x', 'select'],
    ['a', 'select page'],
    ['s', 'select similar'],
    ['Esc', 'clear selection'],
    ['[ ]', 'page'],
    ['?', 'hide keys'],
  ];
  return (
    <footer className="legend" aria-label="keyboard shortcuts">
      {keys.map(([k, v]) => (
        <span key={k}>
          <Kbd>{k}</Kbd> {v}
        </span>
      ))}
    </footer>
  );
}

function ScanForm() {
  const { api, notify } = useWorkbench();
  const [path, setPath] = useState('');
  const submit = async () => {
    const paths = path.split(/\n|,(?=\s*\/)/).map((p) => p.trim()).filter(Boolean);
    if (!paths.length) return;
    try {
      const { job } = await api.scan({ paths, source: 'workbench' });
      notify(`scan job #${job.id} started`);
      setPath('');
    } catch (err) {
      notify(`scan: ${(err as Error).message}`, 'error');
    }
  };
  return (
    <form
      className="scanform"
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <input aria-label="files or folders to scan" placeholder="scan a file or folder on the server: /path/to/media" value={path} onChange={(e) => setPath(e.target.value)} />
      <button type="submit">Scan</button>
    </form>
  );
}
