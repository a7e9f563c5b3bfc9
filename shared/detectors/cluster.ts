// Cluster-relative distance: k-means++ on the (normalised) baseline, then an item's distance
// to its nearest centroid divided by that cluster's spread. Dividing by the spread lets one
// threshold serve tight and loose clusters alike: 1.0 means "as far out as the cluster's
// 90th-percentile member".
//
// Euclidean distance between unit vectors is √(2·cosine distance), so L2 k-means on the
// normalised vectors clusters by angle, as embeddings want.

import type { Detector, DetectorState, Rng } from '../types.js';
import { base64ToFloat32, float32ToBase64 } from '../math/base64.js';
import { gemmNT, stackRows } from '../math/matrix.js';
import { randInt } from '../math/rng.js';
import { quantileSorted, sortedCopy } from '../math/stats.js';
import { checkEmbeddings, normaliseInPlace } from '../math/vector.js';
import { checkState, field, intParam, notFitted, numberParam, rejectUnknown } from './params.js';

const NAME = 'cluster';

export interface ClusterParams {
  /** Requested clusters; reduced to ⌊n / minClusterSize⌋ when the baseline is small. */
  k: number;
  /** k-means++ restarts; the run with the lowest inertia is kept. */
  restarts: number;
  maxIterations: number;
  /** The fewest members a cluster should expect, which bounds the effective k. */
  minClusterSize: number;
  /** Quantile of member distances that defines a cluster's spread. */
  spreadQuantile: number;
}

export const CLUSTER_DEFAULTS: ClusterParams = {
  k: 8,
  restarts: 4,
  maxIterations: 50,
  minClusterSize: 10,
  spreadQuantile: 0.9,
};

/** Clusters with fewer members than this use the baseline-wide spread: a quantile of 1–4 distances is noise. */
const MIN_MEMBERS_FOR_OWN_SPREAD = 5;

interface Model {
  dim: number;
  k: number;
  /** k×d centroids (means of normalised members; not themselves renormalised). */
  centroids: Float32Array;
  /** Per-cluster spread, > 0. */
  spreads: number[];
  sizes: number[];
  inertia: number;
}

export class ClusterDetector implements Detector {
  readonly name = NAME;
  readonly version = '1';
  readonly params: ClusterParams;
  private model: Model | null = null;
  private centroidSqNorms: Float64Array = new Float64Array(0);

  constructor(params: Partial<ClusterParams> = {}) {
    rejectUnknown(NAME, params, Object.keys(CLUSTER_DEFAULTS));
    this.params = {
      k: intParam(NAME, params, 'k', CLUSTER_DEFAULTS.k, 1, 10_000),
      restarts: intParam(NAME, params, 'restarts', CLUSTER_DEFAULTS.restarts, 1, 1000),
      maxIterations: intParam(NAME, params, 'maxIterations', CLUSTER_DEFAULTS.maxIterations, 1, 10_000),
      minClusterSize: intParam(NAME, params, 'minClusterSize', CLUSTER_DEFAULTS.minClusterSize, 1, 1_000_000),
      spreadQuantile: numberParam(NAME, params, 'spreadQuantile', CLUSTER_DEFAULTS.spreadQuantile, 0, 1, true),
    };
  }

  get centroids(): Float32Array {
    if (!this.model) throw notFitted(NAME);
    return this.model.centroids;
  }

  get clusterSizes(): readonly number[] {
    return this.model?.sizes ?? [];
  }

  get spreads(): readonly number[] {
    return this.model?.spreads ?? [];
  }

  get inertia(): number {
    return this.model?.inertia ?? NaN;
  }

  fit(X: readonly Float32Array[], rng: Rng): void {
    const d = checkEmbeddings(X, undefined, NAME);
    const n = X.length;
    const k = Math.max(1, Math.min(this.params.k, Math.floor(n / this.params.minClusterSize), n));
    const data = stackRows(X, d).data;
    for (let r = 0; r < n; r++) normaliseInPlace(data, r * d, d);
    const rowSq = rowSquaredNorms(data, n, d);

    let best: KMeansRun | null = null;
    for (let restart = 0; restart < this.params.restarts; restart++) {
      const run = kMeans(data, rowSq, n, d, k, this.params.maxIterations, rng);
      if (!best || run.inertia < best.inertia) best = run;
    }
    const run = best!;

    const memberDistances: number[][] = Array.from({ length: k }, () => []);
    for (let i = 0; i < n; i++) memberDistances[run.assignment[i]].push(Math.sqrt(run.distSq[i]));
    const q = this.params.spreadQuantile;
    const global = quantileSorted(sortedCopy(run.distSq.map(Math.sqrt)), q);
    // Guards a baseline of identical points, whose spreads are all 0.
    const floor = Math.max(global * 1e-3, 1e-9);
    const spreads = memberDistances.map((ds) =>
      Math.max(floor, ds.length >= MIN_MEMBERS_FOR_OWN_SPREAD ? quantileSorted(sortedCopy(ds), q) : global),
    );
    this.setModel({
      dim: d,
      k,
      centroids: run.centroids,
      spreads,
      sizes: memberDistances.map((ds) => ds.length),
      inertia: run.inertia,
    });
  }

  score(X: readonly Float32Array[]): number[] {
    return this.assign(X).map((a) => a.distance / this.model!.spreads[a.cluster]);
  }

  /** Nearest centroid of each item and the Euclidean distance to it (after normalising the item). */
  assign(X: readonly Float32Array[]): { cluster: number; distance: number }[] {
    const m = this.model;
    if (!m) throw notFitted(NAME);
    const d = checkEmbeddings(X, m.dim, `${NAME}.score`);
    const BLOCK = 64;
    const rows = Math.min(BLOCK, X.length);
    const buf = new Float32Array(rows * d);
    const dots = new Float64Array(rows * m.k);
    const out: { cluster: number; distance: number }[] = [];
    for (let start = 0; start < X.length; start += BLOCK) {
      const b = Math.min(BLOCK, X.length - start);
      for (let r = 0; r < b; r++) {
        buf.set(X[start + r], r * d);
        normaliseInPlace(buf, r * d, d);
      }
      const sq = rowSquaredNorms(buf, b, d);
      gemmNT(buf, m.centroids, dots, b, m.k, d);
      for (let r = 0; r < b; r++) {
        let bestC = 0, bestD = Infinity;
        for (let c = 0; c < m.k; c++) {
          const dist = sq[r] + this.centroidSqNorms[c] - 2 * dots[r * m.k + c];
          if (dist < bestD) { bestD = dist; bestC = c; }
        }
        out.push({ cluster: bestC, distance: Math.sqrt(Math.max(0, bestD)) });
      }
    }
    return out;
  }

  toJSON(): DetectorState {
    const m = this.model;
    if (!m) throw notFitted(NAME);
    return {
      name: NAME,
      version: this.version,
      params: { ...this.params },
      state: {
        dim: m.dim,
        k: m.k,
        centroids: float32ToBase64(m.centroids),
        spreads: m.spreads,
        sizes: m.sizes,
        inertia: m.inertia,
      },
    };
  }

  static fromJSON(state: DetectorState): ClusterDetector {
    const det = new ClusterDetector(state.params as Partial<ClusterParams>);
    checkState(state, NAME, det.version);
    const s = state.state;
    const model: Model = {
      dim: field<number>(s, 'dim', 'number', NAME),
      k: field<number>(s, 'k', 'number', NAME),
      centroids: base64ToFloat32(field<string>(s, 'centroids', 'string', NAME)),
      spreads: s.spreads as number[],
      sizes: (s.sizes as number[] | undefined) ?? [],
      inertia: (s.inertia as number | undefined) ?? NaN,
    };
    if (model.centroids.length !== model.k * model.dim || !Array.isArray(model.spreads) || model.spreads.length !== model.k) {
      throw new RangeError(`${NAME}: array shapes do not match k=${model.k}, dim=${model.dim}`);
    }
    det.setModel(model);
    return det;
  }

  private setModel(model: Model): void {
    this.model = model;
    this.centroidSqNorms = rowSquaredNorms(model.centroids, model.k, model.dim);
  }
}

interface KMeansRun {
  centroids: Float32Array;
  assignment: Int32Array;
  /** Squared distance of each point to its centroid. */
  distSq: Float64Array;
  inertia: number;
}

function rowSquaredNorms(data: Float32Array, n: number, d: number): Float64Array {
  const out = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += data[r * d + i] * data[r * d + i];
    out[r] = s;
  }
  return out;
}

/** One k-means run: k-means++ seeding (Arthur & Vassilvitskii 2007), then Lloyd iterations. */
function kMeans(data: Float32Array, rowSq: Float64Array, n: number, d: number, k: number, maxIterations: number, rng: Rng): KMeansRun {
  const centroids = seedPlusPlus(data, rowSq, n, d, k, rng);
  const assignment = new Int32Array(n).fill(-1);
  const distSq = new Float64Array(n);
  const dots = new Float64Array(n * k);
  const sums = new Float64Array(k * d);
  const counts = new Int32Array(k);
  let cSq = rowSquaredNorms(centroids, k, d);

  for (let iter = 0; iter < maxIterations; iter++) {
    gemmNT(data, centroids, dots, n, k, d);
    let changed = 0;
    for (let i = 0; i < n; i++) {
      let bestC = 0, bestD = Infinity;
      for (let c = 0; c < k; c++) {
        const dist = rowSq[i] + cSq[c] - 2 * dots[i * k + c];
        if (dist < bestD) { bestD = dist; bestC = c; }
      }
      distSq[i] = Math.max(0, bestD);
      if (assignment[i] !== bestC) { assignment[i] = bestC; changed++; }
    }
    if (changed === 0) break;

    sums.fill(0);
    counts.fill(0);
    for (let i = 0; i < n; i++) {
      const c = assignment[i];
      counts[c]++;
      for (let t = 0; t < d; t++) sums[c * d + t] += data[i * d + t];
    }
    for (let c = 0; c < k; c++) {
      if (counts[c] === 0) {
        // An emptied cluster restarts at the point worst served by the current solution.
        let far = 0;
        for (let i = 1; i < n; i++) if (distSq[i] > distSq[far]) far = i;
        for (let t = 0; t < d; t++) centroids[c * d + t] = data[far * d + t];
        distSq[far] = 0;
        continue;
      }
      for (let t = 0; t < d; t++) centroids[c * d + t] = sums[c * d + t] / counts[c];
    }
    cSq = rowSquaredNorms(centroids, k, d);
  }

  // Final distances against the final centroids (the loop may have exited after an update).
  gemmNT(data, centroids, dots, n, k, d);
  let inertia = 0;
  for (let i = 0; i < n; i++) {
    let bestC = 0, bestD = Infinity;
    for (let c = 0; c < k; c++) {
      const dist = rowSq[i] + cSq[c] - 2 * dots[i * k + c];
      if (dist < bestD) { bestD = dist; bestC = c; }
    }
    assignment[i] = bestC;
    distSq[i] = Math.max(0, bestD);
    inertia += distSq[i];
  }
  return { centroids, assignment, distSq, inertia };
}

/** k-means++: each next centre drawn with probability ∝ squared distance to the nearest chosen one. */
function seedPlusPlus(data: Float32Array, rowSq: Float64Array, n: number, d: number, k: number, rng: Rng): Float32Array {
  const centroids = new Float32Array(k * d);
  const nearest = new Float64Array(n).fill(Infinity);
  let chosen = randInt(rng, n);
  for (let c = 0; c < k; c++) {
    centroids.set(data.subarray(chosen * d, (chosen + 1) * d), c * d);
    if (c === k - 1) break;
    let total = 0;
    for (let i = 0; i < n; i++) {
      let dot = 0;
      for (let t = 0; t < d; t++) dot += data[i * d + t] * data[chosen * d + t];
      const dist = Math.max(0, rowSq[i] + rowSq[chosen] - 2 * dot);
      if (dist < nearest[i]) nearest[i] = dist;
      total += nearest[i];
    }
    if (total <= 0) {
      // Fewer distinct points than clusters: any point will do.
      chosen = randInt(rng, n);
      continue;
    }
    let target = rng() * total;
    chosen = n - 1;
    for (let i = 0; i < n; i++) {
      target -= nearest[i];
      if (target < 0) { chosen = i; break; }
    }
  }
  return centroids;
}
