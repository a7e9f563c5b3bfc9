// Shared vocabulary of the attacks: images as NHWC tensors at the encoder's input size, the
// uint8 grid they must end on, the eps-ball, and the score an attacker climbs.
//
// Every attack ends on the uint8 grid because that is what a PNG (and so the engine's ingest)
// can carry. The budget is therefore counted in whole grey levels: eps = 8/255 allows ±8, and
// eps = 0.0314 (8.007 levels) also allows ±8, never a ninth level that rounding would sneak in.

import { CancelledError } from '../concurrency.js';
import { fromBytes, toBytes } from '../ingest/image.js';
import type { Rng } from '../../../shared/types.js';

// The float ↔ uint8 conversions are ingest's (the b / 255 of resizeForEncoder); attacks use them too.
export { fromBytes, toBytes };

/** The encoder's forward pass: n images (NHWC float32 in [0,1]) → n unit-length embeddings. */
export type Forward = (pixels: Float32Array, n: number) => Promise<Float32Array[]>;

export interface ImageSize {
  width: number;
  height: number;
}

/**
 * 'away': push the embedding away from the clean image's own embedding (untargeted).
 * 'toward': pull it onto `reference`, e.g. the embedding of a chosen legitimate image (targeted).
 * The attack computes the clean embedding itself (and counts that forward pass).
 */
export type Objective = { mode: 'away' } | { mode: 'toward'; reference: Float32Array };

export type ObjectiveMode = Objective['mode'];

/** An objective with its reference embedding (unit length) filled in. */
export interface ResolvedObjective {
  mode: ObjectiveMode;
  reference: Float32Array;
}

export function resolveObjective(objective: Objective, cleanEmbedding: Float32Array): ResolvedObjective {
  return objective.mode === 'away' ? { mode: 'away', reference: cleanEmbedding } : objective;
}

/** What every pixel-level attack returns: an image on the uint8 grid and what it cost. */
export interface AttackResult {
  /** NHWC float32, every value k/255 for an integer k. */
  pixels: Float32Array;
  /** Forward passes (images through the encoder) spent, the clean reference included. */
  queries: number;
  /** The attacker's score of `pixels` (see `score`). */
  score: number;
}

export interface ProgressTick {
  step: number;
  steps: number;
  score: number;
}

/** Cosine similarity of two unit vectors. */
export function cosine(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Cosine distance (1 − cos) of two unit vectors: 0 same direction, 1 orthogonal, 2 opposite. */
export function cosineDistance(a: Float32Array, b: Float32Array): number {
  return 1 - cosine(a, b);
}

/**
 * Higher is better for the attacker in both modes, so one maximiser serves both: 'away'
 * scores the cosine distance to the reference, 'toward' its negation.
 */
export function score(objective: ResolvedObjective, embedding: Float32Array): number {
  const d = cosineDistance(embedding, objective.reference);
  return objective.mode === 'away' ? d : -d;
}

/**
 * The eps budget in whole grey levels. The small tolerance keeps 8/255 (which is 8.0000000001
 * or 7.9999999999 after floating-point division) at 8 levels.
 */
export function epsLevels(eps: number): number {
  if (!Number.isFinite(eps) || eps < 0 || eps > 1) throw new RangeError(`eps must be in [0, 1], got ${eps}`);
  const levels = Math.floor(eps * 255 + 1e-6);
  if (levels < 1) {
    throw new RangeError(
      `eps ${eps} is below one grey level (1/255 = ${(1 / 255).toFixed(5)}): a uint8 image could not change at all`,
    );
  }
  return levels;
}

/** Rounds onto the uint8 grid (the same values a PNG round trip gives). */
export function quantise(pixels: Float32Array): Float32Array {
  return fromBytes(toBytes(pixels));
}

/** Largest absolute difference in grey levels (×255) between two tensors on the grid. */
export function linf255(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new RangeError(`linf255: lengths differ (${a.length} vs ${b.length})`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Math.round(a[i] * 255) - Math.round(b[i] * 255)));
  return m;
}

/**
 * Per-value bounds of the feasible set: the eps-ball around `clean` intersected with [0,1].
 * `clean` is on the grid and the radius is whole levels, so rounding any point inside the box
 * lands inside it too: the final quantisation cannot break the budget.
 */
export function ballBounds(clean: Float32Array, levels: number): { lo: Float32Array; hi: Float32Array } {
  const r = levels / 255;
  const lo = new Float32Array(clean.length);
  const hi = new Float32Array(clean.length);
  for (let i = 0; i < clean.length; i++) {
    lo[i] = Math.max(0, clean[i] - r);
    hi[i] = Math.min(1, clean[i] + r);
  }
  return { lo, hi };
}

/** Checks that `pixels` holds exactly n images of `size`; names the caller on failure. */
export function checkImages(what: string, pixels: Float32Array, n: number, size: ImageSize): void {
  const per = size.width * size.height * 3;
  if (pixels.length !== n * per) {
    throw new RangeError(`${what}: expected ${n} image(s) of ${size.width}×${size.height}×3 = ${n * per} values, got ${pixels.length}`);
  }
}

/** Rademacher ±1 draw. */
export function sign(rng: Rng): 1 | -1 {
  return rng() < 0.5 ? -1 : 1;
}

/**
 * A random ±1 direction, constant over tile×tile blocks of each channel. tile = 1 is plain
 * Rademacher noise; larger tiles search a lower-dimensional space, which gradient-free
 * estimates converge in much faster (Ilyas et al. 2019's "tiling" prior). The grid is
 * fixed: shifting it randomly on every draw was tried and roughly halved the shift reached at
 * 8/255 (the per-pixel estimate gets noisier, and the blocky, low-frequency perturbation a
 * fixed grid builds is also the kind a CNN is most sensitive to).
 */
export function rademacher(size: ImageSize, tile: number, rng: Rng, out = new Float32Array(size.width * size.height * 3)): Float32Array {
  const { width, height } = size;
  const tilesX = Math.ceil(width / tile);
  const tilesY = Math.ceil(height / tile);
  const signs = new Float32Array(tilesX * tilesY * 3);
  for (let i = 0; i < signs.length; i++) signs[i] = sign(rng);
  for (let y = 0; y < height; y++) {
    const ty = Math.floor(y / tile);
    for (let x = 0; x < width; x++) {
      const t = (ty * tilesX + Math.floor(x / tile)) * 3;
      const o = (y * width + x) * 3;
      out[o] = signs[t];
      out[o + 1] = signs[t + 1];
      out[o + 2] = signs[t + 2];
    }
  }
  return out;
}

export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError('red-team run');
}
