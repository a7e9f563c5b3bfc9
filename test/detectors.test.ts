// Known-answer tests for the math helpers and each detector.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Detector } from '../shared/types.js';
import { SIGNAL_NAMES } from '../shared/types.js';
import { base64ToBytes, base64ToFloat32, base64ToFloat64, bytesToBase64, float32ToBase64, float64ToBase64, int32ToBase64, base64ToInt32 } from '../shared/math/base64.js';
import { gemmNT, orthonormaliseRows, symmetricEigen } from '../shared/math/matrix.js';
import { mulberry32, normal, permutation, sampleWithoutReplacement, shuffle } from '../shared/math/rng.js';
import { auroc, mean, quantile, ranks, std } from '../shared/math/stats.js';
import { cosineDistance, dot, l2norm, meanVector, normalise, squaredEuclidean } from '../shared/math/vector.js';
import { BruteForceIndex } from '../shared/math/vector-index.js';
import { averagePathLength, IsolationForestDetector } from '../shared/detectors/isolation-forest.js';
import { AutoencoderDetector } from '../shared/detectors/autoencoder.js';
import { KnnDetector } from '../shared/detectors/knn.js';
import { MahalanobisDetector } from '../shared/detectors/mahalanobis.js';
import { ClusterDetector } from '../shared/detectors/cluster.js';
import { createDetector, detectorFromJSON } from '../shared/detectors/index.js';

const close = (actual: number, expected: number, tol: number, what = '') =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what} expected ${expected} ± ${tol}, got ${actual}`);

const vec = (...v: number[]) => Float32Array.from(v);

function gaussianRows(n: number, d: number, rng: () => number, sd = 1): Float32Array[] {
  return Array.from({ length: n }, () => {
    const x = new Float32Array(d);
    for (let i = 0; i < d; i++) x[i] = normal(rng, 0, sd);
    return x;
  });
}

// ---- math ---------------------------------------------------------------------------------

test('rng: mulberry32 is deterministic and uniform enough', () => {
  const a = mulberry32(42), b = mulberry32(42), c = mulberry32(43);
  const sa = Array.from({ length: 5 }, a), sb = Array.from({ length: 5 }, b), sc = Array.from({ length: 5 }, c);
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, sc);
  const r = mulberry32(1);
  const u = Array.from({ length: 20000 }, r);
  assert.ok(u.every((v) => v >= 0 && v < 1));
  close(mean(u), 0.5, 0.01, 'uniform mean');
  const z = Array.from({ length: 20000 }, () => normal(r));
  close(mean(z), 0, 0.03, 'normal mean');
  close(std(z), 1, 0.03, 'normal std');
});

test('rng: shuffle, permutation and sampling without replacement', () => {
  const rng = mulberry32(7);
  const p = permutation(100, rng);
  assert.deepEqual([...p].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
  const s = sampleWithoutReplacement(50, 20, rng);
  assert.equal(s.length, 20);
  assert.equal(new Set(s).size, 20);
  assert.ok([...s].every((v) => v >= 0 && v < 50));
  assert.equal(sampleWithoutReplacement(5, 5, rng).length, 5);
  assert.throws(() => sampleWithoutReplacement(5, 6, rng), RangeError);
  const arr = [1, 2, 3, 4, 5];
  shuffle(arr, rng);
  assert.deepEqual([...arr].sort(), [1, 2, 3, 4, 5]);
});

test('vector: dot, norms, cosine and euclidean distances', () => {
  const a = vec(1, 2, 3, 4, 5), b = vec(5, 4, 3, 2, 1);
  assert.equal(dot(a, b), 35);
  close(l2norm(vec(3, 4)), 5, 1e-12);
  assert.equal(squaredEuclidean(a, b), 16 + 4 + 0 + 4 + 16);
  close(cosineDistance(vec(1, 0), vec(0, 1)), 1, 1e-12);
  close(cosineDistance(vec(1, 0), vec(-2, 0)), 2, 1e-12);
  close(cosineDistance(vec(1, 1), vec(1, 0)), 1 - Math.SQRT1_2, 1e-7);
  const n = normalise(vec(3, 0, 4));
  close(n[0], 0.6, 1e-7);
  close(n[2], 0.8, 1e-7);
  assert.deepEqual([...normalise(vec(0, 0))], [0, 0]);
  assert.deepEqual([...meanVector([vec(1, 2), vec(3, 6)])], [2, 4]);
});

test('stats: quantile, ranks with ties, AUROC (Mann–Whitney with ties)', () => {
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
  close(quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9), 9.1, 1e-12);
  assert.equal(quantile([5], 0.3), 5);
  assert.deepEqual([...ranks([10, 20, 20, 30])], [1, 2.5, 2.5, 4]);
  assert.equal(auroc([3, 4], [1, 2]), 1);
  assert.equal(auroc([1, 2], [3, 4]), 0);
  // pairs: (1,2)=0 (1,0)=1 (2,2)=½ (2,0)=1 → 2.5/4
  assert.equal(auroc([1, 2], [2, 0]), 0.625);
});

test('base64: known encodings and lossless round trips', () => {
  assert.equal(bytesToBase64(new TextEncoder().encode('Man')), 'TWFu');
  assert.equal(bytesToBase64(new TextEncoder().encode('Ma')), 'TWE=');
  assert.equal(bytesToBase64(new TextEncoder().encode('M')), 'TQ==');
  assert.equal(new TextDecoder().decode(base64ToBytes('TWE=')), 'Ma');
  // 1.0f is 0x3F800000, little-endian bytes 00 00 80 3F.
  assert.equal(float32ToBase64(vec(1)), 'AACAPw==');
  const rng = mulberry32(3);
  const f = new Float32Array(10_001).map(() => normal(rng));
  assert.deepEqual(base64ToFloat32(float32ToBase64(f)), f);
  const g = Float64Array.from({ length: 77 }, () => normal(rng));
  assert.deepEqual(base64ToFloat64(float64ToBase64(g)), g);
  const i = Int32Array.from([-1, 0, 1, 2 ** 31 - 1, -(2 ** 31)]);
  assert.deepEqual(base64ToInt32(int32ToBase64(i)), i);
  assert.throws(() => base64ToBytes('abc'), RangeError);
});

test('matrix: gemmNT matches the naive product for ragged shapes', () => {
  const rng = mulberry32(5);
  for (const [m, n, k] of [[1, 1, 1], [5, 7, 3], [4, 8, 16], [9, 6, 33]]) {
    const a = new Float32Array(m * k).map(() => normal(rng));
    const b = new Float32Array(n * k).map(() => normal(rng));
    const c = new Float64Array(m * n);
    gemmNT(a, b, c, m, n, k);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p];
      close(c[i * n + j], s, 1e-9, `C[${i},${j}]`);
    }
  }
});

test('matrix: Jacobi eigen-decomposition and Gram–Schmidt', () => {
  // [[2,1],[1,2]] has eigenvalues 3 and 1 with eigenvectors (1,1)/√2 and (1,−1)/√2.
  const { values, vectors } = symmetricEigen(Float64Array.from([2, 1, 1, 2]), 2);
  close(values[0], 3, 1e-12);
  close(values[1], 1, 1e-12);
  close(Math.abs(vectors[0]), Math.SQRT1_2, 1e-12);
  close(vectors[0] * vectors[1], 0.5, 1e-12);
  const rng = mulberry32(9);
  const q = new Float32Array(4 * 10).map(() => normal(rng));
  orthonormaliseRows(q, 4, 10, rng);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) {
    let s = 0;
    for (let t = 0; t < 10; t++) s += q[i * 10 + t] * q[j * 10 + t];
    close(s, i === j ? 1 : 0, 1e-6, `QQᵀ[${i},${j}]`);
  }
});

test('vector index: brute force returns exact cosine neighbours, nearest first', () => {
  const index = new BruteForceIndex(2, 1);
  for (const v of [vec(1, 0), vec(0, 1), vec(-1, 0), vec(1, 1)]) index.add(v);
  assert.equal(index.size, 4);
  const hits = index.search(vec(2, 0), 3);
  assert.deepEqual(hits.map((h) => h.index), [0, 3, 1]);
  close(hits[0].distance, 0, 1e-7);
  close(hits[1].distance, 1 - Math.SQRT1_2, 1e-7);
  close(hits[2].distance, 1, 1e-7);
  assert.deepEqual(index.search(vec(1, 0), 1, 0).map((h) => h.index), [3]);
});

// ---- isolation forest ---------------------------------------------------------------------

test('isolation forest: c(n) matches hand-computed values', () => {
  assert.equal(averagePathLength(0), 0);
  assert.equal(averagePathLength(1), 0);
  assert.equal(averagePathLength(2), 1);
  // c(3) = 2(ln 2 + γ) − 4/3
  close(averagePathLength(3), 2 * (Math.log(2) + 0.5772156649) - 4 / 3, 1e-12);
  close(averagePathLength(3), 1.2073923, 1e-6);
  // c(256) = 2(ln 255 + γ) − 2·255/256 = 2·6.1184792 − 1.9921875
  close(averagePathLength(256), 10.2447709, 1e-6);
});

test('isolation forest: obvious 2-D outlier scores > 0.6, inliers ≈ 0.4–0.5', () => {
  const rng = mulberry32(11);
  const inliers = gaussianRows(500, 2, rng);
  const det = new IsolationForestDetector();
  det.fit([...inliers, vec(8, 8)], mulberry32(1));
  const [outlier] = det.score([vec(8, 8)]);
  assert.ok(outlier > 0.6, `outlier score ${outlier}`);
  const s = det.score(inliers);
  const m = mean(s);
  assert.ok(m > 0.38 && m < 0.5, `mean inlier score ${m}`);
  assert.ok(quantile(s, 0.5) < 0.5);
});

test('isolation forest: degenerate forests give the textbook score 0.5', () => {
  // ψ = 2: every tree separates the two points at depth 1, so h(x) = 1 = c(2) for all x.
  const two = new IsolationForestDetector({ trees: 10 });
  two.fit([vec(0, 0), vec(1, 1)], mulberry32(2));
  for (const s of two.score([vec(0, 0), vec(5, -5)])) close(s, 0.5, 1e-12);
  // Identical points cannot be split: the root stays external with size n, h = c(n) = c(ψ).
  const same = new IsolationForestDetector({ trees: 5 });
  same.fit([vec(1, 2), vec(1, 2), vec(1, 2), vec(1, 2)], mulberry32(2));
  close(same.meanPathLength(vec(1, 2)), averagePathLength(4), 1e-12);
  close(same.score([vec(1, 2)])[0], 0.5, 1e-12);
});

// ---- kNN ----------------------------------------------------------------------------------

test('knn: mean cosine distance to the k nearest equals hand computation', () => {
  const det = new KnnDetector({ k: 2 });
  det.fit([vec(1, 0), vec(0, 1), vec(-1, 0), vec(1, 1)]);
  const a = 1 - Math.SQRT1_2; // 0.292893…
  const [s1, s2] = det.score([vec(3, 0), vec(0, -1)]);
  close(s1, (0 + a) / 2, 1e-7, 'query (3,0)');
  // (0,−1): distance 1 to (1,0) and (−1,0), 1+√½ to (1,1), 2 to (0,1)
  close(s2, 1, 1e-7, 'query (0,−1)');
  // Leave-one-out: item 0 = (1,0) without itself → (1,1) at a, (0,1) at 1.
  const loo = det.scoreBaselineLeaveOneOut();
  close(loo[0], (a + 1) / 2, 1e-7, 'LOO item 0');
  close(loo[3], (a + a) / 2, 1e-7, 'LOO item 3');
  assert.deepEqual(det.scoreExcluding([vec(1, 0)], [0]), [loo[0]]);
  const nb = det.neighbours(vec(1, 0.1), 3);
  assert.deepEqual(nb.map((h) => h.index), [0, 3, 1]);
  close(nb[0].distance, 1 - 1 / Math.sqrt(1.01), 1e-7);
});

test('knn: k larger than the baseline averages over what is there', () => {
  const det = new KnnDetector({ k: 10 });
  det.fit([vec(1, 0), vec(0, 1)]);
  close(det.score([vec(1, 0)])[0], 0.5, 1e-7);
});

// ---- Mahalanobis --------------------------------------------------------------------------

/** Rows x = R·diag(√λ)·z for a fixed random rotation R: covariance with known eigenvalues λ. */
function gaussianWithSpectrum(n: number, lambdas: number[], rng: () => number): Float32Array[] {
  const d = lambdas.length;
  const rotRng = mulberry32(1234);
  const rot = new Float32Array(d * d).map(() => normal(rotRng));
  orthonormaliseRows(rot, d, d, rotRng);
  return Array.from({ length: n }, () => {
    const x = new Float32Array(d);
    for (let j = 0; j < d; j++) {
      const z = normal(rng) * Math.sqrt(lambdas[j]);
      for (let i = 0; i < d; i++) x[i] += z * rot[j * d + i];
    }
    return x;
  });
}

test('mahalanobis: recovers the spectrum and scores ≈ chi-square(r) on a known Gaussian', () => {
  const rng = mulberry32(21);
  const lambdas = [9, 4, 2, 1, 0.5, 0.25];
  const det = new MahalanobisDetector({ components: 6, shrinkage: 0, residual: false });
  det.fit(gaussianWithSpectrum(5000, lambdas, rng), mulberry32(1));
  det.eigenvalues.forEach((l, i) => close(l / lambdas[i], 1, 0.08, `λ${i}`));
  const s = det.score(gaussianWithSpectrum(4000, lambdas, rng));
  // Chi-square with 6 degrees of freedom: mean 6, variance 12.
  close(mean(s), 6, 0.3, 'mean score');
  close(std(s) ** 2, 12, 1.5, 'score variance');
});

test('mahalanobis: the residual term adds chi-square(d − r) for an isotropic remainder', () => {
  const rng = mulberry32(22);
  const d = 40;
  const lambdas = [16, 8, 4, ...Array.from({ length: d - 3 }, () => 0.05)];
  const det = new MahalanobisDetector({ components: 3, shrinkage: 0 });
  det.fit(gaussianWithSpectrum(4000, lambdas, rng), mulberry32(1));
  [16, 8, 4].forEach((l, i) => close(det.eigenvalues[i] / l, 1, 0.08, `λ${i}`));
  const s = det.score(gaussianWithSpectrum(3000, lambdas, rng));
  close(mean(s), d, 1.2, 'mean score (r + (d − r))');
  // Off the principal subspace at 10× the residual standard deviation per dimension.
  const off = new Float32Array(d);
  const clean = gaussianWithSpectrum(1, lambdas, rng)[0];
  for (let i = 0; i < d; i++) off[i] = clean[i] + normal(rng) * Math.sqrt(0.05) * 3;
  assert.ok(det.score([off])[0] > 150, 'off-subspace item scores far out');
});

test('mahalanobis: shrinkage pulls eigenvalues toward their mean and keeps scores finite for n < d', () => {
  const rng = mulberry32(23);
  const X = gaussianRows(30, 100, rng);
  const det = new MahalanobisDetector({ shrinkage: 0.5 });
  det.fit(X, mulberry32(1));
  assert.equal(det.eigenvalues.length, 29);
  const avg = (det as unknown as { model: { totalVariance: number } }).model.totalVariance / 100;
  det.eigenvalues.forEach((l, i) => close(det.shrunkEigenvalues[i], 0.5 * l + 0.5 * avg, 1e-9));
  assert.ok(det.score(gaussianRows(5, 100, rng)).every(Number.isFinite));
});

// ---- k-means ------------------------------------------------------------------------------

function blobs(centres: Float32Array[], perBlob: number, noise: number, rng: () => number): { X: Float32Array[]; label: number[] } {
  const X: Float32Array[] = [], label: number[] = [];
  centres.forEach((c, b) => {
    for (let i = 0; i < perBlob; i++) {
      X.push(normalise(c.map((v) => v + normal(rng) * noise)));
      label.push(b);
    }
  });
  return { X, label };
}

test('cluster: k-means++ recovers three well-separated blobs', () => {
  const rng = mulberry32(31);
  const d = 16;
  const centres = [0, 1, 2].map((j) => { const c = new Float32Array(d); c[j] = 1; return c; });
  const { X, label } = blobs(centres, 60, 0.05, rng);
  const det = new ClusterDetector({ k: 3 });
  det.fit(X, mulberry32(1));
  assert.deepEqual([...det.clusterSizes].sort(), [60, 60, 60]);
  const assign = det.assign(X).map((a) => a.cluster);
  for (let b = 0; b < 3; b++) {
    const ids = new Set(assign.filter((_, i) => label[i] === b));
    assert.equal(ids.size, 1, `blob ${b} split across clusters`);
  }
  assert.equal(new Set(assign).size, 3);
  // A blob member is within its cluster's spread scale; a point between blobs is far out.
  const [inside, between] = det.score([X[0], normalise(vec(1, 1, 1, ...new Array(d - 3).fill(0)))]);
  assert.ok(inside < 1.5, `inside ${inside}`);
  assert.ok(between > 3, `between ${between}`);
});

test('cluster: k shrinks for small baselines', () => {
  const det = new ClusterDetector({ k: 8, minClusterSize: 10 });
  det.fit(gaussianRows(25, 4, mulberry32(4)), mulberry32(1));
  assert.equal(det.clusterSizes.length, 2);
});

// ---- autoencoder --------------------------------------------------------------------------

/** Points on a curved 2-D manifold in 32-d, normalised like embeddings. */
function manifold(n: number, rng: () => number, offManifold = 0): Float32Array[] {
  const d = 32;
  const dirs = gaussianRows(4, d, mulberry32(99));
  return Array.from({ length: n }, () => {
    const a = normal(rng), b = normal(rng);
    const x = new Float32Array(d);
    for (let i = 0; i < d; i++) {
      x[i] = 3 * dirs[0][i] + a * dirs[1][i] + b * dirs[2][i] + Math.sin(a) * dirs[3][i] + normal(rng) * (0.02 + offManifold);
    }
    return normalise(x);
  });
}

test('autoencoder: loss decreases and off-manifold points reconstruct worse', () => {
  const rng = mulberry32(41);
  const X = manifold(400, rng);
  const det = new AutoencoderDetector({ hidden: 8, epochs: 100 });
  det.fit(X, mulberry32(1));
  const loss = det.lossHistory;
  assert.ok(loss.length >= 10, `trained ${loss.length} epochs`);
  assert.ok(loss[loss.length - 1] < 0.5 * loss[0], `loss ${loss[0]} → ${loss[loss.length - 1]}`);
  assert.ok(det.validationLossHistory.length === loss.length);
  const clean = det.score(manifold(200, rng));
  const off = det.score(manifold(200, rng, 0.3));
  assert.ok(auroc(off, clean) > 0.95, `AUROC ${auroc(off, clean)}`);
  assert.ok(mean(off) > 2 * mean(clean));
});

test('autoencoder: ReLU variant and early stopping keep the best validation epoch', () => {
  const det = new AutoencoderDetector({ hidden: 8, epochs: 200, activation: 'relu', patience: 3, learningRate: 0.01 });
  det.fit(manifold(200, mulberry32(42)), mulberry32(2));
  const val = det.validationLossHistory;
  assert.ok(val.length < 200, 'stopped early');
  const state = det.toJSON().state as { bestEpoch: number };
  assert.equal(val[state.bestEpoch], Math.min(...val));
});

// ---- all detectors ------------------------------------------------------------------------

test('every detector: params are validated', () => {
  assert.throws(() => createDetector('isolation_forest', { trees: 0 }), /trees/);
  assert.throws(() => createDetector('knn', { k: 1.5 }), /k must be an integer/);
  assert.throws(() => createDetector('autoencoder', { activation: 'sigmoid' as never }), /activation/);
  assert.throws(() => createDetector('mahalanobis', { shrinkage: 1 }), /shrinkage/);
  assert.throws(() => createDetector('cluster', { clusters: 3 } as never), /unknown parameter "clusters"/);
  assert.throws(() => new KnnDetector().score([vec(1)]), /before fit/);
});

test('every detector: serialise → restore gives identical scores; same seed, same model', () => {
  const rng = mulberry32(51);
  const X = gaussianRows(120, 24, rng).map(normalise);
  const Q = gaussianRows(30, 24, rng).map(normalise);
  for (const name of SIGNAL_NAMES) {
    const params = name === 'autoencoder' ? { epochs: 3, hidden: 6 } : {};
    const a: Detector = createDetector(name, params as never);
    const b: Detector = createDetector(name, params as never);
    a.fit(X, mulberry32(5));
    b.fit(X, mulberry32(5));
    const json = JSON.parse(JSON.stringify(a.toJSON()));
    assert.deepEqual(json, JSON.parse(JSON.stringify(b.toJSON())), `${name}: not deterministic`);
    const restored = detectorFromJSON(json);
    assert.equal(restored.name, name);
    assert.deepEqual(restored.score(Q), a.score(Q), `${name}: restored scores differ`);
    assert.deepEqual(a.score(Q.slice(3, 4)), a.score(Q).slice(3, 4), `${name}: batch-dependent score`);
    assert.ok(a.score(Q).every(Number.isFinite));
    assert.throws(() => detectorFromJSON({ ...json, version: '0' }), /version/);
  }
});
