// Descriptive statistics and rank-based evaluation.

/** Ascending sorted copy as float64 (Float64Array.sort is numeric, unlike Array.prototype.sort). */
export function sortedCopy(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values).sort();
}

/**
 * Quantile with linear interpolation between order statistics (Hyndman & Fan type 7, the
 * default of R and NumPy), on data already sorted ascending.
 */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) throw new RangeError('quantile of an empty sample');
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile: q=${q} outside [0, 1]`);
  const pos = q * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  const frac = pos - lo;
  return sorted[lo] + frac * (sorted[hi] - sorted[lo]);
}

export function quantile(values: ArrayLike<number>, q: number): number {
  return quantileSorted(sortedCopy(values), q);
}

export function median(values: ArrayLike<number>): number {
  return quantile(values, 0.5);
}

export function mean(values: ArrayLike<number>): number {
  if (values.length === 0) throw new RangeError('mean of an empty sample');
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i];
  return s / values.length;
}

/** Variance with `ddof` delta degrees of freedom (1 = unbiased sample variance). */
export function variance(values: ArrayLike<number>, ddof = 1): number {
  const n = values.length;
  if (n - ddof <= 0) return 0;
  const m = mean(values);
  let s = 0;
  for (let i = 0; i < n; i++) {
    const d = values[i] - m;
    s += d * d;
  }
  return s / (n - ddof);
}

export function std(values: ArrayLike<number>, ddof = 1): number {
  return Math.sqrt(variance(values, ddof));
}

/** 1-based ranks, ties sharing their average rank (the convention Mann–Whitney needs). */
export function ranks(values: ArrayLike<number>): Float64Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => values[i] - values[j]);
  const out = new Float64Array(n);
  let i = 0;
  while (i < n) {
    let j = i;
    while (j + 1 < n && values[order[j + 1]] === values[order[i]]) j++;
    const avg = (i + j) / 2 + 1;
    for (let t = i; t <= j; t++) out[order[t]] = avg;
    i = j + 1;
  }
  return out;
}

/**
 * Area under the ROC curve via the Mann–Whitney U statistic: the probability that a random
 * positive scores above a random negative, ties counting one half.
 */
export function auroc(positiveScores: ArrayLike<number>, negativeScores: ArrayLike<number>): number {
  const nPos = positiveScores.length, nNeg = negativeScores.length;
  if (nPos === 0 || nNeg === 0) throw new RangeError('auroc needs at least one positive and one negative');
  const all = new Float64Array(nPos + nNeg);
  for (let i = 0; i < nPos; i++) all[i] = positiveScores[i];
  for (let i = 0; i < nNeg; i++) all[nPos + i] = negativeScores[i];
  const r = ranks(all);
  let rankSum = 0;
  for (let i = 0; i < nPos; i++) rankSum += r[i];
  return (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

/** AUROC from scores and boolean labels (true = positive / anomalous). */
export function aurocLabelled(scores: ArrayLike<number>, labels: ArrayLike<boolean>): number {
  const pos: number[] = [], neg: number[] = [];
  for (let i = 0; i < scores.length; i++) (labels[i] ? pos : neg).push(scores[i]);
  return auroc(pos, neg);
}

export interface Summary {
  n: number;
  mean: number;
  std: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function summarise(values: ArrayLike<number>): Summary {
  const sorted = sortedCopy(values);
  return {
    n: sorted.length,
    mean: mean(sorted),
    std: std(sorted),
    min: sorted[0],
    p50: quantileSorted(sorted, 0.5),
    p90: quantileSorted(sorted, 0.9),
    p99: quantileSorted(sorted, 0.99),
    max: sorted[sorted.length - 1],
  };
}

/** Number of elements of an ascending array that are < x (binary search). */
export function countBelow(sorted: ArrayLike<number>, x: number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Number of elements of an ascending array that are <= x (binary search). */
export function countAtMost(sorted: ArrayLike<number>, x: number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
