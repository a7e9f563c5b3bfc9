// Video ingest: untrusted bytes (or a file) in, a handful of frames at the image encoder's input
// size out, each with its source frame number and timestamp.
//
// Two ffmpeg runs:
//   1. probe: `ffmpeg -f <demuxer> -i <input>` with no output — stderr describes the container
//      (duration) and its streams (video codec, size, frame rate, whether there is audio);
//   2. decode: the first video track, scaled to the encoder's input (fill, area-averaging
//      `flags=area`, the analogue of ingest's fill-bilinear resize with box pre-shrink), RGB24
//      raw frames on stdout, `showinfo` timestamps on stderr.
//
// Which frames are kept:
//   - a uniform grid: `fps` per second (raised for short clips so at least `minFrames` are
//     taken), `maxFrames` at most, spread over the whole duration;
//   - when the video is short enough to screen every frame (≤ maxScreenFrames), the
//     `spikeFrames` frames that stand out most in pixel space, each WITH its two neighbours.
//     Per frame, the temporal Laplacian L_t = mean |f_t − (f_{t−1} + f_{t+1})/2| (0–255
//     scale, every 3rd pixel); a frame is ranked by its spikiness
//         L_t / (½(L_{t−2} + L_{t+2}) + 0.5)
//     i.e. against frames two steps away, which the frame itself does not enter: sustained
//     motion scores ≈ 1, a frame unlike both neighbours scores high (as does the frame at a
//     cut, which the triplet test in temporal.ts then tells apart). A grid at 2 fps sees one
//     frame in 15 of a 30 fps film, so a single doctored frame would slip between grid points;
//     the screen puts it in front of the encoder, and its adjacent frames (tens of ms away,
//     nearly identical in content) are what it is judged against.
// Longer videos are decoded through ffmpeg's fps filter (grid only), which bounds the work.
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { IngestError, firstLine, type IngestErrorCode } from '../ingest/errors.js';
import { sniff, type SniffResult } from '../ingest/sniff.js';
import { DEMUXER_FOR_FORMAT, ffmpegErrorLine, runFfmpeg } from '../audio/ffmpeg.js';

export interface VideoLimits {
  maxFileBytes: number;
  maxDurationS: number;
  timeoutMs: number;
}

export const DEFAULT_VIDEO_LIMITS: Readonly<VideoLimits> = Object.freeze({ maxFileBytes: 200 * 1024 * 1024, maxDurationS: 600, timeoutMs: 60_000 });

export interface FrameSampling {
  /** Grid frames per second (default 2). */
  fps: number;
  /** At least this many grid frames when the video is long enough to have them (default 8). */
  minFrames: number;
  /** At most this many grid frames (default 32). */
  maxFrames: number;
  /** Extra frames picked by the pixel screen (default 4; 0 disables it). */
  spikeFrames: number;
  /** Screen every frame only when the video has at most this many (default 3000: ~100 s at 30 fps). */
  maxScreenFrames: number;
}

export const DEFAULT_SAMPLING: Readonly<FrameSampling> = Object.freeze({ fps: 2, minFrames: 8, maxFrames: 32, spikeFrames: 4, maxScreenFrames: 3000 });

export type VideoFailure = 'empty' | 'too_large' | 'unreadable' | 'not_video' | 'no_video_track' | 'unsupported' | 'corrupt' | 'too_long' | 'timeout' | 'cancelled';

const CODE_FOR_FAILURE: Record<VideoFailure, IngestErrorCode> = {
  empty: 'empty',
  too_large: 'too_large',
  unreadable: 'unreadable',
  not_video: 'not_media',
  no_video_track: 'unsupported_type',
  unsupported: 'unsupported_type',
  corrupt: 'corrupt',
  too_long: 'too_large',
  timeout: 'timeout',
  cancelled: 'timeout',
};

export class VideoDecodeError extends IngestError {
  constructor(
    readonly reason: VideoFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(CODE_FOR_FAILURE[reason], message, options);
    this.name = 'VideoDecodeError';
  }
}

export interface VideoInfo {
  format: string;
  mime: string;
  codec: string;
  width: number;
  height: number;
  /** Container duration in seconds (null when the container does not say). */
  durationS: number | null;
  /** Nominal frame rate of the video track (null when unknown). */
  frameRate: number | null;
  hasAudio: boolean;
}

export interface SampledFrame {
  /** Frame number in the decoded video track (0-based); for fps-filtered decodes, the grid index. */
  sourceFrame: number;
  timeS: number;
  /** On the uniform grid. */
  grid: boolean;
  /** Picked by the pixel screen; its frames sourceFrame ± 1 are in the sample too. */
  spikeCentre: boolean;
  /** Temporal Laplacian of the frame in pixel space (mean absolute, 0–255 scale); null when not measured. */
  pixelSpike: number | null;
}

export interface SampledVideo {
  info: VideoInfo;
  width: number;
  height: number;
  /** NHWC float32 in [0, 1], frames.length images, in time order. */
  pixels: Float32Array;
  frames: SampledFrame[];
  /** Every frame was screened (true) or only the fps grid was decoded (false). */
  screened: boolean;
  /** Frames decoded in total. */
  decodedFrames: number;
  /** Median pixel temporal Laplacian over all screened frames (null when not screened). */
  medianPixelSpike: number | null;
  /** Decoder complaints (damaged packets skipped); the frames that did decode are used. */
  warnings: string[];
  ms: number;
}

export interface VideoSource {
  kind: SniffResult;
  /** Input argument for ffmpeg ('file:…'); bytes are written to a private temp file (MP4 needs seeking). */
  inputArg: string;
  demuxer: string;
  cleanup: () => Promise<void>;
}

/** Sniffs, checks the size and prepares an ffmpeg input; call cleanup() when done. */
export async function openVideoSource(input: Uint8Array | string, limits: VideoLimits): Promise<VideoSource> {
  let kind: SniffResult;
  let file: string;
  let cleanup = async () => undefined as void;
  if (typeof input === 'string') {
    const info = await stat(input).catch((e: unknown) => {
      throw new VideoDecodeError('unreadable', fsErrorText(e), { cause: e });
    });
    if (!info.isFile()) throw new VideoDecodeError('unreadable', info.isDirectory() ? 'is a folder, not a file' : 'is not a regular file');
    checkSize(info.size, limits);
    const head = new Uint8Array(8192);
    let n = 0;
    try {
      const handle = await open(input, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      try {
        ({ bytesRead: n } = await handle.read(head, 0, head.length, 0));
      } finally {
        await handle.close();
      }
    } catch (e) {
      throw new VideoDecodeError('unreadable', fsErrorText(e), { cause: e });
    }
    kind = sniff(head.subarray(0, n));
    file = path.resolve(input);
  } else {
    checkSize(input.length, limits);
    kind = sniff(input);
    refuse(kind);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'parallax-video-'));
    file = path.join(dir, 'input');
    await writeFile(file, input, { mode: 0o600 });
    cleanup = () => rm(dir, { recursive: true, force: true });
  }
  try {
    refuse(kind);
  } catch (e) {
    await cleanup();
    throw e;
  }
  return { kind, inputArg: `file:${file}`, demuxer: DEMUXER_FOR_FORMAT[kind.format], cleanup };
}

function refuse(kind: SniffResult): void {
  if (kind.modality === 'image') throw new VideoDecodeError('not_video', `not a video: the file is an image (${kind.label})`);
  if (kind.modality === 'audio') throw new VideoDecodeError('not_video', `not a video: the file is audio (${kind.label})`);
  if (kind.modality === null) {
    throw new VideoDecodeError('not_video', kind.format === 'unknown' ? 'not a video: the bytes match no known video format' : `not a video: the file looks like ${kind.label}`);
  }
  if (!DEMUXER_FOR_FORMAT[kind.format]) throw new VideoDecodeError('unsupported', `${kind.label} is not supported by the video decoder`);
}

function checkSize(size: number, limits: VideoLimits): void {
  if (size === 0) throw new VideoDecodeError('empty', 'file is empty (0 bytes)');
  if (size > limits.maxFileBytes) {
    throw new VideoDecodeError('too_large', `file is ${(size / 1048576).toFixed(1)} MiB, over the limit of ${(limits.maxFileBytes / 1048576).toFixed(1)} MiB`);
  }
}

/** Stream and container facts from ffmpeg's description of the input. */
export async function probeVideo(source: VideoSource, limits: VideoLimits, signal?: AbortSignal): Promise<VideoInfo> {
  const res = await runFfmpeg({
    args: ['-nostdin', '-protocol_whitelist', 'file', '-f', source.demuxer, '-i', source.inputArg],
    timeoutMs: Math.min(limits.timeoutMs, 15_000),
    signal,
  });
  if (res.stopped === 'timeout') throw new VideoDecodeError('timeout', `reading the ${source.kind.label} header took too long`);
  if (res.stopped === 'aborted') throw new VideoDecodeError('cancelled', `reading the ${source.kind.label} header was cancelled`);
  // Without an output ffmpeg always exits 1; the input was readable if it was described.
  if (!/^Input #0/m.test(res.stderr)) {
    throw new VideoDecodeError('corrupt', `could not read ${source.kind.label}: ${ffmpegErrorLine(res.stderr).replace(/^file:\S*?:\s*/, '')}`);
  }
  const dur = res.stderr.match(/Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)/);
  const video = res.stderr.match(/Stream #0:\d+[^:\n]*: Video: ([\w-]+)[^\n]*?, (\d{2,5})x(\d{2,5})[^\n]*/);
  if (!video) {
    throw new VideoDecodeError('no_video_track', `${source.kind.label} has no video track${/: Audio:/.test(res.stderr) ? ' (audio only)' : ''}`);
  }
  const fps = video[0].match(/, ([\d.]+) fps/) ?? video[0].match(/, ([\d.]+) tbr/);
  return {
    format: source.kind.format,
    mime: source.kind.mime,
    codec: video[1],
    width: Number(video[2]),
    height: Number(video[3]),
    durationS: dur ? Number(dur[1]) * 3600 + Number(dur[2]) * 60 + Number(dur[3]) : null,
    frameRate: fps ? Number(fps[1]) : null,
    hasAudio: /Stream #0:\d+[^:\n]*: Audio:/.test(res.stderr),
  };
}

/** Probes and samples frames; see the header for which frames. */
export async function sampleFrames(
  input: Uint8Array | string,
  size: { width: number; height: number },
  options: { limits?: Partial<VideoLimits>; sampling?: Partial<FrameSampling>; signal?: AbortSignal } = {},
): Promise<SampledVideo> {
  const limits = { ...DEFAULT_VIDEO_LIMITS, ...options.limits };
  const source = await openVideoSource(input, limits);
  try {
    return await sampleFromSource(source, size, limits, { ...DEFAULT_SAMPLING, ...options.sampling }, options.signal);
  } finally {
    await source.cleanup();
  }
}

export async function sampleFromSource(source: VideoSource, size: { width: number; height: number }, limits: VideoLimits, sampling: FrameSampling, signal?: AbortSignal): Promise<SampledVideo> {
  const started = performance.now();
  const info = await probeVideo(source, limits, signal);
  if (info.durationS !== null && info.durationS > limits.maxDurationS) {
    throw new VideoDecodeError('too_long', `${source.kind.label} lasts ${info.durationS.toFixed(1)} s, over the limit of ${limits.maxDurationS} s`);
  }
  const duration = info.durationS ?? limits.maxDurationS;
  const rate = Math.min(Math.max(sampling.fps, sampling.minFrames / Math.max(duration, 1e-3)), sampling.maxFrames / Math.max(duration, 1e-3));
  const expectedFrames = info.frameRate ? duration * info.frameRate : Infinity;
  const screen = sampling.spikeFrames > 0 && expectedFrames <= sampling.maxScreenFrames;

  const { width, height } = size;
  const frameBytes = width * height * 3;
  // Grid frames and spike candidates are kept as bytes; only the chosen ones become floats.
  const grid = new Map<number, Uint8Array>();
  type Candidate = { index: number; score: number; triplet: [Uint8Array, Uint8Array, Uint8Array] };
  const candidates: Candidate[] = [];
  const laplacians = new Map<number, number>();
  const times: number[] = [];
  let nextGridTime = 0;
  let decoded = 0;
  // The last five frames: their Laplacians, and the spikiness of the oldest one that has both.
  const window: Uint8Array[] = [];
  let pending: Buffer = Buffer.alloc(0);
  const pendingFrames: Uint8Array[] = [];
  const warnings: string[] = [];
  const timeOf = (index: number) => times[index] ?? index / (screen ? info.frameRate ?? 1 : rate);

  const accept = (rgb: Uint8Array, index: number) => {
    const t = timeOf(index);
    if (!screen || t + 1e-6 >= nextGridTime) {
      if (grid.size < sampling.maxFrames) grid.set(index, rgb);
      nextGridTime += 1 / rate;
      while (nextGridTime <= t) nextGridTime += 1 / rate;
    }
    if (!screen) return;
    window.push(rgb);
    if (window.length > 5) window.shift();
    if (window.length >= 3) laplacians.set(index - 1, temporalLaplacian(window[window.length - 3], window[window.length - 2], window[window.length - 1]));
    if (window.length < 5) return;
    // L is known up to frame index − 1, so the newest frame whose spikiness can be computed
    // (it needs L two frames later) is c = index − 3; the window holds c − 1 … c + 3.
    const c = index - 3;
    const score = laplacians.get(c)! / (0.5 * (laplacians.get(c - 2) ?? laplacians.get(c)!) + 0.5 * laplacians.get(c + 2)! + 0.5);
    if (candidates.length < sampling.spikeFrames || score > candidates[candidates.length - 1].score) {
      candidates.push({ index: c, score, triplet: [window[0], window[1], window[2]] });
      candidates.sort((x, y) => y.score - x.score);
      if (candidates.length > sampling.spikeFrames) candidates.pop();
    }
  };
  // Frames wait for their showinfo timestamp (stderr and stdout are separate pipes).
  const drain = (final: boolean) => {
    while (pendingFrames.length > 0 && (final || times.length > decoded)) {
      accept(pendingFrames.shift()!, decoded);
      decoded++;
    }
  };
  const filter = screen
    ? `showinfo,scale=${width}:${height}:flags=area,format=rgb24`
    : `fps=${rate.toFixed(6)},showinfo,scale=${width}:${height}:flags=area,format=rgb24`;
  const maxDecoded = screen ? sampling.maxScreenFrames + 10 : sampling.maxFrames;
  const res = await runFfmpeg({
    args: [
      '-nostdin', '-protocol_whitelist', 'file', '-f', source.demuxer, '-i', source.inputArg,
      '-map', '0:v:0', '-an', '-sn', '-dn',
      '-t', String(limits.maxDurationS + 1),
      '-vf', filter,
      '-vsync', 'passthrough',
      '-frames:v', String(maxDecoded),
      '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1',
    ],
    timeoutMs: limits.timeoutMs,
    signal,
    onStderrLine: (line) => {
      const m = line.match(/Parsed_showinfo[^\]]*\]\s*n:\s*(\d+)\s+pts:\s*-?\d+\s+pts_time:\s*(-?[\d.e+-]+)/);
      if (m) {
        times[Number(m[1])] = Number(m[2]);
        drain(false);
      } else if (warnings.length < 5 && /error|invalid|corrupt|concealing|missing/i.test(line) && !/Parsed_showinfo/.test(line)) {
        warnings.push(line.replace(/^\[[^\]]+\]\s*/, '').replace(/^file:\S*?:\s*/, '').trim());
      }
    },
    onStdout: (chunk) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= frameBytes) {
        pendingFrames.push(new Uint8Array(pending.subarray(0, frameBytes)));
        pending = pending.subarray(frameBytes);
      }
      drain(false);
    },
  });
  drain(true);
  if (res.stopped === 'timeout') throw new VideoDecodeError('timeout', `decoding ${source.kind.label} took longer than the limit of ${limits.timeoutMs} ms`);
  if (res.stopped === 'aborted') throw new VideoDecodeError('cancelled', `decoding ${source.kind.label} was cancelled`);
  if (res.code !== 0 && decoded === 0) {
    throw new VideoDecodeError('corrupt', `could not decode ${source.kind.label}: ${ffmpegErrorLine(res.stderr).replace(/^file:\S*?:\s*/, '')}`);
  }
  if (decoded === 0) throw new VideoDecodeError('corrupt', `could not decode ${source.kind.label}: no frames in the video track`);

  const lapValues = [...laplacians.values()].sort((a, b) => a - b);
  const median = lapValues.length ? lapValues[Math.floor(lapValues.length / 2)] : null;
  const chosenMap = new Map<number, { frame: SampledFrame; rgb: Uint8Array }>();
  const put = (index: number, rgb: Uint8Array, grid: boolean, spikeCentre: boolean) => {
    const have = chosenMap.get(index);
    if (have) {
      have.frame.grid ||= grid;
      have.frame.spikeCentre ||= spikeCentre;
    } else {
      chosenMap.set(index, { frame: { sourceFrame: index, timeS: timeOf(index), grid, spikeCentre, pixelSpike: laplacians.get(index) ?? null }, rgb });
    }
  };
  for (const [index, rgb] of grid) put(index, rgb, true, false);
  for (const c of candidates) {
    put(c.index - 1, c.triplet[0], false, false);
    put(c.index, c.triplet[1], false, true);
    put(c.index + 1, c.triplet[2], false, false);
  }
  const chosen = [...chosenMap.values()].sort((a, b) => a.frame.sourceFrame - b.frame.sourceFrame);

  const pixels = new Float32Array(chosen.length * frameBytes);
  chosen.forEach((c, i) => {
    for (let j = 0; j < frameBytes; j++) pixels[i * frameBytes + j] = c.rgb[j] / 255;
  });
  return {
    info,
    width,
    height,
    pixels,
    frames: chosen.map((c) => c.frame),
    screened: screen,
    decodedFrames: decoded,
    medianPixelSpike: median,
    warnings,
    ms: performance.now() - started,
  };
}

/** mean |b − (a + c)/2| over a strided subset of samples (every 3rd pixel, all channels). */
function temporalLaplacian(a: Uint8Array, b: Uint8Array, c: Uint8Array): number {
  let sum = 0;
  let n = 0;
  for (let i = 0; i + 2 < b.length; i += 9) {
    for (let k = 0; k < 3; k++) {
      sum += Math.abs(b[i + k] - (a[i + k] + c[i + k]) / 2);
      n++;
    }
  }
  return n ? sum / n : 0;
}

function fsErrorText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'file does not exist';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return `cannot read the file (${code ?? firstLine(e)})`;
}
