// Turns a detector's raw score into a tail probability under the baseline:
// p(x) = P(S ≥ x) for S the raw score of a legitimate item, estimated from held-out
// legitimate scores s_1..s_n.
//
// Body: the conformal estimate p = (#{s_i ≥ x} + 1) / (n + 1), which is a valid p-value for
// an exchangeable new item. Alone it floors at 1/(n+1), so every item beyond the largest
// calibration score would look equally (un)surprising. Tail: above u = the 90th percentile,
// a peaks-over-threshold exponential fit, p = ζ·exp(−(x − u)/β) with β the mean excess over
// u and ζ the conformal share of scores above u (≈ 0.1). The tail model replaces the
// empirical estimate beyond u rather than being mixed with it: at u it is ≤ the empirical p
// and it is strictly decreasing, so p stays monotone non-increasing in x, and it keeps
// decreasing smoothly past the largest calibration score.

import { base64ToFloat64, float64ToBase64 } from '../math/base64.js';
import { countAtMost, countBelow } from '../math/stats.js';

export interface CalibratorOptions {
  /** Quantile of the calibration scores where the exponential tail takes over. */
  tailQuantile: number;
  /** Fewest exceedances over u for which the tail is fitted; below it p stays empirical. */
  minTailCount: number;
}

export const CALIBRATOR_DEFAULTS: CalibratorOptions = { tailQuantile: 0.9, minTailCount: 5 };

export interface TailFit {
  /** u: scores above it follow the exponential tail. */
  threshold: number;
  /** β: mean excess over u. */
  scale: number;
  /** ζ: p at u, the conformal share of calibration scores above u. */
  fraction: number;
}

export interface CalibratorState {
  kind: 'parallax.calibrator';
  version: 1;
  options: CalibratorOptions;
  n: number;
  /** Calibration scores, sorted ascending, base64 of little-endian float64. */
  scores: string;
}

export class Calibrator {
  readonly tail: TailFit | null;
  private readonly sorted: Float64Array;
  /** prefix[i] = s_0 + … + s_{i−1}, for O(1) leave-one-out tail fits. */
  private readonly prefix: Float64Array;

  private constructor(sorted: Float64Array, readonly options: CalibratorOptions) {
    this.sorted = sorted;
    this.prefix = new Float64Array(sorted.length + 1);
    for (let i = 0; i < sorted.length; i++) this.prefix[i + 1] = this.prefix[i] + sorted[i];
    this.tail = this.fitTail(-1);
  }

  static fit(scores: ArrayLike<number>, options: Partial<CalibratorOptions> = {}): Calibrator {
    const opts = { ...CALIBRATOR_DEFAULTS, ...options };
    if (!(opts.tailQuantile > 0 && opts.tailQuantile < 1)) throw new RangeError(`Calibrator: tailQuantile must be in (0, 1), got ${opts.tailQuantile}`);
    if (!(Number.isInteger(opts.minTailCount) && opts.minTailCount >= 1)) throw new RangeError(`Calibrator: minTailCount must be a positive integer`);
    if (scores.length < 1) throw new RangeError('Calibrator: needs at least one calibration score');
    for (let i = 0; i < scores.length; i++) {
      if (!Number.isFinite(scores[i])) throw new RangeError(`Calibrator: calibration score ${i} is not finite (${scores[i]})`);
    }
    return new Calibrator(Float64Array.from(scores).sort(), opts);
  }

  get n(): number {
    return this.sorted.length;
  }

  /** The calibration scores, ascending (a copy). */
  get scores(): Float64Array {
    return this.sorted.slice();
  }

  /** Tail probability P(S ≥ raw): empirical up to u, exponential beyond. */
  p(raw: number): number {
    return Math.exp(this.logP(raw));
  }

  /** ln p(raw), exact in the far tail where p itself would underflow to 0. */
  logP(raw: number): number {
    if (Number.isNaN(raw)) throw new RangeError('Calibrator: raw score is NaN');
    const t = this.tail;
    if (t && raw > t.threshold) return Math.log(t.fraction) - (raw - t.threshold) / t.scale;
    return Math.log(this.pEmpirical(raw));
  }

  /** Conformal p = (#{s_i ≥ raw} + 1) / (n + 1), in [1/(n+1), 1]. */
  pEmpirical(raw: number): number {
    const n = this.sorted.length;
    return (n - countBelow(this.sorted, raw) + 1) / (n + 1);
  }

  /**
   * Risk = 1 − p_empirical: the share of calibration items this score exceeds (up to
   * n/(n+1)). 0.99 reads "more unusual than 99% of legitimate items".
   */
  risk(raw: number): number {
    return Math.min(1, Math.max(0, 1 - this.pEmpirical(raw)));
  }

  /**
   * p of a calibration score against the other n − 1 (one copy of `raw` removed from both the
   * empirical count and the tail fit). Training uses it so each baseline item's p-value is as
   * honest as a new item's.
   */
  pLeaveOneOut(raw: number): number {
    return Math.exp(this.logPLeaveOneOut(raw));
  }

  logPLeaveOneOut(raw: number): number {
    if (Number.isNaN(raw)) throw new RangeError('Calibrator: raw score is NaN');
    const n = this.sorted.length;
    if (n < 2) return 0;
    const skip = this.indexOf(raw);
    if (skip < 0) return this.logP(raw);
    const t = this.fitTail(skip);
    if (t && raw > t.threshold) return Math.log(t.fraction) - (raw - t.threshold) / t.scale;
    // (#{others ≥ raw} + 1) / ((n − 1) + 1), and raw itself is one of the #{s_i ≥ raw}.
    return Math.log((n - countBelow(this.sorted, raw)) / n);
  }

  toJSON(): CalibratorState {
    return {
      kind: 'parallax.calibrator',
      version: 1,
      options: { ...this.options },
      n: this.sorted.length,
      scores: float64ToBase64(this.sorted),
    };
  }

  static fromJSON(state: CalibratorState): Calibrator {
    if (state?.kind !== 'parallax.calibrator') throw new RangeError('not a calibrator state');
    if (state.version !== 1) throw new RangeError(`calibrator state version ${state.version} is not supported`);
    const sorted = base64ToFloat64(state.scores);
    if (sorted.length !== state.n) throw new RangeError(`calibrator state: ${sorted.length} scores, header says ${state.n}`);
    return new Calibrator(sorted, { ...CALIBRATOR_DEFAULTS, ...state.options });
  }

  private indexOf(raw: number): number {
    const i = countBelow(this.sorted, raw);
    return i < this.sorted.length && this.sorted[i] === raw ? i : -1;
  }

  /** Exponential tail over the sample with element `skip` removed (−1: none). */
  private fitTail(skip: number): TailFit | null {
    const s = this.sorted;
    const m = skip >= 0 ? s.length - 1 : s.length;
    if (m < 2) return null;
    const at = (j: number) => (skip >= 0 && j >= skip ? s[j + 1] : s[j]);
    const pos = this.options.tailQuantile * (m - 1);
    const lo = Math.floor(pos);
    const u = at(lo) + (pos - lo) * (at(Math.min(m - 1, lo + 1)) - at(lo));
    const firstAbove = countAtMost(s, u);
    let count = s.length - firstAbove;
    let sum = this.prefix[s.length] - this.prefix[firstAbove];
    if (skip >= firstAbove) {
      count--;
      sum -= s[skip];
    }
    if (count < this.options.minTailCount) return null;
    const scale = sum / count - u;
    if (!(scale > 0)) return null;
    return { threshold: u, scale, fraction: (count + 1) / (m + 1) };
  }
}
