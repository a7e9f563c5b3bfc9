// The chart frame's script (dist/renderer/plot-frame.js, after vendor/plotly.min.js).
//
// plotly's WebGL traces go through regl, which generates its drawing code with `Function`:
// this frame's CSP forbids that, so the generated code is shipped precompiled
// (regl-codegen.generated.ts, made by scripts/gen-regl-codegen.ts) and handed to plotly's own
// `reglPrecompiled` cache before the first plot. If a code path was missed, the CSP reports a
// violation: the frame tells the page and redraws the same figures with SVG traces.
import type { Figure, FromFrame, ToFrame } from './protocol.js';
import { REGL_CODEGEN } from './regl-codegen.generated.js';

interface PlotlyLike {
  newPlot(el: HTMLElement, data: unknown[], layout?: unknown, config?: unknown): Promise<unknown>;
  react(el: HTMLElement, data: unknown[], layout?: unknown, config?: unknown): Promise<unknown>;
  purge(el: HTMLElement): void;
}
type PlotDiv = HTMLDivElement & {
  on?(event: string, cb: (e: unknown) => void): void;
  _fullData?: { _module?: { plot?: { reglPrecompiled?: Record<string, unknown> } } }[];
  _fullLayout?: { _glcanvas?: { data(): { regl?: { getCachedCode(): Record<string, { toString(): string }> } }[] } };
  __wired?: boolean;
};

declare const Plotly: PlotlyLike;

const parentOrigin = new URLSearchParams(window.location.hash.slice(1)).get('parent') ?? '';
const root = document.getElementById('figures')!;
let svgOnly = !hasWebGL();
let lastRender: Extract<ToFrame, { type: 'render' }> | null = null;
let queue: Promise<void> = Promise.resolve();

function post(msg: FromFrame): void {
  if (parentOrigin) window.parent.postMessage(msg, parentOrigin);
}

function hasWebGL(): boolean {
  try {
    return !!document.createElement('canvas').getContext('webgl');
  } catch {
    return false;
  }
}

document.addEventListener('securitypolicyviolation', (e) => {
  post({ type: 'violation', directive: e.violatedDirective, source: `${e.sourceFile}:${e.lineNumber}` });
  // A blocked `Function` means a regl code path that was not precompiled: WebGL cannot work.
  if (e.violatedDirective.startsWith('script-src') && !svgOnly) {
    svgOnly = true;
    if (lastRender) schedule(lastRender);
  }
});

async function primeReglCache(): Promise<void> {
  // The scattergl module (and its cache object) is reachable once a figure uses it; an
  // invisible trace builds no GL context, so nothing is compiled before the cache is filled.
  const probe = document.createElement('div') as PlotDiv;
  probe.style.width = '10px';
  probe.style.height = '10px';
  document.body.appendChild(probe);
  await Plotly.newPlot(probe, [{ type: 'scattergl', x: [], y: [], visible: false }], {}, { staticPlot: true });
  const cache = probe._fullData?.[0]?._module?.plot?.reglPrecompiled;
  if (cache) Object.assign(cache, REGL_CODEGEN);
  Plotly.purge(probe);
  probe.remove();
}

function toSvg(fig: Figure): Figure['data'] {
  return fig.data.map((t) => (t.type === 'scattergl' ? { ...t, type: 'scatter' } : t));
}

function wire(div: PlotDiv, key: string): void {
  if (div.__wired || !div.on) return;
  div.__wired = true;
  div.on('plotly_selected', (ev) => {
    const points = ((ev as { points?: { customdata?: unknown }[] } | undefined)?.points ?? []);
    post({ type: 'select', key, ids: points.map((p) => Number(p.customdata)).filter(Number.isFinite) });
  });
  div.on('plotly_deselect', () => post({ type: 'select', key, ids: [] }));
  div.on('plotly_click', (ev) => {
    const p = (ev as { points?: { customdata?: unknown }[] }).points?.[0];
    const id = Number(p?.customdata);
    if (Number.isFinite(id)) post({ type: 'click', key, id });
  });
}

async function render(msg: Extract<ToFrame, { type: 'render' }>): Promise<void> {
  const started = performance.now();
  const keep = new Set(msg.figures.map((f) => f.key));
  for (const el of [...root.children] as HTMLElement[]) {
    if (!keep.has(el.dataset.key ?? '')) {
      Plotly.purge(el);
      el.remove();
    }
  }
  for (const fig of msg.figures) {
    let div = root.querySelector<PlotDiv>(`[data-key="${CSS.escape(fig.key)}"]`);
    if (!div) {
      div = document.createElement('div') as PlotDiv;
      div.dataset.key = fig.key;
      div.className = 'figure';
      root.appendChild(div);
    }
    div.style.height = `${fig.height}px`;
    await Plotly.react(div, svgOnly ? toSvg(fig) : fig.data, fig.layout, {
      displaylogo: false,
      responsive: true,
      scrollZoom: true,
      modeBarButtonsToRemove: ['toImage', 'sendDataToCloud'],
      ...fig.config,
    });
    wire(div, fig.key);
  }
  post({ type: 'rendered', seq: msg.seq, ms: performance.now() - started, renderer: svgOnly ? 'svg' : 'webgl' });
}

function schedule(msg: Extract<ToFrame, { type: 'render' }>): void {
  lastRender = msg;
  queue = queue.then(() => render(msg)).catch((err: unknown) => post({ type: 'error', message: err instanceof Error ? err.message : String(err) }));
}

function dumpRegl(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const el of root.children) {
    const canvases = (el as PlotDiv)._fullLayout?._glcanvas?.data() ?? [];
    for (const c of canvases) {
      const code = c.regl?.getCachedCode() ?? {};
      for (const [k, fn] of Object.entries(code)) out[k] = fn.toString();
    }
  }
  return out;
}

window.addEventListener('message', (e: MessageEvent<ToFrame>) => {
  // Only the page that embedded this frame may drive it.
  if (e.source !== window.parent || e.origin !== parentOrigin) return;
  const msg = e.data;
  if (msg?.type === 'render') schedule(msg);
  else if (msg?.type === 'dump-regl') post({ type: 'regl', code: dumpRegl() });
});

if (!parentOrigin) {
  document.body.textContent = 'This chart frame only works inside the Parallax workbench.';
} else {
  primeReglCache().then(
    () => post({ type: 'ready', webgl: !svgOnly }),
    (err: unknown) => post({ type: 'error', message: `chart frame start-up failed: ${err instanceof Error ? err.message : String(err)}` }),
  );
}
