// The engine's audio path: audio items (sniffed from their bytes) are decoded by ffmpeg,
// embedded by the audio encoder (log-mel statistics, or CLAP from a local folder) and scored by
// the baseline's AUDIO detector set: the same detectors, calibration and fusion as images, on
// the audio encoder's vectors. The attack-aware image tiers (squeeze, cross_encoder) measure
// pixels and do not apply; verdicts say so in tier.not_run.
//
// One check sits beside the embedding: near-ultrasonic carriers (audio/ultrasonic.ts). The
// encoder hears 16 kHz audio, where a 19 kHz carrier has been filtered away by construction,
// so a file recorded above ~35 kHz is decoded a second time at its own rate (capped at 48 kHz)
// and measured. The check's score has physical, not learned, bounds; it can only raise a
// verdict: decision = the stricter of the fused decision and the score against the same
// review/block thresholds, risk = max(fused risk, score), p = min(fused p, 1 − score).
import type { DetectionConfig } from '../../shared/config.js';
import type { TierReport, VerdictScore } from '../../shared/detectors/detector-set.js';
import type { Decision, SignalResult } from '../../shared/types.js';
import { decodeAudio, openAudioEncoder, ultrasonicReport, type AudioEncoder, type AudioLimits } from './audio/index.js';
import { FeatureStore } from './signals/feature-store.js';
import type { Store } from './store/store.js';

/** What the audio path learnt about an item besides its embedding. */
export interface AudioExtra {
  durationS: number | null;
  sourceSampleRate: number | null;
  /** Near-ultrasonic carrier score in [0, 1]; null when the file's rate cannot hold the band. */
  ultrasonic: number | null;
}

export interface PreparedAudio {
  itemId: number;
  vector: Float32Array;
  extra: AudioExtra;
}

const ULTRASONIC_ENCODER = 'ultrasonic@1';
const ULTRASONIC_MIN_RATE = 35_000;

export class AudioPath {
  private encoderPromise: Promise<AudioEncoder> | null = null;
  private readonly features: FeatureStore;

  constructor(
    private readonly store: Store,
    private readonly cfg: DetectionConfig,
  ) {
    this.features = new FeatureStore(store.db);
  }

  get enabled(): boolean {
    return this.cfg.audio.enabled;
  }

  /** Opened on first use; a CLAP folder whose rate is not audio.sample_rate is refused by key. */
  encoder(): Promise<AudioEncoder> {
    if (!this.encoderPromise) {
      const a = this.cfg.audio;
      const m = this.cfg.embedding_model;
      this.encoderPromise = openAudioEncoder({
        model: a.encoder === 'logmel' ? 'logmel' : a.clap_model_dir!,
        device: m.device,
        threads: m.threads,
      }).then(async (enc) => {
        if (enc.sampleRate !== a.sample_rate) {
          await enc.close();
          throw new Error(
            `'embedding_anomaly_detection.audio.sample_rate' is ${a.sample_rate} but the audio encoder ${enc.id} works at ${enc.sampleRate} Hz: set it to ${enc.sampleRate}`,
          );
        }
        return enc;
      });
      this.encoderPromise.catch(() => {
        this.encoderPromise = null;
      });
    }
    return this.encoderPromise;
  }

  limits(maxFileBytes: number): Partial<AudioLimits> {
    const maxS = this.cfg.audio.max_seconds;
    return {
      maxFileBytes,
      maxDurationS: maxS,
      analysisWindowS: Math.min(60, maxS),
      timeoutMs: Math.max(30_000, Math.round(this.cfg.performance.timeout_seconds * 1000)),
    };
  }

  /**
   * Decodes, checks and embeds one audio item and records it (modality 'audio'). Embeddings are
   * cached per (item, audio encoder) like image ones; so is the ultrasonic score.
   */
  async prepare(
    bytes: Uint8Array,
    sha256: string,
    name: string | null,
    source: string,
    maxFileBytes: number,
    opts: { cache: boolean; ttlFor: (itemId: number) => number; signal?: AbortSignal },
  ): Promise<PreparedAudio> {
    const encoder = await this.encoder();
    const known = this.store.itemBySha(sha256);
    if (known && opts.cache && known.modality === 'audio') {
      const cached = this.store.cachedEmbedding(known.id, encoder.id, opts.ttlFor(known.id));
      const stored = this.features.get(known.id, ULTRASONIC_ENCODER, ['measurable', 'score']);
      if (cached && stored) {
        const row = this.store.upsertItem(
          { sha256, modality: 'audio', mime: known.mime, width: null, height: null, bytes: known.bytes, path: name },
          source,
        );
        return { itemId: row.id, vector: cached, extra: { durationS: null, sourceSampleRate: null, ultrasonic: stored[0] ? stored[1] : null } };
      }
    }
    const limits = this.limits(maxFileBytes);
    const decoded = await decodeAudio(bytes, limits, { sampleRate: encoder.sampleRate, signal: opts.signal });
    let ultrasonic: number | null = null;
    if (decoded.sourceSampleRate !== null && decoded.sourceSampleRate >= ULTRASONIC_MIN_RATE) {
      const full = await decodeAudio(bytes, limits, { sampleRate: Math.min(48_000, decoded.sourceSampleRate), signal: opts.signal });
      const report = ultrasonicReport(full.samples, full.sampleRate);
      ultrasonic = report.measurable ? report.score : null;
    }
    const [vector] = await encoder.embedAudio([decoded.samples]);
    const row = this.store.upsertItem(
      { sha256, modality: 'audio', mime: decoded.mime, width: null, height: null, bytes: bytes.byteLength, path: name },
      source,
    );
    if (opts.cache) {
      this.store.putEmbedding(row.id, encoder.id, vector);
      this.features.put(row.id, ULTRASONIC_ENCODER, { measurable: ultrasonic === null ? 0 : 1, score: ultrasonic ?? 0 });
    }
    return { itemId: row.id, vector, extra: { durationS: decoded.durationS, sourceSampleRate: decoded.sourceSampleRate, ultrasonic } };
  }

  async close(): Promise<void> {
    const enc = await this.encoderPromise?.catch(() => null);
    await enc?.close();
  }
}

/** The image-only tiers, marked not run on an audio verdict. */
export function audioTier(tier: TierReport): TierReport {
  return {
    ...tier,
    not_run: {
      ...tier.not_run,
      squeeze: 'not applicable to audio (pixel squeezers)',
      cross_encoder: 'not applicable to audio (second image encoder)',
    },
  };
}

const RANK: Record<Decision, number> = { allow: 0, review: 1, block: 2 };

/** Folds the audio checks beside the embedding into the fused verdict (see the header). */
export function audioVerdict(score: VerdictScore, extra: AudioExtra | undefined, thresholds: { review: number; block: number }): VerdictScore {
  const tier = audioTier(score.tier);
  const u = extra?.ultrasonic;
  if (u === null || u === undefined) return { ...score, tier };
  return foldCheck({ ...score, tier }, 'ultrasonic', u, thresholds);
}

/**
 * A rule-based check with physical or lexical (not learned) bounds, folded into a fused verdict:
 * it appears among the signals with weight 0 (it is not part of the calibrated fusion) and can
 * only raise the decision: the stricter of the fused decision and `value` against `thresholds`;
 * risk = max(fused risk, value); p = min(fused p, 1 − value) when the check raised the decision.
 */
export function foldCheck(score: VerdictScore, name: string, value: number, thresholds: { review: number; block: number }, detail?: string): VerdictScore {
  const signal: SignalResult & { detail?: string } = { raw: round(value), risk: round(value), p: round(1 - value), weight: 0, share: 0 };
  if (detail !== undefined) signal.detail = detail;
  const own: Decision = value >= thresholds.block ? 'block' : value >= thresholds.review ? 'review' : 'allow';
  const raised = RANK[own] > RANK[score.decision];
  return {
    ...score,
    decision: raised ? own : score.decision,
    risk: Math.max(score.risk, value),
    p: raised ? Math.min(score.p, 1 - value) : score.p,
    signals: { ...score.signals, [name]: signal } as VerdictScore['signals'],
  };
}

function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
