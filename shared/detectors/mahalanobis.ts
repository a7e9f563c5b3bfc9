// Mahalanobis distance under a PCA (probabilistic-PCA-shaped) Gaussian model of the baseline.
//
// A full d×d covariance is hopeless at d = 1280 with a few hundred items (rank ≤ n − 1, and
// the inverse amplifies noise), so the baseline is modelled as r principal directions with
// their own variances λ_i plus an isotropic residual of variance σ² in the remaining d − r
// dimensions (Tipping & Bishop 1999). The score is the squared Mahalanobis distance under it:
//
//   score(x) = Σ_{i ≤ r} ⟨x − μ, u_i⟩² / λ̃_i  +  ‖residual‖² / σ̃²      (residual term optional)
//
// The first term catches unusual positions along the directions the baseline varies in; the
// second catches items off that subspace, often the stronger signal for foreign content.
// For Gaussian data each term is chi-square: the first has mean r, the second mean d − r.
//
// Eigenvalues are shrunk towards their average (Ledoit–Wolf form Σ̃ = (1 − α)Σ + α·(tr Σ / d)·I),
// so a tiny trailing λ_i cannot turn sampling noise into a huge distance.
//
// The top r components come from randomised subspace iteration (Halko, Martinsson & Tropp
// 2011) on the centred data matrix, never forming the d×d covariance or the n×n Gram matrix:
// cost O(n·d·(r + oversample)) per iteration, linear in n.

import type { Detector, DetectorState, Rng } from '../types.js';
import { base64ToFloat32, float32ToBase64 } from '../math/base64.js';
import { gemmNT, orthonormaliseRows, symmetricEigen, transpose } from '../math/matrix.js';
import { normal } from '../math/rng.js';
import { checkEmbeddings } from '../math/vector.js';
import { boolParam, checkState, field, intParam, notFitted, numberParam, rejectUnknown } from './params.js';

const NAME = 'mahalanobis';

export interface MahalanobisParams {
  /** Principal components to keep; the effective r is min(components, n − 1, d). */
  components: number;
  /** α in [0, 1): weight of the average eigenvalue in the shrunk spectrum. */
  shrinkage: number;
  /** Add the off-subspace residual term. */
  residual: boolean;
  /** Power iterations of the randomised eigen-solver; 4–6 is plenty for decaying spectra. */
  powerIterations: number;
  /** Extra directions carried through the iteration to make the top r accurate. */
  oversample: number;
}

export const MAHALANOBIS_DEFAULTS: MahalanobisParams = {
  components: 64,
  shrinkage: 0.05,
  residual: true,
  powerIterations: 5,
  oversample: 10,
};

interface Model {
  dim: number;
  mean: Float32Array;
  /** r×d, orthonormal rows. */
  components: Float32Array;
  /** Sample eigenvalues λ_1 ≥ … ≥ λ_r (unshrunk). */
  eigenvalues: number[];
  /** tr Σ: total variance of the baseline. */
  totalVariance: number;
}

export class MahalanobisDetector implements Detector {
  readonly name = NAME;
  readonly version = '1';
  readonly params: MahalanobisParams;
  private model: Model | null = null;
  private shrunk: Float64Array = new Float64Array(0);
  private residualVariance = 0;

  constructor(params: Partial<MahalanobisParams> = {}) {
    rejectUnknown(NAME, params, Object.keys(MAHALANOBIS_DEFAULTS));
    this.params = {
      components: intParam(NAME, params, 'components', MAHALANOBIS_DEFAULTS.components, 1, 4096),
      shrinkage: numberParam(NAME, params, 'shrinkage', MAHALANOBIS_DEFAULTS.shrinkage, 0, 0.999),
      residual: boolParam(NAME, params, 'residual', MAHALANOBIS_DEFAULTS.residual),
      powerIterations: intParam(NAME, params, 'powerIterations', MAHALANOBIS_DEFAULTS.powerIterations, 0, 100),
      oversample: intParam(NAME, params, 'oversample', MAHALANOBIS_DEFAULTS.oversample, 0, 1000),
    };
  }

  /** Kept eigenvalues before shrinkage, largest first. */
  get eigenvalues(): readonly number[] {
    return this.model?.eigenvalues ?? [];
  }

  /** Eigenvalues after shrinkage: the variances the score divides by. */
  get shrunkEigenvalues(): readonly number[] {
    return Array.from(this.shrunk);
  }

  fit(X: readonly Float32Array[], rng: Rng): void {
    const d = checkEmbeddings(X, undefined, NAME);
    const n = X.length;
    if (n < 2) throw new RangeError(`${NAME}: needs at least 2 items, got ${n}`);
    const r = Math.min(this.params.components, n - 1, d);

    const acc = new Float64Array(d);
    for (const x of X) for (let i = 0; i < d; i++) acc[i] += x[i];
    const mean = new Float32Array(d);
    for (let i = 0; i < d; i++) mean[i] = acc[i] / n;
    const xc = new Float32Array(n * d);
    let sumSq = 0;
    for (let row = 0; row < n; row++) {
      const x = X[row];
      for (let i = 0; i < d; i++) {
        const v = x[i] - mean[i];
        xc[row * d + i] = v;
        sumSq += v * v;
      }
    }
    const totalVariance = sumSq / (n - 1);
    const { components, eigenvalues } = topEigen(xc, n, d, r, this.params, rng);
    this.setModel({ dim: d, mean, components, eigenvalues, totalVariance });
  }

  score(X: readonly Float32Array[]): number[] {
    const m = this.model;
    if (!m) throw notFitted(NAME);
    const d = checkEmbeddings(X, m.dim, `${NAME}.score`);
    const r = m.eigenvalues.length;
    const BLOCK = 64;
    const xc = new Float32Array(Math.min(BLOCK, X.length) * d);
    const proj = new Float64Array(Math.min(BLOCK, X.length) * r);
    const out: number[] = [];
    for (let start = 0; start < X.length; start += BLOCK) {
      const rows = Math.min(BLOCK, X.length - start);
      for (let b = 0; b < rows; b++) {
        const x = X[start + b];
        for (let i = 0; i < d; i++) xc[b * d + i] = x[i] - m.mean[i];
      }
      gemmNT(xc, m.components, proj, rows, r, d);
      for (let b = 0; b < rows; b++) {
        let inSub = 0, projSq = 0;
        for (let i = 0; i < r; i++) {
          const p = proj[b * r + i];
          projSq += p * p;
          inSub += (p * p) / this.shrunk[i];
        }
        let s = inSub;
        if (this.params.residual && r < d) {
          let normSq = 0;
          for (let i = 0; i < d; i++) normSq += xc[b * d + i] * xc[b * d + i];
          s += Math.max(0, normSq - projSq) / this.residualVariance;
        }
        out.push(s);
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
        mean: float32ToBase64(m.mean),
        components: float32ToBase64(m.components),
        eigenvalues: m.eigenvalues,
        totalVariance: m.totalVariance,
      },
    };
  }

  static fromJSON(state: DetectorState): MahalanobisDetector {
    const det = new MahalanobisDetector(state.params as Partial<MahalanobisParams>);
    checkState(state, NAME, det.version);
    const s = state.state;
    const dim = field<number>(s, 'dim', 'number', NAME);
    const eigenvalues = s.eigenvalues;
    if (!Array.isArray(eigenvalues) || !eigenvalues.every((v) => typeof v === 'number')) {
      throw new RangeError(`${NAME}: state field "eigenvalues" missing or not a number array`);
    }
    const model: Model = {
      dim,
      mean: base64ToFloat32(field<string>(s, 'mean', 'string', NAME)),
      components: base64ToFloat32(field<string>(s, 'components', 'string', NAME)),
      eigenvalues: eigenvalues as number[],
      totalVariance: field<number>(s, 'totalVariance', 'number', NAME),
    };
    if (model.mean.length !== dim || model.components.length !== eigenvalues.length * dim) {
      throw new RangeError(`${NAME}: array shapes do not match dim=${dim}, r=${eigenvalues.length}`);
    }
    det.setModel(model);
    return det;
  }

  /** Derives the shrunk spectrum; shared by fit and restore so both score identically. */
  private setModel(model: Model): void {
    const { dim: d, eigenvalues, totalVariance } = model;
    const r = eigenvalues.length;
    const alpha = this.params.shrinkage;
    const average = totalVariance / d;
    // Absolute floor for degenerate baselines (duplicates, constant data) so nothing divides by 0.
    const floor = Math.max(average * 1e-6, 1e-12);
    this.shrunk = new Float64Array(r);
    let kept = 0;
    for (let i = 0; i < r; i++) {
      kept += eigenvalues[i];
      this.shrunk[i] = Math.max(floor, (1 - alpha) * eigenvalues[i] + alpha * average);
    }
    const residual = r < d ? Math.max(0, totalVariance - kept) / (d - r) : 0;
    this.residualVariance = Math.max(floor, (1 - alpha) * residual + alpha * average);
    this.model = model;
  }
}

/**
 * Top-r eigenpairs of the sample covariance of the centred rows xc (n×d) by randomised
 * subspace iteration followed by a Rayleigh–Ritz step.
 */
function topEigen(
  xc: Float32Array, n: number, d: number, r: number,
  params: MahalanobisParams, rng: Rng,
): { components: Float32Array; eigenvalues: number[] } {
  const l = Math.min(r + params.oversample, d);
  const xcT = transpose({ rows: n, cols: d, data: xc }).data;
  const fill = () => rng();
  const q = new Float32Array(l * d);
  for (let i = 0; i < q.length; i++) q[i] = normal(rng);
  orthonormaliseRows(q, l, d, fill);

  const a = new Float32Array(n * l);
  const aT = new Float32Array(l * n);
  const transposeA = () => {
    for (let i = 0; i < n; i++) for (let j = 0; j < l; j++) aT[j * n + i] = a[i * l + j];
  };
  for (let it = 0; it < params.powerIterations; it++) {
    gemmNT(xc, q, a, n, l, d); //  A = Xc·Qᵀ       (n×l)
    transposeA();
    gemmNT(aT, xcT, q, l, d, n); // Qᵀ ← Xcᵀ·A      (rows of q: l×d)
    orthonormaliseRows(q, l, d, fill);
  }

  // Rayleigh–Ritz: eigen-decompose Qᵀ·C·Q = (AᵀA)/(n − 1) in the l-dimensional subspace.
  gemmNT(xc, q, a, n, l, d);
  transposeA();
  const small = new Float64Array(l * l);
  gemmNT(aT, aT, small, l, l, n);
  for (let i = 0; i < small.length; i++) small[i] /= n - 1;
  const { values, vectors } = symmetricEigen(small, l);

  const components = new Float32Array(r * d);
  const row = new Float64Array(d);
  for (let i = 0; i < r; i++) {
    row.fill(0);
    for (let j = 0; j < l; j++) {
      const c = vectors[i * l + j];
      for (let t = 0; t < d; t++) row[t] += c * q[j * d + t];
    }
    for (let t = 0; t < d; t++) components[i * d + t] = row[t];
  }
  const eigenvalues: number[] = [];
  for (let i = 0; i < r; i++) eigenvalues.push(Math.max(0, values[i]));
  return { components, eigenvalues };
}
