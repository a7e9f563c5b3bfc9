// Training orchestration: from baseline embeddings (and, for the expensive signals, per-item
// features) to a calibrated, serialisable detector set.
//
// Calibration must use scores of items the detectors were NOT fitted on (in-sample scores are
// optimistically low, so calibrating on them would flag far too many clean items). With one
// baseline and no separate calibration set, that means cross-fitting:
//   1. split the baseline into K folds; for each fold fit every cheap detector on the other
//      K − 1 folds and score the held-out fold → one out-of-fold (OOF) raw score per item and
//      signal;
//   2. fit each signal's Calibrator on its OOF scores, and give each item per-signal p-values
//      against the OTHER items' scores (leave-one-out);
//   3. the expensive signals have nothing to cross-fit: squeezing is scored from per-squeezer
//      calibrators and the cross-encoder statistic from neighbours, both leave-one-out, and
//      calibrated the same way (items whose features could not be measured are left out);
//   4. the fusion (fusion.ts, TieredFusion) calibrates its fused statistic on those
//      leave-one-out p-values, per subset of signals and per tier policy;
//   5. fit the final cheap detectors on the whole baseline; new items are scored with these.
// The final detectors see (K−1)/K more data than the fold detectors, which if anything makes
// new clean items look slightly more normal than the calibration assumed (conservative).

import type { Decision, SignalName, SignalResult } from '../types.js';
import { SIGNAL_NAMES } from '../types.js';
import { base64ToFloat32, float32ToBase64 } from '../math/base64.js';
import { deriveRng, permutation } from '../math/rng.js';
import { summarise, type Summary } from '../math/stats.js';
import { stackRows } from '../math/matrix.js';
import { checkEmbeddings, normaliseInPlace } from '../math/vector.js';
import { BruteForceIndex, type SearchHit } from '../math/vector-index.js';
import { CALIBRATOR_DEFAULTS, Calibrator, type CalibratorOptions, type CalibratorState } from './calibration.js';
import { CROSS_ENCODER_DEFAULTS, CrossEncoderDetector, type CrossEncoderParams, type CrossEncoderState } from './cross-encoder.js';
import {
  checkThresholds,
  checkTierPolicy,
  DEFAULT_FUSION_METHOD,
  DEFAULT_SIGNAL_WEIGHTS,
  DEFAULT_THRESHOLDS,
  DEFAULT_TIER_BAND,
  FUSION_METHODS,
  referenceFusion,
  TieredFusion,
  type FusionMethod,
  type ReferenceFusionParams,
  type Thresholds,
  type TieredFusionState,
  type TierPolicy,
} from './fusion.js';
import { createEmbeddingDetector, embeddingDetectorFromJSON, type CheapDetectorParamsMap } from './index.js';
import { KnnDetector } from './knn.js';
import { LidDetector } from './lid.js';
import {
  CHEAP_SIGNALS,
  DETECTION_SIGNALS,
  EXPENSIVE_SIGNALS,
  type CheapSignalName,
  type DetectionSignalName,
  type ExpensiveSignalName,
  type TierMode,
} from './signals.js';
import { CROSS_REGRESSION_DEFAULT_RIDGE, CrossRegression, checkRidge, type CrossRegressionState, type SqueezeCrossStatistic } from './cross-regression.js';
import { SQUEEZE_NEIGHBOURS, SqueezeModel, type SqueezeModelState, type SqueezeReference } from './squeeze.js';
import type { EmbeddingDetector, EmbeddingDetectorState } from './types.js';

/**
 * The squeeze_cross statistic by default (see CrossRegression.scoreSqueezed): 'residual'. The
 * 'direction' one measured better on the red-team sets it was chosen with, but on fresh sets
 * no better at 1% FPR and it blocks far fewer attacks (README, Measured).
 */
export const DEFAULT_SQUEEZE_CROSS_STATISTIC: SqueezeCrossStatistic = 'residual';

export const DETECTOR_SET_VERSION = 2;
export const DEFAULT_MIN_SAMPLES = 50;
export const DEFAULT_FOLDS = 4;
export const DEFAULT_SEED = 1;

/** Weights of the signals DEFAULT_SIGNAL_WEIGHTS (the original five) does not cover. */
export const DEFAULT_EXTRA_WEIGHTS: Readonly<Record<'lid' | ExpensiveSignalName, number>> = Object.freeze({
  lid: 1,
  squeeze: 1,
  cross_encoder: 1,
  cross_regression: 1,
  squeeze_cross: 1,
  // Patches land far past every legitimate value; elsewhere the signal is noise (config.ts).
  patch_texture: 0.1,
});

export interface SignalOptions<K extends CheapSignalName = CheapSignalName> {
  /** Default true for the original five, false for LID (so a library caller opts in). */
  enabled?: boolean;
  /** Weight in the fused statistic; 0 keeps the signal visible but out of the decision. */
  weight?: number;
  params?: Partial<CheapDetectorParamsMap[K]>;
}

/** Per-item features of the expensive signals, aligned with the items scored or trained on. */
export interface ItemFeatures {
  /** The item's squeeze distances, in the set's squeeze feature order. */
  squeeze?: ArrayLike<number> | null;
  /** The item's embedding from the cross encoder's secondary model. */
  secondary?: Float32Array | null;
  /** The primary embeddings of the item's squeezed copies that squeeze_cross uses. */
  squeezed?: readonly Float32Array[] | null;
  /** The item's patch-texture statistic (electron/engine/signals/texture.ts). */
  texture?: number | null;
}

export interface ExpensiveSignalOptions {
  enabled?: boolean;
  weight?: number;
  /** When the signal runs for a new item (default 'always'). */
  mode?: TierMode;
}

export interface TrainOptions {
  /** Identifies the embedding model; scoring vectors from another encoder is meaningless. */
  encoderId: string;
  /** Per cheap signal: enabled, weight (default DEFAULT_SIGNAL_WEIGHTS), detector params. */
  signals?: { [K in CheapSignalName]?: SignalOptions<K> };
  /** Transformation consistency: distances of each baseline item (null where unmeasured). */
  squeeze?: ExpensiveSignalOptions & {
    featureNames: readonly string[];
    features: readonly (ArrayLike<number> | null | undefined)[];
    /** Look-alikes an item's squeeze displacement is compared with (default 20). */
    k?: number;
  };
  /** Cross-encoder agreement: each baseline item's secondary embedding (null where missing). */
  crossEncoder?: ExpensiveSignalOptions & {
    encoderId: string;
    embeddings: readonly (Float32Array | null | undefined)[];
    params?: Partial<CrossEncoderParams>;
  };
  /**
   * Cross-encoder regression residual (cross-regression.ts): uses crossEncoder's secondary
   * embeddings, so it trains only when the cross encoder does.
   */
  crossRegression?: ExpensiveSignalOptions & { ridge?: number };
  /**
   * Squeeze towards the cross prediction (CrossRegression.scoreSqueezed): each baseline item's
   * squeezed copies' primary embeddings (null where missing). Trains only when squeeze and
   * cross_regression do.
   */
  squeezeCross?: ExpensiveSignalOptions & {
    squeezed: readonly (readonly Float32Array[] | null | undefined)[];
    /** Which statistic (default DEFAULT_SQUEEZE_CROSS_STATISTIC). */
    statistic?: SqueezeCrossStatistic;
  };
  /**
   * Patch texture: each baseline item's statistic (null where unmeasured). The statistic needs
   * no model, so the signal is its calibration on the baseline.
   */
  patchTexture?: ExpensiveSignalOptions & { values: readonly (number | null | undefined)[] };
  fusion?: { method?: FusionMethod };
  /** The cheap-risk band in which `when_inconclusive` signals run (default 0.1–0.7). */
  tiering?: { band?: Partial<TierPolicy['band']> };
  thresholds?: Partial<Thresholds>;
  /** K of the cross-fitting (default 4). */
  folds?: number;
  seed?: number;
  /** Fewest baseline items accepted (default 50); also the fewest with measured features for an expensive signal. */
  minSamples?: number;
  calibration?: Partial<CalibratorOptions>;
  /** ISO timestamp to record; defaults to now. */
  createdAt?: string;
  onProgress?: (stage: string, fraction: number) => void;
  /** Polled between fits; returning true aborts with TrainingCancelledError. */
  shouldCancel?: () => boolean;
}

export class InsufficientSamplesError extends RangeError {
  constructor(readonly given: number, readonly needed: number) {
    super(`need at least ${needed} baseline embeddings to train detectors, got ${given}`);
    this.name = 'InsufficientSamplesError';
  }
}

export class TrainingCancelledError extends Error {
  constructor() {
    super('detector training was cancelled');
    this.name = 'TrainingCancelledError';
  }
}

export interface DetectorSetParams {
  /** The cheap (embedding-only) signals, canonical order. */
  signals: CheapSignalName[];
  /** Weights of every trained signal, cheap and expensive. */
  weights: Partial<Record<DetectionSignalName, number>>;
  thresholds: Thresholds;
  folds: number;
  seed: number;
  minSamples: number;
  calibration: CalibratorOptions;
  /** Resolved detector parameters (defaults filled in). */
  detectors: Partial<Record<CheapSignalName, Record<string, unknown>>>;
  fusion: { method: FusionMethod };
  tiering: TierPolicy;
  squeeze: { featureNames: string[] } | null;
  crossEncoder: { encoderId: string; params: CrossEncoderParams } | null;
  /** Absent in sets trained before the signal existed. */
  crossRegression?: { ridge: number } | null;
  /**
   * Squeezed copies per item squeeze_cross expects, and its statistic (absent in sets trained
   * before there was a choice: 'residual'). The whole field is absent in sets trained before the signal.
   */
  squeezeCross?: { copies: number; statistic?: SqueezeCrossStatistic } | null;
}

export interface DetectorSetStats {
  n: number;
  dim: number;
  folds: number;
  /** Share of baseline items whose leave-one-out fused risk reaches each threshold, under the trained tier policy. */
  oofFalsePositiveRate: { review: number; block: number };
  /** Summaries of the out-of-fold (cheap) or leave-one-out (expensive) raw scores per signal. */
  signals: Partial<Record<DetectionSignalName, Summary>>;
  /** Summary of the cheap tier's fused statistic over the baseline (leave-one-out p-values). */
  fusedStatistic: Summary;
  /** Expensive signals: baseline items measured, and why a requested one was not trained. */
  expensive: Partial<Record<ExpensiveSignalName, { n: number; trained: boolean; note?: string }>>;
  /** Share of baseline items whose cheap-tier risk falls in the band, i.e. of clean traffic that runs `when_inconclusive` signals. */
  inconclusiveShare: number;
}

/** How the tiers went for one item. */
export interface TierReport {
  /** Fused risk of the cheap tier alone: what `when_inconclusive` looks at. */
  cheap_risk: number;
  /** Expensive signals in the decision. */
  ran: ExpensiveSignalName[];
  /** Trained expensive signals left out of the decision, with the reason. */
  not_run: Partial<Record<ExpensiveSignalName, string>>;
  /** The calibration that produced p (subset of signals; 'gated:' under a gated policy). */
  calibration: string;
}

export interface VerdictScore {
  /** Fused risk on the surprise scale (see fusion.ts). */
  risk: number;
  /** Fused p-value p_f. */
  p: number;
  decision: Decision;
  /** Fused statistic over the signals that ran. */
  statistic: number;
  /** The signals in the decision (expensive ones only when they ran). */
  signals: Partial<Record<DetectionSignalName, SignalResult>>;
  /** The mitigation's reference formula, when Isolation Forest and kNN are both enabled. */
  reference: number | null;
  tier: TierReport;
}

/** What the tier policy wants measured for one item, from its cheap-tier scores. */
export interface TierPlan {
  cheap_risk: number;
  wanted: ExpensiveSignalName[];
}

export interface DetectorSetState {
  kind: 'parallax.detector-set';
  version: number;
  encoderId: string;
  createdAt: string;
  dim: number;
  params: DetectorSetParams;
  detectors: EmbeddingDetectorState[];
  calibrators: Partial<Record<DetectionSignalName, CalibratorState>>;
  fusion: TieredFusionState;
  squeeze: SqueezeModelState | null;
  crossEncoder: CrossEncoderState | null;
  /** Absent in sets trained before the signal existed. */
  crossRegression?: CrossRegressionState | null;
  stats: DetectorSetStats;
  /** Each baseline item's leave-one-out fused risk, in training order (base64 float32). */
  oofRisk: string;
}

export interface ScoreOptions {
  /**
   * For items that are themselves baseline members: their index in the training order, so
   * kNN does not count the item as its own neighbour. null/undefined for outside items.
   */
  baselineIndices?: readonly (number | null | undefined)[];
  /** Per item, the expensive signals' features where measured. */
  features?: readonly (ItemFeatures | null | undefined)[];
  /**
   * Overrides the trained tier policy (modes and/or band). The fused p is calibrated for the
   * policy actually used, so overriding stays honest.
   */
  policy?: { modes?: Partial<Record<ExpensiveSignalName, TierMode>>; band?: TierPolicy['band'] };
}

export class DetectorSet {
  readonly version = DETECTOR_SET_VERSION;

  constructor(
    readonly encoderId: string,
    readonly createdAt: string,
    readonly dim: number,
    readonly params: DetectorSetParams,
    readonly detectors: Partial<Record<CheapSignalName, EmbeddingDetector>>,
    readonly calibrators: Partial<Record<DetectionSignalName, Calibrator>>,
    readonly fusion: TieredFusion,
    readonly squeezeModel: SqueezeModel | null,
    readonly crossEncoder: CrossEncoderDetector | null,
    readonly stats: DetectorSetStats,
    /** Out-of-fold fused risk of each baseline item (training order): baseline hygiene. */
    readonly oofRisk: Float32Array,
    readonly crossRegression: CrossRegression | null = null,
  ) {}

  /** Cheap signals, in canonical order. */
  get signals(): CheapSignalName[] {
    return this.params.signals;
  }

  /** Trained expensive signals, in canonical order. */
  get expensiveSignals(): ExpensiveSignalName[] {
    return this.fusion.expensiveSignals;
  }

  /** Every trained signal, cheap then expensive. */
  get allSignals(): DetectionSignalName[] {
    return [...this.signals, ...this.expensiveSignals];
  }

  /** The squeeze feature names the set expects, in order (null without the squeeze signal). */
  get squeezeFeatureNames(): readonly string[] | null {
    return this.squeezeModel?.features ?? null;
  }

  /** The tier policy in force for `override` (see ScoreOptions.policy). */
  policy(override?: ScoreOptions['policy']): TierPolicy {
    return this.fusion.resolvePolicy(override);
  }

  /**
   * The cheap tier only, and which expensive signals the policy wants for each item: the
   * engine measures exactly those before calling score().
   */
  plan(X: readonly Float32Array[], options: Omit<ScoreOptions, 'features'> = {}): TierPlan[] {
    if (X.length === 0) return [];
    checkEmbeddings(X, this.dim, 'DetectorSet.plan');
    const policy = this.policy(options.policy);
    const cheap = this.cheapPValues(X, options.baselineIndices);
    return cheap.map(({ p }) => {
      const cheapRisk = this.fusion.fuseCheap(p).risk;
      return { cheap_risk: cheapRisk, wanted: this.fusion.wanted(cheapRisk, policy) };
    });
  }

  score(X: readonly Float32Array[], options: ScoreOptions = {}): VerdictScore[] {
    if (X.length === 0) return [];
    checkEmbeddings(X, this.dim, 'DetectorSet.score');
    if (options.features && options.features.length !== X.length) {
      throw new RangeError(`DetectorSet.score: ${options.features.length} feature entries for ${X.length} items`);
    }
    const policy = this.policy(options.policy);
    const cheap = this.cheapPValues(X, options.baselineIndices);
    const expensive = this.expensiveRaw(X, options);
    return X.map((_, i) => {
      const { raw, p: pValues } = cheap[i];
      const cheapRisk = this.fusion.fuseCheap(pValues).risk;
      const wanted = this.fusion.wanted(cheapRisk, policy);
      const ran: ExpensiveSignalName[] = [];
      const notRun: Partial<Record<ExpensiveSignalName, string>> = {};
      for (const name of this.expensiveSignals) {
        const r = expensive[name]?.[i];
        if (!wanted.includes(name)) {
          notRun[name] = policy.modes[name] === 'off'
            ? 'off'
            : `cheap tier conclusive (risk ${cheapRisk.toFixed(3)} outside [${policy.band.low}, ${policy.band.high}))`;
        } else if (r === undefined || r === null) {
          notRun[name] = 'not measured';
        } else {
          raw[name] = r;
          pValues[name] = this.calibrators[name]!.p(r);
          ran.push(name);
        }
      }
      const fused = this.fusion.fuse(pValues, policy);
      const signals: Partial<Record<DetectionSignalName, SignalResult>> = {};
      for (const name of fused.used) {
        const cal = this.calibrators[name]!;
        signals[name] = {
          raw: raw[name]!,
          risk: cal.risk(raw[name]!),
          p: pValues[name]!,
          weight: this.fusion.weights[name] ?? 0,
          share: fused.shares[name as SignalName] ?? 0,
        };
      }
      const ref = this.fusion.reference;
      const reference = ref && signals.isolation_forest && signals.knn
        ? referenceFusion(signals.isolation_forest.raw, signals.knn.risk, ref)
        : null;
      return {
        risk: fused.risk,
        p: fused.p,
        decision: fused.decision,
        statistic: fused.statistic,
        signals,
        reference,
        tier: { cheap_risk: cheapRisk, ran, not_run: notRun, calibration: fused.calibration },
      };
    });
  }

  /** Nearest baseline items (training order) by cosine distance; needs the kNN signal. */
  neighbours(x: ArrayLike<number>, k: number, exclude?: number): SearchHit[] {
    const knn = this.detectors.knn;
    if (!(knn instanceof KnnDetector)) throw new Error('DetectorSet.neighbours: the knn signal is not enabled');
    return knn.neighbours(x, k, exclude);
  }

  toJSON(): DetectorSetState {
    const calibrators: Partial<Record<DetectionSignalName, CalibratorState>> = {};
    for (const name of this.allSignals) calibrators[name] = this.calibrators[name]!.toJSON();
    const knnIndex = this.knnIndex();
    return {
      kind: 'parallax.detector-set',
      version: this.version,
      encoderId: this.encoderId,
      createdAt: this.createdAt,
      dim: this.dim,
      params: cloneParams(this.params),
      detectors: this.signals.map((name) => {
        const det = this.detectors[name]!;
        // LID and the cross encoder search the same baseline vectors as kNN: store them once.
        if (det instanceof LidDetector) return det.toJSON({ omitVectors: knnIndex !== null && det.vectorIndex === knnIndex });
        return det.toJSON();
      }),
      calibrators,
      fusion: this.fusion.toJSON(),
      squeeze: this.squeezeModel?.toJSON() ?? null,
      crossEncoder: this.crossEncoder?.toJSON({ sharePrimary: knnIndex !== null && this.crossEncoder.primaryIndex === knnIndex }) ?? null,
      crossRegression: this.crossRegression?.toJSON() ?? null,
      stats: this.stats,
      oofRisk: float32ToBase64(this.oofRisk),
    };
  }

  private knnIndex(): BruteForceIndex | null {
    const knn = this.detectors.knn;
    return knn instanceof KnnDetector ? (knn.vectorIndex as BruteForceIndex) : null;
  }

  private cheapPValues(
    X: readonly Float32Array[],
    baselineIndices: ScoreOptions['baselineIndices'],
  ): { raw: Partial<Record<DetectionSignalName, number>>; p: Partial<Record<DetectionSignalName, number>> }[] {
    const raw: Partial<Record<CheapSignalName, number[]>> = {};
    for (const name of this.signals) {
      const det = this.detectors[name]!;
      raw[name] = (det instanceof KnnDetector || det instanceof LidDetector) && baselineIndices
        ? det.scoreExcluding(X, baselineIndices)
        : det.score(X);
    }
    return X.map((_, i) => {
      const r: Partial<Record<DetectionSignalName, number>> = {};
      const p: Partial<Record<DetectionSignalName, number>> = {};
      for (const name of this.signals) {
        r[name] = raw[name]![i];
        p[name] = this.calibrators[name]!.p(r[name]!);
      }
      return { raw: r, p };
    });
  }

  /** Raw scores of the expensive signals where features were given (null elsewhere). */
  private expensiveRaw(X: readonly Float32Array[], options: ScoreOptions): Partial<Record<ExpensiveSignalName, (number | null)[]>> {
    const out: Partial<Record<ExpensiveSignalName, (number | null)[]>> = {};
    const features = options.features;
    if (!features) return out;
    const sq = this.squeezeModel;
    if (sq) {
      const idx = features.map((f, i) => (f?.squeeze && (sq.reference === 'primary' || f.secondary) ? i : -1)).filter((i) => i >= 0);
      const self = idx.map((i) => options.baselineIndices?.[i] ?? -1);
      const depth = squeezeSearchDepth(sq, this.stats.n);
      let neighbours: number[][] = [];
      if (idx.length > 0 && sq.reference === 'secondary') {
        neighbours = this.crossEncoder!.secondaryNeighbours(idx.map((i) => features[i]!.secondary!), depth, self);
      } else if (idx.length > 0) {
        const knn = this.knnIndex();
        if (!knn) throw new Error('DetectorSet: the squeeze signal needs the kNN index');
        neighbours = knn.searchMany(idx.map((i) => X[i]), depth, self).map((hits) => hits.map((h) => h.index));
      }
      out.squeeze = X.map(() => null);
      idx.forEach((i, j) => {
        out.squeeze![i] = sq.score(features[i]!.squeeze!, neighbours[j], self[j]);
      });
    }
    const cross = this.crossEncoder;
    const secondaryIdx: number[] = [];
    features.forEach((f, i) => {
      if (f?.secondary) secondaryIdx.push(i);
    });
    const memberPosition = (i: number): number => {
      const b = options.baselineIndices?.[i];
      return b === null || b === undefined || !cross ? -1 : cross.members.indexOf(b);
    };
    const reg = this.crossRegression;
    if (reg) {
      // One prediction per item serves cross_regression and squeeze_cross.
      const idx = secondaryIdx;
      const copies = this.params.squeezeCross?.copies ?? 0;
      const wantCopies = copies > 0 && this.expensiveSignals.includes('squeeze_cross');
      const scores = idx.length > 0
        ? reg.scoreBoth(
          idx.map((i) => X[i]),
          idx.map((i) => features[i]!.secondary!),
          idx.map(memberPosition),
          wantCopies ? idx.map((i) => (features[i]!.squeezed?.length === copies ? features[i]!.squeezed : null)) : null,
          this.params.squeezeCross?.statistic ?? 'residual',
        )
        : { residual: [], squeezeCross: [] };
      out.cross_regression = X.map(() => null);
      if (wantCopies) out.squeeze_cross = X.map(() => null);
      idx.forEach((i, j) => {
        out.cross_regression![i] = scores.residual[j];
        if (wantCopies) out.squeeze_cross![i] = scores.squeezeCross[j];
      });
    }
    if (this.expensiveSignals.includes('patch_texture')) {
      out.patch_texture = features.map((f) => (typeof f?.texture === 'number' && Number.isFinite(f.texture) ? f.texture : null));
    }
    if (cross) {
      const idx = secondaryIdx;
      const scores = idx.length > 0
        ? cross.scoreExcluding(
          idx.map((i) => X[i]),
          idx.map((i) => features[i]!.secondary!),
          idx.map(memberPosition),
        )
        : [];
      out.cross_encoder = X.map(() => null);
      idx.forEach((i, j) => {
        out.cross_encoder![i] = scores[j];
      });
    }
    return out;
  }
}

/** Restores a set from toJSON() output (typically parsed JSON, hence `unknown`). */
export function detectorSetFromJSON(input: unknown): DetectorSet {
  const state = input as DetectorSetState;
  if (typeof state !== 'object' || state === null || state.kind !== 'parallax.detector-set') {
    throw new RangeError('not a detector-set state');
  }
  if (state.version !== DETECTOR_SET_VERSION) {
    throw new RangeError(`detector-set state version ${state.version} is not supported by this build (${DETECTOR_SET_VERSION}); retrain`);
  }
  const detectors: Partial<Record<CheapSignalName, EmbeddingDetector>> = {};
  // kNN first: LID may share its index.
  const ordered = [...state.detectors].sort((a, b) => (a.name === 'knn' ? -1 : b.name === 'knn' ? 1 : 0));
  for (const ds of ordered) {
    const knn = detectors.knn;
    detectors[ds.name] = embeddingDetectorFromJSON(ds, knn instanceof KnnDetector ? (knn.vectorIndex as BruteForceIndex) : undefined);
  }
  const knn = detectors.knn;
  const knnIndex = knn instanceof KnnDetector ? (knn.vectorIndex as BruteForceIndex) : undefined;
  const fusion = TieredFusion.fromJSON(state.fusion);
  const crossEncoder = state.crossEncoder ? CrossEncoderDetector.fromJSON(state.crossEncoder, knnIndex) : null;
  const calibrators: Partial<Record<DetectionSignalName, Calibrator>> = {};
  for (const name of fusion.signals) {
    const cs = state.calibrators[name];
    const hasSource = (CHEAP_SIGNALS as readonly string[]).includes(name)
      ? !!detectors[name as CheapSignalName]
      : name === 'squeeze' ? !!state.squeeze
      : name === 'cross_regression' || name === 'squeeze_cross' ? !!state.crossRegression && !!state.crossEncoder
      : name === 'patch_texture' ? true // the calibrator is the whole model
      : !!state.crossEncoder;
    if (!hasSource || !cs) throw new RangeError(`detector-set state: signal ${name} lacks its detector or calibrator`);
    calibrators[name] = Calibrator.fromJSON(cs);
  }
  const statistic = state.params.squeezeCross?.statistic;
  if (statistic !== undefined && statistic !== 'direction' && statistic !== 'residual') {
    throw new RangeError(`detector-set state: squeeze_cross statistic ${String(statistic)} is not known to this build; retrain`);
  }
  return new DetectorSet(
    state.encoderId,
    state.createdAt,
    state.dim,
    state.params,
    detectors,
    calibrators,
    fusion,
    state.squeeze ? SqueezeModel.fromJSON(state.squeeze) : null,
    crossEncoder,
    state.stats,
    base64ToFloat32(state.oofRisk),
    state.crossRegression && crossEncoder ? CrossRegression.fromJSON(state.crossRegression, crossEncoder.secondaryIndex) : null,
  );
}

/** Trains synchronously (for workers and the CLI). */
export function trainDetectorSet(embeddings: readonly Float32Array[], options: TrainOptions): DetectorSet {
  const steps = trainSteps(embeddings, options);
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
  }
}

/** Trains with a macrotask break between fits, so a UI thread stays responsive and can cancel. */
export async function trainDetectorSetAsync(embeddings: readonly Float32Array[], options: TrainOptions): Promise<DetectorSet> {
  const steps = trainSteps(embeddings, options);
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
    await new Promise<void>((resolve) => globalThis.setTimeout(resolve, 0));
  }
}

/** Rough relative cost of fitting (and scoring) each detector, for progress fractions. */
const FIT_COST: Record<CheapSignalName, number> = {
  isolation_forest: 0.3,
  autoencoder: 10,
  knn: 0.5,
  mahalanobis: 1.5,
  cluster: 1.5,
  lid: 0.5,
};

/** The training pipeline as a generator that yields after each detector fit. */
function* trainSteps(embeddings: readonly Float32Array[], options: TrainOptions): Generator<void, DetectorSet, void> {
  const cfg = resolveOptions(options);
  const n = embeddings.length;
  if (n < cfg.minSamples) throw new InsufficientSamplesError(n, cfg.minSamples);
  const dim = checkEmbeddings(embeddings, undefined, 'baseline');
  if (n < 2 * cfg.folds) throw new InsufficientSamplesError(n, 2 * cfg.folds);
  checkFeatureAlignment(options, n);

  const signals = cfg.signals;
  // Constructing each detector once up front validates every parameter before any work.
  const resolvedParams: Partial<Record<CheapSignalName, Record<string, unknown>>> = {};
  for (const name of signals) {
    const det = createEmbeddingDetector(name, cfg.detectorParams[name]) as unknown as { params: Record<string, unknown> };
    resolvedParams[name] = { ...det.params };
  }
  const crossParams = CrossEncoderDetector.validateParams(options.crossEncoder?.params ?? {});
  const squeezeK = options.squeeze?.k ?? SQUEEZE_NEIGHBOURS;
  if (!(Number.isInteger(squeezeK) && squeezeK >= 1)) throw new RangeError(`trainDetectorSet: squeeze.k must be a positive integer, got ${squeezeK}`);

  const progress = makeProgress(options, signals, cfg.folds);
  const cancelled = () => {
    if (options.shouldCancel?.()) throw new TrainingCancelledError();
  };

  // 1. Cross-fitting: out-of-fold raw scores of the cheap signals.
  const foldOf = new Int32Array(n);
  const order = permutation(n, deriveRng(cfg.seed, 0xf01d));
  for (let j = 0; j < n; j++) foldOf[order[j]] = j % cfg.folds;
  const oof: Partial<Record<DetectionSignalName, Float64Array>> = {};
  for (const name of signals) oof[name] = new Float64Array(n);
  for (let f = 0; f < cfg.folds; f++) {
    const trainX: Float32Array[] = [];
    const testX: Float32Array[] = [];
    const testIdx: number[] = [];
    for (let i = 0; i < n; i++) {
      if (foldOf[i] === f) { testX.push(embeddings[i]); testIdx.push(i); }
      else trainX.push(embeddings[i]);
    }
    for (const name of signals) {
      cancelled();
      progress.start(`fold ${f + 1}/${cfg.folds}: ${name}`);
      const det = createEmbeddingDetector(name, cfg.detectorParams[name]);
      det.fit(trainX, deriveRng(cfg.seed, f + 1, signalSeed(name)));
      const scores = det.score(testX);
      for (let t = 0; t < testIdx.length; t++) oof[name]![testIdx[t]] = scores[t];
      progress.done(name, (cfg.folds - 1) / cfg.folds);
      yield;
    }
  }

  // 2. Per-signal calibrators and leave-one-out p-values of the cheap signals.
  cancelled();
  progress.start('calibrating');
  const calibrators: Partial<Record<DetectionSignalName, Calibrator>> = {};
  const looP: Partial<Record<DetectionSignalName, Float64Array>> = {};
  for (const name of signals) {
    const cal = Calibrator.fit(oof[name]!, cfg.calibration);
    calibrators[name] = cal;
    looP[name] = Float64Array.from(oof[name]!, (v) => cal.pLeaveOneOut(v));
  }

  // 3. Expensive signals, leave-one-out over the items that have their features.
  const expensiveStats: DetectorSetStats['expensive'] = {};
  let squeezeModel: SqueezeModel | null = null;
  let crossEncoder: CrossEncoderDetector | null = null;
  const weights: Partial<Record<DetectionSignalName, number>> = { ...cfg.weights };
  const ce = options.crossEncoder;
  if (ce && ce.enabled !== false && cfg.modes.cross_encoder !== 'off') {
    const have = ce.embeddings.map((e, i) => (e ? i : -1)).filter((i) => i >= 0);
    if (have.length < Math.max(cfg.minSamples, crossParams.k + 1)) {
      expensiveStats.cross_encoder = { n: have.length, trained: false, note: `only ${have.length} baseline items have ${ce.encoderId} embeddings (need ${cfg.minSamples})` };
    } else {
      crossEncoder = CrossEncoderDetector.fit(
        have.map((i) => embeddings[i]),
        have.map((i) => ce.embeddings[i]!),
        have,
        ce.encoderId,
        crossParams,
      );
      const looRaw = crossEncoder.scoreBaselineLeaveOneOut();
      const raw = new Float64Array(n).fill(NaN);
      have.forEach((i, j) => { raw[i] = looRaw[j]; });
      addExpensive('cross_encoder', raw, have);
      expensiveStats.cross_encoder = { n: have.length, trained: true };
    }
    cancelled();
  }
  let crossRegression: CrossRegression | null = null;
  const cr = options.crossRegression;
  if (cr && cr.enabled !== false && cfg.modes.cross_regression !== 'off') {
    if (!crossEncoder) {
      expensiveStats.cross_regression = { n: 0, trained: false, note: 'needs the cross encoder\'s secondary embeddings (cross_encoder not trained)' };
    } else {
      progress.start('cross_regression');
      const members = crossEncoder.members;
      const fitted = CrossRegression.fit(crossEncoder.secondaryIndex, members.map((i) => embeddings[i]), cfg.ridge);
      crossRegression = fitted.model;
      const raw = new Float64Array(n).fill(NaN);
      members.forEach((i, j) => { raw[i] = fitted.looRaw[j]; });
      addExpensive('cross_regression', raw, [...members]);
      expensiveStats.cross_regression = { n: members.length, trained: true };
    }
    cancelled();
    yield;
  }
  const sq = options.squeeze;
  if (sq && sq.enabled !== false && cfg.modes.squeeze !== 'off') {
    // Judged against look-alikes in the secondary space when there is one (see squeeze.ts).
    const reference: SqueezeReference = crossEncoder ? 'secondary' : 'primary';
    const inReference = (i: number) => (crossEncoder ? crossEncoder.members.includes(i) : true);
    const have = sq.features.map((f, i) => (f && inReference(i) ? i : -1)).filter((i) => i >= 0);
    if (have.length < cfg.minSamples || have.length <= squeezeK) {
      expensiveStats.squeeze = { n: have.length, trained: false, note: `only ${have.length} baseline items have squeeze features (need ${cfg.minSamples})` };
    } else {
      squeezeModel = SqueezeModel.fit(sq.featureNames, have, have.map((i) => sq.features[i]!), { k: squeezeK, reference });
      const depth = squeezeSearchDepth(squeezeModel, n);
      const neighbours = reference === 'secondary'
        ? crossEncoder!.secondaryNeighbours(have.map((i) => ce!.embeddings[i]!), depth, have)
        : primaryIndex(embeddings).searchMany(have.map((i) => embeddings[i]), depth, have).map((hits) => hits.map((h) => h.index));
      const raw = new Float64Array(n).fill(NaN);
      have.forEach((i, j) => { raw[i] = squeezeModel!.score(sq.features[i]!, neighbours[j], i); });
      addExpensive('squeeze', raw, have);
      expensiveStats.squeeze = { n: have.length, trained: true };
    }
  }
  let squeezeCrossCopies = 0;
  const sc = options.squeezeCross;
  const squeezeCrossStatistic = sc?.statistic ?? DEFAULT_SQUEEZE_CROSS_STATISTIC;
  if (squeezeCrossStatistic !== 'residual' && squeezeCrossStatistic !== 'direction') {
    throw new RangeError(`trainDetectorSet: squeeze_cross statistic must be residual or direction, got ${String(squeezeCrossStatistic)}`);
  }
  if (sc && sc.enabled !== false && cfg.modes.squeeze_cross !== 'off') {
    if (!crossRegression || !crossEncoder || !squeezeModel) {
      expensiveStats.squeeze_cross = { n: 0, trained: false, note: 'needs squeeze and cross_regression trained' };
    } else {
      const members = crossEncoder.members;
      const copies = sc.squeezed.find((q) => q && q.length > 0)?.length ?? 0;
      const pos = members.map((_, j) => j).filter((j) => {
        const q = sc.squeezed[members[j]];
        return !!q && q.length === copies && copies > 0;
      });
      if (pos.length < cfg.minSamples) {
        expensiveStats.squeeze_cross = { n: pos.length, trained: false, note: `only ${pos.length} baseline items have squeezed embeddings (need ${cfg.minSamples})` };
      } else {
        // Leave-one-out: each member is scored with its own member position (see scoreSqueezed).
        const scores = crossRegression.scoreSqueezed(
          pos.map((j) => embeddings[members[j]]),
          pos.map((j) => sc.squeezed[members[j]]!),
          pos.map((j) => { const ix = crossEncoder!.secondaryIndex; return ix.vectors.subarray(j * ix.dim, (j + 1) * ix.dim); }),
          pos,
          squeezeCrossStatistic,
        );
        const raw = new Float64Array(n).fill(NaN);
        pos.forEach((j, q) => { raw[members[j]] = scores[q]; });
        addExpensive('squeeze_cross', raw, pos.map((j) => members[j]));
        expensiveStats.squeeze_cross = { n: pos.length, trained: true };
        squeezeCrossCopies = copies;
      }
    }
  }
  const pt = options.patchTexture;
  let patchTextureTrained = false;
  if (pt && pt.enabled !== false && cfg.modes.patch_texture !== 'off') {
    if (pt.values.length !== n) throw new RangeError(`trainDetectorSet: ${pt.values.length} patch-texture values for ${n} baseline items`);
    const raw = Float64Array.from(pt.values, (v) => (typeof v === 'number' && Number.isFinite(v) ? v : NaN));
    const have = [...raw.keys()].filter((i) => !Number.isNaN(raw[i]));
    if (have.length < cfg.minSamples) {
      expensiveStats.patch_texture = { n: have.length, trained: false, note: `only ${have.length} baseline items have a patch-texture value (need ${cfg.minSamples})` };
    } else {
      // The statistic is a fixed function of the pixels: a member's own value is already "left out".
      addExpensive('patch_texture', raw, have);
      expensiveStats.patch_texture = { n: have.length, trained: true };
      patchTextureTrained = true;
    }
  }
  function addExpensive(name: ExpensiveSignalName, raw: Float64Array, have: number[]): void {
    const cal = Calibrator.fit(have.map((i) => raw[i]), cfg.calibration);
    calibrators[name] = cal;
    oof[name] = raw;
    looP[name] = Float64Array.from(raw, (v) => (Number.isNaN(v) ? NaN : cal.pLeaveOneOut(v)));
    weights[name] = cfg.expensiveWeights[name];
  }

  // 4. Fusion, calibrated per subset and per policy on the leave-one-out p-values.
  let reference: ReferenceFusionParams | null = null;
  if (oof.isolation_forest && oof.knn) {
    let lo = Infinity, hi = -Infinity;
    for (const v of oof.isolation_forest) { if (v < lo) lo = v; if (v > hi) hi = v; }
    reference = { ifMin: lo, ifMax: hi };
  }
  const trainedModes: TierPolicy['modes'] = {};
  if (squeezeModel) trainedModes.squeeze = cfg.modes.squeeze;
  if (crossEncoder) trainedModes.cross_encoder = cfg.modes.cross_encoder;
  if (crossRegression) trainedModes.cross_regression = cfg.modes.cross_regression;
  if (squeezeCrossCopies > 0) trainedModes.squeeze_cross = cfg.modes.squeeze_cross;
  if (patchTextureTrained) trainedModes.patch_texture = cfg.modes.patch_texture;
  const policy = checkTierPolicy({ modes: trainedModes, band: cfg.band });
  const fusion = new TieredFusion(cfg.method, weights, cfg.thresholds, reference, policy, looP, cfg.calibration);
  const oofRisk = Float32Array.from(fusion.baselineRisk(policy));
  let reviews = 0, blocks = 0, counted = 0;
  for (const risk of oofRisk) {
    if (Number.isNaN(risk)) continue;
    counted++;
    if (risk >= cfg.thresholds.review) reviews++;
    if (risk >= cfg.thresholds.block) blocks++;
  }
  const cheapStats = Float64Array.from({ length: n }, (_, i) => {
    const pv: Partial<Record<DetectionSignalName, number>> = {};
    for (const s of signals) pv[s] = looP[s]![i];
    return fusion.statistic(pv, signals);
  });
  const cheapRisk = fusion.baselineCheapRisk();
  let inBand = 0;
  for (const r of cheapRisk) if (r >= policy.band.low && r < policy.band.high) inBand++;
  const signalSummaries: Partial<Record<DetectionSignalName, Summary>> = {};
  for (const name of fusion.signals) signalSummaries[name] = summarise(Array.from(oof[name]!).filter((v) => !Number.isNaN(v)));
  const stats: DetectorSetStats = {
    n,
    dim,
    folds: cfg.folds,
    oofFalsePositiveRate: { review: reviews / Math.max(1, counted), block: blocks / Math.max(1, counted) },
    signals: signalSummaries,
    fusedStatistic: summarise(cheapStats),
    expensive: expensiveStats,
    inconclusiveShare: inBand / n,
  };
  progress.calibrated();
  yield;

  // 5. Final detectors on the whole baseline.
  const detectors: Partial<Record<CheapSignalName, EmbeddingDetector>> = {};
  for (const name of signals) {
    cancelled();
    progress.start(`final: ${name}`);
    const det = createEmbeddingDetector(name, cfg.detectorParams[name]);
    const knn = detectors.knn;
    // kNN is fitted first (canonical order): LID searches the very same vectors.
    if (det instanceof LidDetector && knn instanceof KnnDetector) det.useIndex(knn.vectorIndex as BruteForceIndex);
    else det.fit(embeddings, deriveRng(cfg.seed, 0, signalSeed(name)));
    detectors[name] = det;
    progress.done(name, 1);
    yield;
  }
  progress.finish();
  // The cross encoder's primary side is the kNN index when it covers every baseline item.
  if (crossEncoder && crossEncoder.size === n && detectors.knn instanceof KnnDetector) {
    crossEncoder = CrossEncoderDetector.fromJSON(crossEncoder.toJSON({ sharePrimary: true }), detectors.knn.vectorIndex as BruteForceIndex);
  }

  const params: DetectorSetParams = {
    signals,
    weights,
    thresholds: cfg.thresholds,
    folds: cfg.folds,
    seed: cfg.seed,
    minSamples: cfg.minSamples,
    calibration: cfg.calibration,
    detectors: resolvedParams,
    fusion: { method: cfg.method },
    tiering: policy,
    squeeze: squeezeModel ? { featureNames: [...squeezeModel.features] } : null,
    crossEncoder: crossEncoder ? { encoderId: crossEncoder.secondaryEncoderId, params: { ...crossEncoder.params } } : null,
    crossRegression: crossRegression ? { ridge: crossRegression.ridge } : null,
    squeezeCross: squeezeCrossCopies > 0 ? { copies: squeezeCrossCopies, statistic: squeezeCrossStatistic } : null,
  };
  return new DetectorSet(
    options.encoderId,
    options.createdAt ?? new Date().toISOString(),
    dim,
    params,
    detectors,
    calibrators,
    fusion,
    squeezeModel,
    crossEncoder,
    stats,
    oofRisk,
    // Re-bound to the (possibly rebuilt, kNN-sharing) cross encoder's secondary index: same vectors.
    crossRegression && crossEncoder ? CrossRegression.fromJSON(crossRegression.toJSON(), crossEncoder.secondaryIndex) : null,
  );
}

/** Seed label of each signal: the original five keep theirs, so their fits are unchanged. */
function signalSeed(name: CheapSignalName): number {
  return name === 'lid' ? SIGNAL_NAMES.length : SIGNAL_NAMES.indexOf(name);
}

/** Neighbours to search so that k squeeze members remain after skipping non-members and self. */
function squeezeSearchDepth(model: SqueezeModel, n: number): number {
  return Math.min(n, model.k + 1 + (n - model.size));
}

/** A search index over the training embeddings, training order (what kNN fits). */
function primaryIndex(embeddings: readonly Float32Array[]): BruteForceIndex {
  const dim = embeddings[0].length;
  const data = stackRows(embeddings, dim).data;
  for (let r = 0; r < embeddings.length; r++) normaliseInPlace(data, r * dim, dim);
  return BruteForceIndex.fromNormalised(data, dim);
}

function checkFeatureAlignment(options: TrainOptions, n: number): void {
  const sq = options.squeeze;
  if (sq) {
    if (sq.features.length !== n) throw new RangeError(`trainDetectorSet: ${sq.features.length} squeeze feature rows for ${n} baseline items`);
    if (sq.featureNames.length === 0) throw new RangeError('trainDetectorSet: squeeze.featureNames is empty');
  }
  const ce = options.crossEncoder;
  if (ce) {
    if (ce.embeddings.length !== n) throw new RangeError(`trainDetectorSet: ${ce.embeddings.length} secondary embeddings for ${n} baseline items`);
    if (!ce.encoderId) throw new RangeError('trainDetectorSet: crossEncoder.encoderId is required');
  }
  const sc = options.squeezeCross;
  if (sc && sc.squeezed.length !== n) throw new RangeError(`trainDetectorSet: ${sc.squeezed.length} squeezed-embedding rows for ${n} baseline items`);
}

interface ResolvedOptions {
  signals: CheapSignalName[];
  weights: Partial<Record<DetectionSignalName, number>>;
  expensiveWeights: Record<ExpensiveSignalName, number>;
  modes: Record<ExpensiveSignalName, TierMode>;
  band: TierPolicy['band'];
  method: FusionMethod;
  detectorParams: Partial<Record<CheapSignalName, Record<string, unknown>>>;
  thresholds: Thresholds;
  folds: number;
  seed: number;
  minSamples: number;
  calibration: CalibratorOptions;
  ridge: number;
}

function resolveOptions(options: TrainOptions): ResolvedOptions {
  if (typeof options?.encoderId !== 'string' || options.encoderId.length === 0) {
    throw new RangeError('trainDetectorSet: encoderId is required');
  }
  const folds = options.folds ?? DEFAULT_FOLDS;
  if (!Number.isInteger(folds) || folds < 2 || folds > 50) throw new RangeError(`trainDetectorSet: folds must be an integer in [2, 50], got ${folds}`);
  const seed = options.seed ?? DEFAULT_SEED;
  if (!Number.isInteger(seed)) throw new RangeError(`trainDetectorSet: seed must be an integer, got ${seed}`);
  const minSamples = options.minSamples ?? DEFAULT_MIN_SAMPLES;
  if (!Number.isInteger(minSamples) || minSamples < 2) throw new RangeError(`trainDetectorSet: minSamples must be an integer ≥ 2, got ${minSamples}`);
  const thresholds = checkThresholds({ ...DEFAULT_THRESHOLDS, ...options.thresholds });
  const checkWeight = (name: string, w: unknown): number => {
    if (!(typeof w === 'number' && w >= 0 && Number.isFinite(w))) throw new RangeError(`trainDetectorSet: weight of ${name} must be ≥ 0, got ${String(w)}`);
    return w;
  };

  const signals: CheapSignalName[] = [];
  const weights: Partial<Record<DetectionSignalName, number>> = {};
  const detectorParams: Partial<Record<CheapSignalName, Record<string, unknown>>> = {};
  for (const name of CHEAP_SIGNALS) {
    const s = options.signals?.[name];
    if (s && typeof s !== 'object') throw new RangeError(`trainDetectorSet: signals.${name} must be an object`);
    const enabledByDefault = name !== 'lid';
    if (!(s?.enabled ?? (enabledByDefault || s !== undefined))) continue;
    const w = checkWeight(name, s?.weight ?? (name === 'lid' ? DEFAULT_EXTRA_WEIGHTS.lid : DEFAULT_SIGNAL_WEIGHTS[name]));
    signals.push(name);
    weights[name] = w;
    detectorParams[name] = { ...(s?.params ?? {}) } as Record<string, unknown>;
  }
  for (const key of Object.keys(options.signals ?? {})) {
    if (!(CHEAP_SIGNALS as readonly string[]).includes(key)) throw new RangeError(`trainDetectorSet: unknown signal "${key}"`);
  }
  if (signals.length === 0) throw new RangeError('trainDetectorSet: every signal is disabled');
  if (!signals.some((name) => weights[name]! > 0)) throw new RangeError('trainDetectorSet: every enabled signal has weight 0, so nothing could raise a risk');
  const expensiveWeights = {
    squeeze: checkWeight('squeeze', options.squeeze?.weight ?? DEFAULT_EXTRA_WEIGHTS.squeeze),
    cross_encoder: checkWeight('cross_encoder', options.crossEncoder?.weight ?? DEFAULT_EXTRA_WEIGHTS.cross_encoder),
    cross_regression: checkWeight('cross_regression', options.crossRegression?.weight ?? DEFAULT_EXTRA_WEIGHTS.cross_regression),
    squeeze_cross: checkWeight('squeeze_cross', options.squeezeCross?.weight ?? DEFAULT_EXTRA_WEIGHTS.squeeze_cross),
    patch_texture: checkWeight('patch_texture', options.patchTexture?.weight ?? DEFAULT_EXTRA_WEIGHTS.patch_texture),
  };
  const modes = {
    squeeze: options.squeeze?.mode ?? 'always',
    cross_encoder: options.crossEncoder?.mode ?? 'always',
    cross_regression: options.crossRegression?.mode ?? 'always',
    squeeze_cross: options.squeezeCross?.mode ?? 'always',
    patch_texture: options.patchTexture?.mode ?? 'always',
  } satisfies Record<ExpensiveSignalName, TierMode>;
  const ridge = checkRidge(options.crossRegression?.ridge ?? CROSS_REGRESSION_DEFAULT_RIDGE);
  const band = { ...DEFAULT_TIER_BAND, ...options.tiering?.band };
  checkTierPolicy({ modes, band });
  const method = options.fusion?.method ?? DEFAULT_FUSION_METHOD;
  if (!FUSION_METHODS.includes(method)) throw new RangeError(`trainDetectorSet: fusion method must be one of ${FUSION_METHODS.join(', ')}, got ${String(method)}`);
  const calibration = { ...CALIBRATOR_DEFAULTS, ...options.calibration };
  // Fitting a throwaway calibrator validates its options before minutes of detector fits.
  Calibrator.fit([0, 1], calibration);
  return { signals, weights, expensiveWeights, modes, band, method, detectorParams, thresholds, folds, seed, minSamples, calibration, ridge };
}

function makeProgress(options: TrainOptions, signals: CheapSignalName[], folds: number) {
  const report = options.onProgress ?? (() => {});
  // Fold fits see (K−1)/K of the data; the final fits all of it.
  const perRound = signals.reduce((s, name) => s + FIT_COST[name], 0);
  const calibrationCost = 0.02 * perRound;
  const total = perRound * ((folds - 1) + 1) + calibrationCost;
  let done = 0;
  return {
    start(stage: string) {
      report(stage, Math.min(1, done / total));
    },
    done(name: CheapSignalName, share: number) {
      done += FIT_COST[name] * share;
    },
    calibrated() {
      done += calibrationCost;
    },
    finish() {
      report('done', 1);
    },
  };
}

function cloneParams(p: DetectorSetParams): DetectorSetParams {
  return JSON.parse(JSON.stringify(p)) as DetectorSetParams;
}

export { CROSS_ENCODER_DEFAULTS, DETECTION_SIGNALS, EXPENSIVE_SIGNALS };
export type { CrossEncoderParams, DetectionSignalName, ExpensiveSignalName, TierMode, TierPolicy };
