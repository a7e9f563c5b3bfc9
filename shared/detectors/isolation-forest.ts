// Isolation Forest (Liu, Ting & Zhou, ICDM 2008), implemented as in the paper: each tree is
// grown on a sub-sample of ψ points without replacement, to height limit ceil(log2 ψ), by
// picking a random attribute and a split uniformly between that attribute's min and max in
// the node. Anomalies are isolated in fewer splits, so a short average path means anomalous.
// Score s(x) = 2^(−E[h(x)] / c(ψ)): ≈1 clear anomaly, ≲0.5 normal.

import type { Detector, DetectorState, Rng } from '../types.js';
import { base64ToFloat32, base64ToInt32, float32ToBase64, int32ToBase64 } from '../math/base64.js';
import { randInt, sampleWithoutReplacement } from '../math/rng.js';
import { checkEmbeddings } from '../math/vector.js';
import { checkState, field, intParam, notFitted, rejectUnknown } from './params.js';

const EULER_GAMMA = 0.5772156649;
const NAME = 'isolation_forest';

/** Harmonic number estimate H(i) = ln(i) + γ, as in the paper. */
export function harmonic(i: number): number {
  return Math.log(i) + EULER_GAMMA;
}

/**
 * c(n): the average path length of an unsuccessful search in a binary search tree of n
 * points, used both to normalise E[h(x)] and to credit external nodes that still hold
 * size > 1 points when the height limit stopped the tree. c(2) = 1, c(n ≤ 1) = 0.
 */
export function averagePathLength(n: number): number {
  if (n <= 1) return 0;
  if (n === 2) return 1;
  return 2 * harmonic(n - 1) - (2 * (n - 1)) / n;
}

export interface IsolationForestParams {
  /** t, number of trees. */
  trees: number;
  /** ψ, sub-sample size per tree (the effective value is min(ψ, n)). */
  sampleSize: number;
}

export const ISOLATION_FOREST_DEFAULTS: IsolationForestParams = { trees: 100, sampleSize: 256 };

/**
 * The forest in flat arrays, nodes of each tree in pre-order: a node's left child is the next
 * node, so only the right child is stored. Leaves have feature −1 and keep their size.
 */
interface Forest {
  dim: number;
  /** Effective ψ = min(sampleSize, n) the forest was grown with. */
  psi: number;
  roots: Int32Array;
  feature: Int32Array;
  threshold: Float32Array;
  right: Int32Array;
  size: Int32Array;
}

export class IsolationForestDetector implements Detector {
  readonly name = NAME;
  readonly version = '1';
  readonly params: IsolationForestParams;
  private forest: Forest | null = null;
  /** c(size) for every possible leaf size, so scoring never calls log. */
  private leafCredit: Float64Array = new Float64Array(0);

  constructor(params: Partial<IsolationForestParams> = {}) {
    rejectUnknown(NAME, params, Object.keys(ISOLATION_FOREST_DEFAULTS));
    this.params = {
      trees: intParam(NAME, params, 'trees', ISOLATION_FOREST_DEFAULTS.trees, 1, 10_000),
      sampleSize: intParam(NAME, params, 'sampleSize', ISOLATION_FOREST_DEFAULTS.sampleSize, 2, 1 << 20),
    };
  }

  fit(X: readonly Float32Array[], rng: Rng): void {
    const dim = checkEmbeddings(X, undefined, NAME);
    const n = X.length;
    if (n < 2) throw new RangeError(`${NAME}: needs at least 2 items, got ${n}`);
    const psi = Math.min(this.params.sampleSize, n);
    const heightLimit = Math.ceil(Math.log2(psi));
    const builder = new ForestBuilder(X, dim, heightLimit, rng);
    const roots = new Int32Array(this.params.trees);
    for (let t = 0; t < this.params.trees; t++) {
      roots[t] = builder.grow(sampleWithoutReplacement(n, psi, rng));
    }
    this.setForest({ dim, psi, roots, ...builder.arrays() });
  }

  score(X: readonly Float32Array[]): number[] {
    const f = this.forest;
    if (!f) throw notFitted(NAME);
    checkEmbeddings(X, f.dim, `${NAME}.score`);
    const norm = averagePathLength(f.psi);
    return X.map((x) => Math.pow(2, -this.meanPathLength(x) / norm));
  }

  /** E[h(x)]: the path length averaged over the trees, external nodes credited with c(size). */
  meanPathLength(x: ArrayLike<number>): number {
    const f = this.forest;
    if (!f) throw notFitted(NAME);
    const { roots, feature, threshold, right, size } = f;
    let total = 0;
    for (let t = 0; t < roots.length; t++) {
      let node = roots[t];
      let depth = 0;
      while (feature[node] >= 0) {
        node = x[feature[node]] < threshold[node] ? node + 1 : right[node];
        depth++;
      }
      total += depth + this.leafCredit[size[node]];
    }
    return total / roots.length;
  }

  toJSON(): DetectorState {
    const f = this.forest;
    if (!f) throw notFitted(NAME);
    return {
      name: NAME,
      version: this.version,
      params: { ...this.params },
      state: {
        dim: f.dim,
        psi: f.psi,
        roots: int32ToBase64(f.roots),
        feature: int32ToBase64(f.feature),
        threshold: float32ToBase64(f.threshold),
        right: int32ToBase64(f.right),
        size: int32ToBase64(f.size),
      },
    };
  }

  static fromJSON(state: DetectorState): IsolationForestDetector {
    const det = new IsolationForestDetector(state.params as Partial<IsolationForestParams>);
    checkState(state, NAME, det.version);
    const s = state.state;
    const forest: Forest = {
      dim: field<number>(s, 'dim', 'number', NAME),
      psi: field<number>(s, 'psi', 'number', NAME),
      roots: base64ToInt32(field<string>(s, 'roots', 'string', NAME)),
      feature: base64ToInt32(field<string>(s, 'feature', 'string', NAME)),
      threshold: base64ToFloat32(field<string>(s, 'threshold', 'string', NAME)),
      right: base64ToInt32(field<string>(s, 'right', 'string', NAME)),
      size: base64ToInt32(field<string>(s, 'size', 'string', NAME)),
    };
    const nodes = forest.feature.length;
    if (forest.threshold.length !== nodes || forest.right.length !== nodes || forest.size.length !== nodes) {
      throw new RangeError(`${NAME}: node arrays of different lengths`);
    }
    det.setForest(forest);
    return det;
  }

  private setForest(forest: Forest): void {
    this.forest = forest;
    this.leafCredit = new Float64Array(forest.psi + 1);
    for (let i = 0; i <= forest.psi; i++) this.leafCredit[i] = averagePathLength(i);
  }
}

class ForestBuilder {
  private feature: number[] = [];
  private threshold: number[] = [];
  private right: number[] = [];
  private size: number[] = [];

  constructor(
    private readonly X: readonly Float32Array[],
    private readonly dim: number,
    private readonly heightLimit: number,
    private readonly rng: Rng,
  ) {}

  /** Grows one iTree on the given sample (its order is reused as scratch) and returns its root. */
  grow(sample: Int32Array): number {
    return this.node(sample, 0, sample.length, 0);
  }

  arrays(): Pick<Forest, 'feature' | 'threshold' | 'right' | 'size'> {
    return {
      feature: Int32Array.from(this.feature),
      threshold: Float32Array.from(this.threshold),
      right: Int32Array.from(this.right),
      size: Int32Array.from(this.size),
    };
  }

  private node(idx: Int32Array, lo: number, hi: number, depth: number): number {
    const id = this.feature.length;
    this.feature.push(-1);
    this.threshold.push(0);
    this.right.push(-1);
    this.size.push(hi - lo);
    if (depth >= this.heightLimit || hi - lo <= 1) return id;

    const split = this.chooseSplit(idx, lo, hi);
    // All points identical: nothing can separate them, so this stays an external node.
    if (!split) return id;
    const { q, p } = split;

    // Partition in place: x_q < p to the left, as in the paper.
    let i = lo, j = hi - 1;
    while (i <= j) {
      if (this.X[idx[i]][q] < p) i++;
      else {
        const tmp = idx[i]; idx[i] = idx[j]; idx[j] = tmp;
        j--;
      }
    }
    this.feature[id] = q;
    this.threshold[id] = p;
    this.node(idx, lo, i, depth + 1);
    this.right[id] = this.feature.length;
    this.node(idx, i, hi, depth + 1);
    return id;
  }

  /**
   * A uniformly random attribute and a split uniform in (min, max) of it. An attribute that is
   * constant in the node cannot split it, so another is drawn (as scikit-learn does); a
   * constant attribute would only add a useless level to the path.
   */
  private chooseSplit(idx: Int32Array, lo: number, hi: number): { q: number; p: number } | null {
    const { X, dim, rng } = this;
    const tries = Math.min(dim, 32);
    for (let attempt = 0; attempt <= tries; attempt++) {
      // After a run of constant draws, scan every attribute from a random start instead.
      const scan = attempt === tries;
      const start = randInt(rng, dim);
      for (let s = 0; s < (scan ? dim : 1); s++) {
        const q = (start + s) % dim;
        let min = Infinity, max = -Infinity;
        for (let r = lo; r < hi; r++) {
          const v = X[idx[r]][q];
          if (v < min) min = v;
          if (v > max) max = v;
        }
        if (max > min) {
          // Rounded to float32 here because that is what is stored and compared at scoring time.
          const p = Math.fround(min + rng() * (max - min));
          return { q, p };
        }
      }
    }
    return null;
  }
}
