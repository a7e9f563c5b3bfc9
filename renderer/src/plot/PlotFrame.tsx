// Hosts the chart frame: sends it figures, relays its selection and click events, and reports
// what it says about itself (WebGL or SVG, CSP violations) so nothing fails silently.
import { useEffect, useRef, useState } from 'react';
import { useApi } from '../app/context.js';
import type { Figure, FromFrame, ToFrame } from './protocol.js';

export interface FrameStatus {
  ready: boolean;
  renderer: 'webgl' | 'svg' | null;
  renderMs: number | null;
  /** The last figures sent and the last drawn: equal once the frame has caught up. */
  sentSeq: number;
  renderedSeq: number;
  violations: string[];
  error: string | null;
}

export function PlotFrame(props: {
  figures: Figure[];
  title: string;
  onSelect?(key: string, ids: number[]): void;
  onClick?(key: string, id: number): void;
  onStatus?(s: FrameStatus): void;
}) {
  const api = useApi();
  const ref = useRef<HTMLIFrameElement>(null);
  const [src] = useState(() => `${api.plotFrameUrl()}#parent=${encodeURIComponent(window.location.origin)}`);
  const frameOrigin = new URL(src).origin;
  const [status, setStatus] = useState<FrameStatus>({ ready: false, renderer: null, renderMs: null, sentSeq: 0, renderedSeq: 0, violations: [], error: null });
  const seq = useRef(0);
  const handlers = useRef(props);
  handlers.current = props;

  useEffect(() => {
    const onMessage = (e: MessageEvent<FromFrame>) => {
      if (e.source !== ref.current?.contentWindow || e.origin !== frameOrigin) return;
      const m = e.data;
      if (m.type === 'ready') setStatus((s) => ({ ...s, ready: true, renderer: m.webgl ? 'webgl' : 'svg' }));
      else if (m.type === 'rendered') setStatus((s) => ({ ...s, renderer: m.renderer, renderMs: m.ms, renderedSeq: Math.max(s.renderedSeq, m.seq) }));
      else if (m.type === 'select') handlers.current.onSelect?.(m.key, m.ids);
      else if (m.type === 'click') handlers.current.onClick?.(m.key, m.id);
      else if (m.type === 'violation') setStatus((s) => ({ ...s, violations: [...s.violations, `${m.directive} at ${m.source}`] }));
      else if (m.type === 'error') setStatus((s) => ({ ...s, error: m.message }));
    };
    window.addEventListener('message', onMessage);
    return () => window.removeEventListener('message', onMessage);
  }, [frameOrigin]);

  useEffect(() => {
    handlers.current.onStatus?.(status);
  }, [status]);

  useEffect(() => {
    if (!status.ready || !ref.current?.contentWindow) return;
    const msg: ToFrame = { type: 'render', seq: ++seq.current, figures: props.figures };
    ref.current.contentWindow.postMessage(msg, frameOrigin);
    setStatus((s) => ({ ...s, sentSeq: msg.seq }));
  }, [status.ready, props.figures, frameOrigin]);

  const height = props.figures.reduce((s, f) => s + f.height, 0);
  return (
    <div className="plotframe">
      {!status.ready ? <div className="muted plot-loading">Loading the chart engine…</div> : null}
      {status.error ? <div className="error" role="alert">Chart: {status.error}</div> : null}
      {status.violations.length > 0 ? (
        <div className="warn" role="status">
          The chart engine hit the page's security policy ({status.violations[0]}); it now draws with SVG, which is slower at
          this many points. Regenerate the precompiled chart code with <code>npm run gen:regl</code>.
        </div>
      ) : null}
      <iframe
        ref={ref}
        title={props.title}
        src={src}
        style={{ height: Math.max(height, 120) }}
        data-renderer={status.renderer ?? ''}
        data-render-ms={status.renderMs === null ? '' : status.renderMs.toFixed(0)}
        data-violations={status.violations.length}
        data-sent-seq={status.sentSeq}
        data-rendered-seq={status.renderedSeq}
      />
    </div>
  );
}
