// Figure builders for the chart frame: plain data in, plotly figures out. Pure (no DOM), so the
// regl code generator can build exactly the figures the views draw.
import type { Figure } from './protocol.js';

export const THEME = {
  paper: '#0f1419',
  plot: '#0f1419',
  grid: '#26313d',
  text: '#c9d4df',
  muted: '#7d8b99',
  allow: '#3fb950',
  review: '#d29922',
  block: '#f85149',
  baseline: '#5b6b7b',
  benign: '#58a6ff',
  malicious: '#db61a2',
  accent: '#79c0ff',
};

const PALETTE = ['#79c0ff', '#f0883e', '#a371f7', '#3fb950', '#d2a8ff', '#ffa657', '#56d4dd', '#e3b341', '#ff7b72', '#7ee787'];

export type ColourBy = 'decision' | 'label' | 'source' | 'time';

/** Everything the map draws, one entry per point. */
export interface MapPoints {
  n: number;
  x: Float32Array;
  y: Float32Array;
  kind: string; // f / b / s per point
  decision: string; // a / r / b / -
  label: string; // b / m / -
  sources: string[];
  sourceIndex: Int32Array;
  risk: Float32Array;
  time: Float64Array;
  sha256: string; // n × 64
}

function baseLayout(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    paper_bgcolor: THEME.paper,
    plot_bgcolor: THEME.plot,
    font: { color: THEME.text, size: 12 },
    margin: { l: 48, r: 16, t: 28, b: 36 },
    legend: { orientation: 'h', y: 1.08, x: 0, bgcolor: 'rgba(0,0,0,0)' },
    ...extra,
  };
}

function axis(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { gridcolor: THEME.grid, zerolinecolor: THEME.grid, linecolor: THEME.grid, ...extra };
}

function group(points: MapPoints, ids: number[], name: string, color: string, size: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const x = new Array<number>(ids.length);
  const y = new Array<number>(ids.length);
  const text = new Array<string>(ids.length);
  for (let j = 0; j < ids.length; j++) {
    const i = ids[j];
    x[j] = points.x[i];
    y[j] = points.y[i];
    const r = points.risk[i];
    text[j] = `${points.sha256.slice(i * 64, i * 64 + 12)}${Number.isFinite(r) ? ` · risk ${r.toFixed(2)}` : ' · baseline'}`;
  }
  return {
    type: 'scattergl',
    mode: 'markers',
    name: `${name} (${ids.length})`,
    x,
    y,
    customdata: ids,
    text,
    hovertemplate: '%{text}<extra></extra>',
    marker: { color, size, opacity: 0.85, line: { width: 0 } },
    ...extra,
  };
}

/** The embedding map: one trace per category (so the legend toggles them), or a time scale. */
export function mapFigure(points: MapPoints, colourBy: ColourBy, layoutKey: string, height: number): Figure {
  const byKey = new Map<string, number[]>();
  const push = (k: string, i: number) => {
    let list = byKey.get(k);
    if (!list) byKey.set(k, (list = []));
    list.push(i);
  };
  const data: Record<string, unknown>[] = [];
  if (colourBy === 'time') {
    const now = Date.now();
    const ids = Array.from({ length: points.n }, (_, i) => i);
    const t = group(points, ids, 'items', THEME.accent, 5);
    const days = ids.map((i) => Math.max(0, (now - points.time[i]) / 86_400_000));
    t.marker = { color: days, colorscale: 'Viridis', reversescale: true, size: 5, opacity: 0.85, colorbar: { title: { text: 'days ago' }, thickness: 12 } };
    t.name = `items (${ids.length})`;
    data.push(t);
  } else {
    for (let i = 0; i < points.n; i++) {
      const inBaseline = points.kind[i] !== 's';
      if (colourBy === 'decision') push(points.decision[i] === '-' ? (inBaseline ? 'baseline' : 'none') : points.decision[i], i);
      else if (colourBy === 'label') push(points.label[i], i);
      else push(points.sourceIndex[i] < 0 ? (inBaseline ? 'baseline' : 'none') : `s${points.sourceIndex[i]}`, i);
    }
    const spec: [string, string, string, number][] =
      colourBy === 'decision'
        ? [['baseline', 'baseline', THEME.baseline, 4], ['none', 'no verdict', THEME.muted, 4], ['a', 'allow', THEME.allow, 6], ['r', 'review', THEME.review, 7], ['b', 'block', THEME.block, 8]]
        : colourBy === 'label'
          ? [['-', 'unlabelled', THEME.baseline, 4], ['b', 'benign', THEME.benign, 7], ['m', 'malicious', THEME.malicious, 8]]
          : [['baseline', 'baseline', THEME.baseline, 4], ['none', 'unknown source', THEME.muted, 4], ...points.sources.map((s, k) => [`s${k}`, s, PALETTE[k % PALETTE.length], 6] as [string, string, string, number])];
    for (const [key, name, color, size] of spec) {
      const ids = byKey.get(key);
      if (ids?.length) data.push(group(points, ids, name, color, size));
    }
  }
  return {
    key: 'map',
    height,
    data,
    layout: baseLayout({
      uirevision: layoutKey,
      dragmode: 'lasso',
      hovermode: 'closest',
      xaxis: axis({ showticklabels: false, showgrid: false, zeroline: false, title: { text: '' } }),
      yaxis: axis({ showticklabels: false, showgrid: false, zeroline: false, scaleanchor: 'x' }),
      margin: { l: 8, r: 8, t: 36, b: 8 },
    }),
    config: { modeBarButtonsToAdd: ['lasso2d', 'select2d'] },
  };
}

export interface DriftInput {
  windows: { start: string; n: number; centroid_shift: number | null; centroid_shift_null95: number | null; p_value: number | null; alert: boolean; review_share: number; block_share: number }[];
  daily: { day: string; allow: number; review: number; block: number }[];
  clusters: { id: number; baseline_share: number; recent_share: number; n_recent: number; alert: boolean }[];
  alpha: number;
}

export function driftFigures(d: DriftInput): Figure[] {
  const w = d.windows.filter((x) => x.n > 0);
  const xs = w.map((x) => x.start.slice(0, 10));
  const metrics: Figure = {
    key: 'drift-metrics',
    height: 300,
    data: [
      { type: 'scatter', mode: 'lines+markers', name: 'centroid shift', x: xs, y: w.map((x) => x.centroid_shift), line: { color: THEME.accent }, marker: { color: w.map((x) => (x.alert ? THEME.block : THEME.accent)), size: 8 } },
      { type: 'scatter', mode: 'lines+markers', name: 'baseline wobble (95%)', x: xs, y: w.map((x) => x.centroid_shift_null95), line: { color: THEME.muted, dash: 'dot' } },
      { type: 'scatter', mode: 'markers', name: 'MMD p-value', x: xs, y: w.map((x) => x.p_value), yaxis: 'y2', marker: { symbol: 'diamond', size: 9, color: w.map((x) => (x.p_value !== null && x.p_value < d.alpha ? THEME.block : THEME.review)) } },
    ],
    layout: baseLayout({
      title: { text: 'Embedding drift per window', font: { size: 13 } },
      xaxis: axis({ type: 'category' }),
      yaxis: axis({ title: { text: 'cosine shift' }, rangemode: 'tozero' }),
      yaxis2: axis({
        title: { text: 'MMD p-value' },
        overlaying: 'y',
        side: 'right',
        type: 'log',
        range: [-3.5, 0.1],
        tickvals: [0.001, 0.01, 0.1, 1],
        ticktext: ['0.001', '0.01', '0.1', '1'],
        showgrid: false,
      }),
      shapes: [{ type: 'line', xref: 'paper', x0: 0, x1: 1, yref: 'y2', y0: d.alpha, y1: d.alpha, line: { color: THEME.block, dash: 'dash', width: 1 } }],
      margin: { l: 56, r: 56, t: 48, b: 40 },
    }),
  };
  const daily: Figure = {
    key: 'drift-daily',
    height: 240,
    data: [
      { type: 'bar', name: 'allow', x: d.daily.map((x) => x.day), y: d.daily.map((x) => x.allow), marker: { color: THEME.allow } },
      { type: 'bar', name: 'review', x: d.daily.map((x) => x.day), y: d.daily.map((x) => x.review), marker: { color: THEME.review } },
      { type: 'bar', name: 'block', x: d.daily.map((x) => x.day), y: d.daily.map((x) => x.block), marker: { color: THEME.block } },
    ],
    layout: baseLayout({ title: { text: 'Decisions per day', font: { size: 13 } }, barmode: 'stack', xaxis: axis({ type: 'category' }), yaxis: axis({ title: { text: 'items' } }), margin: { l: 56, r: 16, t: 48, b: 40 } }),
  };
  const names = d.clusters.map((c) => (c.id < 0 ? 'outside' : `cluster ${c.id}`));
  const clusters: Figure = {
    key: 'drift-clusters',
    height: 240,
    data: [
      { type: 'bar', name: 'baseline share', x: names, y: d.clusters.map((c) => c.baseline_share), marker: { color: THEME.baseline } },
      { type: 'bar', name: 'recent share', x: names, y: d.clusters.map((c) => c.recent_share), marker: { color: d.clusters.map((c) => (c.alert ? THEME.block : THEME.accent)) } },
    ],
    layout: baseLayout({ title: { text: 'Where recent items fall among the baseline clusters', font: { size: 13 } }, barmode: 'group', yaxis: axis({ tickformat: '.0%' }), xaxis: axis(), margin: { l: 56, r: 16, t: 48, b: 40 } }),
  };
  return [metrics, daily, clusters];
}
