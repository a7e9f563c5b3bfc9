// Local intrinsic dimensionality (Ma et al., ICLR 2018): the maximum-likelihood estimate of
// the dimension of the data around an item from its k nearest-neighbour distances,
//   LID(x) = −( (1/k) Σᵢ ln(rᵢ / r_k) )⁻¹,
// with r₁ ≤ … ≤ r_k the Euclidean distances to the k nearest baseline items.
//
// Why it complements kNN distance: an item ON the photo manifold sees its neighbours at
// steadily growing distances (low LID); an item pushed off it sees all of them at nearly the
// same, large distance (r₁ ≈ r_k, so LID grows). The ratio form makes it blind to the
// absolute scale, so dense and sparse regions of the baseline are judged alike, which plain
// distance is not. Distances are Euclidean between unit vectors, √(2·cosine distance).

import type { Rng } from '../types.js';
import { base64ToFloat32, float32ToBase64 } from '../math/base64.js';
import { stackRows } from '../math/matrix.js';
import { checkEmbeddings, normaliseInPlace } from '../math/vector.js';
import { BruteForceIndex, type SearchHit } from '../math/vector-index.js';
import { checkState, field, intParam, notFitted, rejectUnknown } from './params.js';
import type { EmbeddingDetector, EmbeddingDetectorState } from './types.js';

const NAME = 'lid';

export interface LidParams {
  k: number;
}

export const LID_DEFAULTS: LidParams = { k: 20 };

/** An item with every neighbour at the same distance has unbounded LID; keep it finite for calibration. */
const MAX_LID = 1e4;
/** Exact duplicates sit at distance 0, where ln r is undefined. */
const MIN_DISTANCE = 1e-6;

export class LidDetector implements EmbeddingDetector {
  readonly name = NAME;
  readonly version = '1';
  readonly params: LidParams;
  private index: BruteForceIndex | null = null;

  constructor(params: Partial<LidParams> = {}) {
    rejectUnknown(NAME, params, Object.keys(LID_DEFAULTS));
    this.params = { k: intParam(NAME, params, 'k', LID_DEFAULTS.k, 2, 10_000) };
  }

  fit(X: readonly Float32Array[], _rng?: Rng): void {
    const dim = checkEmbeddings(X, undefined, NAME);
    const data = stackRows(X, dim).data;
    for (let r = 0; r < X.length; r++) normaliseInPlace(data, r * dim, dim);
    this.index = BruteForceIndex.fromNormalised(data, dim);
  }

  /**
   * Adopts an index fitted on the same baseline (the kNN detector's), so a detector set keeps
   * one copy of the baseline vectors rather than two.
   */
  useIndex(index: BruteForceIndex): void {
    this.index = index;
  }

  get vectorIndex(): BruteForceIndex {
    if (!this.index) throw notFitted(NAME);
    return this.index;
  }

  score(X: readonly Float32Array[]): number[] {
    return this.scoreExcluding(X, []);
  }

  /** As KnnDetector.scoreExcluding: exclude[i] is X[i]'s own baseline index, if it has one. */
  scoreExcluding(X: readonly Float32Array[], exclude: readonly (number | null | undefined)[]): number[] {
    const index = this.index;
    if (!index) throw notFitted(NAME);
    checkEmbeddings(X, index.dim, `${NAME}.score`);
    return index.searchMany(X, this.params.k, exclude).map(lidOf);
  }

  toJSON(options: { omitVectors?: boolean } = {}): EmbeddingDetectorState {
    const index = this.index;
    if (!index) throw notFitted(NAME);
    return {
      name: NAME,
      version: this.version,
      params: { ...this.params },
      state: options.omitVectors
        ? { dim: index.dim, n: index.size, vectors: 'shared' }
        : { dim: index.dim, n: index.size, vectors: float32ToBase64(index.vectors) },
    };
  }

  /** `shared`: the index to adopt when the state says its vectors are shared (see useIndex). */
  static fromJSON(state: EmbeddingDetectorState, shared?: BruteForceIndex): LidDetector {
    const det = new LidDetector(state.params as Partial<LidParams>);
    checkState(state, NAME, det.version);
    const dim = field<number>(state.state, 'dim', 'number', NAME);
    const n = field<number>(state.state, 'n', 'number', NAME);
    const encoded = field<string>(state.state, 'vectors', 'string', NAME);
    if (encoded === 'shared') {
      if (!shared || shared.dim !== dim || shared.size !== n) throw new RangeError(`${NAME}: state shares the kNN index, which is missing or of another shape`);
      det.index = shared;
      return det;
    }
    const vectors = base64ToFloat32(encoded);
    if (vectors.length !== n * dim) throw new RangeError(`${NAME}: ${vectors.length} values for ${n}×${dim}`);
    det.index = BruteForceIndex.fromNormalised(vectors, dim);
    return det;
  }
}

/** The MLE from one item's nearest-neighbour hits (cosine distances, nearest first). */
export function lidOf(hits: readonly SearchHit[]): number {
  const k = hits.length;
  if (k < 2) return 0;
  const rk = Math.sqrt(2 * Math.max(hits[k - 1].distance, MIN_DISTANCE * MIN_DISTANCE));
  let sum = 0;
  for (const h of hits) sum += Math.log(Math.sqrt(2 * Math.max(h.distance, MIN_DISTANCE * MIN_DISTANCE)) / rk);
  if (sum >= 0) return MAX_LID;
  return Math.min(MAX_LID, -k / sum);
}
