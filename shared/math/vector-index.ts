// Nearest-neighbour search behind a small interface, so an approximate index (HNSW, IVF) can
// replace brute force later without touching the detectors. Distances are cosine distances
// (1 − cos) between the stored vectors, which are normalised on insertion.

import { gemmNT } from './matrix.js';
import { normaliseInPlace } from './vector.js';

export interface SearchHit {
  /** Insertion order of the stored vector (0-based). */
  index: number;
  /** Cosine distance 1 − cos(q, v), in [0, 2]. */
  distance: number;
}

export interface VectorIndex {
  readonly dim: number;
  readonly size: number;
  /** Stores a copy of v and returns its index. */
  add(v: ArrayLike<number>): number;
  /** The k nearest stored vectors, nearest first (ties by lower index); `exclude` skips one index. */
  search(q: ArrayLike<number>, k: number, exclude?: number): SearchHit[];
}

/**
 * Exact search by scanning every stored vector. One query against 2,000×1280 costs ~2.5M
 * multiply-adds (~2 ms); batches go through a tiled matrix product instead.
 */
export class BruteForceIndex implements VectorIndex {
  readonly dim: number;
  private data: Float32Array;
  private count = 0;

  constructor(dim: number, capacity = 64) {
    if (!Number.isInteger(dim) || dim <= 0) throw new RangeError(`BruteForceIndex: bad dimension ${dim}`);
    this.dim = dim;
    this.data = new Float32Array(dim * Math.max(1, capacity));
  }

  /** Wraps an already-normalised contiguous n×dim buffer without copying. */
  static fromNormalised(data: Float32Array, dim: number): BruteForceIndex {
    if (data.length % dim !== 0) throw new RangeError('BruteForceIndex: buffer is not a whole number of rows');
    const index = new BruteForceIndex(dim, 1);
    index.data = data;
    index.count = data.length / dim;
    return index;
  }

  get size(): number {
    return this.count;
  }

  /** The stored (normalised) vectors as one row-major buffer, size×dim. */
  get vectors(): Float32Array {
    return this.data.subarray(0, this.count * this.dim);
  }

  add(v: ArrayLike<number>): number {
    if (v.length !== this.dim) throw new RangeError(`BruteForceIndex.add: dimension ${v.length}, expected ${this.dim}`);
    if ((this.count + 1) * this.dim > this.data.length) {
      const grown = new Float32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    const offset = this.count * this.dim;
    this.data.set(v, offset);
    normaliseInPlace(this.data, offset, this.dim);
    return this.count++;
  }

  search(q: ArrayLike<number>, k: number, exclude = -1): SearchHit[] {
    // Same kernel as searchMany so a vector gets bit-identical distances alone or in a batch.
    return this.searchMany([q], k, [exclude])[0];
  }

  /**
   * k nearest for many queries at once (e.g. leave-one-out over the whole baseline):
   * blocks of queries × the whole index as one matrix product each. The product sums each
   * dot product in one sequential float64 accumulator whatever the tiling, so results do not
   * depend on how queries are batched.
   */
  searchMany(queries: readonly ArrayLike<number>[], k: number, exclude?: readonly (number | null | undefined)[]): SearchHit[][] {
    const d = this.dim;
    const n = this.count;
    const BLOCK = 64;
    const out: SearchHit[][] = [];
    const rows = Math.min(BLOCK, queries.length);
    const qBlock = new Float32Array(rows * d);
    const sims = new Float64Array(rows * n);
    for (let start = 0; start < queries.length; start += BLOCK) {
      const m = Math.min(BLOCK, queries.length - start);
      for (let r = 0; r < m; r++) {
        const q = queries[start + r];
        if (q.length !== d) throw new RangeError(`BruteForceIndex.searchMany: dimension ${q.length}, expected ${d}`);
        qBlock.set(q, r * d);
        normaliseInPlace(qBlock, r * d, d);
      }
      gemmNT(qBlock, this.data, sims, m, n, d);
      for (let r = 0; r < m; r++) {
        const skip = exclude?.[start + r] ?? -1;
        const top = new TopK(k);
        const base = r * n;
        for (let i = 0; i < n; i++) {
          if (i !== skip) top.offer(i, 1 - sims[base + i]);
        }
        out.push(top.hits());
      }
    }
    return out;
  }
}

/** Bounded ascending list of the k smallest distances; k is small, so insertion beats a heap. */
class TopK {
  private readonly idx: Int32Array;
  private readonly dist: Float64Array;
  private len = 0;

  constructor(private readonly k: number) {
    this.idx = new Int32Array(Math.max(0, k));
    this.dist = new Float64Array(Math.max(0, k));
  }

  offer(index: number, distance: number): void {
    const k = this.k;
    if (k <= 0) return;
    if (this.len === k && distance >= this.dist[k - 1]) return;
    let pos = this.len < k ? this.len++ : k - 1;
    while (pos > 0 && this.dist[pos - 1] > distance) {
      this.dist[pos] = this.dist[pos - 1];
      this.idx[pos] = this.idx[pos - 1];
      pos--;
    }
    this.dist[pos] = distance;
    this.idx[pos] = index;
  }

  hits(): SearchHit[] {
    const out: SearchHit[] = [];
    for (let i = 0; i < this.len; i++) out.push({ index: this.idx[i], distance: Math.max(0, this.dist[i]) });
    return out;
  }
}
