// The default audio encoder: summary statistics of a log-mel spectrogram. No learned weights, so
// it needs nothing downloaded, is fully deterministic, and its id is a hash of its parameters.
//
// ─── The maths, for a mono clip x[n] at sr = 16 kHz ────────────────────────────────────────────
//
// 0. Conditioning.
//    - level: ρ = RMS(x); the clip is rescaled to RMS 0.05 (−26 dBFS) when ρ > 1e−5, so the
//      spectral features describe the sound, not the recording gain. ρ itself is kept as one
//      feature (LEVEL below), so a gain change moves the embedding a little, not a lot.
//    - length: a clip shorter than MIN_SECONDS is repeated end to end until it is that long
//      ("repeat-padding", as CLAP does). Zero-padding would add silent frames that dominate the
//      statistics of a 40 ms click; repetition keeps them those of the click. Empty clips throw.
//
// 1. STFT. Frames of L = 400 samples (25 ms), hop H = 160 (10 ms), no centre padding, so
//    T = 1 + ⌊(N − L)/H⌋ frames. Each frame is multiplied by a periodic Hann window w and
//    zero-padded to N_fft = 512; P[k,t] = |FFT(w·frame)[k]|² / Σw², k = 0..256 (31.25 Hz bins).
//
// 2. Log-mel. M = 64 HTK-mel triangles from 60 Hz to 8 kHz (dsp.ts: corners equally spaced in
//    mel = 2595·log10(1 + f/700), each filter normalised to unit sum). E[m,t] = Σ_k F[m,k]·P[k,t];
//    L[m,t] = 10·log10(E[m,t] + 1e−10) dB, floored at max_{m,t} L − 80 dB (the top_db of
//    librosa's power_to_db: a silent gap must not put −100 dB outliers into every statistic).
//
// 3. Deltas. ΔL[m,t] = Σ_{n=1..2} n·(L[m,t+n] − L[m,t−n]) / (2·Σ n²), frames past the ends
//    replicated (the HTK regression formula).
//
// 4. Frame descriptors, on P (bins k ≥ 1; f_k = k·sr/N_fft) and on the raw frame:
//    centroid  c_t = Σ f_k·P_k / Σ P_k                          (brightness)
//    rolloff   r_t = min f_k such that Σ_{j≤k} P_j ≥ 0.85·Σ P   (where the energy ends)
//    flatness  φ_t = exp(mean ln(P_k + ε)) / (mean P_k + ε)      (1 = white noise, → 0 = tones)
//    zcr       z_t = share of adjacent sample pairs that change sign (noisiness, sibilance)
//    level     e_t = 10·log10(mean frame power + 1e−10) − max_t(that)  (dB below the loudest frame)
//    shares    s_{b,t} = energy share of each band of BAND_EDGES_HZ (0–0.5, 0.5–1, 1–2, 2–4, 4–6,
//              6–8 kHz): the energy distribution, top band included. At 16 kHz nothing above
//              8 kHz exists; ultrasonic content is judged separately (ultrasonic.ts) because
//              a 16 kHz encoder cannot see it by construction.
//
// 5. Clip vector, each group shifted and scaled by fixed constants (part of the id) so its
//    entries are of order one and centred near zero on ordinary sounds (cosine distances then
//    compare shapes rather than a shared offset):
//    SHAPE  (64)  (mean_t L[m,t] − mean_{m,t} L) / 15         spectral envelope, level-free
//    SPREAD (64)  (std_t L[m,t] − 11) / 8                     how much each band fluctuates
//    MOTION (64)  (std_t ΔL[m,t] − 2) / 1.5                   how fast each band changes
//    DESCR  (10)  mean_t and std_t of: log2(c/1 kHz), log2(r/1 kHz), log10 φ, √z, e, each
//                 shifted and scaled by `scales` below
//    SHARES (12)  (mean_t √s_b − 0.25) / 0.25 and std_t √s_b / 0.25 (the square root tames
//                 the skew: most sounds put almost nothing in the top bands)
//    LEVEL  (1)   (20·log10 ρ + 24) / 10
//    Each group is divided by √(its length) and multiplied by GROUP_WEIGHTS, so the three
//    64-band groups do not drown the 23 descriptors merely by being long; the concatenation
//    (215 values) is L2-normalised.
import { createHash } from 'node:crypto';

import { canonicalJson } from '../encoders/manifest.js';
import type { AudioEncoder } from './encoder.js';
import { fftInPlace, hannPeriodic, melFilterbank } from './dsp.js';

export const LOGMEL_PARAMS = Object.freeze({
  algorithm: 'logmel-stats',
  version: 1,
  sampleRate: 16000,
  frameLength: 400,
  hop: 160,
  nFft: 512,
  melBands: 64,
  fMin: 60,
  fMax: 8000,
  topDb: 80,
  minSeconds: 0.5,
  targetRms: 0.05,
  silenceRms: 1e-5,
  rolloff: 0.85,
  bandEdgesHz: [0, 500, 1000, 2000, 4000, 6000, 8000],
  // Shifts and scales [centre, spread] of step 5: rounded medians and interquartile ranges of
  // each statistic over the 309 clips of shared/data/audio (speech, music, effects, UI sounds).
  // Fixed numbers, not fitted per baseline: they only make entries O(1); detectors do the rest.
  scales: {
    shape: [0, 15],
    spread: [11, 8],
    motion: [2, 1.5],
    centroid: { mean: [-0.9, 1.2], std: [0.75, 0.6] },
    rolloff: { mean: [-0.5, 1.3], std: [1, 0.8] },
    flatness: { mean: [-3.5, 1.2], std: [0.8, 0.5] },
    zcr: { mean: [0.3, 0.12], std: [0.07, 0.07] },
    level: { mean: [-17, 10], std: [12, 8] },
    shares: [0.25, 0.25],
    rms: [-24, 10],
  },
  groupWeights: { shape: 1, spread: 1, motion: 0.7, descr: 1, shares: 1, level: 0.3 },
});

export type LogMelParams = typeof LOGMEL_PARAMS;

const DESCRIPTORS = ['centroid', 'rolloff', 'flatness', 'zcr', 'level'] as const;
const MEL = LOGMEL_PARAMS.melBands;
const N_SHARES = LOGMEL_PARAMS.bandEdgesHz.length - 1;
export const LOGMEL_DIM = 3 * MEL + 2 * DESCRIPTORS.length + 2 * N_SHARES + 1;

export function logMelEncoderId(params: LogMelParams = LOGMEL_PARAMS): string {
  return `logmel@${createHash('sha256').update(canonicalJson(params)).digest('hex').slice(0, 12)}`;
}

/** Frame-level analysis, exposed for tests and for anyone who wants to plot it. */
export interface LogMelAnalysis {
  frames: number;
  /** melBands × frames, row-major, dB after the top_db floor. */
  logMel: Float32Array;
  /** Per-frame descriptors. */
  centroidHz: Float32Array;
  rolloffHz: Float32Array;
  flatness: Float32Array;
  zcr: Float32Array;
  levelDb: Float32Array;
  /** N_SHARES × frames, row-major. */
  shares: Float32Array;
  /** RMS of the clip before level normalisation. */
  rms: number;
}

const P = LOGMEL_PARAMS;
const WINDOW = hannPeriodic(P.frameLength);
const WINDOW_POWER = WINDOW.reduce((a, w) => a + w * w, 0);
const BINS = P.nFft / 2 + 1;
const FILTERS = melFilterbank(P.melBands, P.nFft, P.sampleRate, P.fMin, P.fMax);
/** For each mel band, the first and last bin with non-zero weight (skips the zeros). */
const FILTER_SPAN = Array.from({ length: MEL }, (_, m) => {
  let first = -1;
  let last = -1;
  for (let k = 0; k < BINS; k++) {
    if (FILTERS[m * BINS + k] > 0) {
      if (first < 0) first = k;
      last = k;
    }
  }
  return [first, last] as const;
});
const SHARE_BIN = P.bandEdgesHz.map((f) => Math.round((f * P.nFft) / P.sampleRate));

export function analyseLogMel(clip: Float32Array): LogMelAnalysis {
  if (clip.length === 0) throw new RangeError('log-mel: the clip is empty (0 samples)');
  let sq = 0;
  for (let i = 0; i < clip.length; i++) sq += clip[i] * clip[i];
  const rms = Math.sqrt(sq / clip.length);
  if (!Number.isFinite(rms)) throw new RangeError('log-mel: the clip contains NaN or infinite samples');
  const gain = rms > P.silenceRms ? P.targetRms / rms : 1;
  const minLength = Math.max(P.frameLength, Math.ceil(P.minSeconds * P.sampleRate));
  const n = Math.max(clip.length, minLength);
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) x[i] = clip[i % clip.length] * gain;

  const T = 1 + Math.floor((n - P.frameLength) / P.hop);
  const logMel = new Float32Array(MEL * T);
  const centroidHz = new Float32Array(T);
  const rolloffHz = new Float32Array(T);
  const flatness = new Float32Array(T);
  const zcr = new Float32Array(T);
  const levelDb = new Float32Array(T);
  const shares = new Float32Array(N_SHARES * T);
  const re = new Float64Array(P.nFft);
  const im = new Float64Array(P.nFft);
  const power = new Float64Array(BINS);
  const binHz = P.sampleRate / P.nFft;
  let maxLog = -Infinity;

  for (let t = 0; t < T; t++) {
    const start = t * P.hop;
    re.fill(0);
    im.fill(0);
    let crossings = 0;
    let framePower = 0;
    for (let i = 0; i < P.frameLength; i++) {
      const v = x[start + i];
      re[i] = v * WINDOW[i];
      framePower += v * v;
      if (i > 0 && (v >= 0) !== (x[start + i - 1] >= 0)) crossings++;
    }
    fftInPlace(re, im);
    let total = 0;
    let weighted = 0;
    let logSum = 0;
    for (let k = 0; k < BINS; k++) {
      const p = (re[k] * re[k] + im[k] * im[k]) / WINDOW_POWER;
      power[k] = p;
      if (k >= 1) {
        total += p;
        weighted += k * binHz * p;
        logSum += Math.log(p + 1e-12);
      }
    }
    centroidHz[t] = total > 0 ? weighted / total : 0;
    let cum = 0;
    let roll = BINS - 1;
    for (let k = 1; k < BINS; k++) {
      cum += power[k];
      if (cum >= P.rolloff * total) {
        roll = k;
        break;
      }
    }
    rolloffHz[t] = total > 0 ? roll * binHz : 0;
    const meanP = total / (BINS - 1);
    flatness[t] = Math.exp(logSum / (BINS - 1)) / (meanP + 1e-12);
    zcr[t] = crossings / (P.frameLength - 1);
    levelDb[t] = 10 * Math.log10(framePower / P.frameLength + 1e-10);
    for (let b = 0; b < N_SHARES; b++) {
      let e = 0;
      for (let k = Math.max(1, SHARE_BIN[b]); k < Math.min(BINS, SHARE_BIN[b + 1] + (b === N_SHARES - 1 ? 1 : 0)); k++) e += power[k];
      shares[b * T + t] = total > 0 ? e / total : 1 / N_SHARES;
    }
    for (let m = 0; m < MEL; m++) {
      const [first, last] = FILTER_SPAN[m];
      let e = 0;
      for (let k = first; k <= last; k++) e += FILTERS[m * BINS + k] * power[k];
      const l = 10 * Math.log10(e + 1e-10);
      logMel[m * T + t] = l;
      if (l > maxLog) maxLog = l;
    }
  }
  const floor = maxLog - P.topDb;
  for (let i = 0; i < logMel.length; i++) if (logMel[i] < floor) logMel[i] = floor;
  let maxLevel = -Infinity;
  for (let t = 0; t < T; t++) maxLevel = Math.max(maxLevel, levelDb[t]);
  for (let t = 0; t < T; t++) levelDb[t] = Math.max(levelDb[t] - maxLevel, -P.topDb);
  return { frames: T, logMel, centroidHz, rolloffHz, flatness, zcr, levelDb, shares, rms };
}

/** The un-normalised clip vector (step 5 before the final L2 normalisation). */
export function logMelFeatures(clip: Float32Array): Float32Array {
  const a = analyseLogMel(clip);
  const T = a.frames;
  const S = P.scales;
  const W = P.groupWeights;
  const out = new Float32Array(LOGMEL_DIM);
  let o = 0;

  const bandMean = new Float64Array(MEL);
  const bandStd = new Float64Array(MEL);
  const deltaStd = new Float64Array(MEL);
  // Written as plain loops over Float64Arrays on purpose. An earlier form (a closure `at`
  // created per frame inside this loop to clamp the delta indices, and meanStd called on both the
  // Float32Array mel rows and Float64Arrays) was miscompiled by V8 11.3 (Node 20) when TurboFan's
  // concurrent OSR compile of this function landed late, as it does on a loaded machine: every
  // entry of the three 64-band groups came out NaN, for the rest of the process. Same values
  // (float32 → float64 is exact), no closure, one array type for meanStd.
  const row = new Float64Array(T);
  const delta = new Float64Array(T);
  const last = T - 1;
  let grand = 0;
  for (let m = 0; m < MEL; m++) {
    const base = m * T;
    for (let t = 0; t < T; t++) row[t] = a.logMel[base + t];
    const [mu, sd] = meanStd(row);
    bandMean[m] = mu;
    bandStd[m] = sd;
    grand += mu / MEL;
    for (let t = 0; t < T; t++) {
      const next1 = row[t + 1 > last ? last : t + 1];
      const next2 = row[t + 2 > last ? last : t + 2];
      const prev1 = row[t - 1 < 0 ? 0 : t - 1];
      const prev2 = row[t - 2 < 0 ? 0 : t - 2];
      delta[t] = (next1 - prev1 + 2 * (next2 - prev2)) / 10;
    }
    deltaStd[m] = meanStd(delta)[1];
  }
  const g64 = 1 / Math.sqrt(MEL);
  for (let m = 0; m < MEL; m++) out[o++] = (W.shape * g64 * (bandMean[m] - grand - S.shape[0])) / S.shape[1];
  for (let m = 0; m < MEL; m++) out[o++] = (W.spread * g64 * (bandStd[m] - S.spread[0])) / S.spread[1];
  for (let m = 0; m < MEL; m++) out[o++] = (W.motion * g64 * (deltaStd[m] - S.motion[0])) / S.motion[1];

  const gDescr = W.descr / Math.sqrt(2 * DESCRIPTORS.length);
  const transformed: Record<(typeof DESCRIPTORS)[number], Float64Array> = {
    centroid: Float64Array.from(a.centroidHz, (c) => Math.log2(Math.max(c, 20) / 1000)),
    rolloff: Float64Array.from(a.rolloffHz, (r) => Math.log2(Math.max(r, 20) / 1000)),
    flatness: Float64Array.from(a.flatness, (f) => Math.log10(Math.max(f, 1e-8))),
    zcr: Float64Array.from(a.zcr, (z) => Math.sqrt(z)),
    level: Float64Array.from(a.levelDb),
  };
  for (const name of DESCRIPTORS) {
    const [mu, sd] = meanStd(transformed[name]);
    const sc = S[name];
    out[o++] = (gDescr * (mu - sc.mean[0])) / sc.mean[1];
    out[o++] = (gDescr * (sd - sc.std[0])) / sc.std[1];
  }
  const gShares = W.shares / Math.sqrt(2 * N_SHARES);
  for (let b = 0; b < N_SHARES; b++) {
    const [mu, sd] = meanStd(Float64Array.from(a.shares.subarray(b * T, (b + 1) * T), Math.sqrt));
    out[o++] = (gShares * (mu - S.shares[0])) / S.shares[1];
    out[o++] = (gShares * sd) / S.shares[1];
  }
  const dbfs = 20 * Math.log10(Math.max(a.rms, 1e-6));
  out[o++] = (W.level * (dbfs - S.rms[0])) / S.rms[1];
  return out;
}

function meanStd(v: Float64Array): [number, number] {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  const mu = s / v.length;
  let q = 0;
  for (let i = 0; i < v.length; i++) q += (v[i] - mu) ** 2;
  return [mu, Math.sqrt(q / v.length)];
}

function firstNonFinite(v: Float32Array): number {
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return i;
  return -1;
}

function l2(v: Float32Array): Float32Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
  return v.map((x) => x * inv);
}

export class LogMelEncoder implements AudioEncoder {
  readonly id = logMelEncoderId();
  readonly modality = 'audio' as const;
  readonly dim = LOGMEL_DIM;
  readonly sampleRate = P.sampleRate;
  readonly provider = 'cpu';
  readonly providerNote = 'log-mel statistics, computed in JavaScript (no model)';

  async embedAudio(clips: readonly Float32Array[]): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (const [i, clip] of clips.entries()) {
      let v: Float32Array;
      try {
        v = l2(logMelFeatures(clip));
      } catch (err) {
        throw new RangeError(`encoder ${this.id}: clip ${i}: ${(err as Error).message}`, { cause: err });
      }
      // The input is checked for NaN/Inf (analyseLogMel), so a non-finite entry here means the
      // feature maths went wrong: refuse it rather than hand NaN to the detectors.
      const bad = firstNonFinite(v);
      if (bad >= 0) {
        throw new RangeError(
          `encoder ${this.id}: clip ${i} (${clip.length} samples): the embedding has a non-finite value (${v[bad]} at entry ${bad}); refusing to return it`,
        );
      }
      out.push(v);
      // A long batch is CPU-bound JavaScript: let timers and I/O in between clips.
      if (i % 8 === 7) await new Promise((r) => setImmediate(r));
    }
    return out;
  }

  async close(): Promise<void> {}
}
