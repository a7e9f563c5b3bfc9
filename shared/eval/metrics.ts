// Detection metrics for `parallax eval`: pure functions of scores (higher = more suspicious)
// of clean items (negatives) and attacked items (positives).
//
// Definitions (the hand-computed test in test/eval.test.ts follows them exactly):
//  - AUROC: P(attacked score > clean score) + ½ P(equal), the Mann–Whitney statistic.
//  - Threshold at FPR f, over n clean scores: m = ⌊f·n⌋ false positives are allowed, and τ_f
//    is the smallest score with at most m clean scores strictly above it, i.e. the
//    (m+1)-th largest clean score (−∞ when m ≥ n). An item is flagged when its score is
//    strictly greater than τ_f, so the realised clean FPR is ≤ f (less when scores tie).
//  - TPR at FPR f: the share of attacked items with score > τ_f.
//  - block / review rates: the share of items whose decision is block, resp. review or
//    block (i.e. "flagged at the review threshold"), at the configured thresholds.
//  - effective attacks: an attack that moves the embedding no further than a benign edit
//    (a JPEG re-encode, a crop) steers nothing the model sees; such items are scored like the
//    rest, but are also reported apart. The line is the q-quantile (0.95 by default) of the
//    embedding shifts the benign controls caused, nearest rank: the ⌈q·n⌉-th smallest.
// With few clean items the threshold is coarse: with 297 clean photos, 1% FPR allows 2 false
// positives, so TPR at 1% FPR is "above the 3rd most suspicious clean photo".
import { auroc } from '../math/stats.js';

export interface DetectionMetrics {
  n_clean: number;
  n_attacked: number;
  auroc: number;
  tpr_at_1pct_fpr: number;
  tpr_at_5pct_fpr: number;
  /** τ at 1% and 5% FPR (see the header). */
  threshold_1pct_fpr: number;
  threshold_5pct_fpr: number;
}

export interface DecisionRates {
  n: number;
  /** Share with decision block. */
  block_rate: number;
  /** Share with decision review or block. */
  review_rate: number;
}

/** τ_f: the (⌊f·n⌋+1)-th largest clean score, −∞ when every clean item may be a false positive. */
export function thresholdAtFpr(clean: readonly number[], fpr: number): number {
  if (clean.length === 0) throw new RangeError('thresholdAtFpr: no clean scores');
  if (!(fpr >= 0 && fpr <= 1)) throw new RangeError(`thresholdAtFpr: fpr must be in [0, 1], got ${fpr}`);
  checkScores(clean, 'clean');
  const m = Math.floor(fpr * clean.length + 1e-9);
  if (m >= clean.length) return -Infinity;
  const sorted = [...clean].sort((a, b) => b - a);
  return sorted[m];
}

export function tprAtFpr(attacked: readonly number[], clean: readonly number[], fpr: number): number {
  if (attacked.length === 0) throw new RangeError('tprAtFpr: no attacked scores');
  checkScores(attacked, 'attacked');
  const tau = thresholdAtFpr(clean, fpr);
  return attacked.filter((s) => s > tau).length / attacked.length;
}

export function detectionMetrics(attacked: readonly number[], clean: readonly number[]): DetectionMetrics {
  checkScores(attacked, 'attacked');
  checkScores(clean, 'clean');
  return {
    n_clean: clean.length,
    n_attacked: attacked.length,
    auroc: auroc(attacked, clean),
    tpr_at_1pct_fpr: tprAtFpr(attacked, clean, 0.01),
    tpr_at_5pct_fpr: tprAtFpr(attacked, clean, 0.05),
    threshold_1pct_fpr: thresholdAtFpr(clean, 0.01),
    threshold_5pct_fpr: thresholdAtFpr(clean, 0.05),
  };
}

export function decisionRates(decisions: readonly ('allow' | 'review' | 'block')[]): DecisionRates {
  const n = decisions.length;
  if (n === 0) return { n: 0, block_rate: 0, review_rate: 0 };
  const block = decisions.filter((d) => d === 'block').length;
  const flagged = decisions.filter((d) => d !== 'allow').length;
  return { n, block_rate: block / n, review_rate: flagged / n };
}

/** The decision a score gets at thresholds on its own scale (for the reference formula). */
export function decideAt(score: number, thresholds: { review: number; block: number }): 'allow' | 'review' | 'block' {
  if (score >= thresholds.block) return 'block';
  if (score >= thresholds.review) return 'review';
  return 'allow';
}

function checkScores(scores: readonly number[], what: string): void {
  for (const s of scores) if (Number.isNaN(s)) throw new RangeError(`${what} scores contain NaN`);
}

/** Fewest benign shifts the effective-attack line is drawn from. */
export const MIN_BENIGN_SHIFTS = 20;

/** The ⌈q·n⌉-th smallest benign embedding shift (see the header); null with too few shifts. */
export function effectiveShiftThreshold(benignShifts: readonly number[], q = 0.95): number | null {
  if (!(q > 0 && q <= 1)) throw new RangeError(`effectiveShiftThreshold: q must be in (0, 1], got ${q}`);
  checkScores(benignShifts, 'benign shift');
  if (benignShifts.length < MIN_BENIGN_SHIFTS) return null;
  const sorted = [...benignShifts].sort((a, b) => a - b);
  return sorted[Math.ceil(q * sorted.length - 1e-9) - 1];
}
