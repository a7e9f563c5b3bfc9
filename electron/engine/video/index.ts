// Video analysis: sample frames, embed them with the image encoder, judge their temporal
// consistency, and hand back the audio track (if any) for the audio path.
//
// One verdict per video. The frames are ordinary images to the engine as well: scoring each
// with the image detector set (and taking the worst) is the integration's business, not this
// module's; analyseVideo returns the embeddings so it can.
import type { ImageEncoder } from '../encoders/encoder.js';
import { AudioDecodeError, decodeAudio, type AudioLimits, type DecodedAudio } from '../audio/decode.js';
import {
  DEFAULT_SAMPLING,
  DEFAULT_VIDEO_LIMITS,
  openVideoSource,
  sampleFromSource,
  type FrameSampling,
  type SampledVideo,
  type VideoLimits,
} from './sample.js';
import { TemporalModel, type TemporalVerdict } from './temporal.js';

export * from './sample.js';
export * from './temporal.js';

export interface VideoAnalysisOptions {
  limits?: Partial<VideoLimits>;
  sampling?: Partial<FrameSampling>;
  /** Decode the audio track too (default true), at this rate (default 16000). */
  audio?: false | { sampleRate?: number; limits?: Partial<AudioLimits> };
  thresholds?: { review: number; block: number };
  signal?: AbortSignal;
}

export interface VideoAnalysis {
  video: Omit<SampledVideo, 'pixels'>;
  /** One unit embedding per sampled frame, time order. */
  embeddings: Float32Array[];
  /** Null without a calibration (nothing to judge against) — embeddings are still returned. */
  temporal: TemporalVerdict | null;
  /** The audio track decoded for the audio path; null when the video has none. */
  audio: DecodedAudio | null;
  /** Why the audio track could not be used, when it exists but failed to decode. */
  audioError: string | null;
  ms: number;
}

/** Samples the sequence of frames of `input` and embeds them with `encoder`. */
export async function sampleAndEmbed(input: Uint8Array | string, encoder: ImageEncoder, options: VideoAnalysisOptions = {}): Promise<{ sampled: SampledVideo; embeddings: Float32Array[] }> {
  const limits = { ...DEFAULT_VIDEO_LIMITS, ...options.limits };
  const source = await openVideoSource(input, limits);
  try {
    const sampled = await sampleFromSource(source, encoder.inputSize, limits, { ...DEFAULT_SAMPLING, ...options.sampling }, options.signal);
    const embeddings = await encoder.embedPixels(sampled.pixels, sampled.frames.length);
    return { sampled, embeddings };
  } finally {
    await source.cleanup();
  }
}

export async function analyseVideo(input: Uint8Array | string, encoder: ImageEncoder, temporal: TemporalModel | null, options: VideoAnalysisOptions = {}): Promise<VideoAnalysis> {
  const started = performance.now();
  const { sampled, embeddings } = await sampleAndEmbed(input, encoder, options);
  const verdict = temporal ? temporal.score({ embeddings, frames: sampled.frames }, encoder.id, options.thresholds) : null;
  let audio: DecodedAudio | null = null;
  let audioError: string | null = null;
  if (options.audio !== false && sampled.info.hasAudio) {
    try {
      audio = await decodeAudio(input, { timeoutMs: 30_000, ...options.audio?.limits }, { sampleRate: options.audio?.sampleRate ?? 16000, signal: options.signal });
    } catch (e) {
      if (!(e instanceof AudioDecodeError)) throw e;
      audioError = e.message;
    }
  }
  const { pixels: _pixels, ...video } = sampled;
  return { video, embeddings, temporal: verdict, audio, audioError, ms: performance.now() - started };
}
