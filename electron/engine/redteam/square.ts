// Square Attack, L-inf (Andriushchenko et al. 2020): score-based random search whose
// proposals set one random square, per channel, to the edge of the eps-ball (clean ± eps), and
// which keeps a proposal only if it raises the score. It starts from vertical stripes (each
// column and channel at clean ± eps), which the paper found a strong first point against CNNs.
//
// Everything happens on whole grey levels (clean ± levels, clipped to [0, 255]), so every
// point scored is exactly a point a PNG can hold.

import type { Rng } from '../../../shared/types.js';
import { checkImages, epsLevels, sign, type AttackResult, type Forward, type ImageSize, type Objective, type ProgressTick } from './pixels.js';
import { pSchedule, randomSearch } from './random-search.js';
import { positiveInt } from './spsa.js';

export interface SquareOptions {
  forward: Forward;
  size: ImageSize;
  eps: number;
  /** One per image. */
  objectives: Objective[];
  /** One per image, so each image's result does not depend on which others share its batch. */
  rngs: Rng[];
  /** Proposals per image (default 1000). */
  iterations?: number;
  /** Initial fraction of the image a square covers (paper: 0.05 for L-inf). */
  pInit?: number;
  signal?: AbortSignal;
  onStep?: (tick: ProgressTick) => void;
}

export const SQUARE_DEFAULTS = { iterations: 1000, pInit: 0.05 } as const;

/** Redraws of a square whose new values equal the current ones (the paper loops until they differ). */
const MAX_REDRAWS = 10;

export async function squareAttack(cleans: Float32Array[], opts: SquareOptions): Promise<AttackResult[]> {
  const { size, rngs } = opts;
  const { width, height } = size;
  cleans.forEach((c, i) => checkImages(`squareAttack image ${i}`, c, 1, size));
  if (rngs.length !== cleans.length) throw new RangeError(`squareAttack: ${cleans.length} images but ${rngs.length} rngs`);
  const iterations = positiveInt('iterations', opts.iterations ?? SQUARE_DEFAULTS.iterations);
  const pInit = opts.pInit ?? SQUARE_DEFAULTS.pInit;
  const levels = epsLevels(opts.eps);

  // A clean value moved `direction` × levels, as float32 so that comparing it with a stored value is exact.
  const edge = (cleanValue: number, direction: number) =>
    Math.fround(Math.min(255, Math.max(0, Math.round(cleanValue * 255) + direction * levels)) / 255);

  return randomSearch(cleans, {
    forward: opts.forward,
    size,
    objectives: opts.objectives,
    iterations,
    signal: opts.signal,
    onStep: opts.onStep,
    init(i, clean, out) {
      const rng = rngs[i];
      const stripes = Array.from({ length: width * 3 }, () => sign(rng));
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          for (let c = 0; c < 3; c++) {
            const o = (y * width + x) * 3 + c;
            out[o] = edge(clean[o], stripes[x * 3 + c]);
          }
        }
      }
    },
    propose(i, it, clean, out) {
      const rng = rngs[i];
      const p = pSchedule(pInit, it, iterations);
      const side = Math.min(Math.max(Math.round(Math.sqrt(p * width * height)), 1), Math.min(width, height) - 1);
      const top = Math.floor(rng() * (height - side + 1));
      const left = Math.floor(rng() * (width - side + 1));
      for (let attempt = 0; attempt < MAX_REDRAWS; attempt++) {
        const directions = [sign(rng), sign(rng), sign(rng)];
        let changed = false;
        for (let y = top; y < top + side; y++) {
          for (let x = left; x < left + side; x++) {
            for (let c = 0; c < 3; c++) {
              const o = (y * width + x) * 3 + c;
              const v = edge(clean[o], directions[c]);
              if (v !== out[o]) changed = true;
              out[o] = v;
            }
          }
        }
        if (changed) return;
      }
    },
  });
}
