// Small presentational pieces shared by the views.
import { useState, type ReactNode } from 'react';
import type { Job } from '../../../shared/api/schemas.js';
import { useApi } from '../app/context.js';
import { pct, risk as fmtRisk } from '../app/format.js';

export function Thumb({ sha256, size = 64, variant = 'thumb', alt }: { sha256: string; size?: number; variant?: 'thumb' | 'full'; alt?: string }) {
  const api = useApi();
  const [failed, setFailed] = useState(false);
  if (failed) {
    return (
      <div className="thumb missing" style={{ width: size, height: size }} title="media not retained: the file is gone or has changed since it was scanned">
        <span>media not retained</span>
      </div>
    );
  }
  return (
    <img
      className="thumb"
      src={api.mediaUrl(sha256, variant)}
      width={variant === 'thumb' ? size : undefined}
      height={variant === 'thumb' ? size : undefined}
      alt={alt ?? `item ${sha256.slice(0, 12)}`}
      loading="lazy"
      decoding="async"
      onError={() => setFailed(true)}
    />
  );
}

export function Decision({ d }: { d: 'allow' | 'review' | 'block' | null | undefined }) {
  if (!d) return <span className="badge muted">not scanned</span>;
  return <span className={`badge decision-${d}`}>{d}</span>;
}

export function State({ s, disposition }: { s: 'new' | 'triaged' | 'closed' | null | undefined; disposition?: string | null }) {
  if (!s) return null;
  return (
    <span className={`badge state-${s}`} title={disposition ? `closed as ${disposition.replace('_', ' ')}` : undefined}>
      {s === 'closed' && disposition ? `closed · ${disposition.replace('_', ' ')}` : s}
    </span>
  );
}

export function Label({ l }: { l: 'benign' | 'malicious' | null | undefined }) {
  if (!l) return <span className="badge muted">unlabelled</span>;
  return <span className={`badge label-${l}`}>{l}</span>;
}

export function RiskBar({ value, thresholds }: { value: number; thresholds?: { review: number; block: number } | null }) {
  const t = thresholds ?? { review: 0.4, block: 0.7 };
  const cls = value >= t.block ? 'block' : value >= t.review ? 'review' : 'allow';
  return (
    <span className="riskbar" title={`fused risk ${fmtRisk(value)} (review at ${t.review}, block at ${t.block})`}>
      <span className={`fill ${cls}`} style={{ width: `${Math.round(value * 100)}%` }} />
      <span className="tick" style={{ left: `${t.review * 100}%` }} />
      <span className="tick" style={{ left: `${t.block * 100}%` }} />
      <span className="num">{fmtRisk(value)}</span>
    </span>
  );
}

export function ErrorBox({ error }: { error: string | null | undefined }) {
  if (!error) return null;
  return (
    <div className="error" role="alert">
      {error}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}

export function Progress({ job, onCancel }: { job: Job; onCancel?: () => void }) {
  const active = job.state === 'running' || job.state === 'queued';
  return (
    <div className={`progress job-${job.state}`} data-job-id={job.id} data-job-kind={job.kind} data-job-state={job.state}>
      <div className="progress-head">
        <strong>{job.kind}</strong>
        <span className="muted">#{job.id}</span>
        <span className={`badge job-${job.state}`}>{job.state}</span>
        <span className="progress-detail">{job.error ?? job.detail ?? ''}</span>
        {active && onCancel ? (
          <button className="small" onClick={onCancel}>
            Cancel
          </button>
        ) : null}
      </div>
      <div className="bar" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(job.progress * 100)}>
        <span style={{ width: pct(job.progress) }} />
      </div>
    </div>
  );
}

export function Kbd({ children }: { children: ReactNode }) {
  return <kbd>{children}</kbd>;
}
