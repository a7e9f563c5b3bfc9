// The Parallax engine: ingest -> encode -> score -> fuse -> record, behind one class that
// the CLI, the MCP server, the HTTP workbench and the tests all drive. It never imports
// `electron`, so everything here runs headless.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { defaultConfigYaml, parseConfig, type ParallaxConfig } from '../../shared/config.js';
import {
  detectorSetFromJSON,
  trainDetectorSet,
  type DetectorSet,
  type ItemFeatures,
  type ScoreOptions,
  type TierReport,
  type TrainOptions,
} from '../../shared/detectors/detector-set.js';
import type { ExpensiveSignalName, TierMode } from '../../shared/detectors/signals.js';
import { BruteForceIndex } from '../../shared/math/vector-index.js';
import type { Decision, Modality, Neighbour, SignalResult } from '../../shared/types.js';
import { CancelledError, mapOrdered, throwIfAborted } from './concurrency.js';
import { CROSS_ENCODER_ARTIFACTS, openCrossEncoder, openImageEncoder, type ImageEncoder } from './encoders/index.js';
import { manifestPathFor, readModelManifest } from './encoders/manifest.js';
import { defaultModelDir } from './encoders/paths.js';
import { decodeImage, IngestError, resizeForEncoder, type IngestLimits } from './ingest/image.js';
import { sniff } from './ingest/sniff.js';
import { walkMedia } from './ingest/walk.js';
import { AudioPath, audioVerdict, foldCheck, type AudioExtra } from './scan-audio.js';
import { OcrPath, ocrDetail, type OcrFinding } from './scan-ocr.js';
import { ClipPath, clipDetail, sidecarCaption, type ClipFinding } from './scan-clip.js';
import { VideoPath, type VideoExtra, type VideoFrameReport } from './scan-video.js';
import type { AudioEncoder } from './audio/index.js';
import { ExpensiveMeasurer, type MeasureItem, type MeasureNeeds } from './signals/measure.js';
import { squeezeParamsOf, type SqueezeParams } from './signals/squeeze.js';
import { Store, type DetectorSetRow } from './store/store.js';
import { ENGINE_VERSION } from './version.js';

export const DEFAULT_BASELINE = 'default';

export type ProgressFn = (p: { stage: string; done: number; total: number; detail?: string }) => void;

export interface ItemError {
  path: string;
  reason: string;
  code: string;
}

export interface ScanItem {
  path: string | null;
  sha256: string;
  modality: Modality;
  decision: Decision;
  risk: number;
  p: number;
  /** The signals in the decision; an expensive signal appears only when it ran (see `tier`). */
  signals: Record<string, SignalResult>;
  neighbours: Neighbour[];
  verdict_id: number;
  duration_ms: number;
  // Optional only so that ScanItems built elsewhere (mocks, older records) still type-check;
  // the engine always fills them.
  /** The mitigation's reference fusion (0.6·IF + 0.3·kNN risk + 0.1·IF flag), for comparison. */
  reference?: number | null;
  /** Which tiers ran, which expensive signals did not and why, and the calibration used. */
  tier?: TierReport;
  /** Only with `allSignals`: every trained signal, including those the policy left out of the decision. */
  all_signals?: Record<string, SignalResult>;
  /** Video: the frames that drove the verdict (sample index, source frame, timestamp, why). */
  frames?: VideoFrameReport[];
  /** What could not be judged and why (e.g. a video's audio track without an audio set). */
  notes?: string[];
  /** With ocr.enabled: the text read in the image and its instruction-likeness (signal ocr_instructions). */
  ocr?: OcrFinding;
}

export interface ScanReport {
  engine: EngineInfo;
  items: ScanItem[];
  errors: ItemError[];
  summary: { allow: number; review: number; block: number; errors: number };
}

export interface EngineInfo {
  version: string;
  encoder_id: string;
  provider: string;
  provider_note: string;
  baseline: string;
  detector_set: { id: number; version: number; created_at: string } | null;
}

export interface BaselineAddReport {
  baseline: string;
  added: number;
  already_present: number;
  total: number;
  errors: ItemError[];
}

export interface TrainReport {
  baseline: string;
  detector_set: { id: number; version: number; n_items: number; encoder_id: string };
  seconds: number;
  stats: unknown;
  /** One entry per modality trained (a baseline with images and audio trains two sets). */
  sets?: { modality: Modality; detector_set: TrainReport['detector_set']; seconds: number }[];
}

export interface EngineOptions {
  dataDir: string;
  /** A config object overrides the data folder's config.yaml. */
  config?: ParallaxConfig;
  /** Folder holding the built ONNX models (default: the package's models/build). */
  modelDir?: string;
}

interface PreparedItem {
  path: string | null;
  sha256: string;
  itemId: number;
  started: number;
  vector?: Float32Array;
  /** Primary encoder input; kept after encoding while the squeeze signal may need it. */
  pixels?: Float32Array;
  /** Secondary (cross-encoder) input, made while the image is decoded anyway. */
  pixels2?: Float32Array;
  /** Original bytes of an in-memory item, so an expensive signal can decode it again. */
  bytes?: Uint8Array;
  /** Store its embedding even with the cache off: baseline items are the training data. */
  persist?: boolean;
  error?: ItemError;
  /** Absent: image. Audio items arrive embedded (by the audio path), with its checks in `audio`. */
  modality?: Modality;
  audio?: AudioExtra;
  video?: VideoExtra;
  ocr?: OcrFinding;
  clip?: ClipFinding;
  notes?: string[];
}

interface LoadedDetectorSet {
  row: DetectorSetRow;
  set: DetectorSet;
  members: { itemId: number; sha256: string; path: string | null }[];
  index: BruteForceIndex;
  expensive: StoredExpensive;
}

/** How the set's expensive signals were measured, so scans measure new items the same way. */
interface StoredExpensive {
  squeeze: SqueezeParams | null;
  crossEncoder: { model: string; encoderId: string } | null;
}

/** What is stored in detector_sets.state (gzip of this JSON). */
interface StoredDetectorSet {
  format: 'parallax.detector-set/1';
  members: { itemId: number; sha256: string; path: string | null }[];
  set: unknown;
  /** Absent in sets stored before the expensive signals existed. */
  expensive?: StoredExpensive;
}

export interface ScanOptions {
  baseline?: string;
  source?: string;
  onProgress?: ProgressFn;
  signal?: AbortSignal;
  /** Per expensive signal, a mode overriding the configuration for this scan (bench, experiments). */
  tiers?: Partial<Record<ExpensiveSignalName, TierMode>>;
  /** Measure every expensive signal for every item and report them all in `all_signals` (eval). */
  allSignals?: boolean;
  /** Text accompanying the images (a caption): judged against them by the CLIP agreement check. */
  text?: string;
}

export class Engine {
  private encoderPromise: Promise<ImageEncoder> | null = null;
  private secondaryPromise: Promise<ImageEncoder> | null = null;
  private secondarySizeCache: { width: number; height: number } | null | undefined = undefined;
  private loadedSets = new Map<Modality, LoadedDetectorSet>();
  /** Audio items: decode, audio encoder, checks beside the embedding (scan-audio.ts). */
  readonly audio: AudioPath;
  /** Video items: frames through the image set, temporal consistency, audio track (scan-video.ts). */
  readonly video: VideoPath;
  /** The OCR signal (opt-in), scan-ocr.ts. */
  readonly ocr: OcrPath;
  /** CLIP image–text agreement (cross_modal.clip_model_dir), scan-clip.ts. */
  readonly clip: ClipPath;

  private constructor(
    readonly dataDir: string,
    readonly config: ParallaxConfig,
    readonly store: Store,
    private readonly modelDir: string | undefined,
  ) {
    this.audio = new AudioPath(store, config.embedding_anomaly_detection);
    this.video = new VideoPath(store, config.embedding_anomaly_detection);
    this.ocr = new OcrPath(config.embedding_anomaly_detection);
    this.clip = new ClipPath(store, config.embedding_anomaly_detection);
  }

  static async open(opts: EngineOptions): Promise<Engine> {
    const dataDir = path.resolve(opts.dataDir);
    fs.mkdirSync(dataDir, { recursive: true });
    const configPath = path.join(dataDir, 'config.yaml');
    let config = opts.config;
    if (!config) {
      if (!fs.existsSync(configPath)) fs.writeFileSync(configPath, defaultConfigYaml());
      config = parseConfig(fs.readFileSync(configPath, 'utf8'), configPath);
    }
    const store = Store.open(path.join(dataDir, 'parallax.db'));
    return new Engine(dataDir, config, store, opts.modelDir);
  }

  private get cfg() {
    return this.config.embedding_anomaly_detection;
  }

  get limits(): IngestLimits {
    return {
      maxFileBytes: Math.round(this.cfg.ingest.max_file_mb * 1024 * 1024),
      maxPixels: this.cfg.ingest.max_pixels,
      decodeTimeoutMs: Math.round(this.cfg.performance.timeout_seconds * 1000),
    };
  }

  /** The encoder is opened on first use: `status` and config checks must not pay for it. */
  encoder(): Promise<ImageEncoder> {
    if (!this.encoderPromise) {
      const m = this.cfg.embedding_model;
      this.encoderPromise = openImageEncoder({
        model: m.name,
        device: m.device,
        batchSize: m.batch_size,
        threads: m.threads,
        modelDir: this.modelDir,
      });
      this.encoderPromise.catch(() => {
        this.encoderPromise = null;
      });
    }
    return this.encoderPromise;
  }

  /** The cross-encoder signal's secondary encoder, opened on first use (it is ~90 MB). */
  secondaryEncoder(): Promise<ImageEncoder> {
    if (!this.secondaryPromise) {
      const m = this.cfg.embedding_model;
      this.secondaryPromise = openCrossEncoder(this.cfg.detection_methods.cross_encoder.model, {
        device: m.device,
        batchSize: m.batch_size,
        threads: m.threads,
        modelDir: this.modelDir,
      });
      this.secondaryPromise.catch(() => {
        this.secondaryPromise = null;
      });
    }
    return this.secondaryPromise;
  }

  async close(): Promise<void> {
    for (const promise of [this.encoderPromise, this.secondaryPromise]) {
      if (!promise) continue;
      const enc = await promise.catch(() => null);
      await enc?.close();
    }
    await this.audio.close();
    await this.ocr.close();
    await this.clip.close();
    this.store.close();
  }

  // ---- expensive signals ------------------------------------------------------------------------

  /** Squeezer parameters from the configuration, or null when the signal is off. */
  private configuredSqueeze(): SqueezeParams | null {
    return squeezeParamsOf(this.cfg.detection_methods.transformation_consistency);
  }

  private crossEncoderEnabled(): boolean {
    return this.cfg.detection_methods.cross_encoder.mode !== 'off';
  }

  /** Input size of the secondary encoder, from its manifest (no session needed). */
  private secondaryInputSize(): { width: number; height: number } | null {
    if (!this.crossEncoderEnabled()) return null;
    if (this.secondarySizeCache !== undefined) return this.secondarySizeCache;
    const artifact = CROSS_ENCODER_ARTIFACTS[this.cfg.detection_methods.cross_encoder.model];
    try {
      const [width, height] = readModelManifest(manifestPathFor(this.modelDir ?? defaultModelDir(), artifact)).input.preprocessing.size;
      this.secondarySizeCache = { width, height };
    } catch {
      this.secondarySizeCache = null;
    }
    return this.secondarySizeCache;
  }

  private patchTextureEnabled(): boolean {
    return this.cfg.detection_methods.patch_texture.mode !== 'off';
  }

  /** Whether encoded items keep their pixels: squeeze re-encodes squeezed copies of them, patch_texture reads them. */
  private keepsPixels(): boolean {
    return this.configuredSqueeze() !== null || this.patchTextureEnabled();
  }

  /** `forBaseline`: baseline features are training data and are stored whatever the cache says. */
  private measurer(squeeze: SqueezeParams | null, cross: boolean, forBaseline = false): ExpensiveMeasurer {
    return new ExpensiveMeasurer(this.store, {
      squeeze,
      secondary: cross ? () => this.secondaryEncoder() : null,
      texture: this.patchTextureEnabled(),
      limits: this.limits,
      persist: forBaseline || this.cfg.performance.cache_embeddings,
    });
  }

  /**
   * Measures (or finds stored) every enabled expensive feature of baseline items. One that
   * fails here is measured again at train time, or left out of that signal's calibration.
   */
  private async measureBaselineItems(items: PreparedItem[], encoder: ImageEncoder): Promise<void> {
    const squeeze = this.configuredSqueeze();
    const cross = this.crossEncoderEnabled();
    const texture = this.patchTextureEnabled();
    const good = items.filter((i) => !i.error && i.vector && !i.modality);
    if ((!squeeze && !cross && !texture) || good.length === 0) return;
    const squeezed = !!squeeze && cross && this.cfg.detection_methods.squeeze_cross.mode !== 'off';
    await this.measurer(squeeze, cross, true).measure(
      good.map(toMeasureItem),
      good.map(() => ({ squeeze: !!squeeze, secondary: cross, squeezed, texture })),
      encoder,
    );
    for (const item of good) {
      item.pixels = undefined;
      item.pixels2 = undefined;
    }
  }

  // ---- baseline -------------------------------------------------------------------------------

  async addToBaseline(
    paths: string[],
    opts: { baseline?: string; onProgress?: ProgressFn; signal?: AbortSignal } = {},
  ): Promise<BaselineAddReport> {
    const baseline = opts.baseline ?? DEFAULT_BASELINE;
    const baselineId = this.store.ensureBaseline(baseline);
    const encoder = await this.encoder();
    const report: BaselineAddReport = { baseline, added: 0, already_present: 0, total: 0, errors: [] };
    for await (const batch of batches(this.embedAll(paths, encoder, 'baseline', opts), 64)) {
      for (const item of batch) {
        if (item.error) {
          report.errors.push(item.error);
          continue;
        }
        if (this.store.addToBaseline(baselineId, item.itemId)) report.added++;
        else report.already_present++;
      }
      // Measured now, while the pixels are at hand, so that training never decodes the baseline.
      await this.measureBaselineItems(batch, encoder);
    }
    report.total = this.store.baselineSize(baselineId);
    this.store.audit('cli', 'baseline.add', baseline, {
      added: report.added,
      already_present: report.already_present,
      errors: report.errors.length,
    });
    return report;
  }

  // ---- training -------------------------------------------------------------------------------

  async train(opts: { baseline?: string; onProgress?: ProgressFn; signal?: AbortSignal } = {}): Promise<TrainReport> {
    const baseline = opts.baseline ?? DEFAULT_BASELINE;
    const b = this.store.findBaseline(baseline);
    if (!b) throw new Error(`baseline '${baseline}' does not exist: add items with 'parallax baseline add <path>'`);
    const counts = this.store.baselineModalityCounts(b.id);
    const audioSet = counts.audio > 0 && this.audio.enabled ? await this.trainAudio(b.id, baseline, opts) : null;
    if (audioSet && counts.image === 0) return { ...audioSet, sets: [{ modality: 'audio', detector_set: audioSet.detector_set, seconds: audioSet.seconds }] };
    const encoder = await this.encoder();
    const rows = this.store.baselineEmbeddings(b.id, encoder.id, 'image');
    const missing = rows.filter((r) => !r.vector);
    if (missing.length > 0) {
      // The encoder changed since these items were added: re-embed from where they were found.
      const files = missing.map((r) => r.path).filter((p): p is string => !!p && fs.existsSync(p));
      for await (const item of this.embedAll(files, encoder, 'baseline', opts)) void item;
    }
    const members: StoredDetectorSet['members'] = [];
    const vectors: Float32Array[] = [];
    for (const r of this.store.baselineEmbeddings(b.id, encoder.id, 'image')) {
      if (!r.vector) continue;
      members.push({ itemId: r.itemId, sha256: r.sha256, path: r.path });
      vectors.push(r.vector);
    }
    const skipped = rows.length - vectors.length;
    const started = performance.now();
    const expensive = await this.baselineFeatures(members, vectors, encoder, opts);
    const set = trainDetectorSet(vectors, {
      ...this.trainOptions(encoder.id),
      ...expensive.options,
      onProgress: (stage: string, fraction: number) =>
        opts.onProgress?.({ stage: `train: ${stage}`, done: Math.round(fraction * 1000), total: 1000 }),
      shouldCancel: () => opts.signal?.aborted ?? false,
    });
    throwIfAborted(opts.signal, 'training');
    const seconds = (performance.now() - started) / 1000;
    const stored: StoredDetectorSet = {
      format: 'parallax.detector-set/1',
      members,
      set: set.toJSON(),
      expensive: {
        squeeze: set.squeezeModel ? expensive.squeeze : null,
        crossEncoder: set.crossEncoder ? { model: this.cfg.detection_methods.cross_encoder.model, encoderId: set.crossEncoder.secondaryEncoderId } : null,
      },
    };
    const stats = { ...set.stats, skipped_without_embedding: skipped, train_seconds: seconds, expensive_notes: expensive.notes };
    if (this.clip.enabled) {
      const c = await this.clip.train(b.id, members.map((m) => m.path), this.limits);
      if ('reason' in c) stats.expensive_notes.push(c.reason);
      else (stats as Record<string, unknown>).clip_agreement = { calibration: c.id, pairs: c.n, auroc: c.auroc };
    }
    const row = this.store.saveDetectorSet({
      baselineId: b.id,
      encoderId: encoder.id,
      nItems: vectors.length,
      config: this.cfg,
      stats,
      state: gzipSync(Buffer.from(JSON.stringify(stored))),
      activate: true,
    });
    this.loadedSets.clear();
    const detectorSet = { id: row.id, version: row.version, n_items: row.n_items, encoder_id: row.encoder_id };
    const videoCal = counts.video > 0 && this.video.enabled ? this.video.train(b.id, encoder.id) : null;
    if (videoCal && 'reason' in videoCal) stats.expensive_notes.push(videoCal.reason);
    return {
      baseline,
      detector_set: detectorSet,
      seconds,
      stats,
      sets: [
        { modality: 'image', detector_set: detectorSet, seconds },
        ...(audioSet ? [{ modality: 'audio' as const, detector_set: audioSet.detector_set, seconds: audioSet.seconds }] : []),
        ...(videoCal && 'id' in videoCal
          ? [{ modality: 'video' as const, detector_set: { id: videoCal.id, version: videoCal.id, n_items: videoCal.n, encoder_id: encoder.id }, seconds: 0 }]
          : []),
      ],
    };
  }

  /** The baseline's audio detector set: the same detectors and calibration, on the audio encoder's vectors. */
  private async trainAudio(baselineId: number, baseline: string, opts: { onProgress?: ProgressFn; signal?: AbortSignal }): Promise<TrainReport> {
    const encoder = await this.audio.encoder();
    const rows = this.store.baselineEmbeddings(baselineId, encoder.id, 'audio');
    const missing = rows.filter((r) => !r.vector).map((r) => r.path).filter((p): p is string => !!p && fs.existsSync(p));
    // Added under another audio encoder: embed again from where the files were found.
    if (missing.length > 0) for await (const item of this.embedAll(missing, null, 'baseline', opts)) void item;
    const members: StoredDetectorSet['members'] = [];
    const vectors: Float32Array[] = [];
    for (const r of this.store.baselineEmbeddings(baselineId, encoder.id, 'audio')) {
      if (!r.vector) continue;
      members.push({ itemId: r.itemId, sha256: r.sha256, path: r.path });
      vectors.push(r.vector);
    }
    const started = performance.now();
    const set = trainDetectorSet(vectors, {
      ...this.trainOptions(encoder.id),
      onProgress: (stage: string, fraction: number) =>
        opts.onProgress?.({ stage: `train audio: ${stage}`, done: Math.round(fraction * 1000), total: 1000 }),
      shouldCancel: () => opts.signal?.aborted ?? false,
    });
    throwIfAborted(opts.signal, 'training');
    const seconds = (performance.now() - started) / 1000;
    const stored: StoredDetectorSet = { format: 'parallax.detector-set/1', members, set: set.toJSON(), expensive: { squeeze: null, crossEncoder: null } };
    const stats = { ...set.stats, modality: 'audio', skipped_without_embedding: rows.length - vectors.length, train_seconds: seconds };
    const row = this.store.saveDetectorSet({
      baselineId,
      encoderId: encoder.id,
      nItems: vectors.length,
      config: this.cfg,
      stats,
      state: gzipSync(Buffer.from(JSON.stringify(stored))),
      activate: true,
      modality: 'audio',
    });
    this.loadedSets.clear();
    return { baseline, detector_set: { id: row.id, version: row.version, n_items: row.n_items, encoder_id: row.encoder_id }, seconds, stats };
  }

  /**
   * The baseline's expensive features for training: stored ones, plus any missing measured
   * now from the files the items were found in (baselines added before the signal existed,
   * or after a configuration change). Items that cannot be measured are left out of that
   * signal's calibration, and `notes` says how many.
   */
  private async baselineFeatures(
    members: StoredDetectorSet['members'],
    vectors: Float32Array[],
    encoder: ImageEncoder,
    opts: { onProgress?: ProgressFn; signal?: AbortSignal },
  ): Promise<{ options: Pick<TrainOptions, 'squeeze' | 'crossEncoder' | 'crossRegression' | 'squeezeCross' | 'patchTexture'>; squeeze: SqueezeParams | null; notes: string[] }> {
    const squeeze = this.configuredSqueeze();
    const notes: string[] = [];
    let secondaryId: string | null = null;
    if (this.crossEncoderEnabled()) {
      try {
        secondaryId = (await this.secondaryEncoder()).id;
      } catch (err) {
        notes.push(`cross_encoder not trained: ${describeError(err)}`);
      }
    }
    const texture = this.patchTextureEnabled();
    if (!squeeze && !secondaryId && !texture) return { options: {}, squeeze, notes };
    const measurer = this.measurer(squeeze, !!secondaryId, true);
    const features: ItemFeatures[] = members.map((m) => measurer.cached(m, encoder.id, secondaryId));
    // squeeze_cross needs the squeezed copies' embeddings (kept since that signal exists).
    const wantSqueezed = !!squeeze && !!secondaryId && this.cfg.detection_methods.squeeze_cross.mode !== 'off' && !!measurer.squeezedIds(encoder.id);
    const missing = members
      .map((_, i) => i)
      .filter((i) => (squeeze && !features[i].squeeze) || (secondaryId && !features[i].secondary) || (wantSqueezed && !features[i].squeezed) || (texture && features[i].texture == null));
    const CHUNK = 32;
    let failed = 0;
    for (let start = 0; start < missing.length; start += CHUNK) {
      throwIfAborted(opts.signal, 'training');
      opts.onProgress?.({ stage: 'measure baseline', done: start, total: missing.length });
      const chunk = missing.slice(start, start + CHUNK);
      const items: MeasureItem[] = chunk.map((i) => ({ ...members[i], vector: vectors[i] }));
      const needs: MeasureNeeds[] = chunk.map((i) => ({
        squeeze: !!squeeze && !features[i].squeeze,
        secondary: !!secondaryId && !features[i].secondary,
        squeezed: wantSqueezed && !features[i].squeezed,
        texture: texture && features[i].texture == null,
      }));
      const measured = await measurer.measure(items, needs, encoder);
      chunk.forEach((i, j) => {
        features[i] = {
          squeeze: features[i].squeeze ?? measured.features[j].squeeze,
          secondary: features[i].secondary ?? measured.features[j].secondary,
          squeezed: features[i].squeezed ?? measured.features[j].squeezed,
          texture: features[i].texture ?? measured.features[j].texture,
        };
        if (measured.notes[j]) failed++;
      });
    }
    if (failed > 0) notes.push(`${failed} baseline items could not be measured for the expensive signals (files moved or changed); they are left out of those signals' calibration`);
    const m = this.cfg.detection_methods;
    const options: Pick<TrainOptions, 'squeeze' | 'crossEncoder' | 'crossRegression' | 'squeezeCross' | 'patchTexture'> = {};
    if (squeeze) {
      options.squeeze = {
        mode: m.transformation_consistency.mode,
        weight: m.transformation_consistency.weight,
        k: m.transformation_consistency.k,
        featureNames: measurer.squeezeNames!,
        features: features.map((f) => f.squeeze ?? null),
      };
    }
    if (secondaryId) {
      options.crossEncoder = {
        mode: m.cross_encoder.mode,
        weight: m.cross_encoder.weight,
        encoderId: secondaryId,
        params: { k: m.cross_encoder.k },
        embeddings: features.map((f) => f.secondary ?? null),
      };
      options.crossRegression = {
        enabled: m.cross_regression.mode !== 'off',
        mode: m.cross_regression.mode,
        weight: m.cross_regression.weight,
        ridge: m.cross_regression.ridge,
      };
    }
    if (wantSqueezed) {
      options.squeezeCross = {
        mode: m.squeeze_cross.mode,
        weight: m.squeeze_cross.weight,
        statistic: m.squeeze_cross.statistic,
        squeezed: features.map((f) => f.squeezed ?? null),
      };
    }
    if (texture) {
      options.patchTexture = {
        mode: m.patch_texture.mode,
        weight: m.patch_texture.weight,
        values: features.map((f) => f.texture ?? null),
      };
    }
    return { options, squeeze, notes };
  }

  private trainOptions(encoderId: string): TrainOptions {
    const m = this.cfg.detection_methods;
    return {
      encoderId,
      minSamples: this.cfg.baseline.min_samples,
      folds: this.cfg.baseline.calibration_folds,
      seed: this.cfg.baseline.seed,
      thresholds: { block: this.cfg.thresholds.block, review: this.cfg.thresholds.review },
      signals: {
        isolation_forest: {
          enabled: m.isolation_forest.enabled,
          weight: m.isolation_forest.weight,
          params: { trees: m.isolation_forest.n_estimators, sampleSize: m.isolation_forest.max_samples },
        },
        autoencoder: {
          enabled: m.autoencoder.enabled,
          weight: m.autoencoder.weight,
          params: {
            hidden: m.autoencoder.latent_dim,
            epochs: m.autoencoder.training_epochs,
            learningRate: m.autoencoder.learning_rate,
          },
        },
        knn: { enabled: m.knn.enabled, weight: m.knn.weight, params: { k: m.knn.k } },
        mahalanobis: {
          enabled: m.mahalanobis.enabled,
          weight: m.mahalanobis.weight,
          params: { components: m.mahalanobis.components },
        },
        cluster: { enabled: m.cluster.enabled, weight: m.cluster.weight, params: { k: m.cluster.n_clusters } },
        lid: { enabled: m.lid.enabled, weight: m.lid.weight, params: { k: m.lid.k } },
      },
      fusion: { method: this.cfg.fusion.method },
      tiering: { band: { low: this.cfg.tiering.inconclusive_low, high: this.cfg.tiering.inconclusive_high } },
    };
  }

  /** The configured tier modes, plus a scan's own overrides. */
  private tierPolicy(overrides: ScanOptions['tiers'] = {}): NonNullable<ScoreOptions['policy']> {
    const m = this.cfg.detection_methods;
    return {
      modes: {
        squeeze: overrides.squeeze ?? m.transformation_consistency.mode,
        cross_encoder: overrides.cross_encoder ?? m.cross_encoder.mode,
        cross_regression: overrides.cross_regression ?? m.cross_regression.mode,
        squeeze_cross: overrides.squeeze_cross ?? m.squeeze_cross.mode,
        patch_texture: overrides.patch_texture ?? m.patch_texture.mode,
      },
      band: { low: this.cfg.tiering.inconclusive_low, high: this.cfg.tiering.inconclusive_high },
    };
  }

  private activeSet(baseline: string, modality: Modality = 'image'): LoadedDetectorSet {
    const b = this.store.findBaseline(baseline);
    if (!b) throw new Error(`baseline '${baseline}' does not exist: add items with 'parallax baseline add <path>'`);
    const row = this.store.activeDetectorSet(b.id, modality);
    if (!row) {
      throw new Error(
        modality === 'image'
          ? `baseline '${baseline}' has no trained detector set: run 'parallax train'`
          : `baseline '${baseline}' has no trained ${modality} detector set: add ${modality} items with 'parallax baseline add <path>' and run 'parallax train'`,
      );
    }
    const cached = this.loadedSets.get(modality);
    if (cached?.row.id === row.id) return cached;
    const stored = JSON.parse(gunzipSync(this.store.detectorSetState(row.id)).toString('utf8')) as StoredDetectorSet;
    if (stored.format !== 'parallax.detector-set/1') {
      throw new Error(`detector set ${row.id} has unknown format '${String(stored.format)}'`);
    }
    const set = detectorSetFromJSON(stored.set);
    const vectors = this.store.baselineEmbeddings(b.id, row.encoder_id);
    const byItem = new Map(vectors.map((v) => [v.itemId, v.vector]));
    const dim = vectors.find((v) => v.vector)?.vector?.length ?? 1;
    const index = new BruteForceIndex(dim, stored.members.length);
    for (const m of stored.members) {
      const v = byItem.get(m.itemId);
      if (v) index.add(v);
      else throw new Error(`detector set ${row.id}: baseline item ${m.sha256} has lost its embedding; retrain`);
    }
    const loaded = { row, set, members: stored.members, index, expensive: stored.expensive ?? { squeeze: null, crossEncoder: null } };
    this.loadedSets.set(modality, loaded);
    return loaded;
  }

  // ---- scanning -------------------------------------------------------------------------------

  async scan(paths: string[], opts: ScanOptions = {}): Promise<ScanReport> {
    const baseline = opts.baseline ?? DEFAULT_BASELINE;
    // An audio-only baseline has no image set (and the reverse): each modality's set is
    // looked up when one of its items turns up, and an item without one is an item error.
    const sets = this.scanSets(baseline);
    const loaded = sets.image;
    const encoder = await this.encoder();
    if (loaded) this.assertEncoderMatches(loaded, encoder);
    const report: ScanReport = {
      engine: this.engineInfo(baseline, loaded || !sets.audio ? encoder : await this.audio.encoder(), (loaded ?? sets.audio)?.row),
      items: [],
      errors: [],
      summary: { allow: 0, review: 0, block: 0, errors: 0 },
    };
    for await (const batch of batches(this.embedAll(paths, encoder, opts.source ?? 'cli', opts), 64)) {
      const good = batch.filter((b) => !b.error && b.vector);
      for (const bad of batch) if (bad.error) report.errors.push(bad.error);
      await this.attachClip(good, baseline, opts.text);
      const items = await this.scoreByModality(good, sets, encoder, opts.source ?? 'cli', opts, report.errors);
      for (const it of items) {
        report.items.push(it);
        report.summary[it.decision]++;
      }
    }
    report.summary.errors = report.errors.length;
    return report;
  }

  /** The active set of each modality, or null where the baseline has none (an error only if every one is missing). */
  private scanSets(baseline: string): Record<'image' | 'audio', LoadedDetectorSet | null> {
    const b = this.store.findBaseline(baseline);
    const image = b && this.store.activeDetectorSet(b.id, 'image') ? this.activeSet(baseline, 'image') : null;
    const audio = b && this.audio.enabled && this.store.activeDetectorSet(b.id, 'audio') ? this.activeSet(baseline, 'audio') : null;
    if (!image && !audio) this.activeSet(baseline); // throws the usual error
    return { image, audio };
  }

  /** Scores a batch per modality with that modality's set, keeping the batch order. */
  private async scoreByModality(
    items: PreparedItem[],
    sets: Record<'image' | 'audio', LoadedDetectorSet | null>,
    encoder: ImageEncoder,
    source: string,
    opts: Pick<ScanOptions, 'tiers' | 'allSignals'>,
    errors: ItemError[],
  ): Promise<ScanItem[]> {
    const out = new Map<PreparedItem, ScanItem>();
    const videos = items.filter((i) => i.modality === 'video');
    if (videos.length > 0) {
      if (!sets.image) {
        for (const i of videos) errors.push({ path: i.path ?? '<bytes>', reason: "baseline has no trained image detector set: video frames are judged by it ('parallax baseline add' photos, then 'parallax train')", code: 'no_detector_set' });
      } else for (const v of videos) out.set(v, await this.scoreVideo(v, sets.image, sets.audio, encoder, source));
    }
    for (const modality of ['image', 'audio'] as const) {
      const mine = items.filter((i) => (i.modality ?? 'image') === modality);
      if (mine.length === 0) continue;
      const loaded = sets[modality];
      if (!loaded) {
        const why = `baseline has no trained ${modality} detector set: add ${modality} items with 'parallax baseline add' and run 'parallax train'`;
        for (const i of mine) errors.push({ path: i.path ?? '<bytes>', reason: why, code: 'no_detector_set' });
        continue;
      }
      const enc = modality === 'audio' ? await this.audio.encoder() : encoder;
      if (modality === 'audio' && loaded.row.encoder_id !== enc.id) {
        const why = `the audio detector set was trained with encoder ${loaded.row.encoder_id} but the configured audio encoder is ${enc.id}: run 'parallax train' again`;
        for (const i of mine) errors.push({ path: i.path ?? '<bytes>', reason: why, code: 'encoder_mismatch' });
        continue;
      }
      const scored = await this.scoreAndRecord(mine, loaded, enc, source, opts);
      mine.forEach((m, k) => out.set(m, scored[k]));
    }
    return items.filter((i) => out.has(i)).map((i) => out.get(i)!);
  }

  /** Scan one in-memory item (MCP content, upload). Errors are returned, not thrown. */
  async scanBytes(
    bytes: Uint8Array,
    opts: { name?: string; baseline?: string; source?: string; tiers?: ScanOptions['tiers']; text?: string } = {},
  ): Promise<ScanItem | ItemError> {
    const baseline = opts.baseline ?? DEFAULT_BASELINE;
    const started = performance.now();
    if (this.audio.enabled && sniff(bytes.subarray(0, 8192)).modality === 'audio') {
      const b = this.store.findBaseline(baseline);
      if (!b || !this.store.activeDetectorSet(b.id, 'audio')) {
        const why = `baseline '${baseline}' has no trained audio detector set: add audio items with 'parallax baseline add' and run 'parallax train'`;
        return { path: opts.name ?? '<bytes>', reason: why, code: 'no_detector_set' };
      }
      const sets = { image: null, audio: this.activeSet(baseline, 'audio') };
      const prepared = await this.prepareBytes(bytes, opts.name ?? null, started, null, opts.source ?? 'api');
      if (prepared.error) return prepared.error;
      const errors: ItemError[] = [];
      const [item] = await this.scoreByModality([prepared], sets, null as unknown as ImageEncoder, opts.source ?? 'api', {}, errors);
      return item ?? errors[0];
    }
    const loaded = this.activeSet(baseline);
    const encoder = await this.encoder();
    this.assertEncoderMatches(loaded, encoder);
    const prepared = await this.prepareBytes(bytes, opts.name ?? null, started, encoder, opts.source ?? 'api');
    if (prepared.error) return prepared.error;
    const [done] = await this.encodePending([prepared], encoder);
    if (done.error) return done.error;
    done.bytes = bytes;
    await this.attachClip([done], baseline, opts.text);
    if (done.modality === 'video') {
      const b = this.store.findBaseline(baseline)!;
      const audioSet = this.audio.enabled && this.store.activeDetectorSet(b.id, 'audio') ? this.activeSet(baseline, 'audio') : null;
      return this.scoreVideo(done, loaded, audioSet, encoder, opts.source ?? 'api');
    }
    return (await this.scoreAndRecord([done], loaded, encoder, opts.source ?? 'api', { tiers: opts.tiers }))[0];
  }

  /** One verdict per video (scan-video.ts), recorded against the image set its frames were judged by. */
  private async scoreVideo(item: PreparedItem, loaded: LoadedDetectorSet, audioSet: LoadedDetectorSet | null, encoder: ImageEncoder, source: string): Promise<ScanItem> {
    const audioEnc = audioSet ? await this.audio.encoder() : null;
    const temporal = this.video.temporalModel(loaded.row.baseline_id, encoder.id);
    const audio = audioSet && audioEnc && audioSet.row.encoder_id === audioEnc.id ? { set: audioSet.set, encoder: audioEnc } : null;
    const { score: s, frames, notes } = await this.video.score(item.video!, loaded.set, encoder.id, temporal, audio);
    const k = this.cfg.scan.neighbours;
    const neighbours = nearestMembers(loaded, item.vector!, k);
    const durationMs = performance.now() - item.started;
    const signals = s.signals as Record<string, SignalResult>;
    const verdictId = this.store.recordVerdict({
      itemId: item.itemId, detectorSetId: loaded.row.id, encoderId: encoder.id, provider: encoder.provider, engineVersion: ENGINE_VERSION,
      risk: s.risk, p: s.p, decision: s.decision, signals, neighbours, source, path: item.path, durationMs,
    });
    return {
      path: item.path, sha256: item.sha256, modality: 'video', decision: s.decision, risk: s.risk, p: s.p, signals, neighbours,
      verdict_id: verdictId, duration_ms: round(durationMs, 2), reference: null, tier: s.tier, frames, notes,
    };
  }

  /** CLIP agreement for image items that come with text (the scan's, else a sidecar caption). */
  private async attachClip(items: PreparedItem[], baseline: string, text: string | undefined): Promise<void> {
    if (!this.clip.enabled) return;
    const b = this.store.findBaseline(baseline);
    for (const item of items) {
      if (item.modality || !b) continue;
      const caption = text ?? sidecarCaption(item.path);
      if (!caption) {
        (item.notes ??= []).push('clip_agreement not run: no text accompanies the item');
        continue;
      }
      try {
        const bytes = item.bytes ?? new Uint8Array(await fs.promises.readFile(item.path!));
        const r = await this.clip.judge(b.id, bytes, caption, this.limits);
        if ('note' in r) (item.notes ??= []).push(r.note);
        else item.clip = r;
      } catch (err) {
        (item.notes ??= []).push(`clip_agreement not run: ${describeError(err)}`);
      }
    }
  }

  private assertEncoderMatches(loaded: LoadedDetectorSet, encoder: ImageEncoder): void {
    if (loaded.row.encoder_id !== encoder.id) {
      throw new Error(
        `the active detector set was trained with encoder ${loaded.row.encoder_id} but the configured encoder is ${encoder.id}: run 'parallax train' again`,
      );
    }
  }

  /**
   * Scores a batch: the cheap tier first, then whichever expensive signals the tier policy
   * wants for each item (measured, or found stored), then the fused verdict, recorded.
   */
  private async scoreAndRecord(
    items: PreparedItem[],
    loaded: LoadedDetectorSet,
    encoder: ImageEncoder | AudioEncoder,
    source: string,
    opts: Pick<ScanOptions, 'tiers' | 'allSignals'> = {},
  ): Promise<ScanItem[]> {
    if (items.length === 0) return [];
    const { set } = loaded;
    const vectors = items.map((i) => i.vector!);
    const policy = this.tierPolicy(opts.tiers);
    const wanted = opts.allSignals
      ? items.map(() => set.expensiveSignals)
      : set.plan(vectors, { policy }).map((p) => p.wanted);
    // Audio sets have no expensive signals, so nothing is measured with the (image) encoder.
    const features = await this.measureForScan(items, wanted, loaded, encoder as ImageEncoder);
    const scores = set.score(vectors, { features, policy });
    const everything = opts.allSignals
      ? set.score(vectors, { features, policy: { modes: Object.fromEntries(set.expensiveSignals.map((name) => [name, 'always' as const])) } })
      : null;
    const k = this.cfg.scan.neighbours;
    const out: ScanItem[] = [];
    this.store.transaction(() => {
      items.forEach((item, i) => {
        let s = item.modality === 'audio' ? audioVerdict(scores[i], item.audio, this.cfg.thresholds) : scores[i];
        if (item.ocr) s = foldCheck(s, 'ocr_instructions', item.ocr.score, this.ocr.thresholds, ocrDetail(item.ocr));
        if (item.clip) s = foldCheck(s, 'clip_agreement', item.clip.value, this.cfg.thresholds, clipDetail(item.clip));
        const neighbours = nearestMembers(loaded, item.vector!, k);
        const durationMs = performance.now() - item.started;
        const signals = s.signals as Record<string, SignalResult>;
        const verdictId = this.store.recordVerdict({
          itemId: item.itemId,
          detectorSetId: loaded.row.id,
          encoderId: encoder.id,
          provider: encoder.provider,
          engineVersion: ENGINE_VERSION,
          risk: s.risk,
          p: s.p,
          decision: s.decision,
          signals,
          neighbours,
          source,
          path: item.path,
          durationMs,
        });
        const scanItem: ScanItem = {
          path: item.path,
          sha256: item.sha256,
          modality: item.modality ?? 'image',
          decision: s.decision,
          risk: s.risk,
          p: s.p,
          signals,
          neighbours,
          verdict_id: verdictId,
          duration_ms: round(durationMs, 2),
          reference: s.reference,
          tier: s.tier,
        };
        if (everything) scanItem.all_signals = everything[i].signals as Record<string, SignalResult>;
        if (item.notes) scanItem.notes = item.notes;
        if (item.ocr) {
          scanItem.ocr = item.ocr;
          if (scanItem.all_signals) scanItem.all_signals.ocr_instructions = signals.ocr_instructions;
        }
        out.push(scanItem);
        item.pixels = undefined;
        item.pixels2 = undefined;
      });
    });
    return out;
  }

  /** The expensive features `wanted` asks for, measured the way the set was trained. */
  private async measureForScan(
    items: PreparedItem[],
    wanted: readonly ExpensiveSignalName[][],
    loaded: LoadedDetectorSet,
    encoder: ImageEncoder,
  ): Promise<ItemFeatures[]> {
    const { squeeze, crossEncoder } = loaded.expensive;
    // The squeeze signal judges an item against its look-alikes in the secondary space.
    const squeezeNeedsSecondary = loaded.set.squeezeModel?.reference === 'secondary';
    const needs: MeasureNeeds[] = wanted.map((w) => ({
      squeeze: !!squeeze && w.includes('squeeze'),
      secondary: !!crossEncoder && (w.includes('cross_encoder') || w.includes('cross_regression') || w.includes('squeeze_cross') || (squeezeNeedsSecondary && w.includes('squeeze'))),
      squeezed: !!squeeze && w.includes('squeeze_cross'),
      texture: w.includes('patch_texture'),
    }));
    if (!needs.some((n) => n.squeeze || n.secondary || n.texture)) return items.map(() => ({}));
    const measurer = this.measurer(squeeze, !!crossEncoder);
    const { features } = await measurer.measure(items.map(toMeasureItem), needs, encoder);
    // A secondary encoder other than the one the set was trained with measures another space.
    if (crossEncoder && needs.some((n) => n.secondary)) {
      const secondary = await this.secondaryEncoder().catch(() => null);
      if (secondary?.id !== crossEncoder.encoderId) for (const f of features) f.secondary = null;
    }
    return features;
  }

  // ---- ingest + encode pipeline -------------------------------------------------------------

  /**
   * Walks `paths`, decodes, embeds (reusing cached embeddings) and yields every item in
   * order, errors included. Decoding of the next items overlaps with encoding of the
   * current batch.
   */
  private async *embedAll(
    paths: string[],
    encoder: ImageEncoder | null,
    source: string,
    opts: { onProgress?: ProgressFn; signal?: AbortSignal },
  ): AsyncGenerator<PreparedItem> {
    const files: { path: string; error?: string }[] = [];
    for await (const entry of walkMedia(paths)) files.push(entry);
    const total = files.length;
    const batchSize = this.cfg.embedding_model.batch_size;
    let done = 0;
    opts.onProgress?.({ stage: 'embed', done, total });
    const prepared = mapOrdered(files, batchSize * 2, async (f): Promise<PreparedItem> => {
      const started = performance.now();
      if (f.error) return errorItem(f.path, started, f.error, 'unreadable');
      return this.prepareFile(f.path, started, encoder, source);
    });
    let pending: PreparedItem[] = [];
    const flush = async function* (this: Engine): AsyncGenerator<PreparedItem> {
      const encoded = await this.encodePending(pending, encoder);
      pending = [];
      for (const item of encoded) {
        done++;
        opts.onProgress?.({ stage: 'embed', done, total, detail: item.path ?? undefined });
        yield item;
      }
    };
    for await (const item of prepared) {
      if (opts.signal?.aborted) throw new CancelledError('embedding');
      pending.push(item);
      if (pending.filter((p) => p.pixels).length >= batchSize) yield* flush.call(this);
    }
    if (pending.length > 0) yield* flush.call(this);
  }

  private async prepareFile(file: string, started: number, encoder: ImageEncoder | null, source: string): Promise<PreparedItem> {
    try {
      const stat = await fs.promises.stat(file);
      if (stat.size > this.limits.maxFileBytes) {
        throw new IngestError(
          'too_large',
          `file is ${formatBytes(stat.size)}, over the ${formatBytes(this.limits.maxFileBytes)} limit`,
        );
      }
      const bytes = await fs.promises.readFile(file);
      return await this.prepareBytes(bytes, file, started, encoder, source);
    } catch (err) {
      return errorItem(file, started, describeError(err), errorCode(err));
    }
  }

  private async prepareBytes(
    bytes: Uint8Array,
    name: string | null,
    started: number,
    encoder: ImageEncoder | null,
    source: string,
  ): Promise<PreparedItem> {
    const label = name ?? '<bytes>';
    try {
      if (bytes.byteLength > this.limits.maxFileBytes) {
        throw new IngestError(
          'too_large',
          `item is ${formatBytes(bytes.byteLength)}, over the ${formatBytes(this.limits.maxFileBytes)} limit`,
        );
      }
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      // Routing by content: audio goes to the audio path (its own encoder, embedded here).
      if (this.audio.enabled && sniff(bytes.subarray(0, 8192)).modality === 'audio') {
        const a = await this.audio.prepare(bytes, sha256, name, source, this.limits.maxFileBytes, {
          cache: this.cfg.performance.cache_embeddings,
          ttlFor: (id) => this.cacheTtlFor(id),
        });
        return { path: name, sha256, itemId: a.itemId, started, vector: a.vector, modality: 'audio', audio: a.extra };
      }
      if (!encoder) throw new IngestError('unsupported_type', 'not an audio item (the image encoder is not open here)');
      if (this.video.enabled && sniff(bytes.subarray(0, 8192)).modality === 'video') {
        const v = await this.video.prepare(bytes, encoder, this.audio, this.limits.maxFileBytes);
        const row = this.store.upsertItem({ sha256, modality: 'video', mime: v.mime, width: v.width, height: v.height, bytes: bytes.byteLength, path: name }, source);
        this.video.saveSeries(row.id, encoder.id, v.extra.series);
        return { path: name, sha256, itemId: row.id, started, vector: v.vector, modality: 'video', video: v.extra };
      }
      // OCR runs on scanned images only (its score is not calibrated on the baseline).
      const wantOcr = this.ocr.enabled && source !== 'baseline';
      const known = this.store.itemBySha(sha256);
      if (known && this.cfg.performance.cache_embeddings) {
        const cached = this.store.cachedEmbedding(known.id, encoder.id, this.cacheTtlFor(known.id));
        if (cached) {
          this.store.upsertItem(
            {
              sha256,
              modality: known.modality,
              mime: known.mime,
              width: known.width,
              height: known.height,
              bytes: known.bytes,
              path: name,
            },
            source,
          );
          const ocr = wantOcr ? await this.ocr.analyse(bytes, this.limits) : undefined;
          return { path: name, sha256, itemId: known.id, started, vector: cached, ocr };
        }
      }
      const img = await decodeImage(bytes, this.limits);
      const ocr = wantOcr ? await this.ocr.read(img) : undefined;
      const pixels = await resizeForEncoder(img, encoder.inputSize.width, encoder.inputSize.height);
      const size2 = this.secondaryInputSize();
      // Resizing now, while the image is decoded anyway, costs far less than decoding again
      // should the cross-encoder signal want this item.
      const pixels2 = size2 ? await resizeForEncoder(img, size2.width, size2.height) : undefined;
      const row = this.store.upsertItem(
        { sha256, modality: 'image', mime: img.mime, width: img.width, height: img.height, bytes: img.bytes, path: name },
        source,
      );
      return { path: name, sha256, itemId: row.id, started, pixels, pixels2, ocr, persist: source === 'baseline' };
    } catch (err) {
      return errorItem(label, started, describeError(err), errorCode(err));
    }
  }

  /** Baseline embeddings never expire (they are the baseline); scanned items honour the TTL. */
  private cacheTtlFor(itemId: number): number {
    const inBaseline = this.store.db.prepare('SELECT 1 FROM baseline_items WHERE item_id = ? LIMIT 1').get(itemId);
    return inBaseline ? 0 : this.cfg.performance.cache_ttl_seconds;
  }

  private async encodePending(items: PreparedItem[], encoder: ImageEncoder | null): Promise<PreparedItem[]> {
    const todo = items.filter((i) => i.pixels);
    if (todo.length > 0) {
      if (!encoder) throw new Error('encodePending: image items without an image encoder');
      const size = encoder.inputSize.width * encoder.inputSize.height * 3;
      const pixels = new Float32Array(size * todo.length);
      todo.forEach((t, i) => pixels.set(t.pixels!, i * size));
      try {
        const vectors = await encoder.embedPixels(pixels, todo.length);
        const keepPixels = this.keepsPixels();
        this.store.transaction(() => {
          todo.forEach((t, i) => {
            t.vector = vectors[i];
            if (!keepPixels) t.pixels = undefined;
            if (t.persist || this.cfg.performance.cache_embeddings) this.store.putEmbedding(t.itemId, encoder.id, vectors[i]);
          });
        });
      } catch (err) {
        // One failing batch must not sink the run: retry item by item to isolate the culprit.
        for (const t of todo) {
          try {
            const [v] = await encoder.embedPixels(t.pixels!, 1);
            t.vector = v;
            if (t.persist || this.cfg.performance.cache_embeddings) this.store.putEmbedding(t.itemId, encoder.id, v);
          } catch (inner) {
            t.error = { path: t.path ?? '<bytes>', reason: `encoder failed: ${describeError(inner)}`, code: 'encoder' };
          }
          if (t.error || !this.keepsPixels()) t.pixels = undefined;
        }
        void err;
      }
    }
    return items;
  }

  // ---- status ---------------------------------------------------------------------------------

  engineInfo(baseline: string, encoder: Pick<ImageEncoder, 'id' | 'provider' | 'providerNote'>, row: DetectorSetRow | undefined): EngineInfo {
    return {
      version: ENGINE_VERSION,
      encoder_id: encoder.id,
      provider: encoder.provider,
      provider_note: encoder.providerNote,
      baseline,
      detector_set: row ? { id: row.id, version: row.version, created_at: row.created_at } : null,
    };
  }

  async status(opts: { baseline?: string; openEncoder?: boolean } = {}): Promise<StatusReport> {
    const baselineName = opts.baseline ?? DEFAULT_BASELINE;
    let encoder: StatusReport['encoder'];
    if (opts.openEncoder ?? true) {
      try {
        const e = await this.encoder();
        encoder = { id: e.id, dim: e.dim, provider: e.provider, provider_note: e.providerNote, error: null };
      } catch (err) {
        encoder = { id: null, dim: null, provider: null, provider_note: null, error: describeError(err) };
      }
    } else {
      encoder = { id: null, dim: null, provider: null, provider_note: 'not opened', error: null };
    }
    const baselines = this.store.listBaselines().map((b) => {
      const active = this.store.activeDetectorSet(b.id);
      const ageDays = active ? (Date.now() - Date.parse(active.created_at)) / 86_400_000 : null;
      const audio = this.store.activeDetectorSet(b.id, 'audio');
      return {
        name: b.name,
        items: b.n_items,
        updated_at: b.updated_at,
        audio_detector_set: audio
          ? { id: audio.id, version: audio.version, created_at: audio.created_at, n_items: audio.n_items, encoder_id: audio.encoder_id }
          : null,
        detector_set: active
          ? {
              id: active.id,
              version: active.version,
              created_at: active.created_at,
              n_items: active.n_items,
              encoder_id: active.encoder_id,
              age_days: round(ageDays!, 2),
              stale: ageDays! > this.cfg.baseline.max_age_days,
              encoder_matches: encoder.id ? encoder.id === active.encoder_id : null,
              stats: JSON.parse(active.stats) as unknown,
            }
          : null,
      };
    });
    return {
      version: ENGINE_VERSION,
      data_dir: this.dataDir,
      database: this.store.file,
      schema_version: this.store.schemaVersion,
      config: path.join(this.dataDir, 'config.yaml'),
      encoder,
      baselines,
      verdicts: this.store.countVerdicts(),
      audit_chain_ok: this.store.verifyAudit() === null,
      active_baseline: baselineName,
      machine: machineInfo(),
    };
  }
}

export interface StatusReport {
  version: string;
  data_dir: string;
  database: string;
  schema_version: number;
  config: string;
  encoder: { id: string | null; dim: number | null; provider: string | null; provider_note: string | null; error: string | null };
  baselines: {
    name: string;
    items: number;
    updated_at: string;
    /** The baseline's active audio detector set (audio items), when it has one. */
    audio_detector_set?: null | { id: number; version: number; created_at: string; n_items: number; encoder_id: string };
    detector_set: null | {
      id: number;
      version: number;
      created_at: string;
      n_items: number;
      encoder_id: string;
      age_days: number;
      stale: boolean;
      encoder_matches: boolean | null;
      stats: unknown;
    };
  }[];
  verdicts: Record<Decision, number>;
  audit_chain_ok: boolean;
  active_baseline: string;
  machine: ReturnType<typeof machineInfo>;
}

async function* batches<T>(source: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  let batch: T[] = [];
  for await (const item of source) {
    batch.push(item);
    if (batch.length >= size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

function toMeasureItem(item: PreparedItem): MeasureItem {
  return {
    itemId: item.itemId,
    sha256: item.sha256,
    path: item.path,
    vector: item.vector!,
    pixels: item.pixels,
    pixels2: item.pixels2,
    bytes: item.bytes,
  };
}

function errorItem(file: string, started: number, reason: string, code: string): PreparedItem {
  return { path: file, sha256: '', itemId: -1, started, error: { path: file, reason, code } };
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'no such file';
    if (code === 'EACCES') return 'permission denied';
    if (code === 'EISDIR') return 'is a directory';
    return err.message;
  }
  return String(err);
}

function errorCode(err: unknown): string {
  if (err instanceof IngestError) return err.code;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code.toLowerCase() : 'error';
}

function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function machineInfo() {
  const cpus = os.cpus();
  return {
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memory_gb: round(os.totalmem() / 1024 ** 3, 1),
    node: process.version,
  };
}

/** The k baseline members nearest to `vector` in a loaded set, as a verdict records them. */
function nearestMembers(loaded: LoadedDetectorSet, vector: Float32Array, k: number): Neighbour[] {
  if (k <= 0) return [];
  return loaded.index.search(vector, k).map((h) => {
    const m = loaded.members[h.index];
    return { itemId: m.itemId, sha256: m.sha256, path: m.path, distance: round(h.distance, 6) };
  });
}
