// The app:// protocol, as a pure function: app://parallax/* serves the built renderer and
// relays app://parallax/media/<sha256>/<variant> to the engine; app://plot/* serves only the
// chart frame and its files (another origin, hence another renderer process).
import path from 'node:path';
import { APP_ORIGIN, PLOT_ORIGIN } from '../../shared/api/bridge.js';
import { pageCsp, plotFrameCsp } from '../../shared/api/csp.js';

export type AppRequest =
  | { kind: 'static'; file: string; headers: Record<string, string> }
  | { kind: 'media'; sha256: string; variant: 'thumb' | 'full'; headers: Record<string, string> }
  | { kind: 'deny'; status: number; reason: string };

const PLOT_FILES = new Set(['plot-frame.html', 'plot-frame.js', 'plot-frame.css', 'vendor/plotly.min.js']);

export function appCsp(): string {
  return pageCsp({ connect: "'self'", frame: PLOT_ORIGIN });
}

export function plotCsp(): string {
  return plotFrameCsp(APP_ORIGIN);
}

export function resolveAppRequest(rawUrl: string, rendererDir: string): AppRequest {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    return { kind: 'deny', status: 400, reason: 'bad URL' };
  }
  const origin = `${url.protocol}//${url.host}`;
  const rel = decodeURIComponent(url.pathname).replace(/^\/+/, '') || 'index.html';
  if (origin === APP_ORIGIN && rel.startsWith('media/')) {
    const [, sha256, variant = 'thumb'] = rel.split('/');
    if (!/^[0-9a-f]{64}$/.test(sha256 ?? '') || (variant !== 'thumb' && variant !== 'full')) return { kind: 'deny', status: 400, reason: 'bad media path' };
    return { kind: 'media', sha256: sha256!, variant, headers: { 'Cache-Control': 'private, max-age=86400, immutable', 'X-Content-Type-Options': 'nosniff' } };
  }
  const root = path.resolve(rendererDir);
  const file = path.resolve(root, rel);
  if (!file.startsWith(root + path.sep)) return { kind: 'deny', status: 404, reason: 'outside the renderer folder' };
  if (origin === PLOT_ORIGIN) {
    if (!PLOT_FILES.has(rel)) return { kind: 'deny', status: 404, reason: 'the chart origin serves only the chart frame' };
    return { kind: 'static', file, headers: { 'Content-Security-Policy': plotCsp(), 'X-Content-Type-Options': 'nosniff' } };
  }
  if (origin !== APP_ORIGIN) return { kind: 'deny', status: 404, reason: `unknown origin ${origin}` };
  return { kind: 'static', file, headers: { 'Content-Security-Policy': appCsp(), 'X-Content-Type-Options': 'nosniff' } };
}
