// Adversarial patch: a square covering a few percent of the image whose pixels may take any
// value, everything else untouched. Optimised by random search in the manner of Sparse-RS
// (Croce et al. 2022): each proposal paints a random sub-square of the patch one of the eight
// extreme colours ({0, 255}³), kept only if it raises the score; the sub-square shrinks on
// Square Attack's schedule. The patch's place is drawn per image (seeded) and then fixed.
// With the grey palette the colours are black and white only: a patch with no colour
// difference at all, which is what an attacker who knows the patch_texture signal would paint.

import type { Rng } from '../../../shared/types.js';
import { checkImages, type AttackResult, type Forward, type ImageSize, type Objective, type ProgressTick } from './pixels.js';
import { pSchedule, randomSearch } from './random-search.js';
import { positiveInt } from './spsa.js';

export interface Region {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface PatchOptions {
  forward: Forward;
  size: ImageSize;
  objectives: Objective[];
  rngs: Rng[];
  /** Fraction of the image the patch covers (default 0.06, i.e. 55×55 at 224×224). */
  area?: number;
  /** Proposals per image (default 1000). */
  iterations?: number;
  /** Initial fraction of the patch a painted sub-square covers (Sparse-RS uses 0.4 for patches). */
  pInit?: number;
  /** 'colour' (default): the eight extreme colours; 'grey': black and white only. */
  palette?: PatchPalette;
  signal?: AbortSignal;
  onStep?: (tick: ProgressTick) => void;
}

export type PatchPalette = 'colour' | 'grey';
export const PATCH_PALETTES: readonly PatchPalette[] = ['colour', 'grey'];

export const PATCH_DEFAULTS = { area: 0.06, iterations: 1000, pInit: 0.4, palette: 'colour' as PatchPalette } as const;

export interface PatchResult extends AttackResult {
  region: Region;
}

export function patchSide(size: ImageSize, area: number): number {
  if (!(area > 0 && area < 1)) throw new RangeError(`patch area must be a fraction in (0, 1), got ${area}`);
  return Math.max(1, Math.min(size.width, size.height, Math.round(Math.sqrt(area * size.width * size.height))));
}

/** Where image i's patch goes: uniform over the positions where it fits whole. */
export function placePatch(size: ImageSize, side: number, rng: Rng): Region {
  return {
    x: Math.floor(rng() * (size.width - side + 1)),
    y: Math.floor(rng() * (size.height - side + 1)),
    width: side,
    height: side,
  };
}

export async function patchAttack(cleans: Float32Array[], opts: PatchOptions): Promise<PatchResult[]> {
  const { size, rngs } = opts;
  const { width } = size;
  cleans.forEach((c, i) => checkImages(`patchAttack image ${i}`, c, 1, size));
  if (rngs.length !== cleans.length) throw new RangeError(`patchAttack: ${cleans.length} images but ${rngs.length} rngs`);
  const iterations = positiveInt('iterations', opts.iterations ?? PATCH_DEFAULTS.iterations);
  const pInit = opts.pInit ?? PATCH_DEFAULTS.pInit;
  const side = patchSide(size, opts.area ?? PATCH_DEFAULTS.area);
  // Drawn before any search so that the place does not depend on how the search went.
  const regions = rngs.map((rng) => placePatch(size, side, rng));

  const paint = (out: Float32Array, top: number, left: number, s: number, colour: number[]): boolean => {
    let changed = false;
    for (let y = top; y < top + s; y++) {
      for (let x = left; x < left + s; x++) {
        for (let c = 0; c < 3; c++) {
          const o = (y * width + x) * 3 + c;
          if (out[o] !== colour[c]) changed = true;
          out[o] = colour[c];
        }
      }
    }
    return changed;
  };
  const palette = opts.palette ?? PATCH_DEFAULTS.palette;
  if (!PATCH_PALETTES.includes(palette)) throw new RangeError(`patch palette must be one of ${PATCH_PALETTES.join(', ')}, got ${String(palette)}`);
  const randomColour = palette === 'grey'
    ? (rng: Rng) => { const v = rng() < 0.5 ? 0 : 1; return [v, v, v]; }
    : (rng: Rng) => [rng() < 0.5 ? 0 : 1, rng() < 0.5 ? 0 : 1, rng() < 0.5 ? 0 : 1];

  const results = await randomSearch(cleans, {
    forward: opts.forward,
    size,
    objectives: opts.objectives,
    iterations,
    signal: opts.signal,
    onStep: opts.onStep,
    init(i, clean, out) {
      // Vertical stripes of extreme colours, as Square Attack starts.
      out.set(clean);
      const r = regions[i];
      for (let x = r.x; x < r.x + side; x++) paint(out, r.y, x, 1, randomColour(rngs[i]));
      for (let y = r.y + 1; y < r.y + side; y++) {
        for (let x = r.x; x < r.x + side; x++) {
          const o = (y * width + x) * 3;
          const above = o - width * 3;
          out[o] = out[above];
          out[o + 1] = out[above + 1];
          out[o + 2] = out[above + 2];
        }
      }
    },
    propose(i, it, _clean, out) {
      const rng = rngs[i];
      const r = regions[i];
      const s = Math.min(side, Math.max(1, Math.round(Math.sqrt(pSchedule(pInit, it, iterations)) * side)));
      const top = r.y + Math.floor(rng() * (side - s + 1));
      const left = r.x + Math.floor(rng() * (side - s + 1));
      for (let attempt = 0; attempt < 10; attempt++) if (paint(out, top, left, s, randomColour(rng))) return;
    },
  });
  return results.map((res, i) => ({ ...res, region: regions[i] }));
}
