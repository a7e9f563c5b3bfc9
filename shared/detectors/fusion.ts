// Weighted evidence fusion of the per-signal p-values into one risk and decision.
//
// Why a "surprise scale" rather than averaging per-signal risks: a risk of 1 − p is uniform
// on [0, 1] for clean items, so a weighted mean of five such risks sits near 0.5 for a typical
// clean item, and a large share of clean traffic would cross a 0.4 review line. Instead the
// evidence is combined as T = Σ wᵢ·(−ln pᵢ) / Σ wᵢ (a weighted Fisher statistic: several
// moderately small p-values add up, one tiny p-value dominates), T is itself calibrated on
// held-out legitimate items to a fused p_f, and risk = min(1, −log10(p_f) / 4). The risk then
// reads as a rarity among legitimate items on a log scale:
//   risk 0.4 ≈ 1 in 40, 0.7 ≈ 1 in 630, 1.0 = rarer than 1 in 10,000,
// so the review and block thresholds are false-positive budgets (≈2.5% and ≈0.16% of clean
// items) rather than arbitrary cut-offs.

import type { Decision, SignalName } from '../types.js';
import { SIGNAL_NAMES } from '../types.js';
import { Calibrator, type CalibratorState } from './calibration.js';

/** Default weights: kNN is the most reliable on image embeddings, clusters the coarsest. */
export const DEFAULT_SIGNAL_WEIGHTS: Readonly<Record<SignalName, number>> = Object.freeze({
  isolation_forest: 1,
  autoencoder: 1,
  knn: 1.5,
  mahalanobis: 1,
  cluster: 0.5,
});

export interface Thresholds {
  review: number;
  block: number;
}

export const DEFAULT_THRESHOLDS: Readonly<Thresholds> = Object.freeze({ review: 0.4, block: 0.7 });

/** risk = 1 at p_f = 10^−SURPRISE_DECADES. */
export const SURPRISE_DECADES = 4;

/** Smallest p used in −ln p, so an exactly-zero p cannot make T infinite. */
const P_FLOOR = 1e-300;

export interface SignalEvidence {
  p: number;
  weight: number;
}

export type SignalEvidenceMap = Partial<Record<SignalName, SignalEvidence>>;

export interface FusionResult {
  /** Fused risk on the surprise scale, in [0, 1]. */
  risk: number;
  /** Fused tail probability p_f of the statistic under the baseline. */
  p: number;
  decision: Decision;
  /** Each signal's share of the weighted evidence; sums to 1 (or all 0). */
  shares: Partial<Record<SignalName, number>>;
  /** T = Σ wᵢ·(−ln pᵢ) / Σ wᵢ. */
  statistic: number;
}

export function checkThresholds(t: Thresholds): Thresholds {
  const ok = (v: number) => typeof v === 'number' && v >= 0 && v <= 1;
  if (!ok(t.review) || !ok(t.block)) throw new RangeError(`thresholds must be in [0, 1], got review=${t.review}, block=${t.block}`);
  if (t.review > t.block) throw new RangeError(`review threshold ${t.review} exceeds block threshold ${t.block}`);
  return t;
}

function evidence(p: number, weight: number): number {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`p-value must be in [0, 1], got ${p}`);
  if (!(weight >= 0 && Number.isFinite(weight))) throw new RangeError(`weight must be a finite number ≥ 0, got ${weight}`);
  // max(0, ·) also turns −ln 1 = −0 into +0.
  return weight === 0 ? 0 : weight * Math.max(0, -Math.log(Math.max(p, P_FLOOR)));
}

/** T = Σ wᵢ·(−ln pᵢ) / Σ wᵢ over the signals present; 0 when all weights are 0. */
export function fusedStatistic(signals: SignalEvidenceMap): number {
  let num = 0, den = 0;
  for (const name of SIGNAL_NAMES) {
    const s = signals[name];
    if (!s) continue;
    num += evidence(s.p, s.weight);
    den += s.weight;
  }
  return den > 0 ? num / den : 0;
}

/** shareᵢ = wᵢ·(−ln pᵢ) / Σⱼ wⱼ·(−ln pⱼ); all 0 when there is no evidence at all. */
export function evidenceShares(signals: SignalEvidenceMap): Partial<Record<SignalName, number>> {
  const parts: Partial<Record<SignalName, number>> = {};
  let total = 0;
  for (const name of SIGNAL_NAMES) {
    const s = signals[name];
    if (!s) continue;
    const e = evidence(s.p, s.weight);
    parts[name] = e;
    total += e;
  }
  for (const name of Object.keys(parts) as SignalName[]) parts[name] = total > 0 ? parts[name]! / total : 0;
  return parts;
}

/** min(1, −log10(p) / SURPRISE_DECADES). */
export function surpriseRisk(p: number): number {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`p-value must be in [0, 1], got ${p}`);
  if (p === 0) return 1;
  return Math.min(1, Math.max(0, -Math.log10(p) / SURPRISE_DECADES));
}

export function decide(risk: number, thresholds: Thresholds = DEFAULT_THRESHOLDS): Decision {
  if (risk >= thresholds.block) return 'block';
  if (risk >= thresholds.review) return 'review';
  return 'allow';
}

export function fuse(
  signals: SignalEvidenceMap,
  fusedCalibrator: Calibrator,
  thresholds: Thresholds = DEFAULT_THRESHOLDS,
): FusionResult {
  const statistic = fusedStatistic(signals);
  const p = fusedCalibrator.p(statistic);
  const risk = surpriseRisk(p);
  return { risk, p, decision: decide(risk, thresholds), shares: evidenceShares(signals), statistic };
}

// ---- reference fusion ---------------------------------------------------------------------

/** The IF score above which the reference formula raises its outlier flag. */
export const REFERENCE_IF_OUTLIER_THRESHOLD = 0.6;

export interface ReferenceFusionParams {
  /** Min and max Isolation Forest score over the calibration set, for min–max normalisation. */
  ifMin: number;
  ifMax: number;
  outlierThreshold?: number;
}

/**
 * The SAFE-M-51 mitigation's reference formula, kept as a comparison column:
 * 0.6 × normalised IF score + 0.3 × kNN-distance risk + 0.1 × [IF score > 0.6].
 */
export function referenceFusion(ifScore: number, knnRisk: number, ref: ReferenceFusionParams): number {
  const range = ref.ifMax - ref.ifMin;
  const normalised = range > 0 ? Math.min(1, Math.max(0, (ifScore - ref.ifMin) / range)) : ifScore > ref.ifMax ? 1 : 0;
  const flag = ifScore > (ref.outlierThreshold ?? REFERENCE_IF_OUTLIER_THRESHOLD) ? 1 : 0;
  return 0.6 * normalised + 0.3 * Math.min(1, Math.max(0, knnRisk)) + 0.1 * flag;
}

// ---- the fitted model ---------------------------------------------------------------------

export interface FusionModelState {
  kind: 'parallax.fusion';
  version: 1;
  weights: Partial<Record<SignalName, number>>;
  thresholds: Thresholds;
  calibrator: CalibratorState;
  reference: ReferenceFusionParams | null;
}

/** Weights, thresholds and the calibrator of T, i.e. everything fusion needs at scoring time. */
export class FusionModel {
  constructor(
    readonly weights: Readonly<Partial<Record<SignalName, number>>>,
    readonly calibrator: Calibrator,
    readonly thresholds: Readonly<Thresholds> = DEFAULT_THRESHOLDS,
    readonly reference: ReferenceFusionParams | null = null,
  ) {
    checkThresholds(thresholds);
    for (const [name, w] of Object.entries(weights)) {
      if (!SIGNAL_NAMES.includes(name as SignalName)) throw new RangeError(`FusionModel: unknown signal "${name}"`);
      if (!(typeof w === 'number' && w >= 0 && Number.isFinite(w))) throw new RangeError(`FusionModel: weight of ${name} must be ≥ 0, got ${String(w)}`);
    }
  }

  /** Fuses per-signal p-values; signals without a weight here are ignored. */
  fuse(pValues: Partial<Record<SignalName, number>>): FusionResult {
    return fuse(this.evidence(pValues), this.calibrator, this.thresholds);
  }

  statistic(pValues: Partial<Record<SignalName, number>>): number {
    return fusedStatistic(this.evidence(pValues));
  }

  toJSON(): FusionModelState {
    return {
      kind: 'parallax.fusion',
      version: 1,
      weights: { ...this.weights },
      thresholds: { ...this.thresholds },
      calibrator: this.calibrator.toJSON(),
      reference: this.reference ? { ...this.reference } : null,
    };
  }

  static fromJSON(state: FusionModelState): FusionModel {
    if (state?.kind !== 'parallax.fusion') throw new RangeError('not a fusion model state');
    if (state.version !== 1) throw new RangeError(`fusion model state version ${state.version} is not supported`);
    return new FusionModel(state.weights, Calibrator.fromJSON(state.calibrator), state.thresholds, state.reference);
  }

  private evidence(pValues: Partial<Record<SignalName, number>>): SignalEvidenceMap {
    const out: SignalEvidenceMap = {};
    for (const name of SIGNAL_NAMES) {
      const w = this.weights[name];
      const p = pValues[name];
      if (w === undefined) continue;
      if (p === undefined) throw new RangeError(`FusionModel: missing p-value for ${name}`);
      out[name] = { p, weight: w };
    }
    return out;
  }
}
