// Evidence fusion of the per-signal p-values into one risk and decision.
//
// Why a "surprise scale" rather than averaging per-signal risks: a risk of 1 − p is uniform
// on [0, 1] for clean items, so a weighted mean of five such risks sits near 0.5 for a typical
// clean item, and a large share of clean traffic would cross a 0.4 review line. Instead the
// p-values are combined into one statistic, that statistic is itself calibrated on held-out
// legitimate items to a fused p_f, and risk = min(1, −log10(p_f) / 4). The risk then
// reads as a rarity among legitimate items on a log scale:
//   risk 0.4 ≈ 1 in 40, 0.7 ≈ 1 in 630, 1.0 = rarer than 1 in 10,000,
// so the review and block thresholds are false-positive budgets (≈2.5% and ≈0.16% of clean
// items) rather than arbitrary cut-offs.
//
// Two statistics, and their combination (FusionMethod):
//  - 'fisher': T = Σ wᵢ·(−ln pᵢ) / Σ wᵢ, a weighted Fisher mean. Several moderately small
//    p-values add up, but it dilutes a lone strong signal: one p = 1e−6 among five quiet
//    signals barely moves the mean, and attack-aware signals (squeezing, cross-encoder) tend
//    to fire alone.
//  - 'cauchy' (Liu & Xie 2020, the Cauchy combination test): T = Σ wᵢ·tan((½ − pᵢ)π) / Σ wᵢ,
//    reported as the evidence −ln p_C with p_C = ½ − arctan(T)/π. For small pᵢ,
//    tan((½ − pᵢ)π) ≈ 1/(π pᵢ), so the smallest p dominates (p_C ≈ pᵢ·Σw/wᵢ: a lone strong
//    signal keeps its strength, paying only a Bonferroni-like factor), while several moderate
//    p-values still add up. Its null distribution is insensitive to the strong dependence
//    between our signals, and in any case p_C is calibrated again on the baseline like 'fisher'.
//    pᵢ is capped at CAUCHY_P_CAP: near pᵢ = 1 the tangent runs to −∞ and one very
//    typical-looking signal could veto all the others (capping at 0.5 instead measured the
//    same within one item in 40).
//  - 'omnibus' (the default): both, each calibrated, the more significant kept and
//    calibrated again (see TieredFusion, which also fuses in two levels).
// fuse(), fusedStatistic() and FusionModel below are the original single-level Fisher
// fusion; detector sets use TieredFusion.

import type { Decision, SignalName } from '../types.js';
import { SIGNAL_NAMES } from '../types.js';
import { CALIBRATOR_DEFAULTS, Calibrator, type CalibratorOptions, type CalibratorState } from './calibration.js';
import { base64ToFloat64, float64ToBase64 } from '../math/base64.js';
import {
  CHEAP_SIGNALS,
  DETECTION_SIGNALS,
  EXPENSIVE_SIGNALS,
  isDetectionSignal,
  isExpensive,
  type DetectionSignalName,
  type ExpensiveSignalName,
  type TierMode,
} from './signals.js';

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

// ---- fusion across tiers ------------------------------------------------------------------

export type FusionMethod = 'omnibus' | 'cauchy' | 'fisher';
export const FUSION_METHODS: readonly FusionMethod[] = ['omnibus', 'cauchy', 'fisher'];
export const DEFAULT_FUSION_METHOD: FusionMethod = 'omnibus';

/** See the header: p-values above this are treated as this in the Cauchy combination. */
export const CAUCHY_P_CAP = 0.99;

export type DetectionEvidenceMap = Partial<Record<DetectionSignalName, SignalEvidence>>;

/** tan((½ − p)π), written as 1/tan(πp) below ½ so that p down to 1e−300 keeps its precision. */
function cauchyTransform(p: number): number {
  const q = Math.min(CAUCHY_P_CAP, Math.max(p, P_FLOOR));
  return q < 0.5 ? 1 / Math.tan(Math.PI * q) : Math.tan((0.5 - q) * Math.PI);
}

/**
 * The fused statistic over whichever signals are present, as evidence (larger = more
 * surprising): 'fisher' gives T itself; 'cauchy' gives −ln p_C. 0 when all weights are 0.
 */
export function fusedEvidence(method: Exclude<FusionMethod, 'omnibus'>, signals: DetectionEvidenceMap): number {
  if (method === 'fisher') {
    let num = 0, den = 0;
    for (const name of DETECTION_SIGNALS) {
      const s = signals[name];
      if (!s) continue;
      num += evidence(s.p, s.weight);
      den += s.weight;
    }
    return den > 0 ? num / den : 0;
  }
  let num = 0, den = 0;
  for (const name of DETECTION_SIGNALS) {
    const s = signals[name];
    if (!s) continue;
    evidence(s.p, s.weight); // validates p and weight
    if (s.weight === 0) continue;
    num += s.weight * cauchyTransform(s.p);
    den += s.weight;
  }
  if (den === 0) return 0;
  // p_C = ½ − arctan(T)/π = atan2(1, T)/π, the second form without cancellation for large T.
  return -Math.log(Math.atan2(1, num / den) / Math.PI);
}

/** Shares of −ln p (weighted) over any set of detection signals; as evidenceShares. */
export function detectionEvidenceShares(signals: DetectionEvidenceMap): Partial<Record<DetectionSignalName, number>> {
  const parts: Partial<Record<DetectionSignalName, number>> = {};
  let total = 0;
  for (const name of DETECTION_SIGNALS) {
    const s = signals[name];
    if (!s) continue;
    const e = evidence(s.p, s.weight);
    parts[name] = e;
    total += e;
  }
  for (const name of Object.keys(parts) as DetectionSignalName[]) parts[name] = total > 0 ? parts[name]! / total : 0;
  return parts;
}

/**
 * When each expensive signal runs. A `when_inconclusive` signal runs for an item whose
 * cheap-tier fused risk r has band.low ≤ r < band.high.
 */
export interface TierPolicy {
  modes: Partial<Record<ExpensiveSignalName, TierMode>>;
  band: { low: number; high: number };
}

export const DEFAULT_TIER_BAND: Readonly<TierPolicy['band']> = Object.freeze({ low: 0.1, high: 0.7 });

export function checkTierPolicy(policy: TierPolicy): TierPolicy {
  const { low, high } = policy.band;
  if (!(low >= 0 && low <= 1 && high >= 0 && high <= 1 && low <= high)) {
    throw new RangeError(`tier band must satisfy 0 ≤ low ≤ high ≤ 1, got low=${low}, high=${high}`);
  }
  for (const [name, mode] of Object.entries(policy.modes)) {
    if (!EXPENSIVE_SIGNALS.includes(name as ExpensiveSignalName)) throw new RangeError(`tier policy: "${name}" is not an expensive signal`);
    if (mode !== 'always' && mode !== 'when_inconclusive' && mode !== 'off') throw new RangeError(`tier policy: mode of ${name} must be always, when_inconclusive or off, got ${String(mode)}`);
  }
  return policy;
}

export interface TieredFusionResult extends FusionResult {
  /** The signals the fused statistic ran over, canonical order. */
  used: DetectionSignalName[];
  /** Which calibration produced p: the subset key, prefixed 'gated:' under a gated policy. */
  calibration: string;
}

export interface TieredFusionState {
  kind: 'parallax.tiered-fusion';
  version: 1;
  method: FusionMethod;
  weights: Partial<Record<DetectionSignalName, number>>;
  thresholds: Thresholds;
  reference: ReferenceFusionParams | null;
  policy: TierPolicy;
  calibration: CalibratorOptions;
  n: number;
  /** Each baseline item's leave-one-out p-value per signal (base64 float64; NaN = not measured). */
  looP: Partial<Record<DetectionSignalName, string>>;
}

/**
 * Weight of the cheap tier, as one input of the outer combination (next to the expensive
 * signals' own weights): equal by default, measured best among 0.5–2 on the acceptance split.
 */
export const CHEAP_TIER_WEIGHT = 1;

/** Raw Fisher and Cauchy statistics of one evidence map, the inputs of every method. */
interface RawPair {
  fisher: number;
  cauchy: number;
}

/**
 * Fusion in two levels, when the set of signals varies per item (expensive signals skipped by
 * policy, or a feature that could not be measured), kept honest by calibrating every case on
 * the baseline.
 *
 * Levels. The cheap signals (five statistical detectors and LID, all distances in one
 * embedding space, strongly correlated) are fused and calibrated into one cheap-tier p. The
 * outer level fuses that p with each expensive signal's p. Fusing all eight flat made a lone
 * expensive signal compete with six correlated cheap tails; in two levels it competes with
 * one. Measured on the acceptance split (TPR at 1% FPR, flat omnibus → two levels):
 * targeted PGD 4/255 0.65 → 0.85, FGSM 0.63 → 0.85, SPSA-PGD 8/255 0.88 → 0.95; patch
 * 0.90 → 0.80 (the cheap tier sees patches, and its weight halves in the outer sum);
 * unusual-but-legitimate images sent to review 13% → 5%.
 *
 * Method (each level): 'fisher' and 'cauchy' as in fusedEvidence; 'omnibus' calibrates both
 * on the baseline and takes the more significant, −ln min(p_F, p_C): Fisher wins when several
 * signals are moderately raised (patches), Cauchy when one fires alone (targeted attacks),
 * and the min is calibrated again, so choosing costs at most a factor 2 in p.
 *
 * Calibration.
 *  - For a fixed subset S of signals, the statistic is calibrated on the baseline items that
 *    have every signal of S (their leave-one-out p-values, inner calibrators leave-one-out
 *    too). If every item runs S, that is exactly the right null distribution.
 *  - Under a gated policy (some signal `when_inconclusive`), which subset an item gets depends
 *    on its own cheap-tier risk, so clean items landing in the band are a selected, already
 *    somewhat unusual group, and calibrating each subset unconditionally would under-state
 *    the false-positive rate. So the whole policy is replayed on the baseline: each item's
 *    cheap risk picks its subset S_i, its gated evidence is G_i = −ln p_{S_i}, and G is
 *    calibrated once more. A new item's p is that calibrator's tail probability at its own
 *    G: the share of legitimate items the same policy would have found as surprising.
 *
 * Calibrators are rebuilt from the stored leave-one-out p-values on first use (sorting a few
 * thousand numbers), so any subset or policy, including a scan-time override, can be asked for.
 */
export class TieredFusion {
  private readonly calibratorCache = new Map<string, Calibrator>();
  private readonly innerCache = new Map<string, { fisher: Calibrator; cauchy: Calibrator }>();
  private readonly statsCache = new Map<string, Float64Array>();
  private readonly gatedCache = new Map<string, Calibrator | null>();

  constructor(
    readonly method: FusionMethod,
    readonly weights: Readonly<Partial<Record<DetectionSignalName, number>>>,
    readonly thresholds: Readonly<Thresholds>,
    readonly reference: ReferenceFusionParams | null,
    readonly policy: TierPolicy,
    private readonly looP: Readonly<Partial<Record<DetectionSignalName, Float64Array>>>,
    readonly calibration: CalibratorOptions = CALIBRATOR_DEFAULTS,
  ) {
    if (!FUSION_METHODS.includes(method)) throw new RangeError(`fusion method must be one of ${FUSION_METHODS.join(', ')}, got ${String(method)}`);
    checkThresholds(thresholds);
    checkTierPolicy(policy);
    let n = -1;
    for (const [name, w] of Object.entries(weights)) {
      if (!isDetectionSignal(name)) throw new RangeError(`TieredFusion: unknown signal "${name}"`);
      if (!(typeof w === 'number' && w >= 0 && Number.isFinite(w))) throw new RangeError(`TieredFusion: weight of ${name} must be ≥ 0, got ${String(w)}`);
      const p = looP[name];
      if (!p) throw new RangeError(`TieredFusion: no baseline p-values for ${name}`);
      if (n >= 0 && p.length !== n) throw new RangeError(`TieredFusion: ${name} has ${p.length} baseline p-values, others ${n}`);
      n = p.length;
    }
    if (!this.cheapSignals.length) throw new RangeError('TieredFusion: no cheap signal');
  }

  /** Trained signals, canonical order. */
  get signals(): DetectionSignalName[] {
    return DETECTION_SIGNALS.filter((s) => this.weights[s] !== undefined);
  }

  get cheapSignals(): DetectionSignalName[] {
    return this.signals.filter((s) => (CHEAP_SIGNALS as readonly string[]).includes(s));
  }

  get expensiveSignals(): ExpensiveSignalName[] {
    return EXPENSIVE_SIGNALS.filter((s) => this.weights[s] !== undefined);
  }

  get baselineSize(): number {
    return this.looP[this.cheapSignals[0]]!.length;
  }

  /** The policy actually in force: trained signals only, missing modes 'always'. */
  resolvePolicy(override?: Partial<TierPolicy>): TierPolicy {
    const modes: Partial<Record<ExpensiveSignalName, TierMode>> = {};
    for (const s of this.expensiveSignals) modes[s] = override?.modes?.[s] ?? this.policy.modes[s] ?? 'always';
    return checkTierPolicy({ modes, band: { ...(override?.band ?? this.policy.band) } });
  }

  /** The expensive signals `policy` runs for an item whose cheap-tier risk is `cheapRisk`. */
  wanted(cheapRisk: number, policy: TierPolicy = this.policy): ExpensiveSignalName[] {
    const { low, high } = policy.band;
    const out = this.expensiveSignals.filter((s) => {
      const mode = policy.modes[s] ?? 'always';
      return mode === 'always' || (mode === 'when_inconclusive' && cheapRisk >= low && cheapRisk < high);
    });
    // squeeze_cross reuses the squeezed copies and the secondary embedding: it runs only
    // where squeeze and cross_encoder both run.
    if (out.includes('squeeze_cross') && !(out.includes('squeeze') && out.includes('cross_encoder'))) {
      return out.filter((s) => s !== 'squeeze_cross');
    }
    return out;
  }

  /** The statistic of `subset` for an outside item (the level the subset ends at). */
  statistic(pValues: Partial<Record<DetectionSignalName, number>>, subset: readonly DetectionSignalName[]): number {
    const cheap = this.cheapSignals;
    const cheapStat = this.combine(this.cheapKey(), this.raw(this.evidenceOf(pValues, cheap)), null, () => this.cheapRaw());
    const expensive = subset.filter(isExpensive);
    if (expensive.length === 0) return cheapStat;
    const cheapP = this.subsetCalibrator(cheap).p(cheapStat);
    const outer = this.outerEvidence(cheapP, pValues, expensive);
    return this.combine(`outer:${subsetKey(subset)}`, this.raw(outer), null, () => this.outerRaw(subset));
  }

  /** Fused result of the cheap tier alone (what gating looks at). */
  fuseCheap(pValues: Partial<Record<DetectionSignalName, number>>): TieredFusionResult {
    return this.fuseSubset(pValues, this.cheapSignals, null);
  }

  /**
   * Fuses the signals present in `pValues` (cheap ones required). `policy` says how the
   * expensive ones were chosen: a gated policy gets the replayed calibration described above.
   */
  fuse(pValues: Partial<Record<DetectionSignalName, number>>, policy: TierPolicy = this.policy): TieredFusionResult {
    const used = this.signals.filter((s) => pValues[s] !== undefined);
    for (const s of this.cheapSignals) if (pValues[s] === undefined) throw new RangeError(`TieredFusion: missing p-value for ${s}`);
    return this.fuseSubset(pValues, used, isGated(policy, this.expensiveSignals) ? policy : null);
  }

  /**
   * Each baseline item's leave-one-out fused risk under `policy` (training order). An item
   * whose feature for a wanted signal was never measured is judged without that signal, as
   * a new item would be.
   */
  baselineRisk(policy: TierPolicy = this.policy): Float64Array {
    const n = this.baselineSize;
    const out = new Float64Array(n).fill(NaN);
    if (isGated(policy, this.expensiveSignals)) {
      const g = this.gatedEvidence(policy);
      const cal = this.gatedCalibrator(policy);
      for (let i = 0; i < n; i++) if (cal && !Number.isNaN(g[i])) out[i] = surpriseRisk(cal.pLeaveOneOut(g[i]));
      return out;
    }
    const wanted = this.wanted(0, policy);
    for (let i = 0; i < n; i++) {
      const subset = this.itemSubset(i, wanted);
      const t = this.baselineStatistics(subset)[i];
      if (!Number.isNaN(t)) out[i] = surpriseRisk(this.subsetCalibrator(subset).pLeaveOneOut(t));
    }
    return out;
  }

  /** Each baseline item's leave-one-out risk from the cheap tier alone. */
  baselineCheapRisk(): Float64Array {
    const cheap = this.cheapSignals;
    const cal = this.subsetCalibrator(cheap);
    return Float64Array.from(this.baselineStatistics(cheap), (t) => (Number.isNaN(t) ? NaN : surpriseRisk(cal.pLeaveOneOut(t))));
  }

  toJSON(): TieredFusionState {
    const looP: Partial<Record<DetectionSignalName, string>> = {};
    for (const s of this.signals) looP[s] = float64ToBase64(this.looP[s]!);
    return {
      kind: 'parallax.tiered-fusion',
      version: 1,
      method: this.method,
      weights: { ...this.weights },
      thresholds: { ...this.thresholds },
      reference: this.reference ? { ...this.reference } : null,
      policy: { modes: { ...this.policy.modes }, band: { ...this.policy.band } },
      calibration: { ...this.calibration },
      n: this.baselineSize,
      looP,
    };
  }

  static fromJSON(state: TieredFusionState): TieredFusion {
    if (state?.kind !== 'parallax.tiered-fusion') throw new RangeError('not a tiered-fusion state');
    if (state.version !== 1) throw new RangeError(`tiered-fusion state version ${state.version} is not supported`);
    const looP: Partial<Record<DetectionSignalName, Float64Array>> = {};
    for (const [name, b64] of Object.entries(state.looP)) {
      const values = base64ToFloat64(b64!);
      if (values.length !== state.n) throw new RangeError(`tiered-fusion state: ${name} has ${values.length} p-values, header says ${state.n}`);
      looP[name as DetectionSignalName] = values;
    }
    return new TieredFusion(state.method, state.weights, state.thresholds, state.reference, state.policy, looP, { ...CALIBRATOR_DEFAULTS, ...state.calibration });
  }

  // ---- internals ----

  private fuseSubset(
    pValues: Partial<Record<DetectionSignalName, number>>,
    subset: readonly DetectionSignalName[],
    gated: TierPolicy | null,
  ): TieredFusionResult {
    const statistic = this.statistic(pValues, subset);
    const key = subsetKey(subset);
    let p: number;
    let calibration = key;
    const gatedCal = gated ? this.gatedCalibrator(gated) : null;
    if (gatedCal) {
      p = gatedCal.p(-this.subsetCalibrator(subset).logP(statistic));
      calibration = `gated:${key}`;
    } else {
      p = this.subsetCalibrator(subset).p(statistic);
    }
    const risk = surpriseRisk(p);
    const shares = detectionEvidenceShares(this.evidenceOf(pValues, subset)) as Partial<Record<SignalName, number>>;
    return { risk, p, decision: decide(risk, this.thresholds), shares, statistic, used: [...subset], calibration };
  }

  private evidenceOf(pValues: Partial<Record<DetectionSignalName, number>>, subset: readonly DetectionSignalName[]): DetectionEvidenceMap {
    const ev: DetectionEvidenceMap = {};
    for (const name of subset) {
      const p = pValues[name];
      if (p === undefined) throw new RangeError(`TieredFusion: missing p-value for ${name}`);
      ev[name] = { p, weight: this.weights[name] ?? 0 };
    }
    return ev;
  }

  /**
   * Outer-level evidence: the cheap tier's p, then each expensive signal's. The cheap tier
   * rides in the slot of its first signal (canonical order puts it before the expensive ones;
   * only the p and the weight matter to the combination).
   */
  private outerEvidence(cheapP: number, pValues: Partial<Record<DetectionSignalName, number>>, expensive: readonly ExpensiveSignalName[]): DetectionEvidenceMap {
    const ev: DetectionEvidenceMap = { [this.cheapSignals[0]]: { p: cheapP, weight: CHEAP_TIER_WEIGHT } };
    for (const name of expensive) {
      const p = pValues[name];
      if (p === undefined) throw new RangeError(`TieredFusion: missing p-value for ${name}`);
      ev[name] = { p, weight: this.weights[name] ?? 0 };
    }
    return ev;
  }

  private raw(ev: DetectionEvidenceMap): RawPair {
    return { fisher: fusedEvidence('fisher', ev), cauchy: fusedEvidence('cauchy', ev) };
  }

  /**
   * The method's statistic from a raw pair. `looIndex`: the baseline item this is, whose own
   * value must stay out of the omnibus's inner calibrators. `baseline` gives every baseline
   * item's raw pair for the same level (NaN where incomplete), to fit those calibrators.
   */
  private combine(key: string, raw: RawPair, looIndex: number | null, baseline: () => { fisher: Float64Array; cauchy: Float64Array }): number {
    if (this.method === 'fisher') return raw.fisher;
    if (this.method === 'cauchy') return raw.cauchy;
    let inner = this.innerCache.get(key);
    if (!inner) {
      const b = baseline();
      const fit = (values: Float64Array) => Calibrator.fit(Array.from(values).filter((v) => !Number.isNaN(v)), this.calibration);
      inner = { fisher: fit(b.fisher), cauchy: fit(b.cauchy) };
      this.innerCache.set(key, inner);
    }
    const logP = (cal: Calibrator, v: number) => (looIndex === null ? cal.logP(v) : cal.logPLeaveOneOut(v));
    // + 0 turns −0 (from −ln 1) into 0, which survives a JSON round trip unchanged.
    return Math.max(-logP(inner.fisher, raw.fisher), -logP(inner.cauchy, raw.cauchy)) + 0;
  }

  private cheapKey(): string {
    return `cheap:${subsetKey(this.cheapSignals)}`;
  }

  /** Raw pairs of the cheap level for every baseline item (NaN where a cheap p is missing). */
  private cheapRaw(): { fisher: Float64Array; cauchy: Float64Array } {
    const cheap = this.cheapSignals;
    return this.rawOver((i) => {
      const pv: Partial<Record<DetectionSignalName, number>> = {};
      for (const s of cheap) {
        const p = this.looP[s]![i];
        if (Number.isNaN(p)) return null;
        pv[s] = p;
      }
      return this.evidenceOf(pv, cheap);
    });
  }

  /** Raw pairs of the outer level of `subset` for every baseline item complete for it. */
  private outerRaw(subset: readonly DetectionSignalName[]): { fisher: Float64Array; cauchy: Float64Array } {
    const cheap = this.cheapSignals;
    const cheapStats = this.baselineStatistics(cheap);
    const cheapCal = this.subsetCalibrator(cheap);
    const expensive = subset.filter(isExpensive);
    return this.rawOver((i) => {
      if (Number.isNaN(cheapStats[i])) return null;
      const pv: Partial<Record<DetectionSignalName, number>> = {};
      for (const s of expensive) {
        const p = this.looP[s]![i];
        if (Number.isNaN(p)) return null;
        pv[s] = p;
      }
      return this.outerEvidence(cheapCal.pLeaveOneOut(cheapStats[i]), pv, expensive);
    });
  }

  private rawOver(evidenceAt: (i: number) => DetectionEvidenceMap | null): { fisher: Float64Array; cauchy: Float64Array } {
    const n = this.baselineSize;
    const fisher = new Float64Array(n).fill(NaN);
    const cauchy = new Float64Array(n).fill(NaN);
    for (let i = 0; i < n; i++) {
      const ev = evidenceAt(i);
      if (!ev) continue;
      const r = this.raw(ev);
      fisher[i] = r.fisher;
      cauchy[i] = r.cauchy;
    }
    return { fisher, cauchy };
  }

  /**
   * The statistic of `subset` for every baseline item complete for it (NaN otherwise), every
   * ingredient leave-one-out, as a new item's would be against the full baseline.
   */
  private baselineStatistics(subset: readonly DetectionSignalName[]): Float64Array {
    const key = subsetKey(subset);
    let out = this.statsCache.get(key);
    if (out) return out;
    const expensive = subset.filter(isExpensive);
    const levelKey = expensive.length === 0 ? this.cheapKey() : `outer:${key}`;
    const raw = expensive.length === 0 ? this.cheapRaw() : this.outerRaw(subset);
    out = Float64Array.from(raw.fisher, (f, i) =>
      Number.isNaN(f) ? NaN : this.combine(levelKey, { fisher: f, cauchy: raw.cauchy[i] }, i, () => raw),
    );
    this.statsCache.set(key, out);
    return out;
  }

  private subsetCalibrator(subset: readonly DetectionSignalName[]): Calibrator {
    const key = subsetKey(subset);
    let cal = this.calibratorCache.get(key);
    if (!cal) {
      const values = Array.from(this.baselineStatistics(subset)).filter((v) => !Number.isNaN(v));
      if (values.length === 0) throw new RangeError(`TieredFusion: no baseline item has every signal of ${key}`);
      cal = Calibrator.fit(values, this.calibration);
      this.calibratorCache.set(key, cal);
    }
    return cal;
  }

  /** G_i for every baseline item under a gated policy. */
  private gatedEvidence(policy: TierPolicy): Float64Array {
    const n = this.baselineSize;
    const cheapRisk = this.baselineCheapRisk();
    const out = new Float64Array(n).fill(NaN);
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(cheapRisk[i])) continue;
      const subset = this.itemSubset(i, this.wanted(cheapRisk[i], policy));
      const t = this.baselineStatistics(subset)[i];
      if (!Number.isNaN(t)) out[i] = -this.subsetCalibrator(subset).logPLeaveOneOut(t);
    }
    return out;
  }

  /** The cheap signals plus those of `wanted` measured for baseline item i. */
  private itemSubset(i: number, wanted: readonly ExpensiveSignalName[]): DetectionSignalName[] {
    return [...this.cheapSignals, ...wanted.filter((s) => !Number.isNaN(this.looP[s]![i]))];
  }

  private gatedCalibrator(policy: TierPolicy): Calibrator | null {
    const key = policyKey(policy);
    if (!this.gatedCache.has(key)) {
      const g = Array.from(this.gatedEvidence(policy)).filter((v) => !Number.isNaN(v));
      this.gatedCache.set(key, g.length > 0 ? Calibrator.fit(g, this.calibration) : null);
    }
    return this.gatedCache.get(key)!;
  }
}

function subsetKey(subset: readonly DetectionSignalName[]): string {
  return DETECTION_SIGNALS.filter((s) => subset.includes(s)).join('+');
}

function policyKey(policy: TierPolicy): string {
  const modes = EXPENSIVE_SIGNALS.map((s) => `${s}=${policy.modes[s] ?? 'always'}`).join(',');
  return `${modes};${policy.band.low};${policy.band.high}`;
}

/** True when which signals run depends on the item: some trained signal is when_inconclusive. */
function isGated(policy: TierPolicy, trained: readonly ExpensiveSignalName[]): boolean {
  return trained.some((s) => policy.modes[s] === 'when_inconclusive');
}
