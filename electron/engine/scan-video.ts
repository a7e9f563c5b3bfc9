// The engine's video path: one verdict per video.
//
//   frames    sampled on a grid (video.fps, at most video.max_frames) plus the frames the
//             pixel screen picks (video/sample.ts), embedded with the IMAGE encoder and scored
//             with the baseline's image detector set (cheap tier: the pixel tiers are not run
//             on frames). The video's frame statistic is the smallest frame p-value, corrected
//             for the number of frames looked at (Šidák: 1 − (1 − p_min)^m);
//   temporal  the temporal-consistency signal (video/temporal.ts), calibrated on the
//             baseline's videos at train time (at least 3 needed; otherwise not run);
//   audio     the audio track, when there is one and the baseline has an audio set, scored as
//             an audio item (scan-audio.ts).
// The components' p-values are combined with Bonferroni (p = min(1, k·min p)); risk is on the
// engine's surprise scale min(1, −log10 p / 4), so the review/block thresholds mean what they
// mean for images. The verdict names the frames that drove it (index, source frame, time).
import { gunzipSync, gzipSync } from 'node:zlib';
import type { DetectionConfig } from '../../shared/config.js';
import type { DetectorSet, VerdictScore } from '../../shared/detectors/detector-set.js';
import type { Decision, SignalResult } from '../../shared/types.js';
import { decodeAudio, AudioDecodeError, type AudioEncoder } from './audio/index.js';
import type { ImageEncoder } from './encoders/encoder.js';
import type { Store } from './store/store.js';
import { audioVerdict, type AudioPath } from './scan-audio.js';
import {
  calibrateTemporal,
  openVideoSource,
  sampleFromSource,
  sidak,
  TemporalModel,
  DEFAULT_SAMPLING,
  type SampledFrame,
  type TemporalCalibrationState,
  type TemporalVerdict,
} from './video/index.js';

export interface VideoSeries {
  embeddings: Float32Array[];
  frames: SampledFrame[];
}

export interface VideoExtra {
  series: VideoSeries;
  hasAudio: boolean;
  audio: Float32Array | null;
  audioError: string | null;
  durationS: number | null;
}

/** A frame named in a video verdict. */
export interface VideoFrameReport {
  /** Position among the sampled frames. */
  index: number;
  source_frame: number;
  time_s: number;
  why: string;
  /** The frame's own fused risk under the image detector set, when it was scored. */
  risk: number | null;
}

export interface VideoScore {
  score: VerdictScore;
  frames: VideoFrameReport[];
  notes: string[];
}

export class VideoPath {
  private temporalCache: { id: number; model: TemporalModel } | null = null;

  constructor(
    private readonly store: Store,
    private readonly cfg: DetectionConfig,
  ) {}

  get enabled(): boolean {
    return this.cfg.video.enabled;
  }

  /** Samples and embeds the frames; decodes the audio track for the audio path. */
  async prepare(bytes: Uint8Array, encoder: ImageEncoder, audio: AudioPath, maxFileBytes: number, signal?: AbortSignal): Promise<{ extra: VideoExtra; mime: string; width: number; height: number; vector: Float32Array }> {
    const v = this.cfg.video;
    const limits = { maxFileBytes, maxDurationS: v.max_seconds, timeoutMs: Math.max(60_000, this.cfg.performance.timeout_seconds * 1000) };
    const source = await openVideoSource(bytes, limits);
    let sampled;
    try {
      sampled = await sampleFromSource(source, encoder.inputSize, limits, { ...DEFAULT_SAMPLING, fps: v.fps, maxFrames: v.max_frames, minFrames: Math.min(DEFAULT_SAMPLING.minFrames, v.max_frames) }, signal);
    } finally {
      await source.cleanup();
    }
    const embeddings = await encoder.embedPixels(sampled.pixels, sampled.frames.length);
    let track: Float32Array | null = null;
    let audioError: string | null = null;
    if (sampled.info.hasAudio && audio.enabled) {
      try {
        const enc = await audio.encoder();
        track = (await decodeAudio(bytes, audio.limits(maxFileBytes), { sampleRate: enc.sampleRate, signal })).samples;
      } catch (err) {
        if (!(err instanceof AudioDecodeError)) throw err;
        audioError = err.message;
      }
    }
    return {
      extra: { series: { embeddings, frames: sampled.frames }, hasAudio: sampled.info.hasAudio, audio: track, audioError, durationS: sampled.info.durationS },
      mime: sampled.info.mime,
      width: sampled.info.width,
      height: sampled.info.height,
      vector: meanUnit(embeddings),
    };
  }

  saveSeries(itemId: number, encoderId: string, series: VideoSeries): void {
    const json = JSON.stringify({ frames: series.frames, embeddings: series.embeddings.map((e) => Buffer.from(e.buffer, e.byteOffset, e.byteLength).toString('base64')) });
    this.store.db
      .prepare(
        `INSERT INTO video_series (item_id, encoder_id, series, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(item_id, encoder_id) DO UPDATE SET series = excluded.series, created_at = excluded.created_at`,
      )
      .run(itemId, encoderId, gzipSync(Buffer.from(json)), new Date().toISOString());
  }

  /** Fits the temporal calibration on the baseline's videos; null (with the reason) when fewer than 3 have series. */
  train(baselineId: number, encoderId: string): { id: number; n: number } | { reason: string } {
    const rows = this.store.db
      .prepare(
        `SELECT vs.series FROM baseline_items bi JOIN items i ON i.id = bi.item_id
           JOIN video_series vs ON vs.item_id = i.id AND vs.encoder_id = ?
          WHERE bi.baseline_id = ? AND i.modality = 'video' ORDER BY i.sha256`,
      )
      .all(encoderId, baselineId) as { series: Buffer }[];
    const series = rows.map((r) => readSeries(r.series));
    let state: TemporalCalibrationState;
    try {
      state = calibrateTemporal(encoderId, series);
    } catch (err) {
      return { reason: `temporal consistency not calibrated: ${(err as Error).message}` };
    }
    const info = this.store.db
      .prepare('INSERT INTO video_calibrations (baseline_id, encoder_id, n_videos, state, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(baselineId, encoderId, state.videos, gzipSync(Buffer.from(JSON.stringify(state))), new Date().toISOString());
    this.store.audit('system', 'video_calibration.create', `video_calibration:${Number(info.lastInsertRowid)}`, { n_videos: state.videos });
    return { id: Number(info.lastInsertRowid), n: state.videos };
  }

  /** The newest temporal calibration of a baseline for this encoder, or null. */
  temporalModel(baselineId: number, encoderId: string): TemporalModel | null {
    const row = this.store.db
      .prepare('SELECT id, state FROM video_calibrations WHERE baseline_id = ? AND encoder_id = ? ORDER BY id DESC LIMIT 1')
      .get(baselineId, encoderId) as { id: number; state: Buffer } | undefined;
    if (!row) return null;
    if (this.temporalCache?.id === row.id) return this.temporalCache.model;
    const model = new TemporalModel(JSON.parse(gunzipSync(row.state).toString('utf8')) as TemporalCalibrationState);
    this.temporalCache = { id: row.id, model };
    return model;
  }

  /** One verdict for the video (see the header). */
  async score(
    extra: VideoExtra,
    imageSet: DetectorSet,
    encoderId: string,
    temporal: TemporalModel | null,
    audio: { set: DetectorSet; encoder: AudioEncoder } | null,
  ): Promise<VideoScore> {
    const t = this.cfg.thresholds;
    const { series } = extra;
    const notes: string[] = [];
    const policy = { modes: { squeeze: 'off' as const, cross_encoder: 'off' as const }, band: { low: this.cfg.tiering.inconclusive_low, high: this.cfg.tiering.inconclusive_high } };
    const frameScores = imageSet.score(series.embeddings, { policy });
    let worst = 0;
    frameScores.forEach((s, i) => {
      if (s.p < frameScores[worst].p) worst = i;
    });
    const parts: { name: string; p: number; raw: number }[] = [];
    const pFrames = sidak(frameScores[worst].p, frameScores.length);
    parts.push({ name: 'frames', p: pFrames, raw: frameScores[worst].risk });

    let tv: TemporalVerdict | null = null;
    if (temporal) {
      tv = temporal.score(series, encoderId, t);
      if (tv.note) notes.push(tv.note);
      else parts.push({ name: 'temporal', p: tv.p, raw: tv.risk });
    } else notes.push('temporal consistency not run: the baseline has fewer than 3 videos (train with videos in the baseline)');

    if (extra.audio && audio) {
      const [v] = await audio.encoder.embedAudio([extra.audio]);
      const a = audioVerdict(audio.set.score([v])[0], undefined, t);
      parts.push({ name: 'audio_track', p: a.p, raw: a.risk });
    } else if (extra.hasAudio) {
      notes.push(extra.audioError ? `audio track not scored: ${extra.audioError}` : 'audio track not scored: the baseline has no audio detector set');
    }

    const pMin = Math.min(...parts.map((x) => x.p));
    const p = Math.min(1, parts.length * pMin);
    const risk = Math.min(1, -Math.log10(Math.max(p, 1e-300)) / 4);
    const decision: Decision = risk >= t.block ? 'block' : risk >= t.review ? 'review' : 'allow';
    const surprise = parts.map((x) => -Math.log10(Math.max(x.p, 1e-300)));
    const total = surprise.reduce((a, b) => a + b, 0);
    const signals: Record<string, SignalResult> = {};
    parts.forEach((x, i) => {
      signals[x.name] = { raw: round(x.raw), risk: round(Math.min(1, surprise[i] / 4)), p: x.p, weight: 1, share: total > 0 ? round(surprise[i] / total) : 0 };
    });

    // The frames that drove it: the riskiest frame under the image set, then temporal drivers.
    const frames: VideoFrameReport[] = [];
    const name = (index: number, why: string) => {
      if (frames.some((f) => f.index === index)) return;
      const f = series.frames[index];
      frames.push({ index, source_frame: f.sourceFrame, time_s: round(f.timeS), why, risk: round(frameScores[index].risk) });
    };
    const temporalFirst = tv && !tv.note && tv.p < pFrames;
    if (temporalFirst) for (const d of tv!.drivers) name(d.sample, `temporal: ${d.why}`);
    name(worst, `least typical frame under the image detector set (risk ${frameScores[worst].risk.toFixed(2)})`);
    if (!temporalFirst && tv && !tv.note) for (const d of tv.drivers) name(d.sample, `temporal: ${d.why}`);

    const score: VerdictScore = {
      risk,
      p,
      decision,
      statistic: -Math.log10(Math.max(p, 1e-300)),
      signals: signals as VerdictScore['signals'],
      reference: null,
      tier: {
        cheap_risk: risk,
        ran: [],
        not_run: { squeeze: 'not run on video frames', cross_encoder: 'not run on video frames' },
        calibration: `video: bonferroni(${parts.map((x) => x.name).join(', ')})`,
      },
    };
    return { score, frames: frames.slice(0, 4), notes };
  }
}

function readSeries(blob: Buffer): VideoSeries {
  const json = JSON.parse(gunzipSync(blob).toString('utf8')) as { frames: SampledFrame[]; embeddings: string[] };
  return {
    frames: json.frames,
    embeddings: json.embeddings.map((b) => {
      const buf = Buffer.from(b, 'base64');
      return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    }),
  };
}

function meanUnit(vs: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(vs[0]?.length ?? 0);
  for (const v of vs) for (let i = 0; i < v.length; i++) out[i] += v[i];
  let n = 0;
  for (const x of out) n += x * x;
  const inv = n > 0 ? 1 / Math.sqrt(n) : 0;
  return out.map((x) => x * inv);
}

function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
