// Flat row-major float32 matrices and the few dense kernels the detectors need.
// Everything heavy is phrased as C = A·Bᵀ with both operands row-major ("NT"), because then
// the innermost loop walks two contiguous rows. A 4×4 register tile reaches ~3 GMAC/s on one
// core in V8, about 2.5× a plain dot-product loop. (A 3×3 tile is ~5% faster on square
// shapes but slower on the autoencoder's, whose sizes are multiples of 4 — 32, 64, 1280.)

export interface Matrix {
  rows: number;
  cols: number;
  data: Float32Array;
}

export function matrix(rows: number, cols: number, data?: Float32Array): Matrix {
  if (data && data.length !== rows * cols) throw new RangeError(`matrix: ${data.length} values for ${rows}×${cols}`);
  return { rows, cols, data: data ?? new Float32Array(rows * cols) };
}

/** Copies equal-length vectors into one contiguous row-major matrix. */
export function stackRows(X: readonly ArrayLike<number>[], cols = X.length > 0 ? X[0].length : 0): Matrix {
  const out = new Float32Array(X.length * cols);
  for (let r = 0; r < X.length; r++) out.set(X[r] as ArrayLike<number>, r * cols);
  return { rows: X.length, cols, data: out };
}

export function row(m: Matrix, r: number): Float32Array {
  return m.data.subarray(r * m.cols, (r + 1) * m.cols);
}

export function transpose(m: Matrix): Matrix {
  const { rows, cols, data } = m;
  const out = new Float32Array(rows * cols);
  // Blocked so both the reads and the writes stay within a few cache lines.
  const B = 32;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) out[c * rows + r] = data[r * cols + c];
      }
    }
  }
  return { rows: cols, cols: rows, data: out };
}

/**
 * C[m×n] = A[m×k] · B[n×k]ᵀ, all row-major, written into c (overwritten, not accumulated).
 * Offsets let callers use row blocks of larger buffers without copying. Every element is one
 * sequential float64 sum over k whichever tile computes it, so results do not depend on m, n
 * or an element's position: scoring an item alone or in a batch gives identical numbers.
 */
export function gemmNT(
  a: Float32Array, b: Float32Array, c: Float32Array | Float64Array,
  m: number, n: number, k: number,
  aOffset = 0, bOffset = 0, cOffset = 0,
): void {
  const m4 = m - (m % 4);
  const n4 = n - (n % 4);
  for (let i = 0; i < m4; i += 4) {
    const a0 = aOffset + i * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
    for (let j = 0; j < n4; j += 4) {
      const b0 = bOffset + j * k, b1 = b0 + k, b2 = b1 + k, b3 = b2 + k;
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
      for (let p = 0; p < k; p++) {
        const x0 = a[a0 + p], x1 = a[a1 + p], x2 = a[a2 + p], x3 = a[a3 + p];
        const y0 = b[b0 + p], y1 = b[b1 + p], y2 = b[b2 + p], y3 = b[b3 + p];
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
        c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
        c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
      }
      let o = cOffset + i * n + j;
      c[o] = c00; c[o + 1] = c01; c[o + 2] = c02; c[o + 3] = c03; o += n;
      c[o] = c10; c[o + 1] = c11; c[o + 2] = c12; c[o + 3] = c13; o += n;
      c[o] = c20; c[o + 1] = c21; c[o + 2] = c22; c[o + 3] = c23; o += n;
      c[o] = c30; c[o + 1] = c31; c[o + 2] = c32; c[o + 3] = c33;
    }
    for (let j = n4; j < n; j++) {
      const b0 = bOffset + j * k;
      let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
      for (let p = 0; p < k; p++) {
        const y = b[b0 + p];
        c0 += a[a0 + p] * y; c1 += a[a1 + p] * y; c2 += a[a2 + p] * y; c3 += a[a3 + p] * y;
      }
      const o = cOffset + i * n + j;
      c[o] = c0; c[o + n] = c1; c[o + 2 * n] = c2; c[o + 3 * n] = c3;
    }
  }
  // Leftover rows of A (e.g. scoring a single item): 1×4 tiles.
  for (let i = m4; i < m; i++) {
    const a0 = aOffset + i * k;
    for (let j = 0; j < n4; j += 4) {
      const b0 = bOffset + j * k, b1 = b0 + k, b2 = b1 + k, b3 = b2 + k;
      let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
      for (let p = 0; p < k; p++) {
        const x = a[a0 + p];
        c0 += x * b[b0 + p]; c1 += x * b[b1 + p]; c2 += x * b[b2 + p]; c3 += x * b[b3 + p];
      }
      const o = cOffset + i * n + j;
      c[o] = c0; c[o + 1] = c1; c[o + 2] = c2; c[o + 3] = c3;
    }
    for (let j = n4; j < n; j++) {
      const b0 = bOffset + j * k;
      let s = 0;
      for (let p = 0; p < k; p++) s += a[a0 + p] * b[b0 + p];
      c[cOffset + i * n + j] = s;
    }
  }
}

/**
 * Orthonormalises the rows of q (r×d) in place by modified Gram–Schmidt, run twice
 * ("twice is enough", Giraud et al.) because the power-iterated blocks are nearly collinear.
 * A row that collapses to ~0 (rank deficiency) is replaced by a fresh random direction from
 * `fill` so the basis stays full rank. Returns the row norms after the first pass.
 */
export function orthonormaliseRows(q: Float32Array, r: number, d: number, fill: () => number): Float64Array {
  const norms = new Float64Array(r);
  const tmp = new Float64Array(d);
  for (let i = 0; i < r; i++) {
    const oi = i * d;
    let original = 0;
    for (let t = 0; t < d; t++) { tmp[t] = q[oi + t]; original += tmp[t] * tmp[t]; }
    original = Math.sqrt(original);
    for (let attempt = 0; ; attempt++) {
      for (let pass = 0; pass < 2; pass++) {
        for (let j = 0; j < i; j++) {
          const oj = j * d;
          let s = 0;
          for (let t = 0; t < d; t++) s += tmp[t] * q[oj + t];
          for (let t = 0; t < d; t++) tmp[t] -= s * q[oj + t];
        }
      }
      let norm = 0;
      for (let t = 0; t < d; t++) norm += tmp[t] * tmp[t];
      norm = Math.sqrt(norm);
      if (attempt === 0) norms[i] = norm;
      if (norm > 1e-10 * Math.max(original, 1e-30) && norm > 1e-30) {
        for (let t = 0; t < d; t++) q[oi + t] = tmp[t] / norm;
        break;
      }
      if (attempt > 8) throw new Error('orthonormaliseRows: could not complete the basis');
      for (let t = 0; t < d; t++) tmp[t] = fill() - 0.5;
      original = 1;
    }
  }
  return norms;
}

/**
 * Eigen-decomposition of a small symmetric matrix (cyclic Jacobi). Returns eigenvalues in
 * descending order and the matching eigenvectors as rows. O(n³) per sweep, so only for the
 * l×l Rayleigh–Ritz problems (l ≲ 100), not for covariance matrices of embeddings.
 */
export function symmetricEigen(input: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(input);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0, diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i * n + i] * a[i * n + i];
      for (let j = i + 1; j < n; j++) off += a[i * n + j] * a[i * n + j];
    }
    if (off <= 1e-30 * Math.max(diag, 1e-300)) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const app = a[p * n + p], aqq = a[q * n + q];
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[j * n + j] - a[i * n + i] || i - j);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = a[src * n + src];
    for (let k = 0; k < n; k++) vectors[dst * n + k] = v[k * n + src];
  });
  return { values, vectors };
}
