// The attack-aware signals' pure parts (LID, squeeze model, cross-encoder agreement), the
// Cauchy fusion, and tiered fusion's calibration, on synthetic data with known answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CrossEncoderDetector, agreementStatistic } from '../shared/detectors/cross-encoder.js';
import { CrossRegression, spdInverse } from '../shared/detectors/cross-regression.js';
import { detectorSetFromJSON, trainDetectorSet, type TrainOptions } from '../shared/detectors/detector-set.js';
import { CAUCHY_P_CAP, fusedEvidence, fusedStatistic, TieredFusion } from '../shared/detectors/fusion.js';
import { LidDetector, lidOf } from '../shared/detectors/lid.js';
import { SqueezeModel } from '../shared/detectors/squeeze.js';
import { mulberry32, normal } from '../shared/math/rng.js';
import { normaliseInPlace } from '../shared/math/vector.js';

const close = (actual: number, expected: number, tol: number, what = '') =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what} expected ${expected} ± ${tol}, got ${actual}`);

test('LID: the MLE matches a hand computation and grows when every neighbour is equally far', () => {
  // Cosine distances d give Euclidean r = √(2d); choose r = 0.1, 0.2, 0.4 (k = 3):
  // LID = −3 / (ln(0.1/0.4) + ln(0.2/0.4) + ln 1) = 3 / ln 8.
  const hits = [0.1, 0.2, 0.4].map((r, index) => ({ index, distance: (r * r) / 2 }));
  close(lidOf(hits), 3 / Math.log(8), 1e-9, 'LID');
  const flat = [0.39, 0.395, 0.4].map((r, index) => ({ index, distance: (r * r) / 2 }));
  assert.ok(lidOf(flat) > 50 * lidOf(hits), 'near-equal distances mean a high local dimension');
  // On data: a point far off a 2-d sheet in 32-d has a higher LID than points on it.
  const rng = mulberry32(3);
  const sheet = () => {
    const x = new Float32Array(32);
    x[0] = 1; x[1] = normal(rng) * 0.3; x[2] = normal(rng) * 0.3;
    return normaliseInPlace(x);
  };
  const det = new LidDetector({ k: 10 });
  det.fit(Array.from({ length: 300 }, sheet));
  const off = sheet();
  for (let i = 3; i < 32; i++) off[i] += normal(rng) * 0.05;
  const [onScore, offScore] = det.score([sheet(), normaliseInPlace(off)]);
  assert.ok(offScore > onScore, `off-manifold LID ${offScore} > on-manifold ${onScore}`);
  const back = LidDetector.fromJSON(JSON.parse(JSON.stringify(det.toJSON())));
  assert.deepEqual(back.score([off]), det.score([off]));
});

test('squeeze model: an item is judged by how much further it moves than its look-alikes', () => {
  // Members 0..29 (training order), two squeezers; S(b) = ln d_a + ln d_b.
  const rows = Array.from({ length: 30 }, (_, i) => [0.01 * (i + 1), 0.02]);
  const members = rows.map((_, i) => i);
  const m = SqueezeModel.fit(['a', 'b'], members, rows, { k: 3, reference: 'primary' });
  const S = (r: number[]) => Math.log(r[0]) + Math.log(r[1]);
  // Neighbours 4, 5, 6 (nearest first) → raw = S(x) − mean(S(4), S(5), S(6)).
  const x = [0.5, 0.04];
  const expected = S(x) - (S(rows[4]) + S(rows[5]) + S(rows[6])) / 3;
  close(m.score(x, [4, 5, 6, 7]), expected, 1e-12, 'raw');
  // Non-members and the item itself are skipped: 99 is not a member, 4 is `self`.
  close(m.score(x, [99, 4, 5, 6, 7], 4), S(x) - (S(rows[5]) + S(rows[6]) + S(rows[7])) / 3, 1e-12, 'skips');
  // Twice the displacement on one squeezer adds ln 2, whatever the neighbours.
  close(m.score([1, 0.04], [4, 5, 6]) - m.score(x, [4, 5, 6]), Math.LN2, 1e-12, 'log scale');
  assert.equal(m.reference, 'primary');
  const back = SqueezeModel.fromJSON(JSON.parse(JSON.stringify(m.toJSON())));
  assert.equal(back.score(x, [4, 5, 6]), m.score(x, [4, 5, 6]));
  assert.throws(() => m.score([1], [4]), /1 distances, expected 2/);
  assert.throws(() => m.score(x, [99]), /no baseline neighbour/);
  assert.throws(() => SqueezeModel.fit(['a'], [0, 1], [[1], [2]], { k: 3, reference: 'primary' }), /more than k/);
});

test('cross-encoder agreement: 0 when both encoders see the same neighbours, large when they disagree', () => {
  // Two "encoders" that embed the same 200 items isometrically (a signed permutation into
  // 48-d and 64-d): cosine distances, hence neighbourhoods, agree exactly.
  const rng = mulberry32(11);
  const latent = Array.from({ length: 200 }, () => Float32Array.from({ length: 8 }, () => normal(rng)));
  const rotate = (seed: number, dim: number) => {
    const slots = Array.from({ length: dim }, (_, i) => i).sort(() => mulberry32(seed)() - 0.5).slice(0, 8);
    return (z: Float32Array) => {
      const out = new Float32Array(dim);
      slots.forEach((slot, j) => { out[(slot * 7 + seed) % dim] = (j % 2 ? -1 : 1) * z[j]; });
      return normaliseInPlace(out);
    };
  };
  const p = rotate(1, 48), s = rotate(2, 64);
  const det = CrossEncoderDetector.fit(latent.map(p), latent.map(s), latent.map((_, i) => i), 'secondary@test', { k: 5 });
  const loo = det.scoreBaselineLeaveOneOut();
  const typical = [...loo].sort((a, b) => a - b)[100];
  // A "targeted attack": the primary encoder sees item 0, the secondary sees item 1.
  const [consistent, attacked] = det.score([p(latent[7]), p(latent[0])], [s(latent[7]), s(latent[1])]);
  close(consistent, 0, 1e-6, 'same neighbours in both spaces');
  assert.ok(attacked > 3 * typical + 0.1, `disagreement ${attacked} vs typical ${typical}`);
  const back = CrossEncoderDetector.fromJSON(JSON.parse(JSON.stringify(det.toJSON())));
  assert.deepEqual(back.score([p(latent[0])], [s(latent[1])]), [attacked]);
  // Hand-sized: primary neighbours {0,1} at 0.1, 0.2; secondary sees {2,3} nearest at 0.1, 0.1
  // and {0,1} at 0.4, 0.6 → s = 0.5/0.1 = 5; primary sees {2,3} at 0.5, 0.5 → r = 0.5/0.15.
  const d = { primary: Float64Array.from([0.1, 0.2, 0.5, 0.5]), secondary: Float64Array.from([0.4, 0.6, 0.1, 0.1]) };
  close(agreementStatistic(d, 2, -1), Math.log(5) + Math.log(0.5 / 0.15), 1e-12, 'ln s + ln r');
});

test('Cauchy fusion keeps a lone strong signal strong; Fisher mean dilutes it', () => {
  const quiet = { isolation_forest: { p: 0.5, weight: 1 }, autoencoder: { p: 0.5, weight: 1 }, knn: { p: 0.5, weight: 1 }, mahalanobis: { p: 0.5, weight: 1 }, cluster: { p: 0.5, weight: 1 } };
  const lone = { ...quiet, squeeze: { p: 1e-6, weight: 1 } };
  // Cauchy: T = (5·tan(0) + cot(π·1e−6)) / 6; p_C = atan2(1, T)/π ≈ 6e−6.
  const t = 1 / Math.tan(Math.PI * 1e-6) / 6;
  close(fusedEvidence('cauchy', lone), -Math.log(Math.atan2(1, t) / Math.PI), 1e-9, 'hand-computed Cauchy evidence');
  close(Math.exp(-fusedEvidence('cauchy', lone)), 6e-6, 1e-8, 'p_C ≈ 6 · p_min');
  // Fisher mean: (5·ln 2 + 6 ln 10) / 6 ≈ 2.88 → e^−2.88 ≈ 0.056: the lone signal is diluted.
  close(fusedEvidence('fisher', lone), (5 * Math.LN2 + 6 * Math.LN10) / 6, 1e-12, 'Fisher mean');
  close(fusedEvidence('fisher', quiet), fusedStatistic(quiet), 1e-15, 'same as the original statistic');
  // p near 1 is capped, so one typical-looking signal cannot veto the rest.
  const veto = { knn: { p: 1, weight: 1 }, squeeze: { p: 1e-6, weight: 1 } };
  const capped = { knn: { p: CAUCHY_P_CAP, weight: 1 }, squeeze: { p: 1e-6, weight: 1 } };
  assert.equal(fusedEvidence('cauchy', veto), fusedEvidence('cauchy', capped));
  assert.ok(fusedEvidence('cauchy', veto) > 10);
});

// ---- tiered fusion on synthetic data -------------------------------------------------------

const D = 24;
function cleanEmbedding(rng: () => number): Float32Array {
  const x = Float32Array.from({ length: D }, (_, i) => (i < 4 ? normal(rng) : normal(rng) * 0.1));
  x[0] += 3;
  return normaliseInPlace(x);
}

function baselineWithFeatures(n: number, seed: number) {
  const rng = mulberry32(seed);
  const X = Array.from({ length: n }, () => cleanEmbedding(rng));
  // Squeeze distances: independent of the embedding, lognormal; secondary embedding: a noisy
  // copy in another basis (so neighbourhoods mostly agree).
  const squeeze = X.map(() => [Math.exp(normal(rng) * 0.3), Math.exp(normal(rng) * 0.3)]);
  const secondary = X.map((x) => normaliseInPlace(Float32Array.from({ length: 16 }, (_, i) => x[i % D] * (i % 3 === 0 ? -1 : 1) + normal(rng) * 0.02)));
  return { X, squeeze, secondary, rng };
}

const FAST: Partial<TrainOptions> = {
  seed: 2,
  signals: { autoencoder: { params: { epochs: 3, hidden: 8 } }, isolation_forest: { params: { trees: 30 } }, lid: { enabled: true } },
};

test('tiered fusion: every tier policy keeps its calibrated false-positive rate on fresh clean items', () => {
  const { X, squeeze, secondary } = baselineWithFeatures(700, 5);
  const set = trainDetectorSet(X, {
    ...FAST,
    encoderId: 'synthetic',
    squeeze: { featureNames: ['a', 'b'], features: squeeze, mode: 'always' },
    crossEncoder: { encoderId: 'synthetic-2', embeddings: secondary, mode: 'when_inconclusive' },
    tiering: { band: { low: 0.05, high: 0.7 } },
  });
  assert.deepEqual(set.allSignals, ['isolation_forest', 'autoencoder', 'knn', 'mahalanobis', 'cluster', 'lid', 'squeeze', 'cross_encoder']);
  const fresh = baselineWithFeatures(1500, 77);
  const features = fresh.X.map((_, i) => ({ squeeze: fresh.squeeze[i], secondary: fresh.secondary[i] }));
  for (const modes of [
    { squeeze: 'always', cross_encoder: 'when_inconclusive' },
    { squeeze: 'always', cross_encoder: 'always' },
    { squeeze: 'off', cross_encoder: 'off' },
    { squeeze: 'when_inconclusive', cross_encoder: 'when_inconclusive' },
  ] as const) {
    const v = set.score(fresh.X, { features, policy: { modes } });
    // risk ≥ 0.4 ⇔ p ≤ 10^−1.6 ≈ 2.5%: the share of fresh clean items reaching it must be near that.
    const review = v.filter((s) => s.risk >= 0.4).length / v.length;
    assert.ok(review > 0.008 && review < 0.05, `${JSON.stringify(modes)}: clean review rate ${review}`);
    const ran = v.filter((s) => s.tier.ran.includes('cross_encoder')).length / v.length;
    if (modes.cross_encoder === 'always') assert.equal(ran, 1);
    if (modes.cross_encoder === 'off') {
      assert.equal(ran, 0);
      assert.ok(v.every((s) => s.tier.not_run.cross_encoder === 'off' && !s.signals.cross_encoder));
    }
    if (modes.cross_encoder === 'when_inconclusive') {
      assert.ok(ran > 0.1 && ran < 0.9, `share running the cross encoder ${ran}`);
      for (const s of v) {
        const inBand = s.tier.cheap_risk >= 0.05 && s.tier.cheap_risk < 0.7;
        assert.equal(s.tier.ran.includes('cross_encoder'), inBand);
        if (!inBand) assert.match(s.tier.not_run.cross_encoder!, /cheap tier conclusive/);
        assert.match(s.tier.calibration, /^gated:/);
      }
    }
  }
  // Wanted but not given: the signal is reported as not measured, and the fusion uses the rest.
  const [missing] = set.score([fresh.X[0]], { policy: { modes: { squeeze: 'always', cross_encoder: 'always' } } });
  assert.equal(missing.tier.not_run.squeeze, 'not measured');
  assert.equal(missing.signals.squeeze, undefined);
  // plan() tells the engine what to measure.
  const plan = set.plan(fresh.X.slice(0, 50));
  plan.forEach((p, i) => assert.equal(p.wanted.includes('cross_encoder'), p.cheap_risk >= 0.05 && p.cheap_risk < 0.7, `item ${i}`));
  assert.ok(plan.every((p) => p.wanted.includes('squeeze')));
});

test('tiered fusion: an attack that only the expensive signals see is flagged; serialise → restore scores identically', () => {
  const { X, squeeze, secondary } = baselineWithFeatures(400, 9);
  const set = trainDetectorSet(X, {
    ...FAST,
    encoderId: 'synthetic',
    squeeze: { featureNames: ['a', 'b'], features: squeeze, mode: 'always' },
    crossEncoder: { encoderId: 'synthetic-2', embeddings: secondary, mode: 'always' },
  });
  const fresh = baselineWithFeatures(20, 31);
  // Embedding perfectly normal (another clean item's), squeezing moves it 5× further than usual.
  const attacked = set.score([fresh.X[0]], { features: [{ squeeze: [8, 8], secondary: fresh.secondary[0] }] })[0];
  const clean = set.score([fresh.X[0]], { features: [{ squeeze: fresh.squeeze[0], secondary: fresh.secondary[0] }] })[0];
  assert.ok(attacked.risk >= 0.7 && attacked.decision === 'block', `attack risk ${attacked.risk}`);
  assert.ok(clean.risk < 0.4, `clean risk ${clean.risk}`);
  assert.ok(attacked.signals.squeeze!.share > 0.5, 'the squeeze signal carries the evidence');

  const restored = detectorSetFromJSON(JSON.parse(JSON.stringify(set.toJSON())));
  const features = fresh.X.map((_, i) => ({ squeeze: fresh.squeeze[i], secondary: fresh.secondary[i] }));
  assert.deepEqual(restored.score(fresh.X, { features }), set.score(fresh.X, { features }));
  assert.deepEqual(restored.stats, set.stats);
  // The kNN index is stored once and shared by LID and the cross encoder's primary side.
  const state = set.toJSON();
  assert.equal(state.crossEncoder!.primary.vectors, 'shared');
  assert.equal((state.detectors.find((d) => d.name === 'lid')!.state as { vectors: string }).vectors, 'shared');
  assert.throws(() => detectorSetFromJSON({ ...state, version: 1 }), /version 1 is not supported.*retrain/);
});

test('tiered fusion: the gated policy replays the gate on the baseline (hand-sized case)', () => {
  // 6 baseline items, one cheap signal and one expensive signal, Fisher mean (T = mean −ln p).
  const looP = { knn: Float64Array.from([0.9, 0.5, 0.3, 0.2, 0.1, 0.05]), squeeze: Float64Array.from([0.6, 0.4, 0.8, 0.1, 0.5, 0.2]) };
  const policy = { modes: { squeeze: 'when_inconclusive' as const }, band: { low: 0.1, high: 0.7 } };
  const f = new TieredFusion('fisher', { knn: 1, squeeze: 1 }, { review: 0.4, block: 0.7 }, null, policy, looP);
  const cheapRisk = f.baselineCheapRisk();
  // Cheap statistic = −ln p_knn; each item's leave-one-out conformal p among the other 5.
  const cheapT = Array.from(looP.knn, (p) => -Math.log(p));
  cheapT.forEach((t, i) => {
    const above = cheapT.filter((u, j) => j !== i && u >= t).length;
    close(cheapRisk[i], Math.min(1, -Math.log10((above + 1) / 6) / 4), 1e-12, `cheap risk ${i}`);
  });
  const risk = f.baselineRisk(policy);
  assert.equal(risk.length, 6);
  assert.ok(Array.from(risk).every((r) => r >= 0 && r <= 1));
  // The same fusion without gating (squeeze always) calibrates one subset for everyone.
  const always = f.baselineRisk({ modes: { squeeze: 'always' }, band: policy.band });
  assert.notDeepEqual(Array.from(always), Array.from(risk));
  const r = f.fuse({ knn: 0.2, squeeze: 0.01 });
  assert.equal(r.calibration, 'gated:knn+squeeze');
  assert.deepEqual(r.used, ['knn', 'squeeze']);
  assert.equal(f.fuse({ knn: 0.2 }, { modes: { squeeze: 'off' }, band: policy.band }).calibration, 'knn');
  assert.throws(() => f.fuse({ squeeze: 0.2 }), /missing p-value for knn/);
  const back = TieredFusion.fromJSON(JSON.parse(JSON.stringify(f.toJSON())));
  assert.deepEqual(back.fuse({ knn: 0.2, squeeze: 0.01 }), r);
});

// ---- cross-encoder regression residual -----------------------------------------------------

test('spdInverse: inverts a symmetric positive-definite matrix and rejects an indefinite one', () => {
  const A = Float64Array.from([4, 2, 0.6, 2, 5, 1, 0.6, 1, 3]);
  const inv = spdInverse(A, 3);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      let s = 0;
      for (let k = 0; k < 3; k++) s += A[i * 3 + k] * inv[k * 3 + j];
      close(s, i === j ? 1 : 0, 1e-12, `(A·A⁻¹)[${i}][${j}]`);
    }
  }
  assert.throws(() => spdInverse(Float64Array.from([1, 2, 2, 1]), 2), /not positive definite/);
});

/**
 * Secondary: 16-d; primary: a fixed linear image of it plus a little noise, so the map is
 * learnable. 120 baseline pairs; `pair` draws more from the same stream; `index` builds the
 * cross encoder's secondary index over any rows.
 */
function linearPairs(seed: number) {
  const rng = mulberry32(seed);
  const M = Array.from({ length: 10 * 16 }, () => normal(rng));
  const pair = () => {
    const s = normaliseInPlace(Float32Array.from({ length: 16 }, (_, i) => (i < 6 ? normal(rng) : normal(rng) * 0.2) + (i === 0 ? 2 : 0)));
    const p = normaliseInPlace(Float32Array.from({ length: 10 }, (_, r) => s.reduce((acc, v, c) => acc + M[r * 16 + c] * v, 0) + normal(rng) * 0.05));
    return { s, p };
  };
  const base = Array.from({ length: 120 }, pair);
  const index = (rows: Float32Array[]) => CrossEncoderDetector.fit(rows.map((_, i) => base[i % base.length].p), rows, rows.map((_, i) => i), 'synthetic-2', { k: 5 }).secondaryIndex;
  return { rng, pair, base, index };
}

test('cross regression: leave-one-out scores equal a refit without the item; a primary-only move raises the residual', () => {
  const { pair, base, index } = linearPairs(12);
  const { model, looRaw } = CrossRegression.fit(index(base.map((b) => b.s)), base.map((b) => b.p), 0.03);
  // Exact LOO up to the centring means (which still include the item): refit without item 0.
  const rest = base.slice(1);
  const refit = CrossRegression.fit(index(rest.map((b) => b.s)), rest.map((b) => b.p), 0.03).model;
  const outside = refit.score([base[0].p], [base[0].s])[0];
  close(looRaw[0], outside, 0.1 * outside + 1e-3, 'leave-one-out residual vs refit');
  // Scoring a member with its own position reproduces its leave-one-out value.
  close(model.score([base[3].p], [base[3].s], [3])[0], looRaw[3], 1e-5, 'member scored with self index');
  assert.ok(model.score([base[3].p], [base[3].s])[0] < looRaw[3], 'in-sample residual is smaller than leave-one-out');
  // Fresh clean pairs look like the baseline; the same secondaries with another item's primary do not.
  const fresh = Array.from({ length: 60 }, pair);
  const clean = model.score(fresh.map((f) => f.p), fresh.map((f) => f.s));
  const moved = model.score(fresh.map((_, i) => fresh[(i + 30) % fresh.length].p), fresh.map((f) => f.s));
  const sorted = [...looRaw].sort((a, b) => a - b);
  const q99 = sorted[Math.floor(0.99 * sorted.length)];
  assert.ok(clean.filter((c) => c > q99).length <= 4, 'clean items rarely exceed the baseline 99th percentile');
  assert.ok(moved.filter((c) => c > q99).length >= 0.8 * moved.length, `moved primaries exceed it: ${moved.filter((c) => c > q99).length}/${moved.length}`);
  // Round trip.
  const restored = CrossRegression.fromJSON(JSON.parse(JSON.stringify(model.toJSON())), index(base.map((b) => b.s)));
  const again = restored.score(fresh.map((f) => f.p), fresh.map((f) => f.s));
  again.forEach((v, i) => close(v, clean[i], 1e-5, `restored score ${i}`));
  assert.throws(() => CrossRegression.fit(index(base.map((b) => b.s)), base.map((b) => b.p), 0), /ridge must be/);
});

test('cross regression in a detector set: trained only with the cross encoder, flags a primary-only move, survives serialisation', () => {
  const { X, squeeze, secondary } = baselineWithFeatures(300, 21);
  assert.throws(
    () => trainDetectorSet(X, { ...FAST, encoderId: 'synthetic', crossEncoder: { encoderId: 's2', embeddings: secondary }, crossRegression: { ridge: -1 } }),
    /ridge must be/,
  );
  const alone = trainDetectorSet(X, { ...FAST, encoderId: 'synthetic', squeeze: { featureNames: ['a', 'b'], features: squeeze }, crossRegression: {} });
  assert.ok(!alone.allSignals.includes('cross_regression'));
  assert.match(alone.stats.expensive.cross_regression!.note!, /cross encoder/);
  const set = trainDetectorSet(X, {
    ...FAST,
    encoderId: 'synthetic',
    crossEncoder: { encoderId: 'synthetic-2', embeddings: secondary, weight: 0 },
    crossRegression: { weight: 1 },
  });
  assert.deepEqual(set.allSignals.slice(-2), ['cross_encoder', 'cross_regression']);
  assert.deepEqual(set.stats.expensive.cross_regression, { n: 300, trained: true });
  const fresh = baselineWithFeatures(40, 44);
  const features = fresh.X.map((_, i) => ({ secondary: fresh.secondary[i] }));
  const clean = set.score(fresh.X, { features });
  // A primary embedding from elsewhere on the manifold (cheap tier sees nothing odd) with the
  // item's own secondary: what a targeted attack on the primary encoder produces.
  const moved = set.score(fresh.X.map((_, i) => fresh.X[(i + 20) % fresh.X.length]), { features });
  const pClean = clean.map((v) => v.signals.cross_regression!.p);
  const pMoved = moved.map((v) => v.signals.cross_regression!.p);
  assert.ok(pMoved.filter((p) => p < 0.01).length >= 0.7 * pMoved.length, `moved items with p < 0.01: ${pMoved.filter((p) => p < 0.01).length}`);
  assert.ok(pClean.filter((p) => p < 0.01).length <= 3, `clean items with p < 0.01: ${pClean.filter((p) => p < 0.01).length}`);
  assert.ok(moved.filter((v) => v.decision !== 'allow').length > clean.filter((v) => v.decision !== 'allow').length + 15);
  const restored = detectorSetFromJSON(JSON.parse(JSON.stringify(set.toJSON())));
  assert.deepEqual(restored.score(fresh.X, { features }), clean);
  assert.equal(restored.params.crossRegression!.ridge, 0.03);
  // A set stored before the signal existed (no crossRegression key) still loads, without it.
  const old = set.toJSON() as unknown as Record<string, unknown>;
  delete old.crossRegression;
  const fusion = old.fusion as { weights: Record<string, number>; looP: Record<string, string> };
  delete fusion.weights.cross_regression;
  delete fusion.looP.cross_regression;
  delete (old.calibrators as Record<string, unknown>).cross_regression;
  delete ((old.fusion as { policy: { modes: Record<string, string> } }).policy.modes).cross_regression;
  const legacy = detectorSetFromJSON(JSON.parse(JSON.stringify(old)));
  assert.ok(!legacy.allSignals.includes('cross_regression') && legacy.crossRegression === null);
});

// ---- squeeze towards the cross prediction (squeeze_cross) ----------------------------------

for (const statistic of ['direction', 'residual'] as const) {
  test(`squeeze_cross statistic '${statistic}': 0 for copies equal to the item, leave-one-out for members, large when squeezing moves back towards the prediction`, () => {
    const { rng, pair, base, index } = linearPairs(31);
    const jitter = (p: Float32Array, sd: number) => normaliseInPlace(Float32Array.from(p, (v) => v + normal(rng) * sd));
    const { model, looRaw } = CrossRegression.fit(index(base.map((b) => b.s)), base.map((b) => b.p), 0.03);
    const score = (m: CrossRegression, p: Float32Array[], q: Float32Array[][], s: Float32Array[], self: number[] = []) => m.scoreSqueezed(p, q, s, self, statistic);
    // Copies identical to the item: no step at all (direction), or the same residual (residual).
    close(score(model, [base[5].p], [[base[5].p, base[5].p]], [base[5].s])[0], 0, 1e-9, 'identical copies');
    const copy = jitter(base[3].p, 0.3);
    const withSelf = score(model, [base[3].p], [[copy]], [base[3].s], [3])[0];
    const inSample = score(model, [base[3].p], [[copy]], [base[3].s])[0];
    assert.notEqual(withSelf, inSample, 'the member position changes the prediction');
    // Against a refit without item 0, an outside item: the member's value follows its LOO prediction.
    const rest = base.slice(1);
    const refit = CrossRegression.fit(index(rest.map((b) => b.s)), rest.map((b) => b.p), 0.03).model;
    const copy0 = jitter(base[0].p, 0.3);
    const loo = score(model, [base[0].p], [[copy0]], [base[0].s], [0])[0];
    const outside = score(refit, [base[0].p], [[copy0]], [base[0].s])[0];
    close(loo, outside, 0.1 * Math.abs(outside) + 2e-3, 'member leave-one-out vs refit');
    const own = model.score([base[0].p], [base[0].s], [0])[0];
    close(own, looRaw[0], 1e-5, 'own term');
    // Attack-like: the primary moved to another item's, squeezing pulls it halfway back.
    const fresh = Array.from({ length: 60 }, pair);
    const clean = score(model, fresh.map((f) => f.p), fresh.map((f) => [jitter(f.p, 0.02), jitter(f.p, 0.02), jitter(f.p, 0.02)]), fresh.map((f) => f.s));
    const attacked = fresh.map((f, i) => {
      const moved = fresh[(i + 30) % fresh.length].p;
      const back = normaliseInPlace(Float32Array.from(moved, (v, t) => v + f.p[t]));
      return score(model, [moved], [[back, back, back]], [f.s])[0];
    });
    const cleanMax = Math.max(...clean.map(Math.abs));
    assert.ok(attacked.filter((a) => a > cleanMax).length >= 0.8 * attacked.length, `attacked above every clean |value|: ${attacked.filter((a) => a > cleanMax).length}/60`);
    if (statistic === 'direction') {
      // A mean of cosines; squeezing that pushes further AWAY from the prediction is negative.
      assert.ok([...clean, ...attacked].every((v) => v >= -1 && v <= 1), 'in [−1, 1]');
      const away = fresh.map((f, i) => {
        const moved = fresh[(i + 30) % fresh.length].p;
        const further = normaliseInPlace(Float32Array.from(moved, (v, t) => v - 0.5 * f.p[t]));
        return score(model, [moved], [[further]], [f.s])[0];
      });
      assert.ok(away.filter((a) => a < 0).length >= 0.8 * away.length, `steps away from the prediction negative: ${away.filter((a) => a < 0).length}/60`);
    }
    assert.throws(() => score(model, [base[0].p], [[]], [base[0].s]), /no squeezed embeddings/);
    assert.throws(() => model.scoreSqueezed([base[0].p], [], [base[0].s], [], statistic), /0 squeezed sets/);
  });
}

test('squeeze_cross in a detector set: needs squeeze and cross_regression, runs only with both passes, flags squeeze-back, survives serialisation', () => {
  const { X, squeeze, secondary, rng } = baselineWithFeatures(300, 23);
  const jitter = (p: Float32Array, sd: number) => normaliseInPlace(Float32Array.from(p, (v) => v + normal(rng) * sd));
  const squeezed = X.map((x) => [jitter(x, 0.01), jitter(x, 0.01), jitter(x, 0.01)]);
  const common = {
    ...FAST,
    encoderId: 'synthetic',
    crossEncoder: { encoderId: 'synthetic-2', embeddings: secondary, weight: 0 },
    crossRegression: { weight: 0 },
  } satisfies Partial<TrainOptions>;
  // Without the squeeze signal it is not trained, and says why.
  const noSqueeze = trainDetectorSet(X, { ...common, squeezeCross: { squeezed } });
  assert.ok(!noSqueeze.allSignals.includes('squeeze_cross'));
  assert.match(noSqueeze.stats.expensive.squeeze_cross!.note!, /needs squeeze and cross_regression/);
  assert.throws(() => trainDetectorSet(X, { ...common, squeezeCross: { squeezed: squeezed.slice(1) } }), /299 squeezed-embedding rows for 300/);
  const set = trainDetectorSet(X, {
    ...common,
    squeeze: { featureNames: ['a', 'b'], features: squeeze, weight: 0 },
    squeezeCross: { squeezed, weight: 2, statistic: 'direction' },
  });
  assert.deepEqual(set.allSignals.slice(-4), ['squeeze', 'cross_encoder', 'cross_regression', 'squeeze_cross']);
  assert.deepEqual(set.stats.expensive.squeeze_cross, { n: 300, trained: true });
  assert.deepEqual(set.params.squeezeCross, { copies: 3, statistic: 'direction' });
  const byDefault = trainDetectorSet(X, { ...common, squeeze: { featureNames: ['a', 'b'], features: squeeze, weight: 0 }, squeezeCross: { squeezed, weight: 2 } });
  assert.deepEqual(byDefault.params.squeezeCross, { copies: 3, statistic: 'residual' });
  assert.throws(() => trainDetectorSet(X, { ...common, squeeze: { featureNames: ['a', 'b'], features: squeeze, weight: 0 }, squeezeCross: { squeezed, statistic: 'sideways' as never } }), /residual or direction/);
  const fresh = baselineWithFeatures(60, 46);
  const freshSq = fresh.X.map((x) => [jitter(x, 0.01), jitter(x, 0.01), jitter(x, 0.01)]);
  const features = fresh.X.map((_, i) => ({ squeeze: fresh.squeeze[i], secondary: fresh.secondary[i], squeezed: freshSq[i] }));
  const clean = set.score(fresh.X, { features });
  // Attacked: the primary embedding moved onto another item's, squeezing pulls it most of the way back.
  const movedX = fresh.X.map((_, i) => fresh.X[(i + 30) % fresh.X.length]);
  const movedFeatures = fresh.X.map((x, i) => {
    const back = normaliseInPlace(Float32Array.from(x, (v, t) => 2 * v + movedX[i][t]));
    return { ...features[i], squeezed: [back, back, back] };
  });
  const attacked = set.score(movedX, { features: movedFeatures });
  const pClean = clean.map((v) => v.signals.squeeze_cross!.p);
  const pAtt = attacked.map((v) => v.signals.squeeze_cross!.p);
  // Leave-one-out calibration: fresh clean items are not flagged more often than the level says.
  assert.ok(pClean.filter((p) => p < 0.05).length <= 8, `clean items with p < 0.05: ${pClean.filter((p) => p < 0.05).length}/60`);
  assert.ok(pAtt.filter((p) => p < 0.01).length >= 0.8 * pAtt.length, `attacked items with p < 0.01: ${pAtt.filter((p) => p < 0.01).length}/60`);
  // The same move without squeeze-back evidence (copies equal to the moved embedding) scores about 0.
  const still = set.score(movedX, { features: fresh.X.map((_, i) => ({ ...features[i], squeezed: [movedX[i], movedX[i], movedX[i]] })) });
  still.forEach((v) => close(v.signals.squeeze_cross!.raw, 0, 1e-6, 'no squeeze-back'));
  // Tiering: it runs only where squeeze and cross_encoder both run.
  for (const modes of [{ squeeze: 'off' }, { cross_encoder: 'off' }, { squeeze_cross: 'off' }] as const) {
    const v = set.score(movedX, { features: movedFeatures, policy: { modes } });
    assert.ok(v.every((s) => !s.tier.ran.includes('squeeze_cross') && s.tier.not_run.squeeze_cross !== undefined), JSON.stringify(modes));
  }
  assert.ok(attacked.every((s) => s.tier.ran.includes('squeeze_cross')));
  // Not measured (no squeezed copies): left out, with the reason.
  const unmeasured = set.score(fresh.X.slice(0, 2), { features: features.slice(0, 2).map((f) => ({ ...f, squeezed: null })) });
  assert.ok(unmeasured.every((s) => s.tier.not_run.squeeze_cross === 'not measured'));
  // Serialisation, and a set stored before the signal existed still loads without it.
  const restored = detectorSetFromJSON(JSON.parse(JSON.stringify(set.toJSON())));
  assert.deepEqual(restored.score(movedX, { features: movedFeatures }), attacked);
  // A set trained before there was a choice (no statistic recorded) scores 'residual'.
  const residualState = set.toJSON() as unknown as { params: { squeezeCross: { statistic?: string } } };
  delete residualState.params.squeezeCross.statistic;
  const residualSet = detectorSetFromJSON(JSON.parse(JSON.stringify(residualState)));
  const viaSet = residualSet.score(movedX.slice(0, 3), { features: movedFeatures.slice(0, 3) }).map((v) => v.signals.squeeze_cross!.raw);
  const direct = set.crossRegression!.scoreSqueezed(movedX.slice(0, 3), movedFeatures.slice(0, 3).map((f) => f.squeezed), movedFeatures.slice(0, 3).map((f) => f.secondary), [], 'residual');
  viaSet.forEach((v, i) => close(v, direct[i], 1e-12, 'legacy set scores the residual statistic'));
  residualState.params.squeezeCross.statistic = 'sideways';
  assert.throws(() => detectorSetFromJSON(JSON.parse(JSON.stringify(residualState))), /statistic sideways is not known/);
  const old = set.toJSON() as unknown as Record<string, unknown>;
  delete (old.params as Record<string, unknown>).squeezeCross;
  const fusion = old.fusion as { weights: Record<string, number>; looP: Record<string, string>; policy: { modes: Record<string, string> } };
  delete fusion.weights.squeeze_cross;
  delete fusion.looP.squeeze_cross;
  delete fusion.policy.modes.squeeze_cross;
  delete (old.calibrators as Record<string, unknown>).squeeze_cross;
  const legacy = detectorSetFromJSON(JSON.parse(JSON.stringify(old)));
  assert.ok(!legacy.allSignals.includes('squeeze_cross'));
  assert.ok(legacy.score(movedX.slice(0, 3), { features: movedFeatures.slice(0, 3) }).every((s) => s.signals.squeeze_cross === undefined));
});

test('patch_texture in a detector set: its calibration is the model, a value past the baseline gets a tiny p, off and unmeasured say so, survives serialisation', () => {
  const { X, rng } = baselineWithFeatures(300, 31);
  // Baseline values like photos' (grey levels, a long right tail); the tail fit carries p past the largest.
  const values = X.map(() => 4 * Math.exp(normal(rng) * 0.6));
  const common = { ...FAST, encoderId: 'synthetic' } satisfies Partial<TrainOptions>;
  assert.throws(() => trainDetectorSet(X, { ...common, patchTexture: { values: values.slice(1) } }), /299 patch-texture values for 300/);
  const few = trainDetectorSet(X, { ...common, minSamples: 50, patchTexture: { values: values.map((v, i) => (i < 40 ? v : null)) } });
  assert.ok(!few.allSignals.includes('patch_texture'));
  assert.match(few.stats.expensive.patch_texture!.note!, /only 40 baseline items have a patch-texture value/);
  const set = trainDetectorSet(X, { ...common, patchTexture: { values, weight: 0.5 } });
  assert.deepEqual(set.allSignals.slice(-1), ['patch_texture']);
  assert.deepEqual(set.stats.expensive.patch_texture, { n: 300, trained: true });
  const fresh = baselineWithFeatures(200, 62);
  const freshValues = fresh.X.map(() => 4 * Math.exp(normal(fresh.rng) * 0.6));
  const clean = set.score(fresh.X, { features: freshValues.map((texture) => ({ texture })) });
  const pClean = clean.map((v) => v.signals.patch_texture!.p);
  assert.ok(pClean.filter((p) => p < 0.05).length <= 20, `clean items with p < 0.05: ${pClean.filter((p) => p < 0.05).length}/200`);
  // The raw value is what was measured: the signal is a calibration, nothing else.
  clean.forEach((v, i) => close(v.signals.patch_texture!.raw, freshValues[i], 0, 'raw = measured value'));
  const largest = Math.max(...values);
  const patched = set.score(fresh.X.slice(0, 5), { features: [largest * 1.5, largest * 2, largest * 3, 150, 300].map((texture) => ({ texture })) });
  const pPatched = patched.map((v) => v.signals.patch_texture!.p);
  assert.ok(pPatched.every((p) => p < 1 / 301), `beyond the baseline, p below the conformal floor: ${pPatched}`);
  assert.ok(pPatched[3] < 1e-6 && pPatched[4] < pPatched[3], `p keeps falling: ${pPatched}`);
  assert.ok(patched[4].risk > clean.reduce((m, v) => Math.max(m, v.risk), 0), 'a patch-like value outranks every clean item');
  const off = set.score(fresh.X.slice(0, 2), { features: [{ texture: 300 }, { texture: 300 }], policy: { modes: { patch_texture: 'off' } } });
  assert.ok(off.every((s) => s.signals.patch_texture === undefined && s.tier.not_run.patch_texture !== undefined));
  const unmeasured = set.score(fresh.X.slice(0, 2), { features: [{ texture: null }, {}] });
  assert.ok(unmeasured.every((s) => s.tier.not_run.patch_texture === 'not measured'));
  const restored = detectorSetFromJSON(JSON.parse(JSON.stringify(set.toJSON())));
  assert.deepEqual(restored.score(fresh.X.slice(0, 5), { features: [largest * 1.5, largest * 2, largest * 3, 150, 300].map((texture) => ({ texture })) }), patched);
});
