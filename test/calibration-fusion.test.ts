// Calibration (empirical + exponential tail) and evidence fusion, against hand computations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Calibrator } from '../shared/detectors/calibration.js';
import {
  decide,
  DEFAULT_SIGNAL_WEIGHTS,
  DEFAULT_THRESHOLDS,
  evidenceShares,
  fuse,
  fusedStatistic,
  FusionModel,
  referenceFusion,
  surpriseRisk,
} from '../shared/detectors/fusion.js';
import { mulberry32 } from '../shared/math/rng.js';

const close = (actual: number, expected: number, tol: number, what = '') =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what} expected ${expected} ± ${tol}, got ${actual}`);

test('calibrator: uniform scores give p ≈ 1 − x in the body, monotone throughout', () => {
  const rng = mulberry32(1);
  const cal = Calibrator.fit(Array.from({ length: 4000 }, rng));
  for (let x = 0.05; x <= 0.85; x += 0.05) close(cal.p(x), 1 - x, 0.02, `p(${x.toFixed(2)})`);
  let prev = Infinity;
  for (let x = -0.5; x <= 3; x += 0.001) {
    const p = cal.p(x);
    assert.ok(p <= prev, `p not monotone at ${x}: ${p} > ${prev}`);
    assert.ok(p >= 0 && p <= 1);
    prev = p;
  }
  assert.equal(cal.p(-1), 1);
});

test('calibrator: past the largest score p keeps decreasing along the exponential tail', () => {
  const cal = Calibrator.fit(Array.from({ length: 1000 }, mulberry32(2)));
  const t = cal.tail!;
  assert.ok(t, 'tail fitted');
  // Uniform(0,1): u ≈ 0.9, mean excess over u ≈ 0.05, ζ ≈ 0.1.
  close(t.threshold, 0.9, 0.02, 'u');
  close(t.scale, 0.05, 0.01, 'β');
  close(t.fraction, 0.1, 0.005, 'ζ');
  const floor = 1 / 1001;
  const p1 = cal.p(1.0), p2 = cal.p(1.2), p3 = cal.p(2);
  assert.ok(p1 > p2 && p2 > p3, 'strictly decreasing past the max');
  assert.ok(p2 < floor, 'below the empirical floor 1/(n+1)');
  close(p3, t.fraction * Math.exp(-(2 - t.threshold) / t.scale), 1e-15, 'p(2)');
  close(cal.logP(50), Math.log(t.fraction) - (50 - t.threshold) / t.scale, 1e-9, 'log p without underflow');
  assert.equal(cal.risk(5), 1000 / 1001);
});

test('calibrator: exact tail fit and empirical p on a hand-sized sample', () => {
  // Scores 1..100: type-7 90th percentile at position 89.1 → u = 90.1; excesses over u are
  // 91..100, mean 95.5, so β = 5.4; ζ = (10 + 1)/(100 + 1).
  const cal = Calibrator.fit(Array.from({ length: 100 }, (_, i) => 100 - i));
  close(cal.tail!.threshold, 90.1, 1e-12);
  close(cal.tail!.scale, 5.4, 1e-12);
  close(cal.tail!.fraction, 11 / 101, 1e-15);
  close(cal.p(50), 52 / 101, 1e-15, 'p(50) = (#{s ≥ 50} + 1)/(n + 1)');
  close(cal.p(50.5), 51 / 101, 1e-15);
  close(cal.risk(50), 1 - 52 / 101, 1e-15);
  close(cal.p(95), (11 / 101) * Math.exp(-4.9 / 5.4), 1e-15);
  // Leave-one-out: 50 against the other 99 scores → (#{others ≥ 50} + 1)/(99 + 1) = 51/100.
  close(cal.pLeaveOneOut(50), 51 / 100, 1e-15);
  // The top score against the other 99: u' = 89.2 over 1..99, excesses 90..99 (mean 94.5),
  // β' = 5.3, ζ' = 11/100.
  close(cal.pLeaveOneOut(100), (11 / 100) * Math.exp(-(100 - 89.2) / 5.3), 1e-12);
});

test('calibrator: small samples fall back to the empirical floor; serialisation is exact', () => {
  const small = Calibrator.fit([3, 1, 2]);
  assert.equal(small.tail, null);
  assert.equal(small.p(10), 1 / 4);
  assert.equal(small.p(2), 3 / 4);
  const cal = Calibrator.fit(Array.from({ length: 500 }, mulberry32(4)));
  const back = Calibrator.fromJSON(JSON.parse(JSON.stringify(cal.toJSON())));
  for (const x of [-1, 0.3, 0.95, 1.7]) assert.equal(back.p(x), cal.p(x));
  assert.deepEqual(back.tail, cal.tail);
  assert.throws(() => Calibrator.fit([]), RangeError);
  assert.throws(() => Calibrator.fit([1, NaN]), /not finite/);
});

test('fusion: statistic, shares and surprise risk match a hand computation', () => {
  const signals = {
    isolation_forest: { p: 0.5, weight: 1 },
    autoencoder: { p: 0.1, weight: 1 },
    knn: { p: 0.01, weight: 1.5 },
    mahalanobis: { p: 0.2, weight: 1 },
    cluster: { p: 1, weight: 0.5 },
  };
  // Evidence wᵢ·(−ln pᵢ): ln 2, ln 10, 1.5·ln 100, ln 5, 0 → total 11.512925…, weights sum 5.
  const e = [Math.LN2, Math.LN10, 1.5 * Math.log(100), Math.log(5), 0];
  const total = e.reduce((a, b) => a + b, 0);
  close(total, 11.5129255, 1e-6);
  close(fusedStatistic(signals), total / 5, 1e-12, 'T');
  const shares = evidenceShares(signals);
  close(shares.isolation_forest!, e[0] / total, 1e-12);
  close(shares.knn!, 0.6, 1e-12, 'knn share = 1.5·ln100 / (5·ln10 … ) = 0.6');
  close(shares.autoencoder!, 0.2, 1e-12);
  assert.equal(shares.cluster, 0);
  close(Object.values(shares).reduce((a, b) => a + b!, 0)!, 1, 1e-12, 'shares sum');

  // Fused calibrator on 0.05, 0.10, …, 5.00: u = 4.505, β = 0.27, ζ = 11/101 (scaled from 1..100).
  const fusedCal = Calibrator.fit(Array.from({ length: 100 }, (_, i) => (i + 1) / 20));
  close(fusedCal.tail!.threshold, 4.505, 1e-12);
  close(fusedCal.tail!.scale, 0.27, 1e-12);

  // T = 2.302585: 54 of the 100 scores are ≥ T → p = 55/101, risk = −log10(p)/4 ≈ 0.066 → allow.
  const r1 = fuse(signals, fusedCal);
  close(r1.p, 55 / 101, 1e-12);
  close(r1.risk, -Math.log10(55 / 101) / 4, 1e-12);
  assert.equal(r1.decision, 'allow');

  // All p = e^−5.2 → T = 5.2 → p = (11/101)·e^(−0.695/0.27) ≈ 0.0083017 → risk ≈ 0.5202 → review.
  const mid = Object.fromEntries(Object.entries(signals).map(([k, v]) => [k, { ...v, p: Math.exp(-5.2) }]));
  const r2 = fuse(mid, fusedCal);
  close(r2.statistic, 5.2, 1e-12);
  close(r2.p, 0.0083017, 1e-6);
  close(r2.risk, 0.5202, 1e-4);
  assert.equal(r2.decision, 'review');
  close(r2.shares.knn!, 1.5 / 5, 1e-12, 'equal p-values → shares ∝ weights');

  // All p = 0.001 → T = ln 1000 = 6.9078 → p ≈ 1.49e−5 → risk capped at 1 → block.
  const high = Object.fromEntries(Object.entries(signals).map(([k, v]) => [k, { ...v, p: 0.001 }]));
  const r3 = fuse(high, fusedCal);
  close(r3.p, (11 / 101) * Math.exp(-(Math.log(1000) - 4.505) / 0.27), 1e-15);
  assert.equal(r3.risk, 1);
  assert.equal(r3.decision, 'block');
});

test('fusion: surprise scale anchors and decisions', () => {
  close(surpriseRisk(1 / 40), 0.4006, 1e-4);
  close(surpriseRisk(1 / 630), 0.7, 1e-3);
  assert.equal(surpriseRisk(1e-4), 1);
  assert.equal(surpriseRisk(1e-9), 1);
  assert.equal(surpriseRisk(1), 0);
  assert.equal(surpriseRisk(0), 1);
  assert.equal(decide(0.39), 'allow');
  assert.equal(decide(0.4), 'review');
  assert.equal(decide(0.7), 'block');
  assert.equal(decide(0.5, { review: 0.2, block: 0.5 }), 'block');
  assert.deepEqual(DEFAULT_THRESHOLDS, { review: 0.4, block: 0.7 });
  assert.deepEqual(DEFAULT_SIGNAL_WEIGHTS, { isolation_forest: 1, autoencoder: 1, knn: 1.5, mahalanobis: 1, cluster: 0.5 });
});

test('fusion: no evidence gives all-zero shares; zero weights contribute nothing', () => {
  const none = evidenceShares({ knn: { p: 1, weight: 1.5 }, cluster: { p: 1, weight: 0.5 } });
  assert.deepEqual(none, { knn: 0, cluster: 0 });
  const muted = evidenceShares({ knn: { p: 0.01, weight: 1 }, cluster: { p: 1e-9, weight: 0 } });
  assert.deepEqual(muted, { knn: 1, cluster: 0 });
  assert.equal(fusedStatistic({ knn: { p: 0.01, weight: 0 } }), 0);
  assert.throws(() => fusedStatistic({ knn: { p: 1.5, weight: 1 } }), /p-value/);
});

test('fusion: FusionModel fuses p-values by name and round-trips through JSON', () => {
  const cal = Calibrator.fit(Array.from({ length: 300 }, (_, i) => (i % 37) / 10));
  const model = new FusionModel({ knn: 1.5, mahalanobis: 1 }, cal, { review: 0.3, block: 0.6 }, { ifMin: 0.3, ifMax: 0.7 });
  const pv = { knn: 0.003, mahalanobis: 0.2, autoencoder: 0.5 };
  const direct = fuse({ knn: { p: 0.003, weight: 1.5 }, mahalanobis: { p: 0.2, weight: 1 } }, cal, { review: 0.3, block: 0.6 });
  assert.deepEqual(model.fuse(pv), direct);
  const back = FusionModel.fromJSON(JSON.parse(JSON.stringify(model.toJSON())));
  assert.deepEqual(back.fuse(pv), direct);
  assert.deepEqual(back.reference, { ifMin: 0.3, ifMax: 0.7 });
  assert.throws(() => model.fuse({ knn: 0.1 }), /missing p-value for mahalanobis/);
  assert.throws(() => new FusionModel({ knn: 1 }, cal, { review: 0.8, block: 0.5 }), /exceeds/);
});

test('fusion: reference formula 0.6·norm IF + 0.3·kNN risk + 0.1·[IF > 0.6]', () => {
  const ref = { ifMin: 0.4, ifMax: 0.8 };
  close(referenceFusion(0.5, 0.5, ref), 0.6 * 0.25 + 0.3 * 0.5 + 0, 1e-12);
  close(referenceFusion(0.7, 0.9, ref), 0.6 * 0.75 + 0.3 * 0.9 + 0.1, 1e-12);
  close(referenceFusion(0.95, 1, ref), 1, 1e-12, 'normalised IF clipped at 1');
  close(referenceFusion(0.3, 0, ref), 0, 1e-12, 'normalised IF clipped at 0');
  close(referenceFusion(0.61, 0, { ifMin: 0.5, ifMax: 0.5 }), 0.6 + 0.1, 1e-12, 'degenerate range');
});
