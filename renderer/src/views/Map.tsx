// The embedding map: the server reduces embeddings by PCA (fitted on a fixed baseline sample),
// a Web Worker runs seeded UMAP on that sample and places every other point with `transform`,
// and the isolated chart frame draws it with WebGL. Lasso or box selection lists the items;
// clicking one opens it.
import { useEffect, useMemo, useRef, useState } from 'react';
import type { MapResponse } from '../../../shared/api/schemas.js';
import { useWorkbench } from '../app/context.js';
import { pct, short } from '../app/format.js';
import { useKeys, useQuery } from '../app/hooks.js';
import { go } from '../app/router.js';
import { Empty, ErrorBox, Thumb } from '../components/bits.js';
import { ReasonDialog } from '../components/dialogs.js';
import { f32, f64, i32 } from '../map/decode.js';
import type { FromWorker } from '../map/protocol.js';
import { mapFigure, type ColourBy, type MapPoints } from '../plot/figures.js';
import { PlotFrame, type FrameStatus } from '../plot/PlotFrame.js';

/** Layouts already computed this session, by layout key and point count. */
const layouts = new Map<string, { coords: Float32Array; ms: number }>();

interface Computed {
  data: MapResponse;
  points: MapPoints;
  umapMs: number;
  cached: boolean;
}

export function MapView() {
  const { api, analyst, notify } = useWorkbench();
  const baselines = useQuery(() => api.baselines(), [], ['baselines']);
  const [baseline, setBaseline] = useState(() => sessionStorage.getItem('parallax.map.baseline') ?? 'default');
  const [colourBy, setColourBy] = useState<ColourBy>('decision');
  const [fitSample, setFitSample] = useState(2000);
  const [nonce, setNonce] = useState(0);
  const [progress, setProgress] = useState<{ stage: string; fraction: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [computed, setComputed] = useState<Computed | null>(null);
  const [selection, setSelection] = useState<number[]>([]);
  const [frame, setFrame] = useState<FrameStatus | null>(null);
  const [labelDialog, setLabelDialog] = useState<null | 'benign' | 'malicious'>(null);
  const worker = useRef<Worker | null>(null);

  useEffect(() => {
    sessionStorage.setItem('parallax.map.baseline', baseline);
  }, [baseline]);

  useEffect(() => {
    let cancelled = false;
    setError(null);
    setSelection([]);
    setProgress({ stage: 'projecting embeddings on the server (PCA)', fraction: 0 });
    (async () => {
      const data = await api.map({ baseline, fit_sample: fitSample });
      if (cancelled) return;
      const vectors = f32(data.vectors);
      const key = `${data.layout_key}:${data.n}:${data.sha256.length}`;
      let layout = layouts.get(key);
      const cached = !!layout;
      if (!layout) {
        layout = await new Promise<{ coords: Float32Array; ms: number }>((resolve, reject) => {
          worker.current?.terminate();
          const w = new Worker(new URL('umap-worker.js', document.baseURI));
          worker.current = w;
          w.onmessage = (e: MessageEvent<FromWorker>) => {
            const m = e.data;
            if (m.type === 'progress') {
              setProgress({
                stage: m.stage === 'fit' ? `fitting UMAP on ${data.n_fit} baseline items` : `placing ${data.n - data.n_fit} more items`,
                fraction: m.stage === 'fit' ? 0.1 + 0.6 * (m.done / m.total) : 0.7 + 0.3 * (m.done / m.total),
              });
            } else if (m.type === 'done') resolve({ coords: m.coords, ms: m.ms });
            else reject(new Error(m.message));
          };
          w.onerror = (e) => reject(new Error(`UMAP worker: ${e.message}`));
          const copy = vectors.slice();
          w.postMessage({ type: 'run', vectors: copy, n: data.n, dims: data.dims, nFit: data.n_fit, seed: data.seed, nNeighbors: 15 }, [copy.buffer]);
        });
        if (cancelled) return;
        layouts.set(key, layout);
      }
      const x = new Float32Array(data.n);
      const y = new Float32Array(data.n);
      for (let i = 0; i < data.n; i++) {
        x[i] = layout.coords[i * 2];
        y[i] = layout.coords[i * 2 + 1];
      }
      const points: MapPoints = {
        n: data.n,
        x,
        y,
        kind: data.kind,
        decision: data.decision,
        label: data.label,
        sources: data.sources,
        sourceIndex: i32(data.source_index),
        risk: f32(data.risk),
        time: f64(data.time),
        sha256: data.sha256,
      };
      setComputed({ data, points, umapMs: layout.ms, cached });
      setProgress(null);
    })().catch((err: unknown) => {
      if (cancelled) return;
      setError(err instanceof Error ? err.message : String(err));
      setProgress(null);
    });
    return () => {
      cancelled = true;
      worker.current?.terminate();
      worker.current = null;
    };
  }, [api, baseline, fitSample, nonce]);

  const figures = useMemo(() => (computed ? [mapFigure(computed.points, colourBy, computed.data.layout_key, 600)] : []), [computed, colourBy]);
  const shaOf = (i: number) => computed!.points.sha256.slice(i * 64, i * 64 + 64);
  const selected = computed ? selection.map(shaOf) : [];

  useKeys(
    (e) => {
      if (e.key === 'Escape') setSelection([]);
    },
    [],
  );

  const bulkLabel = async (value: 'benign' | 'malicious', reason: string) => {
    try {
      const r = await api.labelBulk({ sha256s: selected, label: value, reason: reason || undefined, analyst: analyst || undefined });
      notify(`${r.labelled} items labelled ${value}`);
      setNonce((n) => n + 1);
    } catch (err) {
      notify(`labelling failed: ${(err as Error).message}`, 'error');
    }
  };

  return (
    <section className="view map" aria-label="embedding map">
      <header className="view-head">
        <h1>Embedding map</h1>
        <div className="filters">
          <label>
            baseline{' '}
            <select value={baseline} onChange={(e) => setBaseline(e.target.value)} aria-label="baseline">
              {(baselines.data?.baselines ?? [{ name: baseline }]).map((b) => (
                <option key={b.name} value={b.name}>
                  {b.name}
                </option>
              ))}
            </select>
          </label>
          <label>
            colour by{' '}
            <select value={colourBy} onChange={(e) => setColourBy(e.target.value as ColourBy)} aria-label="colour by">
              <option value="decision">decision</option>
              <option value="label">label</option>
              <option value="source">source</option>
              <option value="time">time</option>
            </select>
          </label>
          <label>
            fit on{' '}
            <select value={fitSample} onChange={(e) => setFitSample(Number(e.target.value))} aria-label="fit sample">
              <option value={500}>500</option>
              <option value={1000}>1,000</option>
              <option value={2000}>2,000</option>
              <option value={4000}>4,000</option>
            </select>{' '}
            baseline items
          </label>
          <button onClick={() => setNonce((n) => n + 1)}>Refresh</button>
        </div>
      </header>
      <ErrorBox error={error} />
      {progress ? (
        <div className="progress" data-map-progress="">
          <div className="progress-head">{progress.stage}…</div>
          <div className="bar" role="progressbar" aria-valuenow={Math.round(progress.fraction * 100)} aria-valuemin={0} aria-valuemax={100}>
            <span style={{ width: pct(progress.fraction) }} />
          </div>
        </div>
      ) : null}
      {computed ? (
        <>
          <div className="muted map-stats" data-points={computed.data.n}>
            {computed.data.n.toLocaleString()} points ({computed.data.n_fit.toLocaleString()} baseline items fit the layout, the rest placed
            with transform{computed.data.truncated ? '; truncated to the most recent' : ''}) · PCA {computed.data.dims}-d keeps{' '}
            {pct(computed.data.explained_variance)} of the variance · UMAP {computed.cached ? 'cached' : `${(computed.umapMs / 1000).toFixed(1)} s`} · seed{' '}
            {computed.data.seed}
            {frame?.renderer ? ` · drawn with ${frame.renderer}${frame.renderMs !== null ? ` in ${frame.renderMs.toFixed(0)} ms` : ''}` : ''}
          </div>
          <PlotFrame
            title="embedding map"
            figures={figures}
            onStatus={setFrame}
            onSelect={(_k, ids) => setSelection(ids)}
            onClick={(_k, id) => go({ view: 'item', sha256: shaOf(id) })}
          />
          <section className="selection" aria-label="selected items">
            <h2>
              {selection.length ? `${selection.length} selected` : 'Selection'}
              {selection.length ? (
                <>
                  <button className="small" onClick={() => setLabelDialog('benign')}>
                    Label benign
                  </button>
                  <button className="small" onClick={() => setLabelDialog('malicious')}>
                    Label malicious
                  </button>
                  <button className="small" onClick={() => setSelection([])}>
                    Clear
                  </button>
                </>
              ) : null}
            </h2>
            {selection.length === 0 ? <Empty>Drag a lasso or a box on the map to list items; click a point to open it.</Empty> : null}
            <div className="neighbours">
              {selection.slice(0, 120).map((i) => (
                <a key={i} href={`#/item/${shaOf(i)}`} className="neighbour" title={shaOf(i)}>
                  <Thumb sha256={shaOf(i)} size={72} />
                  <span className="mono">{short(shaOf(i))}</span>
                </a>
              ))}
              {selection.length > 120 ? <span className="muted">and {selection.length - 120} more</span> : null}
            </div>
          </section>
        </>
      ) : null}
      {labelDialog ? (
        <ReasonDialog
          title={`Label ${selected.length} items ${labelDialog}`}
          hint="Applies to every selected point."
          onCancel={() => setLabelDialog(null)}
          onSubmit={(reason) => {
            const v = labelDialog;
            setLabelDialog(null);
            void bulkLabel(v, reason);
          }}
        />
      ) : null}
    </section>
  );
}
