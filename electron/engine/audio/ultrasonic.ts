// Near-ultrasonic energy: a check the 16 kHz encoder cannot make by construction.
//
// Inaudible command injection ("DolphinAttack", Zhang et al. 2017; "SurfingAttack", …) hides a
// voice command as amplitude modulation of a carrier above ~18 kHz. People do not hear it; a
// microphone's non-linearity demodulates it back into the speech band. In a FILE the carrier
// is plainly there above 16 kHz — but decoding to 16 kHz for the encoder (soxr, steep filter)
// removes everything above 8 kHz, so no embedding of the 16 kHz signal can see it. This check
// therefore runs on a separate decode at the file's own rate (capped at 48 kHz).
//
// Statistic: Welch power spectrum (Hann, 4096-point frames, 50% overlap) of the whole window;
//   share     = energy above CARRIER_BAND_HZ (17 kHz) / total energy;
//   peak      = the strongest bin above 17 kHz, in dB above the median of that band (a carrier
//               is a narrow peak; cymbals and hiss are broad);
//   level     = clamp((10·log10(share) − FLOOR_DB) / (CEIL_DB − FLOOR_DB), 0, 1);
//   score     = 1 − (1 − level)² when the peak is tonal (> 20 dB above the band median),
//               0.35·level otherwise.
// Only a carrier is an attack: broadband energy up there (cymbals, tape hiss, a noisy preamp)
// is ordinary in full-band recordings, so without a tonal peak the score stays under the review
// threshold however loud the band is. FLOOR_DB (−40 dB) / CEIL_DB (−10 dB) are physical, not
// learned: a carrier that survives a speaker and a microphone's roll-off must carry a sizeable
// share of the signal. The shared audio corpus is
// all 16 kHz, so these bounds could not be calibrated on it; once a baseline of full-band
// recordings exists, its own share distribution should set FLOOR_DB.
import { fftInPlace, hannPeriodic } from './dsp.js';

export const CARRIER_BAND_HZ = 17000;
const N_FFT = 4096;
const FLOOR_DB = -40;
const CEIL_DB = -10;
const TONAL_DB = 20;
const NON_TONAL_SHARE = 0.35;

export interface UltrasonicReport {
  sampleRate: number;
  /** False when the clip's rate cannot hold the band (Nyquist ≤ 17 kHz): nothing could be measured. */
  measurable: boolean;
  /** Share of energy above 17 kHz, in [0, 1]. */
  share: number;
  shareDb: number;
  /** Frequency of the strongest bin above 17 kHz, and its height above the band's median (dB). */
  peakHz: number | null;
  peakProminenceDb: number;
  /** In [0, 1]; see the header for the formula. */
  score: number;
  cues: string[];
}

export function ultrasonicReport(samples: Float32Array, sampleRate: number): UltrasonicReport {
  const nyquist = sampleRate / 2;
  if (nyquist <= CARRIER_BAND_HZ + 500) {
    return { sampleRate, measurable: false, share: 0, shareDb: -Infinity, peakHz: null, peakProminenceDb: 0, score: 0, cues: [`sample rate ${sampleRate} Hz holds nothing above ${nyquist} Hz`] };
  }
  const psd = welch(samples);
  const binHz = sampleRate / N_FFT;
  const first = Math.ceil(CARRIER_BAND_HZ / binHz);
  let total = 0;
  let high = 0;
  for (let k = 1; k < psd.length; k++) {
    total += psd[k];
    if (k >= first) high += psd[k];
  }
  const share = total > 0 ? high / total : 0;
  const shareDb = 10 * Math.log10(share + 1e-12);
  const band = Array.from(psd.subarray(first));
  let peakK = 0;
  for (let i = 1; i < band.length; i++) if (band[i] > band[peakK]) peakK = i;
  const sorted = [...band].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  const peakProminenceDb = band.length ? 10 * Math.log10((band[peakK] + 1e-20) / (median + 1e-20)) : 0;
  const level = clamp01((shareDb - FLOOR_DB) / (CEIL_DB - FLOOR_DB));
  const tonal = peakProminenceDb > TONAL_DB && shareDb > FLOOR_DB;
  const score = tonal ? 1 - (1 - level) ** 2 : NON_TONAL_SHARE * level;
  const cues: string[] = [];
  if (shareDb > FLOOR_DB) cues.push(`${(share * 100).toFixed(share < 0.01 ? 3 : 1)}% of the energy lies above ${CARRIER_BAND_HZ / 1000} kHz`);
  if (tonal) cues.push(`narrow peak at ${((first + peakK) * binHz / 1000).toFixed(2)} kHz, ${peakProminenceDb.toFixed(0)} dB above the band (a carrier)`);
  return { sampleRate, measurable: true, share, shareDb, peakHz: band.length ? (first + peakK) * binHz : null, peakProminenceDb, score, cues };
}

/** Mean power spectrum over 50%-overlapping Hann frames (one zero-padded frame for short clips). */
function welch(x: Float32Array): Float64Array {
  const w = hannPeriodic(N_FFT);
  const re = new Float64Array(N_FFT);
  const im = new Float64Array(N_FFT);
  const psd = new Float64Array(N_FFT / 2 + 1);
  const hop = N_FFT / 2;
  let frames = 0;
  for (let start = 0; start === 0 || start + N_FFT <= x.length; start += hop) {
    re.fill(0);
    im.fill(0);
    for (let i = 0; i < N_FFT && start + i < x.length; i++) re[i] = x[start + i] * w[i];
    fftInPlace(re, im);
    for (let k = 0; k < psd.length; k++) psd[k] += re[k] * re[k] + im[k] * im[k];
    frames++;
  }
  for (let k = 0; k < psd.length; k++) psd[k] /= frames;
  return psd;
}

function clamp01(v: number): number {
  return Math.min(1, Math.max(0, v));
}
