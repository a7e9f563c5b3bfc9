// Audio ingest: untrusted bytes (or a file) in, mono float PCM at a fixed rate out, or an error
// naming the reason.
//
// The order of defences mirrors image ingest:
//   1. size limit before anything is read or spawned;
//   2. the type is sniffed from the bytes, never taken from the name, and decides the ffmpeg
//      demuxer (so ffmpeg never probes: see ffmpeg.ts);
//   3. ffmpeg decodes the first audio track only, downmixed to mono and resampled (soxr) to the
//      rate the encoder wants, as raw float32 on stdout;
//   4. duration: a header that declares more than maxDurationS stops the decode at once; a
//      header that lies (or has no duration) is caught by counting the decoded samples, which
//      ffmpeg is told to stop producing just past the limit;
//   5. wall-clock deadline; the child is killed and reaped whatever happens.
// Only the first analysisWindowS seconds are kept in memory; the rest is counted, not stored.
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { IngestError, firstLine, type IngestErrorCode } from '../ingest/errors.js';
import { sniff, type SniffResult } from '../ingest/sniff.js';
import { DEMUXER_FOR_FORMAT, NEEDS_SEEKABLE_INPUT, ffmpegErrorLine, runFfmpeg } from './ffmpeg.js';

export interface AudioLimits {
  maxFileBytes: number;
  /** Longer media is refused (reason 'too_long'). */
  maxDurationS: number;
  /** Seconds kept for analysis, from the start; the rest is decoded (to measure it) and dropped. */
  analysisWindowS: number;
  /** Wall-clock limit for the whole decode. */
  timeoutMs: number;
}

export const DEFAULT_AUDIO_LIMITS: Readonly<AudioLimits> = Object.freeze({
  maxFileBytes: 50 * 1024 * 1024,
  maxDurationS: 600,
  analysisWindowS: 60,
  timeoutMs: 30_000,
});

export interface AudioDecodeOptions {
  /** Output sample rate (default 16000: the log-mel encoder's rate; CLAP wants 48000). */
  sampleRate?: number;
  /**
   * true (default): a decoder error anywhere in the track refuses the file as corrupt, as image
   * ingest refuses a JPEG that only decodes through error recovery (another decoder may recover
   * differently, so the samples scored here might not be the ones a downstream model hears).
   * false: such errors are listed in `warnings` and the samples that could be decoded are used.
   */
  strict?: boolean;
  signal?: AbortSignal;
}

/** Why a file could not be turned into audio samples. */
export type AudioFailure = 'empty' | 'too_large' | 'unreadable' | 'not_audio' | 'no_audio_track' | 'unsupported' | 'corrupt' | 'too_long' | 'timeout' | 'cancelled';

/** The engine's error codes group failures across modalities; `reason` keeps the audio-specific one. */
const CODE_FOR_FAILURE: Record<AudioFailure, IngestErrorCode> = {
  empty: 'empty',
  too_large: 'too_large',
  unreadable: 'unreadable',
  not_audio: 'not_media',
  no_audio_track: 'unsupported_type',
  unsupported: 'unsupported_type',
  corrupt: 'corrupt',
  too_long: 'too_large',
  timeout: 'timeout',
  cancelled: 'timeout',
};

/** An IngestError (so the engine's per-item error handling applies unchanged) with the audio reason. */
export class AudioDecodeError extends IngestError {
  constructor(
    readonly reason: AudioFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(CODE_FOR_FAILURE[reason], message, options);
    this.name = 'AudioDecodeError';
  }
}

export interface DecodedAudio {
  /** SHA-256 of the bytes when bytes were given; null for a path (the file is not read here). */
  sha256: string | null;
  mime: string;
  /** Sniffed container format: 'wav', 'mp3', 'flac', 'opus', 'ogg', 'm4a', 'mp4', … */
  format: string;
  /** Codec of the decoded track as ffmpeg names it: 'pcm_s16le', 'mp3', 'opus', 'aac', … */
  codec: string;
  /** Channels in the source track (the output is always mono). */
  channels: number;
  /** Sample rate of the source track, when ffmpeg reported it. */
  sourceSampleRate: number | null;
  sampleRate: number;
  /** Mono float32 PCM in [-1, 1], the first analysisWindowS seconds. */
  samples: Float32Array;
  /** Decoded length of the whole track in seconds (not only the window). */
  durationS: number;
  /** True when the track is longer than the window and `samples` holds only its start. */
  truncated: boolean;
  /** Decoder complaints on a decode that still succeeded (e.g. a damaged frame skipped). */
  warnings: string[];
  ms: number;
}

export async function decodeAudio(
  input: Uint8Array | string,
  limits: Partial<AudioLimits> = {},
  options: AudioDecodeOptions = {},
): Promise<DecodedAudio> {
  const lim = { ...DEFAULT_AUDIO_LIMITS, ...limits };
  const sampleRate = options.sampleRate ?? 16000;
  if (!Number.isInteger(sampleRate) || sampleRate < 1000 || sampleRate > 192000) {
    throw new RangeError(`decodeAudio: sampleRate must be an integer in [1000, 192000], got ${sampleRate}`);
  }
  const started = performance.now();
  const source = typeof input === 'string' ? await openSource(input, lim) : bytesSource(input, lim);
  const demuxer = demuxerFor(source.kind);

  // A pipe cannot seek, and MP4/M4A often keep their index at the end: those go through a file.
  let tempDir: string | null = null;
  let inputArg: string;
  let stdin: Uint8Array | undefined;
  if (source.path !== null) {
    inputArg = `file:${source.path}`;
  } else if (NEEDS_SEEKABLE_INPUT.has(demuxer)) {
    tempDir = await mkdtemp(path.join(os.tmpdir(), 'parallax-audio-'));
    const file = path.join(tempDir, 'input');
    await writeFile(file, source.bytes!, { mode: 0o600 });
    inputArg = `file:${file}`;
  } else {
    inputArg = 'pipe:0';
    stdin = source.bytes!;
  }
  try {
    const decoded = await runDecode(inputArg, stdin, demuxer, source.kind, sampleRate, lim, options.strict ?? true, options.signal);
    return { sha256: source.sha256, mime: source.kind.mime, format: source.kind.format, ...decoded, ms: performance.now() - started };
  } finally {
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------

interface Source {
  kind: SniffResult;
  path: string | null;
  bytes: Uint8Array | null;
  sha256: string | null;
}

function bytesSource(bytes: Uint8Array, lim: AudioLimits): Source {
  if (!(bytes instanceof Uint8Array)) throw new AudioDecodeError('unreadable', 'input is not a byte array');
  checkSize(bytes.length, lim);
  return { kind: sniff(bytes), path: null, bytes, sha256: createHash('sha256').update(bytes).digest('hex') };
}

async function openSource(file: string, lim: AudioLimits): Promise<Source> {
  const info = await stat(file).catch((e: unknown) => {
    throw new AudioDecodeError('unreadable', fsErrorText(e), { cause: e });
  });
  if (!info.isFile()) throw new AudioDecodeError('unreadable', info.isDirectory() ? 'is a folder, not a file' : 'is not a regular file');
  checkSize(info.size, lim);
  // Only the head is read here, for sniffing; ffmpeg reads the file itself.
  const head = new Uint8Array(8192);
  let n: number;
  try {
    // O_NONBLOCK: a path swapped for a FIFO after the stat must not hang the open.
    const handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    try {
      ({ bytesRead: n } = await handle.read(head, 0, head.length, 0));
    } finally {
      await handle.close();
    }
  } catch (e) {
    throw new AudioDecodeError('unreadable', fsErrorText(e), { cause: e });
  }
  return { kind: sniff(head.subarray(0, n)), path: path.resolve(file), bytes: null, sha256: null };
}

function checkSize(size: number, lim: AudioLimits): void {
  if (size === 0) throw new AudioDecodeError('empty', 'file is empty (0 bytes)');
  if (size > lim.maxFileBytes) {
    throw new AudioDecodeError('too_large', `file is ${(size / 1048576).toFixed(1)} MiB, over the limit of ${(lim.maxFileBytes / 1048576).toFixed(1)} MiB`);
  }
}

/** Audio, or a video container that may carry an audio track; everything else is refused by name. */
function demuxerFor(kind: SniffResult): string {
  if (kind.modality === 'image') throw new AudioDecodeError('not_audio', `not audio: the file is an image (${kind.label})`);
  if (kind.modality === null) {
    throw new AudioDecodeError('not_audio', kind.format === 'unknown' ? 'not audio: the bytes match no known audio or video format' : `not audio: the file looks like ${kind.label}`);
  }
  if (kind.format === 'midi') throw new AudioDecodeError('unsupported', 'MIDI holds notes, not sound: it cannot be decoded to samples');
  const demuxer = DEMUXER_FOR_FORMAT[kind.format];
  if (!demuxer) throw new AudioDecodeError('unsupported', `${kind.label} is not supported by the audio decoder`);
  return demuxer;
}

interface TrackInfo {
  codec: string;
  channels: number;
  sourceSampleRate: number | null;
  declaredDurationS: number | null;
}

async function runDecode(
  inputArg: string,
  stdin: Uint8Array | undefined,
  demuxer: string,
  kind: SniffResult,
  sampleRate: number,
  lim: AudioLimits,
  strict: boolean,
  signal: AbortSignal | undefined,
): Promise<Omit<DecodedAudio, 'sha256' | 'mime' | 'format' | 'ms'>> {
  const protocol = inputArg.startsWith('pipe:') ? 'pipe' : 'file';
  const args = [
    ...(stdin ? [] : ['-nostdin']),
    '-protocol_whitelist', protocol,
    '-f', demuxer,
    '-i', inputArg,
    '-map', '0:a:0',
    '-vn', '-sn', '-dn',
    // Just past the limit, so "longer than allowed" is observable without decoding hours.
    '-t', (lim.maxDurationS + 0.5).toFixed(3),
    '-ac', '1',
    // soxr: a steep anti-aliasing filter, so content above the new Nyquist is removed, not folded
    // down into the band the encoder sees.
    '-af', `aresample=${sampleRate}:resampler=soxr`,
    '-c:a', 'pcm_f32le',
    '-f', 'f32le',
    'pipe:1',
  ];

  const windowBytes = Math.floor(lim.analysisWindowS * sampleRate) * 4;
  const maxBytes = Math.ceil((lim.maxDurationS + 0.01) * sampleRate) * 4;
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let totalBytes = 0;
  const info: TrackInfo = { codec: 'unknown', channels: 0, sourceSampleRate: null, declaredDurationS: null };
  let inInput = true;
  let declaredTooLong = false;
  const warnings: string[] = [];

  const result = await runFfmpeg({
    args,
    stdin,
    timeoutMs: lim.timeoutMs,
    signal,
    onStdout: (chunk) => {
      totalBytes += chunk.length;
      if (keptBytes < windowBytes) {
        const take = chunk.subarray(0, Math.min(chunk.length, windowBytes - keptBytes));
        kept.push(take);
        keptBytes += take.length;
      }
      return totalBytes <= maxBytes;
    },
    onStderrLine: (line) => {
      if (inInput) {
        if (/^(Stream mapping:|Output #0)/.test(line.trim())) inInput = false;
        else parseInputLine(line, info);
        if (info.declaredDurationS !== null && info.declaredDurationS > lim.maxDurationS + 0.5) {
          declaredTooLong = true;
          return false;
        }
      } else if (warnings.length < 5 && /error|invalid|corrupt|damaged|overread|concealing/i.test(line)) {
        warnings.push(line.replace(/^\[[^\]]+\]\s*/, '').replace(/^(?:pipe:0|file:\S*?):\s*/, '').trim());
      }
      return true;
    },
  });

  const describe = kind.label;
  if (result.stopped === 'timeout') throw new AudioDecodeError('timeout', `decoding ${describe} took longer than the limit of ${lim.timeoutMs} ms`);
  if (result.stopped === 'aborted') throw new AudioDecodeError('cancelled', `decoding ${describe} was cancelled`);
  if (declaredTooLong || (totalBytes > maxBytes && info.declaredDurationS !== null && info.declaredDurationS > lim.maxDurationS)) {
    throw new AudioDecodeError('too_long', `${describe} lasts ${formatDuration(info.declaredDurationS!)}, over the limit of ${formatDuration(lim.maxDurationS)}`);
  }
  if (totalBytes > maxBytes) {
    throw new AudioDecodeError('too_long', `${describe} decodes to more than the limit of ${formatDuration(lim.maxDurationS)}`);
  }
  if (result.code !== 0) {
    const line = ffmpegErrorLine(result.stderr).replace(/^(?:pipe:0|file:\S*?):\s*/, '');
    if (/matches no streams|does not contain any stream/i.test(line) || /matches no streams/i.test(result.stderr)) {
      throw new AudioDecodeError('no_audio_track', `${describe} has no audio track`);
    }
    throw new AudioDecodeError('corrupt', `could not decode ${describe}: ${line}`);
  }
  if (totalBytes < 4) throw new AudioDecodeError('corrupt', `could not decode ${describe}: no audio samples in the track`);
  if (strict && warnings.length > 0) throw new AudioDecodeError('corrupt', `${describe} is damaged: ${warnings[0]}`);
  const decodedS = Math.floor(totalBytes / 4) / sampleRate;
  // A cut or damaged file often "succeeds" with a fraction of its samples. Judged for audio files
  // only: in a video container the declared duration is the film's, and its sound may be shorter.
  const declared = info.declaredDurationS;
  if (kind.modality === 'audio' && declared !== null && decodedS < 0.9 * declared - 0.2) {
    const why = warnings[0] ? ` (${warnings[0]})` : '';
    throw new AudioDecodeError('corrupt', `${describe} is truncated or damaged: only ${decodedS.toFixed(2)} s of the ${declared.toFixed(2)} s its header declares could be decoded${why}`);
  }

  const samples = new Float32Array(Math.floor(keptBytes / 4));
  const view = new Uint8Array(samples.buffer);
  let offset = 0;
  for (const c of kept) {
    const n = Math.min(c.length, view.length - offset);
    view.set(c.subarray(0, n), offset);
    offset += n;
  }
  scrubNonFinite(samples);
  return {
    codec: info.codec,
    channels: info.channels || 1,
    sourceSampleRate: info.sourceSampleRate,
    sampleRate,
    samples,
    durationS: decodedS,
    truncated: totalBytes > keptBytes,
    warnings,
  };
}

/** Reads ffmpeg's description of the input: duration and the first audio stream. */
function parseInputLine(line: string, info: TrackInfo): void {
  const dur = line.match(/^\s*Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)/);
  if (dur) {
    info.declaredDurationS = Number(dur[1]) * 3600 + Number(dur[2]) * 60 + Number(dur[3]);
    return;
  }
  if (info.codec !== 'unknown') return;
  const stream = line.match(/Stream #\d+:\d+.*?: Audio: ([\w-]+)[^,]*,\s*(\d+) Hz,\s*([^,]+)/);
  if (!stream) return;
  info.codec = stream[1];
  info.sourceSampleRate = Number(stream[2]);
  info.channels = channelsOf(stream[3].trim());
}

const LAYOUT_CHANNELS: Record<string, number> = { mono: 1, stereo: 2, '2.1': 3, '3.0': 3, quad: 4, '4.0': 4, '4.1': 5, '5.0': 5, '5.1': 6, '6.0': 6, '6.1': 7, '7.0': 7, '7.1': 8 };

function channelsOf(layout: string): number {
  const n = layout.match(/^(\d+) channels/);
  if (n) return Number(n[1]);
  return LAYOUT_CHANNELS[layout.replace(/\(.*\)$/, '')] ?? 0;
}

/** A decoder bug or hostile stream must not smuggle NaN or Inf into the feature maths. */
function scrubNonFinite(x: Float32Array): void {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) x[i] = 0;
}

function formatDuration(s: number): string {
  if (s < 120) return `${s.toFixed(1)} s`;
  return `${(s / 60).toFixed(1)} min`;
}

function fsErrorText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'file does not exist';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a folder, not a file';
  return `cannot read the file (${code ?? firstLine(e)})`;
}
