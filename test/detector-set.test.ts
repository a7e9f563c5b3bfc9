// End-to-end training of a detector set on synthetic embeddings with known ground truth.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SIGNAL_NAMES } from '../shared/types.js';
import {
  detectorSetFromJSON,
  InsufficientSamplesError,
  trainDetectorSet,
  trainDetectorSetAsync,
  TrainingCancelledError,
  type TrainOptions,
} from '../shared/detectors/detector-set.js';
import { KnnDetector } from '../shared/detectors/knn.js';
import { mulberry32, normal } from '../shared/math/rng.js';
import { auroc } from '../shared/math/stats.js';
import { normaliseInPlace } from '../shared/math/vector.js';

// Synthetic "embeddings": three modes (think image categories), each a curved 5-dimensional
// manifold in 256-d with a little isotropic noise, normalised. Outliers are clean items pushed
// off the manifold by an isotropic perturbation, or unrelated directions altogether.
const D = 256, LATENT = 5, MODES = 3;
const structure = mulberry32(2024);
const gauss = (r: () => number, n: number, s = 1) => Float32Array.from({ length: n }, () => normal(r, 0, s));
const modes = Array.from({ length: MODES }, () => ({
  centre: gauss(structure, D, 1),
  basis: Array.from({ length: LATENT }, () => gauss(structure, D, 0.35)),
  bend: gauss(structure, D, 0.35),
}));

function clean(rng: () => number): Float32Array {
  const m = modes[Math.floor(rng() * MODES)];
  const x = Float32Array.from(m.centre);
  const z = Array.from({ length: LATENT }, () => normal(rng));
  for (let j = 0; j < LATENT; j++) for (let i = 0; i < D; i++) x[i] += z[j] * m.basis[j][i];
  const b = Math.sin(2 * z[0]);
  for (let i = 0; i < D; i++) x[i] += b * m.bend[i] + normal(rng) * 0.05;
  return normaliseInPlace(x);
}

function offManifold(rng: () => number): Float32Array {
  const x = clean(rng);
  for (let i = 0; i < D; i++) x[i] += (normal(rng) * 0.25) / Math.sqrt(D);
  return normaliseInPlace(x);
}

function foreign(rng: () => number): Float32Array {
  return normaliseInPlace(gauss(rng, D));
}

const cleanSet = (n: number, seed: number) => {
  const rng = mulberry32(seed);
  return Array.from({ length: n }, () => clean(rng));
};

/** Small, fast configuration for the tests that check plumbing rather than detection quality. */
const FAST: TrainOptions = {
  encoderId: 'synthetic-256',
  createdAt: '2025-01-01T00:00:00.000Z',
  seed: 5,
  signals: { autoencoder: { params: { epochs: 4, hidden: 8 } }, isolation_forest: { params: { trees: 20 } } },
};

test('detector set: detects off-manifold items (AUROC > 0.95) with ≤ 2% block and ≤ 8% review on fresh clean items', () => {
  const baseline = cleanSet(600, 1);
  const set = trainDetectorSet(baseline, { encoderId: 'synthetic-256', seed: 3 });
  assert.deepEqual(set.signals, [...SIGNAL_NAMES]);

  const rng = mulberry32(99);
  const fresh = Array.from({ length: 1000 }, () => clean(rng));
  const outliers = [...Array.from({ length: 150 }, () => offManifold(rng)), ...Array.from({ length: 50 }, () => foreign(rng))];
  const sc = set.score(fresh);
  const so = set.score(outliers);

  const fusedAuroc = auroc(so.map((v) => v.risk), sc.map((v) => v.risk));
  assert.ok(fusedAuroc > 0.95, `fused AUROC ${fusedAuroc}`);
  const blockRate = sc.filter((v) => v.decision === 'block').length / sc.length;
  const reviewRate = sc.filter((v) => v.decision !== 'allow').length / sc.length;
  assert.ok(blockRate <= 0.02, `clean block rate ${blockRate}`);
  assert.ok(reviewRate <= 0.08, `clean review-or-block rate ${reviewRate}`);
  assert.ok(so.filter((v) => v.decision !== 'allow').length / so.length > 0.9, 'most outliers flagged');

  // The training-time estimate of the false-positive rate is in the same range.
  assert.ok(set.stats.oofFalsePositiveRate.review <= 0.08);
  assert.ok(set.stats.oofFalsePositiveRate.block <= 0.02);

  for (const v of [...sc.slice(0, 50), ...so.slice(0, 50)]) {
    const shares = Object.values(v.signals).map((s) => s!.share);
    const sum = shares.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-9 || shares.every((s) => s === 0), `shares sum ${sum}`);
    for (const s of Object.values(v.signals)) {
      assert.ok(s!.p > 0 && s!.p <= 1 && s!.risk >= 0 && s!.risk <= 1);
    }
    assert.ok(v.risk >= 0 && v.risk <= 1);
    assert.equal(typeof v.reference, 'number');
  }
});

test('detector set: refuses too few samples with a clear message', () => {
  const few = cleanSet(12, 2);
  assert.throws(() => trainDetectorSet(few, FAST), (err: unknown) => {
    assert.ok(err instanceof InsufficientSamplesError);
    assert.equal(err.given, 12);
    assert.equal(err.needed, 50);
    assert.match(err.message, /need at least 50 baseline embeddings.*got 12/);
    return true;
  });
  assert.throws(() => trainDetectorSet(few, { ...FAST, minSamples: 20 }), /need at least 20 .* got 12/);
  // Below minSamples but enough otherwise: a lowered minimum is honoured.
  assert.doesNotThrow(() => trainDetectorSet(few, { ...FAST, minSamples: 10, folds: 3, signals: { ...FAST.signals, autoencoder: { enabled: false } } }));
});

test('detector set: the same seed gives an identical set; serialise → restore scores identically', async () => {
  const baseline = cleanSet(160, 3);
  const a = trainDetectorSet(baseline, FAST);
  const b = trainDetectorSet(baseline, FAST);
  const ja = JSON.stringify(a.toJSON());
  assert.equal(ja, JSON.stringify(b.toJSON()));
  assert.notEqual(ja, JSON.stringify(trainDetectorSet(baseline, { ...FAST, seed: 6 }).toJSON()));
  const c = await trainDetectorSetAsync(baseline, FAST);
  assert.equal(JSON.stringify(c.toJSON()), ja, 'async training matches sync');

  const restored = detectorSetFromJSON(JSON.parse(ja));
  const rng = mulberry32(4);
  const probe = [...Array.from({ length: 20 }, () => clean(rng)), ...Array.from({ length: 5 }, () => offManifold(rng))];
  assert.deepEqual(restored.score(probe), a.score(probe));
  assert.deepEqual(restored.stats, a.stats);
  assert.deepEqual(restored.oofRisk, a.oofRisk);
  assert.equal(restored.encoderId, 'synthetic-256');
  assert.equal(restored.createdAt, '2025-01-01T00:00:00.000Z');
  assert.throws(() => detectorSetFromJSON({ ...JSON.parse(ja), version: 99 }), /version 99/);
  assert.throws(() => detectorSetFromJSON(null), /not a detector-set state/);
});

test('detector set: stats, progress, baseline self-exclusion and neighbours', () => {
  const baseline = cleanSet(120, 7);
  const seen: [string, number][] = [];
  const set = trainDetectorSet(baseline, { ...FAST, onProgress: (stage, f) => seen.push([stage, f]) });
  assert.equal(set.stats.n, 120);
  assert.equal(set.stats.dim, D);
  assert.equal(set.stats.folds, 4);
  assert.equal(set.oofRisk.length, 120);
  for (const name of SIGNAL_NAMES) assert.equal(set.stats.signals[name]!.n, 120);
  assert.ok(seen.length >= 4 * 5 + 5);
  assert.deepEqual(seen[seen.length - 1], ['done', 1]);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i][1] >= seen[i - 1][1], 'progress never goes back');
  assert.ok(seen.some(([s]) => s.startsWith('fold 1/4: knn')) && seen.some(([s]) => s === 'final: autoencoder'));

  // A baseline member scored as itself finds itself at distance 0 unless excluded.
  const knn = set.detectors.knn as KnnDetector;
  const loo = knn.scoreBaselineLeaveOneOut();
  const self = set.score(baseline.slice(0, 3));
  const excluded = set.score(baseline.slice(0, 3), { baselineIndices: [0, 1, 2] });
  for (let i = 0; i < 3; i++) {
    assert.equal(excluded[i].signals.knn!.raw, loo[i]);
    assert.ok(self[i].signals.knn!.raw < loo[i]);
  }
  const nb = set.neighbours(baseline[5], 3);
  assert.equal(nb[0].index, 5);
  assert.ok(nb[0].distance < 1e-6);
  assert.equal(set.neighbours(baseline[5], 3, 5)[0].index, nb[1].index);
});

test('detector set: options select signals, weights and thresholds; bad options fail early', () => {
  const baseline = cleanSet(100, 8);
  const set = trainDetectorSet(baseline, {
    ...FAST,
    signals: { autoencoder: { enabled: false }, cluster: { enabled: false }, knn: { weight: 3, params: { k: 3 } } },
    thresholds: { review: 0.3, block: 0.5 },
  });
  assert.deepEqual(set.signals, ['isolation_forest', 'knn', 'mahalanobis']);
  assert.deepEqual(set.fusion.weights, { isolation_forest: 1, knn: 3, mahalanobis: 1 });
  assert.deepEqual(set.params.thresholds, { review: 0.3, block: 0.5 });
  assert.equal(set.params.detectors.knn!.k, 3);
  const [v] = set.score([foreign(mulberry32(1))]);
  assert.deepEqual(Object.keys(v.signals), ['isolation_forest', 'knn', 'mahalanobis']);
  assert.equal(v.signals.knn!.weight, 3);

  assert.throws(() => trainDetectorSet(baseline, { ...FAST, signals: { knn: { params: { k: 0 } } } }), /k must be/);
  assert.throws(() => trainDetectorSet(baseline, { ...FAST, signals: { knn: { params: { kk: 3 } as never } } }), /unknown parameter/);
  assert.throws(() => trainDetectorSet(baseline, { ...FAST, thresholds: { review: 0.9, block: 0.5 } }), /exceeds/);
  assert.throws(() => trainDetectorSet(baseline, { ...FAST, folds: 1 }), /folds/);
  assert.throws(
    () => trainDetectorSet(baseline, { ...FAST, signals: Object.fromEntries(SIGNAL_NAMES.map((s) => [s, { weight: 0 }])) }),
    /weight 0/,
  );
  assert.throws(() => trainDetectorSet([...baseline.slice(0, 99), new Float32Array(10)], FAST), /dimension/);
});

test('detector set: cancellation stops training with TrainingCancelledError', () => {
  let polls = 0;
  assert.throws(
    () => trainDetectorSet(cleanSet(100, 9), { ...FAST, shouldCancel: () => ++polls > 3 }),
    TrainingCancelledError,
  );
  assert.equal(polls, 4);
});
