// Dense vector helpers over Float32Array. Sums accumulate in float64 (JS numbers); the
// four-way unrolled loops give V8 independent accumulators, which roughly doubles throughput.

export type Vector = Float32Array;

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return dotAt(a, 0, b, 0, a.length);
}

/** Dot product of a[ao .. ao+len) and b[bo .. bo+len): rows of flat row-major matrices. */
export function dotAt(a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number, len: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let i = 0;
  for (; i + 3 < len; i += 4) {
    s0 += a[ao + i] * b[bo + i];
    s1 += a[ao + i + 1] * b[bo + i + 1];
    s2 += a[ao + i + 2] * b[bo + i + 2];
    s3 += a[ao + i + 3] * b[bo + i + 3];
  }
  for (; i < len; i++) s0 += a[ao + i] * b[bo + i];
  return s0 + s1 + s2 + s3;
}

export function squaredNorm(a: ArrayLike<number>): number {
  return dotAt(a, 0, a, 0, a.length);
}

export function l2norm(a: ArrayLike<number>): number {
  return Math.sqrt(squaredNorm(a));
}

/** A unit-length copy; a zero vector stays zero rather than becoming NaN. */
export function normalise(a: ArrayLike<number>): Float32Array {
  const out = Float32Array.from(a);
  normaliseInPlace(out);
  return out;
}

export function normaliseInPlace(a: Float32Array, offset = 0, len = a.length - offset): Float32Array {
  const norm = Math.sqrt(dotAt(a, offset, a, offset, len));
  if (norm > 0) {
    const inv = 1 / norm;
    for (let i = 0; i < len; i++) a[offset + i] *= inv;
  }
  return a;
}

/** 1 − cos(a, b), in [0, 2]. Zero vectors are treated as orthogonal to everything (distance 1). */
export function cosineDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const na = l2norm(a), nb = l2norm(b);
  if (na === 0 || nb === 0) return 1;
  return 1 - dot(a, b) / (na * nb);
}

export function squaredEuclidean(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return squaredEuclideanAt(a, 0, b, 0, a.length);
}

export function squaredEuclideanAt(a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number, len: number): number {
  let s0 = 0, s1 = 0;
  let i = 0;
  for (; i + 1 < len; i += 2) {
    const d0 = a[ao + i] - b[bo + i];
    const d1 = a[ao + i + 1] - b[bo + i + 1];
    s0 += d0 * d0;
    s1 += d1 * d1;
  }
  if (i < len) {
    const d0 = a[ao + i] - b[bo + i];
    s0 += d0 * d0;
  }
  return s0 + s1;
}

export function euclidean(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return Math.sqrt(squaredEuclidean(a, b));
}

/** y += alpha · x over a slice of each. */
export function axpyAt(alpha: number, x: ArrayLike<number>, xo: number, y: Float32Array | Float64Array, yo: number, len: number): void {
  for (let i = 0; i < len; i++) y[yo + i] += alpha * x[xo + i];
}

export function add(a: ArrayLike<number>, b: ArrayLike<number>): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

export function sub(a: ArrayLike<number>, b: ArrayLike<number>): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] - b[i];
  return out;
}

export function scale(a: ArrayLike<number>, s: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] * s;
  return out;
}

/** Component-wise mean of equal-length vectors, accumulated in float64. */
export function meanVector(X: readonly ArrayLike<number>[]): Float32Array {
  if (X.length === 0) throw new RangeError('meanVector: no vectors');
  const d = X[0].length;
  const acc = new Float64Array(d);
  for (const x of X) {
    if (x.length !== d) throw new RangeError(`meanVector: dimension ${x.length} ≠ ${d}`);
    for (let i = 0; i < d; i++) acc[i] += x[i];
  }
  const out = new Float32Array(d);
  for (let i = 0; i < d; i++) out[i] = acc[i] / X.length;
  return out;
}

/**
 * Checks that X is a non-empty list of finite vectors of one dimension and returns it.
 * Detectors call this first so a bad embedding fails loudly instead of poisoning a model.
 */
export function checkEmbeddings(X: readonly ArrayLike<number>[], expectedDim?: number, what = 'embeddings'): number {
  if (X.length === 0) throw new RangeError(`${what}: empty`);
  const d = expectedDim ?? X[0].length;
  if (d === 0) throw new RangeError(`${what}: zero-dimensional vectors`);
  for (let r = 0; r < X.length; r++) {
    const x = X[r];
    if (x.length !== d) throw new RangeError(`${what}: item ${r} has dimension ${x.length}, expected ${d}`);
    for (let i = 0; i < d; i++) {
      if (!Number.isFinite(x[i])) throw new RangeError(`${what}: item ${r} has a non-finite value at ${i}`);
    }
  }
  return d;
}
