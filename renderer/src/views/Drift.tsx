// Drift: is what arrives lately still drawn from the baseline's distribution? Windows over
// time (centroid shift against the baseline's own wobble, MMD with a permutation p-value), the
// share of review and block per day, and how recent items spread over the baseline's clusters.
// Crossing a threshold raises a visible alert.
import { useMemo, useState } from 'react';
import { useWorkbench } from '../app/context.js';
import { pct } from '../app/format.js';
import { useQuery } from '../app/hooks.js';
import { Empty, ErrorBox, Thumb } from '../components/bits.js';
import { driftFigures } from '../plot/figures.js';
import { PlotFrame } from '../plot/PlotFrame.js';

const SETTINGS_KEY = 'parallax.drift';

interface Settings {
  window: 'day' | 'week';
  days: number;
  alpha: number;
  flagShare: number;
}

export function Drift() {
  const { api } = useWorkbench();
  const [settings, setSettingsState] = useState<Settings>(() => {
    try {
      return { window: 'day', days: 30, alpha: 0.01, flagShare: 0.2, ...(JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? '{}') as Partial<Settings>) };
    } catch {
      return { window: 'day', days: 30, alpha: 0.01, flagShare: 0.2 };
    }
  });
  const setSettings = (s: Settings) => {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(s));
    setSettingsState(s);
  };
  const q = useQuery(
    () => api.drift({ window: settings.window, days: settings.days, alpha: settings.alpha, flag_share_alert: settings.flagShare }),
    [JSON.stringify(settings)],
    ['queue', 'models', 'baselines'],
  );
  const d = q.data;
  const figures = useMemo(() => (d ? driftFigures({ windows: d.windows, daily: d.daily, clusters: d.clusters, alpha: settings.alpha }) : []), [d, settings.alpha]);
  const latest = d ? [...d.windows].reverse().find((w) => w.n > 0) : undefined;

  return (
    <section className="view drift" aria-label="drift">
      <header className="view-head">
        <h1>Drift</h1>
        <div className="filters">
          <label>
            window{' '}
            <select value={settings.window} onChange={(e) => setSettings({ ...settings, window: e.target.value as Settings['window'] })} aria-label="window">
              <option value="day">day</option>
              <option value="week">week</option>
            </select>
          </label>
          <label>
            over{' '}
            <select value={settings.days} onChange={(e) => setSettings({ ...settings, days: Number(e.target.value) })} aria-label="days">
              {[7, 14, 30, 90].map((n) => (
                <option key={n} value={n}>
                  {n} days
                </option>
              ))}
            </select>
          </label>
          <label title="alert when the MMD permutation test's p-value falls below this">
            alert at p &lt;{' '}
            <input type="number" step={0.005} min={0.001} max={0.2} value={settings.alpha} onChange={(e) => setSettings({ ...settings, alpha: Math.min(0.2, Math.max(0.001, Number(e.target.value) || 0.01)) })} aria-label="alert p-value threshold" />
          </label>
          <label title="alert when review + block reach this share of a window's items">
            or flagged ≥{' '}
            <input type="number" step={5} min={1} max={100} value={Math.round(settings.flagShare * 100)} onChange={(e) => setSettings({ ...settings, flagShare: Math.min(1, Math.max(0.01, (Number(e.target.value) || 20) / 100)) })} aria-label="alert flagged share (percent)" />
            %
          </label>
        </div>
      </header>
      <ErrorBox error={q.error} />
      {d?.alert.raised ? (
        <div className="alert" role="alert" data-drift-alert="">
          <strong>Drift alert.</strong>
          <ul>
            {d.alert.reasons.map((r) => (
              <li key={r}>{r}</li>
            ))}
          </ul>
        </div>
      ) : d ? (
        <div className="ok-banner" role="status">
          No drift alert{latest ? `: latest window ${latest.start.slice(0, 10)} has p = ${latest.p_value?.toFixed(3) ?? '—'}, ${pct(latest.review_share + latest.block_share)} flagged` : ''}.
        </div>
      ) : null}
      {d && d.baseline_n < 10 ? <Empty>The baseline needs at least 10 items with embeddings before drift can be measured.</Empty> : null}
      {d && d.windows.every((w) => w.n === 0) && d.baseline_n >= 10 ? <Empty>Nothing scanned in the last {settings.days} days.</Empty> : null}
      {d ? <PlotFrame title="drift charts" figures={figures} /> : <div className="muted">computing…</div>}
      {d ? (
        <>
          <h2>Clusters</h2>
          <table className="table">
            <thead>
              <tr>
                <th>cluster</th>
                <th>example</th>
                <th>baseline share</th>
                <th>recent share</th>
                <th>recent items</th>
                <th>centroid shift</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {d.clusters.map((c) => (
                <tr key={c.id} className={c.alert ? 'alerting' : ''}>
                  <td>{c.id < 0 ? 'outside every cluster' : c.id}</td>
                  <td>{c.example_sha256 ? <a href={`#/item/${c.example_sha256}`}><Thumb sha256={c.example_sha256} size={40} /></a> : null}</td>
                  <td>{pct(c.baseline_share, 1)}</td>
                  <td>{pct(c.recent_share, 1)}</td>
                  <td>{c.n_recent}</td>
                  <td>{c.centroid_shift === null ? '—' : c.centroid_shift.toFixed(3)}</td>
                  <td>{c.alert ? <span className="badge decision-block">alert</span> : null}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <details>
            <summary>Method</summary>
            <p className="muted">{d.method}</p>
          </details>
        </>
      ) : null}
    </section>
  );
}
