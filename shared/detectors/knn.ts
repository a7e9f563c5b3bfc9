// k-nearest-neighbour distance: the mean cosine distance from an item to its k closest
// baseline items. It needs no assumption about the baseline's shape, and the neighbours
// themselves explain a verdict ("closest known images are ...").

import type { Detector, DetectorState, Rng } from '../types.js';
import { base64ToFloat32, float32ToBase64 } from '../math/base64.js';
import { stackRows } from '../math/matrix.js';
import { checkEmbeddings, normaliseInPlace } from '../math/vector.js';
import { BruteForceIndex, type SearchHit, type VectorIndex } from '../math/vector-index.js';
import { checkState, field, intParam, notFitted, rejectUnknown } from './params.js';

const NAME = 'knn';

export interface KnnParams {
  k: number;
}

export const KNN_DEFAULTS: KnnParams = { k: 5 };

export class KnnDetector implements Detector {
  readonly name = NAME;
  readonly version = '1';
  readonly params: KnnParams;
  private index: BruteForceIndex | null = null;

  constructor(params: Partial<KnnParams> = {}) {
    rejectUnknown(NAME, params, Object.keys(KNN_DEFAULTS));
    this.params = { k: intParam(NAME, params, 'k', KNN_DEFAULTS.k, 1, 10_000) };
  }

  /** The search index over the baseline (normalised copies, in fit order). */
  get vectorIndex(): VectorIndex {
    if (!this.index) throw notFitted(NAME);
    return this.index;
  }

  get size(): number {
    return this.index?.size ?? 0;
  }

  /** The baseline is the model: fitting stores normalised copies. The rng is unused. */
  fit(X: readonly Float32Array[], _rng?: Rng): void {
    const dim = checkEmbeddings(X, undefined, NAME);
    const data = stackRows(X, dim).data;
    for (let r = 0; r < X.length; r++) normaliseInPlace(data, r * dim, dim);
    this.index = BruteForceIndex.fromNormalised(data, dim);
  }

  score(X: readonly Float32Array[]): number[] {
    return this.scoreExcluding(X, []);
  }

  /**
   * Scores items some of which are baseline items themselves: exclude[i] is the baseline
   * index of X[i] (or null), which is left out of X[i]'s neighbours so it does not find
   * itself at distance 0.
   */
  scoreExcluding(X: readonly Float32Array[], exclude: readonly (number | null | undefined)[]): number[] {
    const index = this.index;
    if (!index) throw notFitted(NAME);
    checkEmbeddings(X, index.dim, `${NAME}.score`);
    return index.searchMany(X, this.params.k, exclude).map(meanDistance);
  }

  /** Leave-one-out scores of the baseline itself: each item against all the others. */
  scoreBaselineLeaveOneOut(): number[] {
    const index = this.index;
    if (!index) throw notFitted(NAME);
    const d = index.dim;
    const all = index.vectors;
    const rows: Float32Array[] = [];
    const exclude: number[] = [];
    for (let r = 0; r < index.size; r++) {
      rows.push(all.subarray(r * d, (r + 1) * d));
      exclude.push(r);
    }
    return index.searchMany(rows, this.params.k, exclude).map(meanDistance);
  }

  /** The k nearest baseline items (index in fit order, cosine distance), nearest first. */
  neighbours(x: ArrayLike<number>, k = this.params.k, exclude?: number): SearchHit[] {
    const index = this.index;
    if (!index) throw notFitted(NAME);
    return index.search(x, k, exclude);
  }

  toJSON(): DetectorState {
    const index = this.index;
    if (!index) throw notFitted(NAME);
    return {
      name: NAME,
      version: this.version,
      params: { ...this.params },
      state: { dim: index.dim, n: index.size, vectors: float32ToBase64(index.vectors) },
    };
  }

  static fromJSON(state: DetectorState): KnnDetector {
    const det = new KnnDetector(state.params as Partial<KnnParams>);
    checkState(state, NAME, det.version);
    const dim = field<number>(state.state, 'dim', 'number', NAME);
    const n = field<number>(state.state, 'n', 'number', NAME);
    const vectors = base64ToFloat32(field<string>(state.state, 'vectors', 'string', NAME));
    if (vectors.length !== n * dim) throw new RangeError(`${NAME}: ${vectors.length} values for ${n}×${dim}`);
    det.index = BruteForceIndex.fromNormalised(vectors, dim);
    return det;
  }
}

/** With fewer than k baseline items available, the mean runs over those there are. */
function meanDistance(hits: SearchHit[]): number {
  if (hits.length === 0) return 1;
  let s = 0;
  for (const h of hits) s += h.distance;
  return s / hits.length;
}
