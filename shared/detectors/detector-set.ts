// Training orchestration: from baseline embeddings to a calibrated, serialisable detector set.
//
// Calibration must use scores of items the detectors were NOT fitted on (in-sample scores are
// optimistically low, so calibrating on them would flag far too many clean items). With one
// baseline and no separate calibration set, that means cross-fitting:
//   1. split the baseline into K folds; for each fold fit every detector on the other K − 1
//      folds and score the held-out fold → one out-of-fold (OOF) raw score per item and signal;
//   2. fit each signal's Calibrator on its OOF scores;
//   3. give each item per-signal p-values against the OTHER items' OOF scores (leave-one-out),
//      fuse them into T, and fit the fused Calibrator on those T values;
//   4. fit the final detectors on the whole baseline; new items are scored with these.
// The final detectors see (K−1)/K more data than the fold detectors, which if anything makes
// new clean items look slightly more normal than the calibration assumed (conservative).

import type { Decision, Detector, DetectorState, SignalName, SignalResult } from '../types.js';
import { SIGNAL_NAMES } from '../types.js';
import { base64ToFloat32, float32ToBase64 } from '../math/base64.js';
import { deriveRng, permutation } from '../math/rng.js';
import { summarise, type Summary } from '../math/stats.js';
import { checkEmbeddings } from '../math/vector.js';
import type { SearchHit } from '../math/vector-index.js';
import { CALIBRATOR_DEFAULTS, Calibrator, type CalibratorOptions, type CalibratorState } from './calibration.js';
import {
  checkThresholds,
  DEFAULT_SIGNAL_WEIGHTS,
  DEFAULT_THRESHOLDS,
  FusionModel,
  fusedStatistic,
  referenceFusion,
  surpriseRisk,
  type FusionModelState,
  type ReferenceFusionParams,
  type SignalEvidenceMap,
  type Thresholds,
} from './fusion.js';
import { createDetector, detectorFromJSON, type DetectorParamsMap } from './index.js';
import { KnnDetector } from './knn.js';

export const DETECTOR_SET_VERSION = 1;
export const DEFAULT_MIN_SAMPLES = 50;
export const DEFAULT_FOLDS = 4;
export const DEFAULT_SEED = 1;

export interface SignalOptions<K extends SignalName = SignalName> {
  enabled?: boolean;
  /** Weight in the fused statistic; 0 keeps the signal visible but out of the decision. */
  weight?: number;
  params?: Partial<DetectorParamsMap[K]>;
}

export interface TrainOptions {
  /** Identifies the embedding model; scoring vectors from another encoder is meaningless. */
  encoderId: string;
  /** Per signal: enabled (default true), weight (default DEFAULT_SIGNAL_WEIGHTS), detector params. */
  signals?: { [K in SignalName]?: SignalOptions<K> };
  thresholds?: Partial<Thresholds>;
  /** K of the cross-fitting (default 4). */
  folds?: number;
  seed?: number;
  /** Fewest baseline items accepted (default 50). */
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
  signals: SignalName[];
  weights: Partial<Record<SignalName, number>>;
  thresholds: Thresholds;
  folds: number;
  seed: number;
  minSamples: number;
  calibration: CalibratorOptions;
  /** Resolved detector parameters (defaults filled in). */
  detectors: Partial<Record<SignalName, Record<string, unknown>>>;
}

export interface DetectorSetStats {
  n: number;
  dim: number;
  folds: number;
  /** Share of baseline items whose leave-one-out fused risk reaches each threshold. */
  oofFalsePositiveRate: { review: number; block: number };
  /** Summaries of the out-of-fold raw scores per signal. */
  signals: Partial<Record<SignalName, Summary>>;
  /** Summary of the fused statistic T over the baseline (out-of-fold, leave-one-out p-values). */
  fusedStatistic: Summary;
}

export interface VerdictScore {
  /** Fused risk on the surprise scale (see fusion.ts). */
  risk: number;
  /** Fused p-value p_f. */
  p: number;
  decision: Decision;
  /** Fused statistic T. */
  statistic: number;
  signals: Partial<Record<SignalName, SignalResult>>;
  /** The mitigation's reference formula, when Isolation Forest and kNN are both enabled. */
  reference: number | null;
}

export interface DetectorSetState {
  kind: 'parallax.detector-set';
  version: number;
  encoderId: string;
  createdAt: string;
  dim: number;
  params: DetectorSetParams;
  detectors: DetectorState[];
  calibrators: Partial<Record<SignalName, CalibratorState>>;
  fusion: FusionModelState;
  stats: DetectorSetStats;
  /** Each baseline item's out-of-fold fused risk, in training order (base64 float32). */
  oofRisk: string;
}

export interface ScoreOptions {
  /**
   * For items that are themselves baseline members: their index in the training order, so
   * kNN does not count the item as its own neighbour. null/undefined for outside items.
   */
  baselineIndices?: readonly (number | null | undefined)[];
}

export class DetectorSet {
  readonly version = DETECTOR_SET_VERSION;

  constructor(
    readonly encoderId: string,
    readonly createdAt: string,
    readonly dim: number,
    readonly params: DetectorSetParams,
    readonly detectors: Partial<Record<SignalName, Detector>>,
    readonly calibrators: Partial<Record<SignalName, Calibrator>>,
    readonly fusion: FusionModel,
    readonly stats: DetectorSetStats,
    /** Out-of-fold fused risk of each baseline item (training order): baseline hygiene. */
    readonly oofRisk: Float32Array,
  ) {}

  /** Enabled signals, in canonical order. */
  get signals(): SignalName[] {
    return this.params.signals;
  }

  score(X: readonly Float32Array[], options: ScoreOptions = {}): VerdictScore[] {
    if (X.length === 0) return [];
    checkEmbeddings(X, this.dim, 'DetectorSet.score');
    const raw: Partial<Record<SignalName, number[]>> = {};
    for (const name of this.signals) {
      const det = this.detectors[name]!;
      raw[name] = det instanceof KnnDetector && options.baselineIndices
        ? det.scoreExcluding(X, options.baselineIndices)
        : det.score(X);
    }
    return X.map((_, i) => {
      const signals: Partial<Record<SignalName, SignalResult>> = {};
      const pValues: Partial<Record<SignalName, number>> = {};
      for (const name of this.signals) {
        const r = raw[name]![i];
        const cal = this.calibrators[name]!;
        const p = cal.p(r);
        pValues[name] = p;
        signals[name] = { raw: r, risk: cal.risk(r), p, weight: this.fusion.weights[name] ?? 0, share: 0 };
      }
      const fused = this.fusion.fuse(pValues);
      for (const name of this.signals) signals[name]!.share = fused.shares[name] ?? 0;
      const ref = this.fusion.reference;
      const reference = ref && signals.isolation_forest && signals.knn
        ? referenceFusion(signals.isolation_forest.raw, signals.knn.risk, ref)
        : null;
      return { risk: fused.risk, p: fused.p, decision: fused.decision, statistic: fused.statistic, signals, reference };
    });
  }

  /** Nearest baseline items (training order) by cosine distance; needs the kNN signal. */
  neighbours(x: ArrayLike<number>, k: number, exclude?: number): SearchHit[] {
    const knn = this.detectors.knn;
    if (!(knn instanceof KnnDetector)) throw new Error('DetectorSet.neighbours: the knn signal is not enabled');
    return knn.neighbours(x, k, exclude);
  }

  toJSON(): DetectorSetState {
    const calibrators: Partial<Record<SignalName, CalibratorState>> = {};
    for (const name of this.signals) calibrators[name] = this.calibrators[name]!.toJSON();
    return {
      kind: 'parallax.detector-set',
      version: this.version,
      encoderId: this.encoderId,
      createdAt: this.createdAt,
      dim: this.dim,
      params: cloneParams(this.params),
      detectors: this.signals.map((name) => this.detectors[name]!.toJSON()),
      calibrators,
      fusion: this.fusion.toJSON(),
      stats: this.stats,
      oofRisk: float32ToBase64(this.oofRisk),
    };
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
  const detectors: Partial<Record<SignalName, Detector>> = {};
  for (const ds of state.detectors) detectors[ds.name] = detectorFromJSON(ds);
  const calibrators: Partial<Record<SignalName, Calibrator>> = {};
  for (const name of state.params.signals) {
    const cs = state.calibrators[name];
    if (!detectors[name] || !cs) throw new RangeError(`detector-set state: signal ${name} lacks its detector or calibrator`);
    calibrators[name] = Calibrator.fromJSON(cs);
  }
  return new DetectorSet(
    state.encoderId,
    state.createdAt,
    state.dim,
    state.params,
    detectors,
    calibrators,
    FusionModel.fromJSON(state.fusion),
    state.stats,
    base64ToFloat32(state.oofRisk),
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
const FIT_COST: Record<SignalName, number> = {
  isolation_forest: 0.3,
  autoencoder: 10,
  knn: 0.5,
  mahalanobis: 1.5,
  cluster: 1.5,
};

/** The training pipeline as a generator that yields after each detector fit. */
function* trainSteps(embeddings: readonly Float32Array[], options: TrainOptions): Generator<void, DetectorSet, void> {
  const cfg = resolveOptions(options);
  const n = embeddings.length;
  if (n < cfg.minSamples) throw new InsufficientSamplesError(n, cfg.minSamples);
  const dim = checkEmbeddings(embeddings, undefined, 'baseline');
  if (n < 2 * cfg.folds) throw new InsufficientSamplesError(n, 2 * cfg.folds);

  const signals = cfg.signals;
  // Constructing each detector once up front validates every parameter before any work.
  const resolvedParams: Partial<Record<SignalName, Record<string, unknown>>> = {};
  for (const name of signals) {
    const det = createDetector(name, cfg.detectorParams[name] as never) as unknown as { params: Record<string, unknown> };
    resolvedParams[name] = { ...det.params };
  }

  const progress = makeProgress(options, signals, cfg.folds);
  const cancelled = () => {
    if (options.shouldCancel?.()) throw new TrainingCancelledError();
  };

  // 1. Cross-fitting: out-of-fold raw scores.
  const foldOf = new Int32Array(n);
  const order = permutation(n, deriveRng(cfg.seed, 0xf01d));
  for (let j = 0; j < n; j++) foldOf[order[j]] = j % cfg.folds;
  const oof: Partial<Record<SignalName, Float64Array>> = {};
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
      const det = createDetector(name, cfg.detectorParams[name] as never);
      det.fit(trainX, deriveRng(cfg.seed, f + 1, SIGNAL_NAMES.indexOf(name)));
      const scores = det.score(testX);
      for (let t = 0; t < testIdx.length; t++) oof[name]![testIdx[t]] = scores[t];
      progress.done(name, (cfg.folds - 1) / cfg.folds);
      yield;
    }
  }

  // 2–3. Per-signal calibrators, leave-one-out fused statistics, fused calibrator.
  cancelled();
  progress.start('calibrating');
  const calibrators: Partial<Record<SignalName, Calibrator>> = {};
  for (const name of signals) calibrators[name] = Calibrator.fit(oof[name]!, cfg.calibration);
  const statistics = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const ev: SignalEvidenceMap = {};
    for (const name of signals) ev[name] = { p: calibrators[name]!.pLeaveOneOut(oof[name]![i]), weight: cfg.weights[name]! };
    statistics[i] = fusedStatistic(ev);
  }
  const fusedCalibrator = Calibrator.fit(statistics, cfg.calibration);
  const oofRisk = new Float32Array(n);
  let reviews = 0, blocks = 0;
  for (let i = 0; i < n; i++) {
    const risk = surpriseRisk(fusedCalibrator.pLeaveOneOut(statistics[i]));
    oofRisk[i] = risk;
    if (risk >= cfg.thresholds.review) reviews++;
    if (risk >= cfg.thresholds.block) blocks++;
  }
  let reference: ReferenceFusionParams | null = null;
  if (oof.isolation_forest && oof.knn) {
    let lo = Infinity, hi = -Infinity;
    for (const v of oof.isolation_forest) { if (v < lo) lo = v; if (v > hi) hi = v; }
    reference = { ifMin: lo, ifMax: hi };
  }
  const fusion = new FusionModel(cfg.weights, fusedCalibrator, cfg.thresholds, reference);
  const signalSummaries: Partial<Record<SignalName, Summary>> = {};
  for (const name of signals) signalSummaries[name] = summarise(oof[name]!);
  const stats: DetectorSetStats = {
    n,
    dim,
    folds: cfg.folds,
    oofFalsePositiveRate: { review: reviews / n, block: blocks / n },
    signals: signalSummaries,
    fusedStatistic: summarise(statistics),
  };
  progress.calibrated();
  yield;

  // 4. Final detectors on the whole baseline.
  const detectors: Partial<Record<SignalName, Detector>> = {};
  for (const name of signals) {
    cancelled();
    progress.start(`final: ${name}`);
    const det = createDetector(name, cfg.detectorParams[name] as never);
    det.fit(embeddings, deriveRng(cfg.seed, 0, SIGNAL_NAMES.indexOf(name)));
    detectors[name] = det;
    progress.done(name, 1);
    yield;
  }
  progress.finish();

  const params: DetectorSetParams = {
    signals,
    weights: cfg.weights,
    thresholds: cfg.thresholds,
    folds: cfg.folds,
    seed: cfg.seed,
    minSamples: cfg.minSamples,
    calibration: cfg.calibration,
    detectors: resolvedParams,
  };
  return new DetectorSet(
    options.encoderId,
    options.createdAt ?? new Date().toISOString(),
    dim,
    params,
    detectors,
    calibrators,
    fusion,
    stats,
    oofRisk,
  );
}

interface ResolvedOptions {
  signals: SignalName[];
  weights: Partial<Record<SignalName, number>>;
  detectorParams: Partial<Record<SignalName, Record<string, unknown>>>;
  thresholds: Thresholds;
  folds: number;
  seed: number;
  minSamples: number;
  calibration: CalibratorOptions;
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

  const signals: SignalName[] = [];
  const weights: Partial<Record<SignalName, number>> = {};
  const detectorParams: Partial<Record<SignalName, Record<string, unknown>>> = {};
  for (const name of SIGNAL_NAMES) {
    const s = options.signals?.[name];
    if (s && typeof s !== 'object') throw new RangeError(`trainDetectorSet: signals.${name} must be an object`);
    if (s?.enabled === false) continue;
    const w = s?.weight ?? DEFAULT_SIGNAL_WEIGHTS[name];
    if (!(typeof w === 'number' && w >= 0 && Number.isFinite(w))) throw new RangeError(`trainDetectorSet: weight of ${name} must be ≥ 0, got ${String(w)}`);
    signals.push(name);
    weights[name] = w;
    detectorParams[name] = { ...(s?.params ?? {}) } as Record<string, unknown>;
  }
  for (const key of Object.keys(options.signals ?? {})) {
    if (!SIGNAL_NAMES.includes(key as SignalName)) throw new RangeError(`trainDetectorSet: unknown signal "${key}"`);
  }
  if (signals.length === 0) throw new RangeError('trainDetectorSet: every signal is disabled');
  if (!signals.some((name) => weights[name]! > 0)) throw new RangeError('trainDetectorSet: every enabled signal has weight 0, so nothing could raise a risk');
  const calibration = { ...CALIBRATOR_DEFAULTS, ...options.calibration };
  // Fitting a throwaway calibrator validates its options before minutes of detector fits.
  Calibrator.fit([0, 1], calibration);
  return { signals, weights, detectorParams, thresholds, folds, seed, minSamples, calibration };
}

function makeProgress(options: TrainOptions, signals: SignalName[], folds: number) {
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
    done(name: SignalName, share: number) {
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
