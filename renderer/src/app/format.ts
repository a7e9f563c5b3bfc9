// Numbers and times the way an analyst reads them.

export function pct(x: number | null | undefined, digits = 0): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  return `${(x * 100).toFixed(digits)}%`;
}

export function risk(x: number | null | undefined): string {
  return x === null || x === undefined ? '—' : x.toFixed(2);
}

export function ago(iso: string | null | undefined): string {
  if (!iso) return '—';
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (!Number.isFinite(s)) return '—';
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isFinite(d.getTime()) ? d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }) : iso;
}

export function short(sha: string): string {
  return sha.slice(0, 12);
}

export function basename(p: string | null | undefined): string {
  if (!p) return '';
  const parts = p.split(/[\\/]/);
  return parts[parts.length - 1] || p;
}

export function bytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

export const SIGNAL_LABELS: Record<string, string> = {
  isolation_forest: 'Isolation forest',
  autoencoder: 'Autoencoder',
  knn: 'kNN distance',
  mahalanobis: 'Mahalanobis',
  cluster: 'Cluster distance',
  lid: 'Local intrinsic dim.',
  squeeze: 'Feature squeezing',
  cross_encoder: 'Cross-encoder',
  cross_regression: 'Cross-encoder residual',
  squeeze_cross: 'Squeeze vs cross prediction',
  patch_texture: 'Patch texture',
};

export function signalLabel(name: string): string {
  return SIGNAL_LABELS[name] ?? name.replace(/_/g, ' ');
}
