// Seeded randomness. Every stochastic step of training draws from one of these so that the
// same seed gives bit-identical detectors on every platform (Math.random would not).

import type { Rng } from '../types.js';

/** mulberry32: 32-bit state, period 2^32, passes SmallCrush; plenty for sampling and init. */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const createRng = mulberry32;

/**
 * A seed for an independent stream, derived from a base seed and a path of labels
 * (fold, signal, ...). Hashing instead of drawing from a parent stream keeps each stream
 * stable when other stages are added, removed or reordered.
 */
export function deriveSeed(seed: number, ...labels: number[]): number {
  let h = splitmix32(seed >>> 0);
  for (const label of labels) h = splitmix32((h ^ Math.imul(label | 0, 0x9e3779b1)) >>> 0);
  return h;
}

export function deriveRng(seed: number, ...labels: number[]): Rng {
  return mulberry32(deriveSeed(seed, ...labels));
}

function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Uniform integer in [0, n). */
export function randInt(rng: Rng, n: number): number {
  return Math.min(n - 1, Math.floor(rng() * n));
}

/** Uniform in [lo, hi). */
export function uniform(rng: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * rng();
}

/** Standard normal by Box–Muller; the second variate is discarded to keep the function stateless. */
export function normal(rng: Rng, mean = 0, std = 1): number {
  // 1 - u keeps the argument of log in (0, 1].
  const u = 1 - rng();
  const v = rng();
  return mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** In-place Fisher–Yates shuffle. */
export function shuffle<T extends { length: number; [i: number]: any }>(array: T, rng: Rng): T {
  for (let i = array.length - 1; i > 0; i--) {
    const j = randInt(rng, i + 1);
    const tmp = array[i];
    array[i] = array[j];
    array[j] = tmp;
  }
  return array;
}

/** A random permutation of 0..n-1. */
export function permutation(n: number, rng: Rng): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  return shuffle(out, rng);
}

/** k distinct indices from 0..n-1, in random order (partial Fisher–Yates). */
export function sampleWithoutReplacement(n: number, k: number, rng: Rng): Int32Array {
  if (!Number.isInteger(n) || !Number.isInteger(k) || k < 0 || n < 0 || k > n) {
    throw new RangeError(`sampleWithoutReplacement: cannot draw ${k} of ${n}`);
  }
  const pool = new Int32Array(n);
  for (let i = 0; i < n; i++) pool[i] = i;
  for (let i = 0; i < k; i++) {
    const j = i + randInt(rng, n - i);
    const tmp = pool[i];
    pool[i] = pool[j];
    pool[j] = tmp;
  }
  return pool.slice(0, k);
}
