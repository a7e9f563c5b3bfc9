// The "why flagged" chart: for each signal, its calibrated risk (how much more unusual the item
// is than legitimate baseline items on that signal) and its share of the fused evidence, with
// the weight that scales it. Drawn as plain SVG: it is small, and must appear instantly.
import type { SignalBreakdown as Signal } from '../../../shared/api/schemas.js';
import { pct, signalLabel } from '../app/format.js';

export function SignalBreakdown({ signals }: { signals: Signal[] }) {
  const row = 46;
  const labelW = 150;
  const barW = 260;
  const h = signals.length * row + 28;
  return (
    <figure className="breakdown" aria-label="per-signal breakdown">
      <svg width={labelW + barW + 150} height={h} role="img" aria-label="calibrated risk and share of each signal">
        <text x={labelW} y={14} className="axis">0</text>
        <text x={labelW + barW} y={14} className="axis" textAnchor="end">1</text>
        {signals.map((s, i) => {
          const y = 22 + i * row;
          return (
            <g key={s.name} className="signal-row" data-signal={s.name}>
              <text x={0} y={y + 13} className="name">{signalLabel(s.name)}</text>
              <text x={0} y={y + 29} className="sub">weight {s.weight}</text>
              <rect x={labelW} y={y + 2} width={barW} height={14} className="track" />
              <rect x={labelW} y={y + 2} width={Math.max(1, s.risk * barW)} height={14} className={`risk ${s.risk >= 0.99 ? 'hot' : s.risk >= 0.9 ? 'warm' : ''}`} />
              <rect x={labelW} y={y + 20} width={barW} height={8} className="track" />
              <rect x={labelW} y={y + 20} width={Math.max(0, s.share * barW)} height={8} className="share" />
              <text x={labelW + barW + 8} y={y + 14} className="val">risk {s.risk.toFixed(2)}</text>
              <text x={labelW + barW + 8} y={y + 28} className="sub">share {pct(s.share)} · p {s.p < 0.001 ? s.p.toExponential(1) : s.p.toFixed(3)}</text>
            </g>
          );
        })}
      </svg>
      <figcaption className="muted">
        Risk: share of held-out legitimate items this item is more unusual than, per signal. Share: the signal's part of the fused
        evidence (weight × −ln p).
      </figcaption>
    </figure>
  );
}
